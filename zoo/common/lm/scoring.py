"""Token and sequence log-probabilities and the LM loss, always in fp32 (STYLE 1b).

Everything here works in *label space*: ``labels[:, t]`` is the token that ``logits[:, t]``
predicts, and -100 marks positions that do not count. A seq2seq model's ``labels`` are already
in label space (the decoder logits at t predict ``labels[:, t]``). A causal LM's logits at t
predict the *next* input token, so its HF-style labels (aligned with ``input_ids``, as
:func:`zoo.common.lm.text.encode_pair` makes them) go through :func:`shift_for_causal` first.

The logits are cast to fp32 inside ``torch.autocast(enabled=False)``, so the log-softmax and the
cross-entropy are exact under ``bf16-mixed`` too; outputs are fp32.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.core.errors import ZooError

IGNORE = -100


def shift_for_causal(labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Causal labels aligned with the logits: ``out[:, t] = labels[:, t + 1]``, last = -100.

    Args:
        labels: (B, T) HF-style causal labels or plain ``input_ids`` (aligned with the inputs).
        attention_mask: (B, T) optional; positions whose *target* token has mask 0 become -100
            (use it when passing ``input_ids`` with padding).

    Returns:
        (B, T) int64 labels in label space.
    """
    if attention_mask is not None:
        labels = labels.masked_fill(attention_mask == 0, IGNORE)
    out = torch.full_like(labels, IGNORE)
    out[:, :-1] = labels[:, 1:]
    return out


def _check(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, T, V) and labels (B, T), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")


def token_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """log p(labels[:, t] | ...) at every position, 0 where the label is -100.

    ``log_softmax(logits[b, t])[labels[b, t]]``, computed as ``logit - logsumexp(logits)`` in fp32.

    Args:
        logits: (B, T, V) any float dtype.
        labels: (B, T) int64 in label space, -100 = ignored.

    Returns:
        (B, T) float32.
    """
    _check(logits, labels)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        mask = labels != IGNORE
        idx = labels.masked_fill(~mask, 0).unsqueeze(-1)
        picked = logits.gather(-1, idx).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        return picked.masked_fill(~mask, 0.0)


def sequence_logprob(logits: Tensor, labels: Tensor, normalize: bool = False) -> Tensor:
    """log p(target) = sum_t log p(y_t | y_<t, x) over the labelled positions of each sequence.

    Args:
        logits: (B, T, V).
        labels: (B, T) in label space, -100 = ignored.
        normalize: divide by the number of labelled tokens (a per-token mean; 0 for a sequence
            without labelled tokens).

    Returns:
        (B,) float32.
    """
    lp = token_logprobs(logits, labels)
    total = lp.sum(dim=1)
    if not normalize:
        return total
    count = (labels != IGNORE).sum(dim=1)
    return total / count.clamp(min=1)


def lm_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0,
            reduction: Literal["token", "sequence"] = "token") -> Tensor:
    """Teacher-forced cross-entropy of the labelled tokens, in fp32.

    CE_t = -log p(y_t) (with label smoothing eps: -(1 - eps) log p(y_t) - (eps / V) sum_v
    log p(v), as ``torch.nn.functional.cross_entropy`` defines it; Szegedy et al.,
    arXiv:1512.00567v3, Sec. 7).

    - ``"token"``: mean of CE_t over every labelled token of the batch.
    - ``"sequence"``: mean of CE_t inside each sequence, then mean over the sequences that have
      at least one labelled token (MCC-KD's L_CE, arXiv:2310.14747; see the MCC-KD spec, Loss:
      "first averaged inside each sequence, then over the batch").

    Args:
        logits: (B, T, V) any float dtype.
        labels: (B, T) in label space, -100 = ignored.
        label_smoothing: eps in [0, 1).
        reduction: ``"token"`` or ``"sequence"``.

    Returns:
        A float32 scalar (0 with a graph when nothing is labelled).
    """
    _check(logits, labels)
    if reduction not in ("token", "sequence"):
        raise ZooError(f"lm_loss reduction={reduction!r}: expected 'token' or 'sequence'")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        b, t, v = logits.shape
        ce = F.cross_entropy(logits.float().reshape(b * t, v), labels.reshape(b * t),
                             ignore_index=IGNORE, label_smoothing=label_smoothing,
                             reduction="none").view(b, t)
        mask = labels != IGNORE
        ce = ce.masked_fill(~mask, 0.0)
        if reduction == "token":
            return ce.sum() / mask.sum().clamp(min=1)
        count = mask.sum(dim=1)
        per_seq = ce.sum(dim=1) / count.clamp(min=1)
        has = count > 0
        return (per_seq * has).sum() / has.sum().clamp(min=1)
