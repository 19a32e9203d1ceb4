"""zoo.common.metrics.segmentation: pixel AP/AUROC/FPR95 (exact and binned) and mIoU, by hand."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    multiclass_confusion_matrix,
)

from zoo.common.metrics.segmentation import (
    PixelAnomalyMetrics,
    confusion_matrix,
    metrics_from_counts,
    miou,
)
from zoo.core.errors import ZooError

BOTH = [("exact", {}), ("binned", {"score_range": (0.0, 1.0), "bins": 10})]


def run(scores, anomaly, mode="exact", **kw) -> dict[str, float]:
    m = PixelAnomalyMetrics(mode, **kw)
    m.update(torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(anomaly))
    return m.compute()


def ref_fpr95(s: np.ndarray, y: np.ndarray, tpr: float = 0.95) -> float:
    """Scan thresholds high to low; FPR at the first one with TPR >= tpr (predict s >= t)."""
    for t in np.unique(s)[::-1]:
        if (s[y == 1] >= t).mean() >= tpr - 1e-12:
            return float((s[y == 0] >= t).mean())
    return 1.0


def realistic(n: int, seed: int, share: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy-like scores (-logsumexp): normal ~ N(-11, 2.5), anomaly ~ N(-6.5, 2), 3% anomalies."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < share).long()
    s = torch.where(y == 1, -6.5 + 2.0 * torch.randn(n, generator=g), -11.0 + 2.5 * torch.randn(n, generator=g))
    return s, y


# ------------------------------------------------------------------ hand-worked cases
@pytest.mark.parametrize("mode,kw", BOTH)
def test_perfect_and_reversed(mode, kw):
    a = torch.tensor([[[0, 1, 0, 0], [1, 0, 0, 255]]])
    perfect = run(a.float(), a, mode, **kw)
    assert perfect == pytest.approx({"ap": 1.0, "auroc": 1.0, "fpr95": 0.0})
    rev = run(1.0 - a.float(), a, mode, **kw)
    # every normal pixel outranks every anomaly: AP = n_pos / N = 2 / 7
    assert rev == pytest.approx({"ap": 2 / 7, "auroc": 0.0, "fpr95": 1.0})


@pytest.mark.parametrize("mode,kw", BOTH)
def test_six_pixel_hand_case(mode, kw):
    # 6 valid pixels (a tie at 0.75 between an anomaly and a normal pixel) + 2 void pixels.
    s = torch.tensor([[[0.95, 0.85, 0.75, 0.75], [0.55, 0.35, 0.05, float("nan")]]])
    a = torch.tensor([[[1, 0, 1, 0], [1, 0, 255, 255]]])
    # thresholds 0.95 / 0.85 / 0.75 / 0.55 / 0.35 -> (tp, fp) = (1,0) (1,1) (2,2) (3,2) (3,3)
    # AP = (1/3)(1 + 2/4 + 3/5) = 0.7
    # AUROC: ROC (0,0) (0,1/3) (1/3,1/3) (2/3,2/3) (2/3,1) (1,1) -> 1/9 + 1/6 + 1/3 = 11/18
    # FPR95: need tp >= ceil(0.95 * 3) = 3 -> first at 0.55, fp = 2 -> 2/3
    got = run(s, a, mode, **kw)
    assert got == pytest.approx({"ap": 0.7, "auroc": 11 / 18, "fpr95": 2 / 3}, abs=1e-6)


def test_binned_ties_inside_a_bin_are_one_threshold():
    s = torch.tensor([0.95, 0.85, 0.75, 0.75, 0.55, 0.35])
    a = torch.tensor([1, 0, 1, 0, 1, 0])
    # 2 bins: [0.5, 1] holds 3 anomalies + 2 normals, [0, 0.5) one normal -> (tp, fp) = (3,2) (3,3)
    # AP = 1 * 3/5; AUROC = (2/3)(1/2) + (1/3)(1) = 2/3; FPR95 = 2/3
    got = run(s, a, "binned", score_range=(0.0, 1.0), bins=2)
    assert got == pytest.approx({"ap": 0.6, "auroc": 2 / 3, "fpr95": 2 / 3})


def test_metrics_from_counts_hand():
    # the six-pixel case as cumulative counts, with a no-op threshold repeated
    tp = torch.tensor([1, 1, 1, 2, 3, 3])
    fp = torch.tensor([0, 1, 1, 2, 2, 3])
    assert metrics_from_counts(tp, fp) == pytest.approx({"ap": 0.7, "auroc": 11 / 18, "fpr95": 2 / 3})
    # FPR at TPR >= 0.5: ceil(1.5) = 2 anomalies -> first at (2, 2) -> 2/3; at TPR 1/3 -> (1, 0) -> 0
    assert metrics_from_counts(tp, fp, tpr=0.5)["fpr95"] == pytest.approx(2 / 3)
    assert metrics_from_counts(tp, fp, tpr=1 / 3)["fpr95"] == 0.0


def test_fpr95_rule_is_first_threshold_with_tpr_at_least_095():
    # 20 anomalies: ceil(0.95 * 20) = 19 (not 20 from float error); the 19th largest anomaly is 0.05
    pos = torch.linspace(1.0, 0.05, 19).tolist() + [0.0]
    neg = [0.5, 0.04, 0.02]  # >= 0.05: only 0.5 -> FPR95 = 1/3
    s = torch.tensor(pos + neg)
    a = torch.tensor([1] * 20 + [0] * 3)
    assert run(s, a)["fpr95"] == pytest.approx(1 / 3)
    assert run(s, a, "binned", score_range=(0.0, 1.0), bins=1000)["fpr95"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("mode,kw", [("exact", {}), ("binned", {"score_range": (-30.0, 5.0)})])
def test_void_pixels_are_excluded(mode, kw):
    s, y = realistic(4000, seed=1)
    base = run(s, y, mode, **kw)
    # add void pixels with extreme scores (and NaN): nothing may change
    s2 = torch.cat([s, torch.tensor([100.0, -100.0, float("nan"), float("inf")] * 50)])
    y2 = torch.cat([y, torch.full((200,), 255)])
    assert run(s2, y2, mode, **kw) == pytest.approx(base, abs=1e-12)


def test_streaming_equals_one_batch_and_reset():
    s, y = realistic(6000, seed=2)
    s, y = s.reshape(3, 40, 50), y.reshape(3, 40, 50)
    for mode, kw in [("exact", {}), ("binned", {"score_range": (-30.0, 5.0)})]:
        whole = run(s, y, mode, **kw)
        m = PixelAnomalyMetrics(mode, **kw)
        for i in range(3):
            m.update(s[i:i + 1], y[i:i + 1])
        assert m.compute() == pytest.approx(whole, abs=1e-12)
        m.reset()
        m.update(s[:1], y[:1])
        assert m.compute() == pytest.approx(run(s[:1], y[:1], mode, **kw), abs=1e-12)


# ------------------------------------------------------------------ references
def test_exact_equals_torchmetrics_and_reference_fpr95_with_ties():
    g = torch.Generator().manual_seed(3)
    y = (torch.rand(5000, generator=g) < 0.1).long()
    s = torch.round((torch.randn(5000, generator=g) + 1.5 * y) * 8) / 8  # many ties, outside [0, 1]
    got = run(s, y)
    u = (s.double() - s.min()) / (s.max() - s.min())
    assert got["ap"] == pytest.approx(float(binary_average_precision(u, y)), abs=1e-6)
    assert got["auroc"] == pytest.approx(float(binary_auroc(u, y)), abs=1e-6)
    assert got["fpr95"] == pytest.approx(ref_fpr95(s.numpy(), y.numpy()), abs=1e-12)
    # Mann-Whitney reference for AUROC (ties count 1/2)
    sp, sn = s[y == 1].double(), s[y == 0].double()
    mw = ((sp[:, None] > sn[None]).double().mean() + 0.5 * (sp[:, None] == sn[None]).double().mean())
    assert got["auroc"] == pytest.approx(float(mw), abs=1e-6)


def test_binned_equals_exact_when_each_bin_holds_one_value():
    g = torch.Generator().manual_seed(4)
    y = (torch.rand(20000, generator=g) < 0.05).long()
    s = torch.randint(0, 64, (20000,), generator=g).float() + 8 * y  # 72 distinct values, bin centres
    exact = run(s + 0.5, y)
    binned = run(s + 0.5, y, "binned", score_range=(0.0, 72.0), bins=72)
    assert binned == pytest.approx(exact, abs=1e-6)


def test_equals_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    s, y = realistic(20000, seed=5, share=0.1)
    got = run(s, y)
    assert got["ap"] == pytest.approx(skm.average_precision_score(y.numpy(), s.numpy()), abs=1e-6)
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y.numpy(), s.numpy()), abs=1e-6)
    fpr, tpr, _ = skm.roc_curve(y.numpy(), s.numpy(), drop_intermediate=False)
    assert got["fpr95"] == pytest.approx(float(fpr[np.argmax(tpr >= 0.95)]), abs=1e-12)


def test_exact_and_binned_agree_on_1e6_realistic_pixels():
    s, y = realistic(1_000_000, seed=6)
    exact = run(s, y)
    binned = run(s, y, "binned", score_range=(-30.0, 5.0), bins=65536)
    for k in ("ap", "auroc", "fpr95"):
        assert abs(exact[k] - binned[k]) < 1e-3, (k, exact[k], binned[k])
    assert 0.3 < exact["ap"] < 0.9 and 0.8 < exact["auroc"] < 1.0  # a non-trivial operating regime


def test_curves_span_the_square_and_match_auroc():
    s, y = realistic(50000, seed=7)
    for mode, kw in [("exact", {"bins": 4096}), ("binned", {"score_range": (-30.0, 5.0), "bins": 4096})]:
        m = PixelAnomalyMetrics(mode, **kw)
        m.update(s, y)
        c = m.curves()
        assert (c["fpr"][0], c["tpr"][0], c["fpr"][-1], c["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
        assert (torch.diff(c["fpr"]) >= 0).all() and (torch.diff(c["recall"]) >= 0).all()
        assert float(torch.trapezoid(c["tpr"], c["fpr"])) == pytest.approx(m.compute()["auroc"], abs=2e-3)


# ------------------------------------------------------------------ edge cases and errors
def test_no_anomaly_gives_nan_with_warning():
    with pytest.warns(UserWarning, match="undefined"):
        got = run(torch.rand(10), torch.zeros(10, dtype=torch.long))
    assert all(math.isnan(v) for v in got.values())
    m = PixelAnomalyMetrics("binned", score_range=(0.0, 1.0))
    with pytest.warns(UserWarning):
        assert all(math.isnan(v) for v in m.compute().values())


def test_bad_input_raises_zoo_error():
    with pytest.raises(ZooError, match="score_range"):
        PixelAnomalyMetrics("binned")
    with pytest.raises(ZooError, match="mode"):
        PixelAnomalyMetrics("histogram")
    with pytest.raises(ZooError, match="hi > lo"):
        PixelAnomalyMetrics("binned", score_range=(1.0, 1.0))
    m = PixelAnomalyMetrics()
    with pytest.raises(ZooError, match="same shape"):
        m.update(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ZooError, match=r"found \[2, 254\]"):
        m.update(torch.zeros(1, 2, 2), torch.tensor([[[0, 2], [254, 255]]]))
    with pytest.raises(ZooError, match="1 non-void"):
        m.update(torch.tensor([[[float("nan"), 0.0]]]), torch.tensor([[[0, 1]]]))
    with pytest.raises(ZooError, match="integer"):
        m.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))


def test_binned_state_is_bounded_on_2e7_pixels():
    bins = 65536
    m = PixelAnomalyMetrics("binned", bins=bins, score_range=(-30.0, 5.0))
    n_valid, t0 = 0, time.perf_counter()
    for i in range(4):  # 4 batches of 5 x 1000 x 1000 = 2e7 pixels
        s, y = realistic(5_000_000, seed=10 + i)
        y[:100_000] = 255
        m.update(s.view(5, 1000, 1000), y.view(5, 1000, 1000))
        n_valid += 4_900_000
        assert m.state_nbytes() == 2 * bins * 8
        assert m.pos_hist.dtype == m.neg_hist.dtype == torch.int64
    got = m.compute()
    assert int(m.pos_hist.sum() + m.neg_hist.sum()) == n_valid
    assert time.perf_counter() - t0 < 10
    assert 0 < got["ap"] < 1


@pytest.mark.slow
def test_binned_memory_and_time_on_full_resolution_sized_stream():
    """2.1e8 pixels (20 batches of 5 x 1024 x 2048, FS L&F size): state 2 x 2^16 int64, peak RSS
    bounded by one batch. Run with ``-m slow -s`` to see the numbers."""

    def rss_mib(field: str) -> float:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith(field)) / 1024

    bins = 65536
    m = PixelAnomalyMetrics("binned", bins=bins, score_range=(-30.0, 5.0))
    shape = (5, 1024, 2048)
    s, y = realistic(math.prod(shape), seed=0)
    s, y = s.view(shape), y.view(shape)
    try:  # reset the peak-RSS counter so that VmHWM covers the stream only (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    start = rss_mib("VmRSS")
    update_s, rss_after = 0.0, []
    for i in range(20):
        s.add_(0.01 * (i % 3))  # vary the batch in place; no new allocation
        t0 = time.perf_counter()
        m.update(s, y)
        update_s += time.perf_counter() - t0
        rss_after.append(rss_mib("VmRSS"))
    t0 = time.perf_counter()
    got = m.compute()
    compute_s = time.perf_counter() - t0
    peak = rss_mib("VmHWM")
    print(json.dumps({"pixels": 20 * math.prod(shape), "state_bytes": m.state_nbytes(), "update_s": round(update_s, 2),
                      "compute_s": round(compute_s, 3), "rss_start_mib": round(start),
                      "rss_end_mib": round(rss_after[-1]),
                      "rss_after_batch1_mib": round(rss_after[0]), "peak_rss_mib": round(peak),
                      "peak_over_start_mib": round(peak - start),
                      "batch_input_mib": round((s.nbytes + y.nbytes) / 2**20), **got}))
    assert m.state_nbytes() == 2 * bins * 8
    assert int(m.pos_hist.sum() + m.neg_hist.sum()) == 20 * math.prod(shape)
    assert rss_after[-1] - rss_after[0] < 64  # no growth with the number of batches


# ------------------------------------------------------------------ DDP pooling (2 gloo ranks)
def _ddp_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        s, y = realistic(3000, seed=8)
        res = {}
        for mode, kw in [("exact", {}), ("binned", {"score_range": (-30.0, 5.0), "bins": 512})]:
            m = PixelAnomalyMetrics(mode, **kw)
            lo, hi = (0, 1000) if rank == 0 else (1000, 3000)  # uneven shards
            m.update(s[lo:hi], y[lo:hi])
            res[mode] = m.compute()
        res["binned_n"] = int(m.pos_hist.sum() + m.neg_hist.sum())  # after compute: the local state again
        # a rank that saw no pixel at all still takes part in the exact gather
        m = PixelAnomalyMetrics()
        if rank == 1:
            m.update(s, y)
        res["empty_rank"] = m.compute()
        with open(f"{out}.{rank}.json", "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


def test_ddp_pools_every_pixel_once(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, f"file://{tmp_path}/init", str(tmp_path / "res")), nprocs=2, join=True)
    s, y = realistic(3000, seed=8)
    ref = {"exact": run(s, y), "binned": run(s, y, "binned", score_range=(-30.0, 5.0), bins=512)}
    for rank in range(2):
        res = json.loads((tmp_path / f"res.{rank}.json").read_text())
        for mode in ("exact", "binned"):
            assert res[mode] == pytest.approx(ref[mode], abs=1e-9)
        assert res["binned_n"] == (1000 if rank == 0 else 2000)
        assert res["empty_rank"] == pytest.approx(ref["exact"], abs=1e-9)


# ------------------------------------------------------------------ mIoU
def test_confusion_matrix_and_miou_by_hand():
    label = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 254]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 0, 2]]])
    cm = confusion_matrix(pred, label, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    m, per = miou(cm)
    # IoU0 = 1 / (2 + 2 - 1), IoU1 = 2 / (2 + 3 - 2), IoU2 = 1 / (2 + 1 - 1)
    torch.testing.assert_close(per, torch.tensor([1 / 3, 2 / 3, 1 / 2], dtype=torch.float64))
    assert m == pytest.approx(0.5)


def test_miou_skips_empty_classes_and_matches_torchmetrics():
    # class 1: neither labelled nor predicted -> NaN, skipped; class 3: predicted, never labelled -> 0
    cm = torch.tensor([[3, 0, 1, 1], [0, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]])
    m, per = miou(cm)
    assert math.isnan(per[1]) and per[3] == 0.0
    assert per[0] == pytest.approx(3 / 5) and per[2] == pytest.approx(2 / 3)
    assert m == pytest.approx((3 / 5 + 2 / 3 + 0.0) / 3)
    g = torch.Generator().manual_seed(9)
    label = torch.randint(0, 5, (2, 16, 16), generator=g)
    label[0, :3] = 255
    pred = torch.randint(0, 5, (2, 16, 16), generator=g)
    ref = multiclass_confusion_matrix(pred, label, num_classes=5, ignore_index=255)
    assert torch.equal(confusion_matrix(pred, label, 5), ref)


def test_confusion_matrix_errors():
    with pytest.raises(ZooError, match="label values"):
        confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 3], [1, 255]]]), 3)
    with pytest.raises(ZooError, match="pred values"):
        confusion_matrix(torch.tensor([[[0, 3]]]), torch.tensor([[[0, 1]]]), 3)
    with pytest.raises(ZooError, match="same shape"):
        confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long), 3)
    with pytest.raises(ZooError, match="square"):
        miou(torch.zeros(2, 3))
