"""MCC-KD's student in plain PyTorch: a causal or seq2seq LM and the two-pass training objective.

The student is any Hugging Face causal LM (LLaMA family) or seq2seq LM (FlanT5 family), trained
fully or through LoRA (:mod:`zoo.common.lm.lora`). One training step sees, per question, two
different rationales ``r_a`` and ``r_b``; both passes run as one forward over the concatenated
``2B`` batch (the same computation as two passes, gradients through both), and the loss is
:func:`zoo.mcc_kd.losses.mcc_kd_loss`. With only side ``a`` (single-rationale CoT distillation)
the loss is the CE alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.mcc_kd.losses import answer_span_kl, mcc_kd_loss, sequence_ce


class MCCKDModel(nn.Module):
    """Wraps a Hugging Face LM with MCC-KD's objective.

    Args:
        lm: a ``PreTrainedModel`` (or a ``PeftModel`` around one).
        kind: ``"causal"`` or ``"seq2seq"``.
        alpha: weight of the answer-span KL (0: multi-rationale CE, the ablation).
        temperature: KL temperature T, on both sides.
    """

    def __init__(self, lm: nn.Module, kind: str, alpha: float = 0.1, temperature: float = 1.0) -> None:
        super().__init__()
        if kind not in ("causal", "seq2seq"):
            raise ValueError(f"kind must be 'causal' or 'seq2seq', got {kind!r}")
        self.lm, self.kind, self.alpha, self.temperature = lm, kind, alpha, temperature

    def logits(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None = None,
               decoder_input_ids: Tensor | None = None) -> Tensor:
        """(N, L, V) label-space logits: ``logits[:, p]`` predicts ``labels[:, p]``.

        Causal: the input is prompt + target, labels are already shifted by the datamodule.
        Seq2seq: the encoder reads ``input_ids`` (the question); the decoder is teacher-forced on
        ``decoder_input_ids`` (labels shifted right behind the start token).
        """
        if self.kind == "causal":
            return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                       use_cache=False).logits

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Training objective on a collated batch (see :mod:`datamodules.reasoning.base`).

        ``batch`` holds ``input_ids``/``attention_mask``/``labels`` (2B rows: side a then side b, or
        B rows for single-rationale batches), ``decoder_input_ids`` for seq2seq, and for pairs
        ``span_a``/``span_b`` (B, M), ``span_mask`` (B, M), ``pair_valid`` (B,).
        """
        z = self.logits(batch["input_ids"], batch["attention_mask"], batch["labels"], batch.get("decoder_input_ids"))
        labels = batch["labels"]
        if "span_a" not in batch:
            ce = sequence_ce(z, labels)
            return {"loss": ce, "ce": ce}
        b = batch["span_a"].shape[0]
        out = mcc_kd_loss(z[:b], labels[:b], z[b:], labels[b:], batch["span_a"], batch["span_b"],
                          batch["span_mask"], batch["pair_valid"], alpha=self.alpha, temperature=self.temperature)
        return out

    @torch.no_grad()
    def span_kl(self, batch: dict[str, Tensor]) -> Tensor:
        """(B,) teacher-forced answer-span symmetric KL between two rationales of each question
        (the held-out consistency diagnostic, always at T = 1 so that every method is measured
        alike; 0 on invalid pairs, see ``pair_valid``)."""
        z = self.logits(batch["input_ids"], batch["attention_mask"], batch["labels"], batch.get("decoder_input_ids"))
        b = batch["span_a"].shape[0]
        _, per_pair = answer_span_kl(z[:b], z[b:], batch["span_a"], batch["span_b"], batch["span_mask"],
                                     batch["pair_valid"], 1.0)
        return per_pair
