"""zoo.common.metrics.ood against hand-worked cases and a float64 numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from zoo.common.metrics.ood import (
    CONVENTION,
    accepted,
    convention,
    fpr_at_tpr,
    knn_ood_index,
    ood_metrics,
    roc_curve,
    threshold_at_tpr,
)

# ---------------------------------------------------------------- float64 numpy reference


def ref_auroc(id_s: np.ndarray, ood_s: np.ndarray) -> float:
    """Mann-Whitney: P(id > ood) + 1/2 P(id == ood), over all pairs."""
    gt = (id_s[:, None] > ood_s[None, :]).sum()
    eq = (id_s[:, None] == ood_s[None, :]).sum()
    return float((gt + 0.5 * eq) / (id_s.size * ood_s.size))


def ref_threshold(id_s: np.ndarray, rule: str = "knn_ood") -> float:
    n = id_s.size
    if rule == "knn_ood":  # written as the released knn-ood evaluation does it
        known = np.sort(id_s)
        return float(known[round(0.05 * n)])
    keep = (95 * n + 99) // 100  # ceil(0.95 n) in integer arithmetic
    return float(np.sort(id_s)[::-1][keep - 1])


def ref_fpr95(id_s: np.ndarray, ood_s: np.ndarray, rule: str = "knn_ood") -> float:
    t = ref_threshold(id_s, rule)
    return float(np.sum(ood_s > t) / float(ood_s.size)) if rule == "knn_ood" else float(np.mean(ood_s >= t))


def ref_ap(pos: np.ndarray, neg: np.ndarray) -> float:
    """Step-wise average precision: sum over distinct thresholds of (R_i - R_{i-1}) * P_i."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    ap, prev_recall = 0.0, 0.0
    for thr in np.unique(scores)[::-1]:
        sel = scores >= thr
        tp = labels[sel].sum()
        recall, precision = tp / pos.size, tp / sel.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return float(ap)


def check_against_reference(id_s: np.ndarray, ood_s: np.ndarray, rule: str) -> None:
    m = ood_metrics(torch.from_numpy(id_s), torch.from_numpy(ood_s), fpr_rule=rule)
    assert m["auroc"] == pytest.approx(ref_auroc(id_s, ood_s), abs=1e-6)
    assert m["fpr95"] == ref_fpr95(id_s, ood_s, rule)
    assert m["threshold"] == ref_threshold(id_s, rule)
    assert m["aupr_in"] == pytest.approx(ref_ap(id_s, ood_s), abs=1e-6)
    assert m["aupr_out"] == pytest.approx(ref_ap(-ood_s, -id_s), abs=1e-6)


# ---------------------------------------------------------------- hand-worked cases


def test_perfect_separator() -> None:
    m = ood_metrics(torch.tensor([3.0, 4.0, 5.0]), torch.tensor([0.0, 1.0, 2.0]))
    assert m == {"auroc": 1.0, "fpr95": 0.0, "aupr_in": 1.0, "aupr_out": 1.0, "threshold": 3.0}


def test_reversed_separator() -> None:
    m = ood_metrics(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 4.0, 5.0]))
    # n=3: keep ceil(2.85)=3 ID -> t = 0, and every OOD score is >= 0.
    assert m["auroc"] == 0.0
    assert m["fpr95"] == 1.0
    assert m["threshold"] == 0.0


