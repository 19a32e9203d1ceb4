"""OOD detection metrics: AUROC, FPR at 95% TPR, AUPR-In/Out, on whole-epoch scores.

Convention (stated in every bench report, see :data:`CONVENTION`): ID is the positive class and
scores are "higher = more ID" (MODE's S(x)). AUROC and AUPR-In treat ID as positive; AUPR-Out
treats OOD as positive with negated scores.

FPR95 has two selectable rules (``fpr_rule``); they differ on ties and at some sizes:

- ``"knn_ood"`` (the default): the rule of the evaluation code released with KNN OOD detection
  (Sun et al., ICML'22), which MODE's evaluation (arXiv:2308.10239v1, Sec. IV-A) inherits. Sort
  the n ID scores ascending and take ``t = sorted_asc[round(0.05 n)]`` with Python's ``round``
  (half to even, on the float product ``0.05 * n``: n = 10 -> index 0, n = 30 -> 2, n = 50 -> 2,
  n = 70 -> 4). An input counts as accepted (ID) only if ``score > t``; FPR95 is the fraction of
  OOD scores ``> t``. For another ``tpr`` the index is ``round((1 - tpr) n)``, capped at n - 1.
- ``"roc"``: the operating point of the ROC curve. Sort descending, ``t = sorted_desc[ceil(0.95 n) - 1]``;
  accepted when ``score >= t``. This is what ``binary_roc`` reads off, and the two are checked
  against each other.

Example: ID = {0.01, ..., 1.00} (n = 100), OOD = {0.06, 0.5}. knn_ood: t = sorted_asc[5] = 0.06,
OOD above 0.06 = {0.5}, FPR95 = 0.5. roc: t = sorted_desc[94] = 0.06, OOD >= 0.06 = both,
FPR95 = 1.0.

Implementation: the ID and OOD scores of a whole epoch are concatenated and min-max normalised
once to [0, 1] in float64, then passed to ``torchmetrics.functional.classification``
(``binary_auroc``, ``binary_average_precision``, ``binary_roc``). The normalisation matters:
torchmetrics applies a sigmoid to any input outside [0, 1], and sigmoid saturates for large
scores (e.g. 1e4 offsets), which would merge distinct scores into ties. Min-max is monotone, so
the ranking, and therefore every metric, is unchanged. The knn_ood threshold is compared on the raw
float64 scores.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc

FPRRule = Literal["knn_ood", "roc"]
FPR_RULES: tuple[str, ...] = ("knn_ood", "roc")


def _check_rule(fpr_rule: str) -> None:
    if fpr_rule not in FPR_RULES:
        raise ValueError(f"fpr_rule must be one of {FPR_RULES}, got {fpr_rule!r}")


def convention(fpr_rule: FPRRule = "knn_ood") -> str:
    """The metric convention of ``fpr_rule`` in one paragraph (printed at the top of reports)."""
    _check_rule(fpr_rule)
    if fpr_rule == "knn_ood":
        fpr = ("FPR95 (knn-ood rule, as in the KNN-OOD / MODE evaluation code) = fraction of OOD with "
               "score > t, t = ID scores sorted ascending at index round(0.05 n) (Python round, half to even); "
               "an input is accepted as ID only if score > t.")
    else:
        fpr = ("FPR95 (ROC rule) = fraction of OOD with score >= t, t = ID scores sorted descending at "
               "index ceil(0.95 n) - 1; an input is accepted as ID if score >= t.")
    return (f"ID is the positive class; scores are higher = more ID. {fpr} "
            "AUROC/AUPR-In: ID positive; AUPR-Out: OOD positive with negated scores.")


#: the convention of the default rule, stated at the top of every bench report.
CONVENTION = convention("knn_ood")


def _scores(x: Tensor, name: str) -> Tensor:
    """Flatten to a float64 CPU vector; reject empty or non-finite input with a one-line error."""
    t = torch.as_tensor(x).detach().flatten().to("cpu", torch.float64)
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; need at least one score")
    bad = ~torch.isfinite(t)
    if bad.any():
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ValueError(f"{name} has {n_nan} NaN and {n_inf} infinite scores out of {t.numel()}")
    return t


def _check_tpr(tpr: float) -> None:
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")


def _n_kept(n: int, tpr: float) -> int:
    """ceil(tpr * n), robust to float error in the product (0.95 * 20 -> 19, not 20)."""
    return max(1, math.ceil(round(tpr * n, 9)))


def knn_ood_index(n: int, tpr: float = 0.95) -> int:
    """Index into the ascending ID scores of the knn-ood threshold: ``round((1 - tpr) * n)``.

    ``1 - tpr`` is rounded to 12 decimals first so that tpr = 0.95 gives exactly the float 0.05 of
    the released code (``1 - 0.95`` is 0.050000000000000044, which would round n = 10 to 1, not 0).
    Python's ``round`` is half to even, as in that code. Capped at n - 1 (only reachable for tiny
    ``tpr``).
    """
    _check_tpr(tpr)
    return min(n - 1, round(round(1.0 - tpr, 12) * n))


def _threshold(ids: Tensor, tpr: float, fpr_rule: str) -> float:
    if fpr_rule == "knn_ood":
        return float(ids.sort().values[knn_ood_index(ids.numel(), tpr)])
    return float(ids.sort(descending=True).values[_n_kept(ids.numel(), tpr) - 1])


def threshold_at_tpr(id_scores: Tensor, tpr: float = 0.95, fpr_rule: FPRRule = "knn_ood") -> float:
    """The ID/OOD decision threshold t at ``tpr`` (higher = more ID).

    - ``knn_ood``: ``t = sorted_asc[round((1 - tpr) n)]``; accept as ID when ``score > t``.
    - ``roc``: ``t = sorted_desc[ceil(tpr n) - 1]``, the smallest of the top ``ceil(tpr n)`` ID
      scores; accept as ID when ``score >= t``.

    Args:
        id_scores: (N,) ID scores, higher = more ID.
        tpr: target true positive rate in (0, 1].
        fpr_rule: ``"knn_ood"`` (default) or ``"roc"``; see the module docstring.
    """
    _check_tpr(tpr)
    _check_rule(fpr_rule)
    return _threshold(_scores(id_scores, "id_scores"), tpr, fpr_rule)


def accepted(scores: Tensor, threshold: float | Tensor, fpr_rule: FPRRule = "knn_ood") -> Tensor:
    """ID decision at ``threshold`` under ``fpr_rule``: ``score > t`` (knn_ood) or ``score >= t`` (roc).

    Args:
        scores: (N,) scores, higher = more ID.
        threshold: t from :func:`threshold_at_tpr` with the same ``fpr_rule``.

    Returns:
        (N,) bool, True = accepted as ID.
    """
    _check_rule(fpr_rule)
    t = torch.as_tensor(threshold, dtype=torch.float64)
    s = torch.as_tensor(scores).double().cpu()
    return s > t if fpr_rule == "knn_ood" else s >= t


def _normalised(id_scores: Tensor, ood_scores: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, float, float]:
    """Concatenate, min-max normalise to [0, 1] in float64. Returns (preds, target_id, id, ood, lo, span)."""
    ids = _scores(id_scores, "id_scores")
    ood = _scores(ood_scores, "ood_scores")
    raw = torch.cat([ids, ood])
    lo, hi = float(raw.min()), float(raw.max())
    span = hi - lo
    preds = (raw - lo) / span if span > 0 else torch.zeros_like(raw)
    preds = preds.clamp(0.0, 1.0)
    target = torch.cat([torch.ones(ids.numel(), dtype=torch.long), torch.zeros(ood.numel(), dtype=torch.long)])
    return preds, target, ids, ood, lo, span


def _fpr_from_roc(preds: Tensor, target: Tensor, n_keep: int) -> int:
    """Count of OOD at the first ``binary_roc`` point with >= n_keep ID (thresholds: score >= thr).

    torchmetrics returns float32 rates (19/20 is 0.9499999881), so compare counts, not rates.
    """
    fpr, tpr, _ = binary_roc(preds, target, thresholds=None)
    n_id = int(target.sum())
    n_ood = target.numel() - n_id
    tp = torch.round(tpr.double() * n_id)
    first = int(torch.nonzero(tp >= n_keep)[0, 0])
    return int(torch.round(fpr[first].double() * n_ood))


def ood_metrics(id_scores: Tensor, ood_scores: Tensor, tpr: float = 0.95,
                fpr_rule: FPRRule = "knn_ood") -> dict[str, float]:
    """AUROC, FPR at ``tpr`` TPR, AUPR-In, AUPR-Out and the threshold, for one ID/OOD pair.

    Ref: MODE, arXiv:2308.10239v1, Sec. IV-A (FPR95 and AUROC, ID positive); the FPR95 rule is
    selected by ``fpr_rule`` (module docstring).

    Args:
        id_scores: (N,) scores of ID test samples, higher = more ID (whole epoch, any device).
        ood_scores: (M,) scores of OOD samples, same convention.
        tpr: ID true positive rate that fixes the threshold (0.95 for FPR95).
        fpr_rule: ``"knn_ood"`` (default: OOD counted when ``score > t``, t at the ascending index
            ``round(0.05 n)``) or ``"roc"`` (``score >= t``, t at the descending index
            ``ceil(0.95 n) - 1``, cross-checked against ``binary_roc``).

    Returns:
        ``{"auroc", "fpr95", "aupr_in", "aupr_out", "threshold"}`` as Python floats; ``fpr95`` is
        the FPR at ``tpr`` (the key keeps its name for other ``tpr``) and ``threshold`` is in raw
        score units (:func:`threshold_at_tpr` under the same rule).

    Raises:
        ValueError: empty or non-finite scores, ``tpr`` outside (0, 1], or an unknown rule.
    """
    _check_tpr(tpr)
    _check_rule(fpr_rule)
    preds, target, ids, ood, _, _ = _normalised(id_scores, ood_scores)
    if fpr_rule == "knn_ood":
        threshold = _threshold(ids, tpr, "knn_ood")
        fp = int((ood > threshold).sum())
    else:
        n_keep = _n_kept(ids.numel(), tpr)
        # The rule on the normalised scores (exactly what binary_roc sees) ...
        norm_id, norm_ood = preds[: ids.numel()], preds[ids.numel() :]
        t_norm = norm_id.sort(descending=True).values[n_keep - 1]
        fp = int((norm_ood >= t_norm).sum())
        # ... must agree with the operating point read off binary_roc.
        fp_roc = _fpr_from_roc(preds, target, n_keep)
        if fp != fp_roc:  # pragma: no cover - would be a torchmetrics behaviour change
            raise RuntimeError(f"FPR mismatch: threshold rule counts {fp} OOD, binary_roc counts {fp_roc}")
        threshold = _threshold(ids, tpr, "roc")
    return {
        "auroc": float(binary_auroc(preds, target, thresholds=None)),
        "fpr95": fp / ood.numel(),
        "aupr_in": float(binary_average_precision(preds, target, thresholds=None)),
        "aupr_out": float(binary_average_precision(1.0 - preds, 1 - target, thresholds=None)),
        "threshold": threshold,
    }


def roc_curve(id_scores: Tensor, ood_scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ROC curve with ID positive, for plotting.

    Returns:
        ``(fpr, tpr, thresholds)`` float64 tensors of equal length. Point i is "predict ID when
        score >= thresholds[i]", in raw score units, thresholds descending. The first point is
        (0, 0) with threshold +inf (torchmetrics labels it 1.0, i.e. the maximum score, which
        would not give (0, 0)).
    """
    preds, target, _, _, lo, span = _normalised(id_scores, ood_scores)
    fpr, tpr, thr = binary_roc(preds, target, thresholds=None)
    thr = thr.double() * span + lo
    thr[0] = math.inf
    return fpr.double(), tpr.double(), thr


def fpr_at_tpr(ood_scores: Tensor, is_id: Tensor, tpr: float = 0.95, fpr_rule: FPRRule = "knn_ood") -> float:
    """FPR at ``tpr`` ID TPR for scores where higher = more OOD (the zoo default), ID positive.

    The STYLE.md helper: negates the scores and applies :func:`ood_metrics` with ``fpr_rule``.

    Args:
        ood_scores: (N,) scores, higher = more OOD.
        is_id: (N,) bool, True for ID samples.
        tpr: ID true positive rate.
        fpr_rule: ``"knn_ood"`` (default) or ``"roc"``; see the module docstring.
    """
    s = torch.as_tensor(ood_scores).flatten()
    mask = torch.as_tensor(is_id, device=s.device).flatten().bool()
    if mask.numel() != s.numel():
        raise ValueError(f"is_id has {mask.numel()} entries but ood_scores has {s.numel()}")
    return ood_metrics(-s[mask], -s[~mask], tpr=tpr, fpr_rule=fpr_rule)["fpr95"]
