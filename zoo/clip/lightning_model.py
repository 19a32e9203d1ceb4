"""Contrastive CLIP pretraining of the zoo's tiny CLIPs on an embedded image-caption world.

``python -m zoo.fit clip`` trains ``zoo-tiny-clip`` (open_clip architecture, added with
``open_clip.add_model_config``) on the ShapesB2N caption corpus with open_clip's ``ClipLoss``
(the symmetric InfoNCE of CLIP, Radford et al. 2021, arXiv:2103.00020v1, Fig. 3 pseudo-code). It is the
frozen "pretrained CLIP" of DePT's embedded default; DePT's
default config builds and caches it on first use (:mod:`zoo.clip.cache`).

Validation: zero-shot accuracy with the hand prompt ``"a photo of a {}."`` on the domain-shifted
task images of the base and the new classes (``val/zs_base``, ``val/zs_new``, chance 1/24).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from zoo.common.vision.clip import build_clip, get_tokenizer
from zoo.core.errors import ZooError
from zoo.core.module import ZooModule
from zoo.core.schedule import warmup_cosine


class TinyCLIP(ZooModule):
    """CLIP contrastive pretraining (AdamW, linear warm-up then cosine, per step).

    Args:
        clip_model: open_clip architecture (``zoo-tiny-clip``; ``zoo-test-clip`` in tests).
        clip_vocab: its word-level vocabulary file (default: the ShapesB2N world's ``vocab.txt``).
        lr: AdamW peak learning rate (1e-3).
        weight_decay: AdamW weight decay (0.1) on matrices; none on gains, biases,
            embeddings and the logit scale (open_clip's exclusion rule).
        warmup_steps: linear warm-up steps.
        max_logit_scale: clamp of tau = exp(logit_scale) after every step (100, as CLIP).
        template: hand prompt of the zero-shot validation.

    Raises:
        ZooError: an argument outside its range (one line naming it), at construction.
    """

    zoo_name = "clip"
    metrics_note = "zero-shot top-1 accuracy (fraction) with the hand prompt on the task images"

    def __init__(self, clip_model: str = "zoo-tiny-clip", clip_vocab: str | None = "datamodules/fewshot/shapes/vocab.txt",
                 lr: float = 1e-3, weight_decay: float = 0.1,
                 warmup_steps: int = 100, max_logit_scale: float = 100.0,
                 template: str = "a photo of a {}.") -> None:
        super().__init__()
        for name, ok, rule, value in (("lr", lr > 0, "> 0", lr), ("weight_decay", weight_decay >= 0, ">= 0", weight_decay),
                                      ("warmup_steps", warmup_steps >= 0, ">= 0", warmup_steps),
                                      ("max_logit_scale", max_logit_scale >= 1, ">= 1 (tau = exp(logit_scale) >= 1)",
                                       max_logit_scale)):
            if not ok:
                raise ZooError(f"--model.{name} must be {rule}, got {value!r}")
        if template.count("{}") != 1:
            raise ZooError(f"--model.template must hold '{{}}' once (the class name), got {template!r}")
        self.save_hyperparameters()
        self.clip = build_clip(clip_model)
        self.clip.train()
        self.tokenizer = get_tokenizer(clip_model, clip_vocab)
        self._zs_text: dict[int, Tensor] = {}
        self._zs_hits: dict[int, list[Tensor]] = {}

    def forward(self, images: Tensor, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Unit image and text embeddings (B, E), (B, E)."""
        tokens = self.tokenizer(texts).to(self.device)
        return self.clip.encode_image(images, normalize=True), self.clip.encode_text(tokens, normalize=True)

    @torch.no_grad()
    def reference_outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Unit image embeddings of the batch and the logit scale (the reload test compares them)."""
        return {"image_emb": self.clip.encode_image(batch["image"].to(self.device), normalize=True).cpu(),
                "logit_scale": self.clip.logit_scale.detach().cpu()}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        from open_clip.loss import ClipLoss

        img, txt = self(batch["image"], batch["text"])
        loss = ClipLoss()(img.float(), txt.float(), self.clip.logit_scale.exp().float())
        if not torch.isfinite(loss):
            raise ZooError(f"train/loss is {loss.item()} at step {self.global_step}; lower --model.lr")
        bs = len(batch["text"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        self.log("train/logit_scale", self.clip.logit_scale.exp(), on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, math.log(self.hparams.max_logit_scale))

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for name, p in self.clip.named_parameters():
            exclude = p.ndim < 2 or "embedding" in name or "logit_scale" in name or "ln" in name or "bn" in name
            (no_decay if exclude else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr, betas=(0.9, 0.98), eps=1e-6)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = min(hp.warmup_steps, total // 2)

        def factor(step: int) -> float:
            return warmup_cosine(step, total, warm, warmup_inclusive=True, cosine_length=max(1, total - warm))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ zero-shot validation
    def on_validation_epoch_start(self) -> None:
        dm = self.trainer.datamodule
        names = getattr(dm, "test_set_names" if self.trainer.testing else "val_set_names", ["base", "new"])
        with torch.no_grad():
            for i, name in enumerate(names):
                texts = [dm.template.format(c) for c in dm.classnames[name]]
                self._zs_text[i] = self.clip.encode_text(self.tokenizer(texts).to(self.device), normalize=True)
        self._zs_hits = {}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        img = self.clip.encode_image(batch["image"], normalize=True)
        pred = (img.float() @ self._zs_text[dataloader_idx].float().t()).argmax(1)
        self._zs_hits.setdefault(dataloader_idx, []).append((pred == batch["label"]).float())

    def on_validation_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        names = getattr(dm, "val_set_names", ["base", "new"])
        acc = {n: torch.cat(self._zs_hits[i]).mean().item() for i, n in enumerate(names) if i in self._zs_hits}
        for n, v in acc.items():
            self.log(f"val/zs_{n}", v, prog_bar=True, add_dataloader_idx=False)
        self._zs_hits = {}

    # test = the same zero-shot protocol on all test images of the task
    on_test_epoch_start = on_validation_epoch_start
    test_step = validation_step

    def on_test_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        names = getattr(dm, "test_set_names", ["base", "new"])
        for i, n in enumerate(names):
            if i in self._zs_hits:
                self.log(f"test/zs_{n}", torch.cat(self._zs_hits[i]).mean().item(), add_dataloader_idx=False)
        self._zs_hits = {}

    def export(self, path: str) -> None:
        """Write the CLIP as a plain open_clip state dict (what ``--model.clip_weights`` reads)."""
        from zoo.core.io import atomic_save

        atomic_save({k: v.detach().cpu() for k, v in self.clip.state_dict().items()}, path)