def test_ties_by_hand() -> None:
    f64 = torch.float64
    m = ood_metrics(torch.tensor([1.0, 1.0, 0.5, 0.2], dtype=f64), torch.tensor([0.5, 0.1], dtype=f64))
    # AUROC over 8 (id, ood) pairs: 1 beats both (x2 ids) = 4; 0.5 ties 0.5 (1/2) and beats 0.1 = 1.5;
    # 0.2 loses to 0.5 and beats 0.1 = 1. (4 + 1.5 + 1) / 8 = 0.8125.
    assert m["auroc"] == pytest.approx(0.8125, abs=1e-7)
    # n=4: keep ceil(3.8)=4 -> t = 0.2 (the smallest ID); OOD >= 0.2 is {0.5}: 1/2.
    assert m["threshold"] == 0.2
    assert m["fpr95"] == 0.5
    # AUPR-In, thresholds 1, 0.5, 0.2, 0.1: (R, P) = (.5, 1), (.75, .75), (1, .8), (1, 4/6)
    # -> .5*1 + .25*.75 + .25*.8 = 0.8875.
    assert m["aupr_in"] == pytest.approx(0.8875, abs=1e-7)
    # AUPR-Out (OOD positive, negated scores), thresholds 0.1, 0.2, 0.5, 1: (R, P) = (.5, 1),
    # (.5, .5), (1, .5), (1, 2/6) -> .5*1 + .5*.5 = 0.75.
    assert m["aupr_out"] == pytest.approx(0.75, abs=1e-7)


def test_threshold_at_tpr_by_hand_n20() -> None:
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    ids = torch.arange(20, 0, -1, dtype=torch.float64)[perm]
    # ROC rule. Descending 20, 19, ..., 1. tpr .95: ceil(19) = 19 -> 19th = 2 (19 of 20 are >= 2).
    assert threshold_at_tpr(ids, fpr_rule="roc") == 2.0
    assert threshold_at_tpr(ids, tpr=0.9, fpr_rule="roc") == 3.0  # ceil(18) = 18 -> 3
    assert threshold_at_tpr(ids, tpr=0.96, fpr_rule="roc") == 1.0  # ceil(19.2) = 20 -> 1
    assert threshold_at_tpr(ids, tpr=0.5, fpr_rule="roc") == 11.0  # ceil(10) = 10 -> 11
    assert threshold_at_tpr(ids, tpr=1.0, fpr_rule="roc") == 1.0
    # knn-ood rule. Ascending 1, 2, ..., 20 at index round((1 - tpr) 20); accepted means > t.
    assert threshold_at_tpr(ids) == 2.0  # round(1.0) = 1 -> 2 (18 of 20 are > 2)
    assert threshold_at_tpr(ids, tpr=0.9) == 3.0  # round(2.0) = 2 -> 3
    assert threshold_at_tpr(ids, tpr=0.96) == 2.0  # round(0.8) = 1 -> 2
    assert threshold_at_tpr(ids, tpr=0.5) == 11.0  # round(10.0) = 10 -> 11
    assert threshold_at_tpr(ids, tpr=1.0) == 1.0  # round(0) = 0 -> the smallest ID score


def test_fpr95_issue_example_knn_ood_vs_roc() -> None:
    """ID = {0.01, ..., 1.00}, OOD = {0.06, 0.5} (issue 8). knn-ood: t = sorted_asc[round(5.0)] =
    sorted_asc[5] = 0.06 and only 0.5 > 0.06: FPR 1/2. ROC: t = sorted_desc[ceil(95) - 1] =
    sorted_desc[94] = 0.06 and both OOD scores are >= 0.06: FPR 2/2."""
    ids = torch.arange(1, 101, dtype=torch.float64) / 100
    ood = torch.tensor([6.0, 50.0], dtype=torch.float64) / 100  # the same floats as ids[5], ids[49]
    m = ood_metrics(ids, ood)
    assert m["threshold"] == ids[5].item() and m["fpr95"] == 0.5
    r = ood_metrics(ids, ood, fpr_rule="roc")
    assert r["threshold"] == ids[5].item() and r["fpr95"] == 1.0
    assert m["auroc"] == r["auroc"]  # the rule only concerns FPR95
    assert fpr_at_tpr(-torch.cat([ids, ood]), torch.arange(102) < 100) == 0.5
    assert fpr_at_tpr(-torch.cat([ids, ood]), torch.arange(102) < 100, fpr_rule="roc") == 1.0


