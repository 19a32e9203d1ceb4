"""Training throughput (images/s) measured over the training batches only (no validation)."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback


class TrainThroughput(Callback):
    """Records images/s of the training loop after ``warmup`` steps.

    Each interval runs from one training batch's end to the next one's end (so data loading, the
    step and the optimiser are counted), synchronising CUDA so that asynchronous kernels are
    counted too; the clock restarts at every epoch start, so validation is excluded. Logged as
    ``train/images_per_s`` at epoch end; :attr:`images_per_s` holds the whole-run value.
    """

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = warmup
        self.steps = 0
        self.images = 0
        self.seconds = 0.0
        self._last: float | None = None

    @staticmethod
    def _now(pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self._now(pl_module)
        self.steps += 1
        if self.steps > self.warmup and self._last is not None:
            self.seconds += now - self._last
            self.images += int(batch["image"].shape[0])
        self._last = now

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.seconds > 0:
            pl_module.log("train/images_per_s", self.images_per_s)
