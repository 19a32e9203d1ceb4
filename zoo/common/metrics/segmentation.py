"""Pixel-level anomaly segmentation metrics (AP, AUROC, FPR95) and semantic mIoU.

Protocol (MGCDA, arXiv:2308.08696, evaluated as in Fishyscapes and PEBAL; zoo spec "Metrics and
protocol"): the anomaly is the positive class, scores are "higher = more anomalous", every pixel of
a dataset is pooled (no per-image mean) and void pixels (``anomaly == 255``) are dropped.

- AP: step-wise area under the PR curve, ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct
  thresholds taken from high to low (``R_0 = 0``); the definition of sklearn's
  ``average_precision_score`` and torchmetrics' ``BinaryAveragePrecision``.
- AUROC: trapezoidal area under the ROC curve from (0, 0) to (1, 1), equal to the Mann-Whitney
  statistic ``P(s_pos > s_neg) + P(s_pos == s_neg) / 2``.
- FPR95: the FPR at the *first* threshold, scanning from high to low, whose TPR >= 0.95
  (predict anomaly when ``score >= t``). This is the ``"roc"`` rule of
  :func:`zoo.common.metrics.ood.threshold_at_tpr` with the anomaly as the positive class: ``t`` is
  the ``ceil(0.95 n_pos)``-th largest anomaly score. PEBAL's code takes the ROC point whose recall
  is nearest to 0.95 instead, which can differ slightly.

Two modes of :class:`PixelAnomalyMetrics`:

- ``"exact"`` keeps the score (float32) and label (uint8) of every non-void pixel, on the CPU by
  default, and calls ``torchmetrics.functional.classification.binary_average_precision`` /
  ``binary_auroc`` on the pooled scores after one min-max map to [0, 1] in float64 (torchmetrics
  applies a sigmoid to inputs outside [0, 1], which saturates energies into ties; the map is
  monotone, so no metric changes). About 5 bytes per pixel (FS L&F: 2.1e8 pixels, 1 GB) plus the
  sort at ``compute``.
- ``"binned"`` keeps two int64 histograms (anomaly, normal) over ``bins`` equal bins of the fixed
  map ``u = clamp((s - lo) / (hi - lo), 0, 1)``, bin ``min(floor(u * bins), bins - 1)``: 2 x bins
  x 8 bytes (1 MiB for 2^16 bins) whatever the number of pixels. ROC and PR come from the
  cumulative counts; all scores inside a bin are one threshold (ties). torchmetrics' own binned
  mode (``thresholds=int``, state ``(T, 2, 2)`` int64) is not used: its update compares every
  pixel with every threshold (measured: 15 s for 1e5 pixels at T = 2^16 on one core), while a
  histogram is one ``bincount``.

Distributed (DDP): the class is a ``torchmetrics.Metric``; ``compute()`` syncs once per call. Exact
mode gathers the per-rank pixel lists (``dist_reduce_fx="cat"``), binned mode sums the histograms.
CPU states are moved to the GPU for an NCCL gather and back. Each pixel is pooled exactly once *if
each rank sees each image once*: a ``DistributedSampler`` that pads the last shard by repeating
images counts those images twice, so evaluate with an unpadded sampler.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision
from torchmetrics.utilities import rank_zero_warn
from torchmetrics.utilities.data import dim_zero_cat

from zoo.core.errors import ZooError
from zoo.core.gather import gather_any_device
from zoo.common.metrics.ood import threshold_at_tpr

Mode = Literal["exact", "binned"]
MODES: tuple[str, ...] = ("exact", "binned")
#: ``anomaly`` value of void pixels (dropped); 0 = normal, 1 = anomaly.
VOID = 255
#: label values that :func:`confusion_matrix` skips by default (254 = pasted OE anomaly, 255 = void).
IGNORE_LABELS: tuple[int, ...] = (254, 255)


def _needed_positives(n_pos: int, tpr: float) -> int:
    """ceil(tpr * n_pos), robust to float error in the product (0.95 * 20 -> 19, not 20)."""
    return max(1, math.ceil(round(tpr * n_pos, 9)))


def _nan_metrics() -> dict[str, float]:
    return {"ap": math.nan, "auroc": math.nan, "fpr95": math.nan}


def metrics_from_counts(tp: Tensor, fp: Tensor, tpr: float = 0.95) -> dict[str, float]:
    """AP, AUROC and FPR at ``tpr`` from cumulative counts at thresholds sorted high to low.

    ``tp[k]`` / ``fp[k]`` are the numbers of anomaly / normal pixels predicted anomalous at the
    k-th threshold (non-decreasing, last entry = all pixels). Thresholds at which no count
    changes may be present; they add nothing.

    - AP = ``sum_k (R_k - R_{k-1}) P_k``, ``R_k = tp_k / n_pos``, ``P_k = tp_k / (tp_k + fp_k)``, ``R_0 = 0``
      (sklearn ``average_precision_score``).
    - AUROC = trapezoidal area of ``(fp_k / n_neg, tp_k / n_pos)`` with (0, 0) prepended.
    - FPR95 = ``fp_k / n_neg`` at the first k with ``tp_k >= ceil(tpr n_pos)``.

    Args:
        tp: (T,) int64 cumulative anomaly counts, thresholds high to low.
        fp: (T,) int64 cumulative normal counts, same thresholds.
        tpr: the TPR that fixes the FPR operating point (0.95).

    Returns:
        ``{"ap", "auroc", "fpr95"}`` as floats in [0, 1]; NaN where undefined (AP and FPR95 need
        an anomaly pixel, AUROC and FPR95 also a normal pixel).
    """
    n_pos, n_neg = int(tp[-1]), int(fp[-1])
    if n_pos == 0:
        return _nan_metrics()
    tp64, fp64 = tp.double(), fp.double()
    seen = (tp64 + fp64) > 0  # precision is undefined before the first pixel
    recall = tp64 / n_pos
    d_recall = torch.diff(recall, prepend=recall.new_zeros(1))
    precision = torch.where(seen, tp64 / (tp64 + fp64).clamp_min(1), torch.zeros_like(tp64))
    ap = float((d_recall * precision).sum())
    if n_neg == 0:
        return {"ap": ap, "auroc": math.nan, "fpr95": math.nan}
    zero = tp64.new_zeros(1)
    auroc = float(torch.trapezoid(torch.cat([zero, tp64 / n_pos]), torch.cat([zero, fp64 / n_neg])))
    first = int(torch.searchsorted(tp.contiguous(), torch.tensor([_needed_positives(n_pos, tpr)],
                                                                  dtype=tp.dtype, device=tp.device)))
    return {"ap": ap, "auroc": auroc, "fpr95": float(fp[first]) / n_neg}


def _curves_from_counts(tp: Tensor, fp: Tensor) -> dict[str, Tensor]:
    n_pos, n_neg = max(int(tp[-1]), 1), max(int(fp[-1]), 1)
    tp64, fp64 = tp.double(), fp.double()
    zero = tp64.new_zeros(1)
    return {"fpr": torch.cat([zero, fp64 / n_neg]), "tpr": torch.cat([zero, tp64 / n_pos]),
            "precision": tp64 / (tp64 + fp64).clamp_min(1), "recall": tp64 / n_pos}


class PixelAnomalyMetrics(Metric):
    """Pooled pixel-level AP, AUROC and FPR95 (anomaly positive, void excluded), exact or binned.

    Ref: MGCDA, arXiv:2308.08696 (AP / FPR95 / AUROC on Fishyscapes and Road Anomaly, the
    protocol of PEBAL, arXiv:2111.12264); definitions in the module docstring.

    Args:
        mode: ``"exact"`` (store every non-void pixel) or ``"binned"`` (two int64 histograms).
        bins: number of histogram bins in binned mode (2^16). Also the number of points of
            :meth:`curves` in exact mode.
        score_range: ``(lo, hi)`` of the fixed affine map ``u = clamp((s - lo) / (hi - lo), 0, 1)``;
            required in binned mode (scores outside it are clamped into the end bins, so choose it
            to cover the score distribution). Not used by exact mode, which maps by the pooled
            min/max and never clamps.
        tpr: TPR of the FPR operating point (0.95).
        **kwargs: passed to ``torchmetrics.Metric`` (``compute_on_cpu`` defaults to True in exact
            mode, ``dist_sync_fn`` to a gather that handles CPU states under NCCL).

    Example::

        m = PixelAnomalyMetrics("binned", score_range=(-30.0, 5.0))
        for batch in loader:
            m.update(score_map(batch["image"]), batch["anomaly"])   # (B, H, W), (B, H, W)
        m.compute()  # {"ap": ..., "auroc": ..., "fpr95": ...}
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, mode: Mode = "exact", bins: int = 65536, score_range: tuple[float, float] | None = None,
                 tpr: float = 0.95, **kwargs: Any) -> None:
        if mode not in MODES:
            raise ZooError(f"PixelAnomalyMetrics: mode must be one of {MODES}, got {mode!r}")
        if int(bins) != bins or bins < 2:
            raise ZooError(f"PixelAnomalyMetrics: bins must be an integer >= 2, got {bins!r}")
        if not 0.0 < tpr <= 1.0:
            raise ZooError(f"PixelAnomalyMetrics: tpr must be in (0, 1], got {tpr}")
        if score_range is not None:
            if len(score_range) != 2:
                raise ZooError(f"PixelAnomalyMetrics: score_range must be (lo, hi), got {score_range!r}")
            lo, hi = float(score_range[0]), float(score_range[1])
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ZooError(f"PixelAnomalyMetrics: score_range must be finite with hi > lo, got {score_range!r}")
            score_range = (lo, hi)
        elif mode == "binned":
            raise ZooError("PixelAnomalyMetrics: binned mode needs score_range=(lo, hi), the fixed range of the "
                           "anomaly scores that the histogram covers")
        kwargs.setdefault("dist_sync_fn", gather_any_device)
        if mode == "exact":
            kwargs.setdefault("compute_on_cpu", True)
        super().__init__(**kwargs)
        self.mode, self.bins, self.score_range, self.tpr = mode, int(bins), score_range, float(tpr)
        if mode == "exact":
            self.add_state("scores", default=[], dist_reduce_fx="cat")
            self.add_state("targets", default=[], dist_reduce_fx="cat")
        else:
            self.add_state("pos_hist", default=torch.zeros(self.bins, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state("neg_hist", default=torch.zeros(self.bins, dtype=torch.long), dist_reduce_fx="sum")

    # ------------------------------------------------------------------ update
    @staticmethod
    def _check(scores: Tensor, anomaly: Tensor) -> None:
        if scores.shape != anomaly.shape:
            raise ZooError(f"PixelAnomalyMetrics.update: scores {tuple(scores.shape)} and anomaly "
                           f"{tuple(anomaly.shape)} must have the same shape (B, H, W)")
        if not scores.is_floating_point():
            raise ZooError(f"PixelAnomalyMetrics.update: scores must be a float tensor, got {scores.dtype}")
        if anomaly.is_floating_point() or anomaly.is_complex():
            raise ZooError(f"PixelAnomalyMetrics.update: anomaly must be an integer tensor (0/1/255), "
                           f"got {anomaly.dtype}")
        a = anomaly.long() if anomaly.dtype == torch.bool else anomaly
        bad = (a != 0) & (a != 1) & (a != VOID)
        if bad.any():
            vals = torch.unique(a[bad])[:8].tolist()
            raise ZooError(f"PixelAnomalyMetrics.update: anomaly must hold only 0 (normal), 1 (anomaly), "
                           f"255 (void); found {vals}")
        nonfinite = ~torch.isfinite(scores) & (a != VOID)
        if nonfinite.any():
            raise ZooError(f"PixelAnomalyMetrics.update: {int(nonfinite.sum())} non-void pixels have NaN or "
                           f"infinite scores")

    def update(self, scores: Tensor, anomaly: Tensor) -> None:
        """Add a batch of score maps.

        Args:
            scores: (B, H, W) float anomaly scores, higher = more anomalous (any float dtype/device).
            anomaly: (B, H, W) integer ground truth, 0 normal, 1 anomaly, 255 void (dropped).

        Raises:
            ZooError: shape mismatch, values other than 0/1/255, or NaN/inf scores on non-void pixels.
        """
        scores, anomaly = scores.detach(), anomaly.detach()
        self._check(scores, anomaly)
        if anomaly.dtype == torch.bool:
            anomaly = anomaly.to(torch.uint8)
        if self.mode == "exact":
            keep = anomaly != VOID
            self.scores.append(scores[keep].to(torch.float32))
            self.targets.append((anomaly[keep] == 1).to(torch.uint8))
            return
        lo, hi = self.score_range
        # u * bins in float32; monotone in s, so the ranking within [lo, hi] is kept.
        pos = torch.sub(scores.to(torch.float32), lo).mul_(self.bins / (hi - lo))
        pos.nan_to_num_(0.0).clamp_(0, self.bins - 1)  # NaN only on void pixels (checked above)
        # one bincount over class * bins + bin, class 0 normal, 1 anomaly, 2 void (255 clamped to 2).
        key = torch.clamp(anomaly, max=2).to(torch.int64).mul_(self.bins).add_(pos.to(torch.int64))
        counts = torch.bincount(key.flatten(), minlength=3 * self.bins).to(self.pos_hist.device)
        self.neg_hist += counts[: self.bins]
        self.pos_hist += counts[self.bins: 2 * self.bins]

    def sync(self, *args: Any, **kwargs: Any) -> None:
        """``Metric.sync``, after giving an exact-mode rank that saw no pixel empty states of the
        right dtypes (torchmetrics would send float32 for the uint8 labels, and the gather would
        mismatch)."""
        if self.mode == "exact":
            if isinstance(self.scores, list) and not self.scores:
                self.scores = [torch.zeros(0, dtype=torch.float32)]
            if isinstance(self.targets, list) and not self.targets:
                self.targets = [torch.zeros(0, dtype=torch.uint8)]
        super().sync(*args, **kwargs)

    # ------------------------------------------------------------------ compute
    def _pooled(self) -> tuple[Tensor, Tensor]:
        """(N,) float32 scores and (N,) bool targets of all pooled non-void pixels, on the CPU."""
        if isinstance(self.scores, list) and not self.scores:  # a Tensor after a DDP sync
            return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
        s = dim_zero_cat(self.scores).to("cpu", torch.float32)
        t = dim_zero_cat(self.targets).to("cpu") == 1
        return s, t

    def _counts(self) -> tuple[Tensor, Tensor]:
        """Cumulative (tp, fp) int64 over the non-empty bins, thresholds high to low (binned mode)."""
        pos, neg = self.pos_hist.cpu().flip(0), self.neg_hist.cpu().flip(0)
        full = (pos + neg) > 0
        if not full.any():
            return torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
        return pos.cumsum(0)[full], neg.cumsum(0)[full]

    def compute(self) -> dict[str, float]:
        """``{"ap", "auroc", "fpr95"}`` in [0, 1] over every pooled pixel (after the DDP sync).

        NaN (with a warning) where undefined: no anomaly pixel (all three) or no normal pixel
        (AUROC, FPR95).
        """
        if self.mode == "binned":
            tp, fp = self._counts()
            n_pos, n_neg = int(tp[-1]), int(fp[-1])
            out = metrics_from_counts(tp, fp, self.tpr)
        else:
            s, t = self._pooled()
            n_pos = int(t.sum())
            n_neg = t.numel() - n_pos
            out = self._exact(s, t) if n_pos and n_neg else _nan_metrics()
            if n_pos and not n_neg:
                out["ap"] = 1.0
        if n_pos == 0 or n_neg == 0:
            rank_zero_warn(f"PixelAnomalyMetrics: {n_pos} anomaly and {n_neg} normal pixels pooled; "
                           "undefined metrics are NaN", UserWarning)
        return out

    def _exact(self, s: Tensor, t: Tensor) -> dict[str, float]:
        lo, hi = float(s.min()), float(s.max())
        preds = (s.double() - lo).div_(hi - lo) if hi > lo else torch.zeros_like(s, dtype=torch.float64)
        target = t.to(torch.uint8)
        ap = binary_average_precision(preds, target, thresholds=None, validate_args=False)
        auroc = binary_auroc(preds, target, thresholds=None, validate_args=False)
        pos = preds[t]
        thr = threshold_at_tpr(pos, self.tpr, fpr_rule="roc")  # ceil(tpr n_pos)-th largest anomaly score
        fp = int((preds[~t] >= thr).sum())
        return {"ap": float(ap), "auroc": float(auroc), "fpr95": fp / (t.numel() - pos.numel())}

    def curves(self) -> dict[str, Tensor]:
        """ROC and PR curves for plots (not for the headline numbers).

        Binned mode: one point per non-empty bin. Exact mode: the pooled scores binned into
        ``bins`` bins of their min/max range (a plot needs no more points).

        Returns:
            ``{"fpr", "tpr"}`` (T + 1,) from (0, 0), and ``{"precision", "recall"}`` (T,), float64,
            thresholds high to low.
        """
        if self.mode == "binned":
            return _curves_from_counts(*self._counts())
        s, t = self._pooled()
        if s.numel() == 0:
            return _curves_from_counts(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
        lo, hi = float(s.min()), float(s.max())
        span = hi - lo if hi > lo else 1.0
        idx = ((s.double() - lo) * (self.bins / span)).clamp_(0, self.bins - 1).long()
        counts = torch.bincount(idx + self.bins * t.long(), minlength=2 * self.bins)
        neg, pos = counts[: self.bins].flip(0), counts[self.bins:].flip(0)
        full = (pos + neg) > 0
        return _curves_from_counts(pos.cumsum(0)[full], neg.cumsum(0)[full])

    def state_nbytes(self) -> int:
        """Bytes held by the metric state now (exact: grows with pixels; binned: 2 x bins x 8)."""
        if self.mode == "binned":
            return self.pos_hist.nbytes + self.neg_hist.nbytes
        states = [self.scores, self.targets]
        return sum(x.nbytes for st in states for x in (st if isinstance(st, list) else [st]))


# ---------------------------------------------------------------------- semantic segmentation
def confusion_matrix(pred: Tensor, label: Tensor, n: int, ignore: tuple[int, ...] = IGNORE_LABELS) -> Tensor:
    """Pixel confusion matrix of one batch, rows = ground truth, columns = prediction.

    Args:
        pred: (B, H, W) integer predicted classes in 0..n-1 (argmax over the first n logits).
        label: (B, H, W) integer ground truth in 0..n-1 or a value of ``ignore``.
        n: number of classes.
        ignore: label values skipped (254 = pasted OE anomaly, 255 = void).

    Returns:
        (n, n) int64, ``C[i, j]`` = number of pixels of class i predicted as j. Sum over batches
        (and ranks) before :func:`miou`.

    Raises:
        ZooError: shape mismatch, or a label / prediction outside 0..n-1 that is not ignored.
    """
    if pred.shape != label.shape:
        raise ZooError(f"confusion_matrix: pred {tuple(pred.shape)} and label {tuple(label.shape)} must have "
                       "the same shape (B, H, W)")
    if pred.is_floating_point() or label.is_floating_point():
        raise ZooError(f"confusion_matrix: pred and label must be integer class maps, got {pred.dtype} and "
                       f"{label.dtype}")
    label, pred = label.to(torch.int64), pred.to(torch.int64)
    keep = torch.ones_like(label, dtype=torch.bool)
    for v in ignore:
        keep &= label != v
    lab, prd = label[keep], pred[keep]
    for name, x in (("label", lab), ("pred", prd)):
        bad = (x < 0) | (x >= n)
        if bad.any():
            raise ZooError(f"confusion_matrix: {name} values must be in 0..{n - 1} (or ignored {tuple(ignore)}); "
                           f"found {torch.unique(x[bad])[:8].tolist()}")
    return torch.bincount(lab * n + prd, minlength=n * n).reshape(n, n).cpu()


def miou(confmat: Tensor) -> tuple[float, Tensor]:
    """Mean intersection over union from a confusion matrix.

    ``IoU_c = C[c, c] / (sum_j C[c, j] + sum_i C[i, c] - C[c, c])`` (TP / (TP + FP + FN), the
    Cityscapes benchmark's class IoU); the mean skips classes with an empty union (neither in the
    ground truth nor predicted).

    Args:
        confmat: (n, n) counts, rows = ground truth, columns = prediction.

    Returns:
        ``(miou, per_class)``: the mean as a float in [0, 1] (NaN if every union is empty) and (n,)
        float64 IoUs with NaN for empty unions.
    """
    if confmat.ndim != 2 or confmat.shape[0] != confmat.shape[1]:
        raise ZooError(f"miou: confmat must be a square (n, n) matrix, got {tuple(confmat.shape)}")
    c = confmat.double()
    tp = c.diagonal()
    union = c.sum(1) + c.sum(0) - tp
    per_class = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    valid = union > 0
    return (float(per_class[valid].mean()) if valid.any() else math.nan), per_class
