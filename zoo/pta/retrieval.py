"""ALBEF-protocol retrieval metrics and detector metrics (PTA spec, "Retrieval" and "Metrics").

``recall_at_k``: a query is a hit at K when its best ground-truth item ranks within the top K; the
rank is the number of non-ground-truth items scoring at least as high as that best ground truth
(ties count against the query, so a constant score never looks like a hit).
"""

from __future__ import annotations

import torch
from torch import Tensor


def ranks(scores: Tensor, gt: Tensor) -> Tensor:
    """scores (Q, M); gt (Q, M) bool with >= 1 True per row -> (Q,) 0-based rank of the best GT."""
    best = scores.masked_fill(~gt, float("-inf")).max(1, keepdim=True).values
    return ((scores >= best) & ~gt).sum(1)


def recall_at_k(scores: Tensor, gt: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Share of queries (rows) whose best ground truth ranks < K, in %."""
    r = ranks(scores, gt)
    return {k: 100.0 * float((r < k).float().mean()) for k in ks}


def retrieval_metrics(i2t: Tensor, txt2img: Tensor, prefix: str = "") -> dict[str, float]:
    """TR@1/5/10 (image -> text), IR@1/5/10 (text -> image) and their mean, from an (Ni, Nt) score
    matrix and the image of each text (Nt,)."""
    gt = txt2img[None, :] == torch.arange(i2t.shape[0], device=i2t.device)[:, None]
    tr, ir = recall_at_k(i2t, gt), recall_at_k(i2t.t(), gt.t())
    out = {f"{prefix}tr@{k}": v for k, v in tr.items()} | {f"{prefix}ir@{k}": v for k, v in ir.items()}
    out[f"{prefix}r_mean"] = sum(out.values()) / 6
    return out


def topk_pairs(sim: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Candidate pairs of ALBEF's re-ranking: the top-``k`` texts per image and top-``k`` images per
    text of an (Ni, Nt) ITC matrix. Returns ``(img_of_i2t, txt_of_i2t, img_of_t2i, txt_of_t2i)``."""
    ki, kt = min(k, sim.shape[1]), min(k, sim.shape[0])
    ti = sim.topk(ki, dim=1).indices  # (Ni, ki) texts
    it = sim.topk(kt, dim=0).indices  # (kt, Nt) images
    ni, nt = sim.shape
    img_a = torch.arange(ni, device=sim.device).repeat_interleave(ki)
    txt_b = torch.arange(nt, device=sim.device).repeat(kt)
    return img_a, ti.reshape(-1), it.reshape(-1), txt_b


def detector_counts(logits: Tensor, pos: Tensor, distractor: Tensor, k: int) -> dict[str, float]:
    """Sums over pairs for recall@K / precision@K / distractor exclusion of a top-``k`` selection.

    Args:
        logits: (P, N) detector scores. pos, distractor: (P, N) 0/1 labels. k: patches kept.

    Returns:
        ``{"kept_pos", "pos", "kept", "dropped_distractor", "distractor"}`` counts.
    """
    idx = logits.topk(k, dim=1).indices
    kept = torch.zeros_like(pos, dtype=torch.bool).scatter(1, idx, True)
    p, d = pos.bool(), distractor.bool() & ~pos.bool()
    return {"kept_pos": float((kept & p).sum()), "pos": float(p.sum()), "kept": float(kept.sum()),
            "dropped_distractor": float((~kept & d).sum()), "distractor": float(d.sum())}