def test_fpr95_ties_at_the_threshold() -> None:
    """ID = {0.2, 0.2, 0.5, 1.0}, OOD = {0.2, 0.2, 0.9}. knn-ood: index round(0.2) = 0, t = 0.2;
    OOD > 0.2 is {0.9}: 1/3, and the two ID scores tied at t are rejected too (accepted: 2 of 4).
    ROC: index ceil(3.8) - 1 = 3 of the descending scores, t = 0.2; OOD >= 0.2 is all three: 3/3."""
    f64 = torch.float64
    ids, ood = torch.tensor([0.2, 0.2, 0.5, 1.0], dtype=f64), torch.tensor([0.2, 0.2, 0.9], dtype=f64)
    assert ood_metrics(ids, ood)["fpr95"] == pytest.approx(1 / 3)
    assert ood_metrics(ids, ood, fpr_rule="roc")["fpr95"] == 1.0
    assert accepted(ids, 0.2).tolist() == [False, False, True, True]
    assert accepted(ids, 0.2, fpr_rule="roc").tolist() == [True, True, True, True]


@pytest.mark.parametrize(("n", "index"), [(1, 0), (10, 0), (19, 1), (20, 1), (30, 2), (50, 2), (70, 4), (90, 4),
                                          (100, 5), (110, 6)])
def test_knn_ood_index_small_sizes(n: int, index: int) -> None:
    """Python's round on the float 0.05 n, as in the released code: 0.5 -> 0, 0.95 -> 1, 1.5000000000000002
    -> 2, 2.5 -> 2, 3.5 -> 4, 4.5 -> 4, 5.5 -> 6 (half to even)."""
    assert knn_ood_index(n) == index == round(0.05 * n)
    ids = torch.arange(n, dtype=torch.float64)  # sorted ascending: the threshold is the index itself
    assert threshold_at_tpr(ids) == float(index)
    # every OOD score equal to an ID score: only those strictly above t count
    assert ood_metrics(ids, ids.clone())["fpr95"] == pytest.approx((n - 1 - index) / n)


def test_knn_ood_index_tpr_float_error_and_cap() -> None:
    assert 1 - 0.95 != 0.05 and knn_ood_index(10, 0.95) == 0  # not round(0.5000000000000004) = 1
    assert knn_ood_index(1, 0.01) == 0  # round(0.99) = 1 is capped at n - 1


# ---------------------------------------------------------------- random draws vs the reference


@pytest.mark.parametrize(
    ("seed", "n_id", "n_ood", "offset", "scale", "decimals"),
    [
        (0, 200, 150, 0.0, 1.0, None),
        (1, 333, 97, 0.0, 1.0, 1),  # many ties
        (2, 1000, 1000, -4.0, 0.5, None),  # CSD-like range [-4, 0]
        (3, 257, 301, 1e4, 1e3, None),  # large magnitudes: a raw sigmoid would saturate
        (4, 20, 40, -1e4, 1.0, 2),
    ],
)
@pytest.mark.parametrize("rule", ["knn_ood", "roc"])
def test_random_draws_match_reference(seed, n_id, n_ood, offset, scale, decimals, rule) -> None:
    rng = np.random.default_rng(seed)
    id_s = offset + scale * rng.normal(1.0, 1.0, n_id)
    ood_s = offset + scale * rng.normal(0.0, 1.0, n_ood)
    if decimals is not None:
        id_s, ood_s = np.round(id_s, decimals), np.round(ood_s, decimals)
    check_against_reference(id_s, ood_s, rule)


def test_raw_large_scores_would_saturate() -> None:
    """Why we min-max normalise: torchmetrics' sigmoid maps 1e4-offset scores to all-ties."""
    id_s, ood_s = torch.tensor([1e4 + 2, 1e4 + 3]), torch.tensor([1e4, 1e4 + 1])
    raw = binary_auroc(torch.cat([id_s, ood_s]), torch.tensor([1, 1, 0, 0]))
    assert float(raw) == 0.5
    assert ood_metrics(id_s, ood_s)["auroc"] == 1.0


