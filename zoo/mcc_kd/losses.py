"""MCC-KD's losses: per-sequence token CE and the bidirectional answer-span KL.

Chen et al., "MCC-KD: Multi-CoT Consistent Knowledge Distillation", Findings of EMNLP 2023
(arXiv:2310.14747), Sec. 3.3; the reference is the official code's Dec-2023 ``train_mcc`` and
``kl_div_loss`` (temperature on both sides, exact KL, no T^2 factor).

Coordinates. Every position here is in *label space*: ``logits[b, p]`` is the distribution that
predicts the span token whose position is ``p`` (for a causal LM that is the token's input position
minus one; for a seq2seq LM the decoder position itself). The datamodule computes these positions
after tokenisation (:mod:`zoo.mcc_kd.spans`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def _gather_span(logits: Tensor, pos: Tensor) -> Tensor:
    """(B, L, V) logits, (B, M) positions -> (B, M, V) in fp32 (positions beyond a row's span are
    clamped to 0 here and masked by the caller)."""
    idx = pos.clamp(min=0).unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    return torch.gather(logits, 1, idx).float()


def answer_span_kl(logits_a: Tensor, logits_b: Tensor, pos_a: Tensor, pos_b: Tensor, span_mask: Tensor,
                   valid: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Bidirectional KL between the answer-span distributions of two rationales of one question.

    Eq. (MCC-KD Sec. 3.3, "multi-CoT consistency"), as the spec writes it:
    ``P_k = softmax(z_a[s_a + k] / T)``, ``Q_k = softmax(z_b[s_b + k] / T)``,
    ``L_KL = 1/2 mean_i[(1/m_i) sum_k KL(P_ik || Q_ik)] + 1/2 mean_i[(1/m_i) sum_k KL(Q_ik || P_ik)]``,
    the means over *valid* pairs only (0 when there is none). Both branches carry gradients (neither
    side is a teacher); computed in fp32 with autocast off.

    Args:
        logits_a, logits_b: (B, L_a, V) and (B, L_b, V) student logits of the two passes.
        pos_a, pos_b: (B, M) label-space positions of the span tokens (k = 1..m_i, left-aligned).
        span_mask: (B, M) bool, True on the first m_i entries of row i.
        valid: (B,) bool, pairs whose spans hold identical token ids and were not cut by truncation.
        temperature: T, applied to both sides.

    Returns:
        ``(loss, per_pair)``: the scalar L_KL and the (B,) per-pair symmetric value
        ``1/2 (KL(P||Q) + KL(Q||P))`` averaged over its span (0 on invalid pairs).
    """
    with torch.autocast(device_type=logits_a.device.type, enabled=False):
        la = F.log_softmax(_gather_span(logits_a, pos_a) / temperature, dim=-1)
        lb = F.log_softmax(_gather_span(logits_b, pos_b) / temperature, dim=-1)
        kl_ab = (la.exp() * (la - lb)).sum(-1)  # (B, M): KL(P || Q)
        kl_ba = (lb.exp() * (lb - la)).sum(-1)  # KL(Q || P)
        m = span_mask.float()
        ok = valid & (m.sum(1) > 0)
        lengths = m.sum(1).clamp(min=1.0)
        fwd = (kl_ab * m).sum(1) / lengths
        bwd = (kl_ba * m).sum(1) / lengths
        per_pair = torch.where(ok, 0.5 * (fwd + bwd), torch.zeros_like(fwd))
        if not bool(ok.any()):
            return (logits_a.sum() + logits_b.sum()).float() * 0.0, per_pair
        okf = ok.float()
        loss = 0.5 * (fwd * okf).sum() / okf.sum() + 0.5 * (bwd * okf).sum() / okf.sum()
    return loss, per_pair


def sequence_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Token cross-entropy over the target tokens, averaged inside each sequence, then over the batch.

    MCC-KD's ``L_CE`` for one pass (official ``train_mcc``: the CE of each sequence is its mean over
    rationale + answer + EOS tokens). fp32, autocast off.

    Args:
        logits: (B, L, V); labels: (B, L) in label space (``logits[:, p]`` predicts ``labels[:, p]``),
            -100 on prompt and padding.

    Returns:
        The scalar mean over sequences that have at least one target token.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        tok = F.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
        mask = (labels != -100).float()
        n = mask.sum(1)
        per_seq = (tok * mask).sum(1) / n.clamp(min=1.0)
        has = (n > 0).float()
        return (per_seq * has).sum() / has.sum().clamp(min=1.0)


def mcc_kd_loss(logits_a: Tensor, labels_a: Tensor, logits_b: Tensor, labels_b: Tensor, pos_a: Tensor,
                pos_b: Tensor, span_mask: Tensor, valid: Tensor, alpha: float = 0.1,
                temperature: float = 1.0) -> dict[str, Tensor]:
    """``L = (CE_a + CE_b) / 2 + alpha * L_KL`` (MCC-KD Sec. 3.3, Eq. for the total objective).

    Returns a dict with ``loss``, ``ce``, ``kl`` (scalars) and ``kl_per_pair`` (B,).
    """
    ce = 0.5 * (sequence_ce(logits_a, labels_a) + sequence_ce(logits_b, labels_b))
    kl, per_pair = answer_span_kl(logits_a, logits_b, pos_a, pos_b, span_mask, valid, temperature)
    return {"loss": ce + alpha * kl, "ce": ce, "kl": kl, "kl_per_pair": per_pair}
