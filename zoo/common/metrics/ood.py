"""OOD detection metrics: AUROC, FPR at 95% TPR, AUPR-In/Out, on whole-epoch scores.

Convention (stated in every bench report, see :data:`CONVENTION`): ID is the positive class and
scores are "higher = more ID" (MODE's S(x)). The threshold ``t`` keeps 95% of ID: sort the ID
scores in descending order and take ``t = sorted_desc[ceil(0.95 * n) - 1]``; an input is called
ID when ``score >= t``. FPR95 is the fraction of OOD samples with ``score >= t``. AUROC and AUPR-In
treat ID as positive; AUPR-Out treats OOD as positive with negated scores.

The spec lists two percentile rules from released code (knn-ood ``sorted_id[round(0.05 n)]`` and
OpenOOD ``sorted_id[-floor(0.95 n)]``, both with ``score > t``); ours is the ``>=`` rule that
matches ``binary_roc``'s operating points, so the two computations agree exactly.

Implementation: the ID and OOD scores of a whole epoch are concatenated and min-max normalised
once to [0, 1] in float64, then passed to ``torchmetrics.functional.classification``
(``binary_auroc``, ``binary_average_precision``, ``binary_roc``). The normalisation matters:
torchmetrics applies a sigmoid to any input outside [0, 1], and sigmoid saturates for large
scores (e.g. 1e4 offsets), which would merge distinct scores into ties. Min-max is monotone, so
the ranking, and therefore every metric, is unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc

CONVENTION = (
    "ID is the positive class; scores are higher = more ID. FPR95 = fraction of OOD with "
    "score >= t, t = 95%-TPR threshold on ID scores (sorted descending, index ceil(0.95 n) - 1). "
    "AUROC/AUPR-In: ID positive; AUPR-Out: OOD positive with negated scores."
)


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


def threshold_at_tpr(id_scores: Tensor, tpr: float = 0.95) -> float:
    """Score threshold t at which a fraction ``tpr`` of ID scores are >= t.

    ``t = sorted_desc[ceil(tpr * n) - 1]``, the smallest of the top ``ceil(tpr * n)`` ID scores.

    Args:
        id_scores: (N,) ID scores, higher = more ID.
        tpr: target true positive rate in (0, 1].
    """
    _check_tpr(tpr)
    s = _scores(id_scores, "id_scores")
    return float(s.sort(descending=True).values[_n_kept(s.numel(), tpr) - 1])


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


def ood_metrics(id_scores: Tensor, ood_scores: Tensor, tpr: float = 0.95) -> dict[str, float]:
    """AUROC, FPR at ``tpr`` TPR, AUPR-In, AUPR-Out and the threshold, for one ID/OOD pair.

    Args:
        id_scores: (N,) scores of ID test samples, higher = more ID (whole epoch, any device).
        ood_scores: (M,) scores of OOD samples, same convention.
        tpr: ID true positive rate that fixes the threshold (0.95 for FPR95).

    Returns:
        ``{"auroc", "fpr95", "aupr_in", "aupr_out", "threshold"}`` as Python floats; ``fpr95`` is
        the FPR at ``tpr`` (the key keeps its name for other ``tpr``) and ``threshold`` is in raw
        score units (:func:`threshold_at_tpr`).

    Raises:
        ValueError: empty or non-finite scores, or ``tpr`` outside (0, 1].
    """
    _check_tpr(tpr)
    preds, target, ids, ood, _, _ = _normalised(id_scores, ood_scores)
    n_keep = _n_kept(ids.numel(), tpr)
    # The rule on the normalised scores (exactly what binary_roc sees) ...
    norm_id, norm_ood = preds[: ids.numel()], preds[ids.numel() :]
    t_norm = norm_id.sort(descending=True).values[n_keep - 1]
    fp_rule = int((norm_ood >= t_norm).sum())
    # ... must agree with the operating point read off binary_roc.
    fp_roc = _fpr_from_roc(preds, target, n_keep)
    if fp_rule != fp_roc:  # pragma: no cover - would be a torchmetrics behaviour change
        raise RuntimeError(f"FPR mismatch: threshold rule counts {fp_rule} OOD, binary_roc counts {fp_roc}")
    return {
        "auroc": float(binary_auroc(preds, target, thresholds=None)),
        "fpr95": fp_rule / ood.numel(),
        "aupr_in": float(binary_average_precision(preds, target, thresholds=None)),
        "aupr_out": float(binary_average_precision(1.0 - preds, 1 - target, thresholds=None)),
        "threshold": float(ids.sort(descending=True).values[n_keep - 1]),
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


def fpr_at_tpr(ood_scores: Tensor, is_id: Tensor, tpr: float = 0.95) -> float:
    """FPR at ``tpr`` ID TPR for scores where higher = more OOD (the zoo default), ID positive.

    The STYLE.md helper: negates the scores and applies the rule of :func:`ood_metrics`.

    Args:
        ood_scores: (N,) scores, higher = more OOD.
        is_id: (N,) bool, True for ID samples.
        tpr: ID true positive rate.
    """
    s = torch.as_tensor(ood_scores).flatten()
    mask = torch.as_tensor(is_id, device=s.device).flatten().bool()
    if mask.numel() != s.numel():
        raise ValueError(f"is_id has {mask.numel()} entries but ood_scores has {s.numel()}")
    return ood_metrics(-s[mask], -s[~mask], tpr=tpr)["fpr95"]