def test_roc_curve_matches_fpr95() -> None:
    rng = np.random.default_rng(5)
    id_s, ood_s = rng.normal(1, 1, 120), rng.normal(0, 1, 80)
    fpr, tpr, thr = roc_curve(torch.from_numpy(id_s), torch.from_numpy(ood_s))
    assert fpr.shape == tpr.shape == thr.shape and fpr.dtype == torch.float64
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, math.inf)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert torch.all(thr[1:] <= thr[:-1])
    # Every finite threshold is a raw score, and point i is "score >= thr[i]".
    for i in (1, len(thr) // 2, len(thr) - 1):
        t = thr[i].item()
        nearest = np.abs(np.concatenate([id_s, ood_s]) - t).min()
        assert nearest < 1e-9
        assert fpr[i].item() == pytest.approx(np.mean(ood_s >= t - 1e-9), abs=1e-7)
    first = int(torch.nonzero(torch.round(tpr * id_s.size) >= math.ceil(0.95 * id_s.size))[0, 0])
    m = ood_metrics(torch.from_numpy(id_s), torch.from_numpy(ood_s), fpr_rule="roc")
    assert fpr[first].item() == pytest.approx(m["fpr95"])


def test_fpr_at_tpr_ood_high_scores() -> None:
    id_s, ood_s = torch.tensor([1.0, 1.0, 0.5, 0.2]), torch.tensor([0.5, 0.1])
    scores = -torch.cat([id_s, ood_s])  # higher = more OOD
    is_id = torch.tensor([True] * 4 + [False] * 2)
    # both rules: t = 0.2 (knn-ood index round(0.2) = 0; ROC index ceil(3.8) - 1 = 3), only OOD 0.5 passes
    assert fpr_at_tpr(scores, is_id) == 0.5
    assert fpr_at_tpr(scores, is_id, fpr_rule="roc") == 0.5


def test_constant_scores() -> None:
    # All equal: no OOD score is strictly above t = 1 (knn-ood), every one is >= t (ROC).
    m = ood_metrics(torch.ones(5), torch.ones(3))
    assert m["auroc"] == 0.5 and m["fpr95"] == 0.0 and m["threshold"] == 1.0
    assert ood_metrics(torch.ones(5), torch.ones(3), fpr_rule="roc")["fpr95"] == 1.0


def test_convention_is_stated() -> None:
    assert CONVENTION == convention("knn_ood")
    assert "ID is the positive class" in CONVENTION and "score > t" in CONVENTION and "round(0.05 n)" in CONVENTION
    assert "score >= t" in convention("roc") and "ceil(0.95 n) - 1" in convention("roc")


def test_unknown_rule() -> None:
    with pytest.raises(ValueError, match="fpr_rule must be one of"):
        ood_metrics(torch.ones(3), torch.ones(3), fpr_rule="openood")


@pytest.mark.parametrize(
    ("id_s", "ood_s", "match"),
    [
        ([], [0.1], "id_scores is empty"),
        ([0.1], [], "ood_scores is empty"),
        ([0.1, float("nan")], [0.1], "id_scores has 1 NaN"),
        ([0.1], [float("inf")], "ood_scores has 0 NaN and 1 infinite"),
    ],
)
def test_bad_inputs(id_s, ood_s, match) -> None:
    with pytest.raises(ValueError, match=match):
        ood_metrics(torch.tensor(id_s), torch.tensor(ood_s))


def test_bad_tpr_and_empty_threshold() -> None:
    with pytest.raises(ValueError, match="tpr must be in"):
        ood_metrics(torch.ones(3), torch.ones(3), tpr=0.0)
    with pytest.raises(ValueError, match="empty"):
        threshold_at_tpr(torch.tensor([]))
