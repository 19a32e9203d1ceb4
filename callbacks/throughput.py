"""Training throughput in the model's own unit (images/s, tokens/s), over training batches only."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback


class TrainThroughput(Callback):
    """Records the training loop's throughput after ``warmup`` steps.

    The unit is the module's: ``pl_module.throughput_unit`` (``"images"`` by default) and
    ``pl_module.count_units(batch)`` (by default ``len(batch["image"])``; language models count
    tokens). Each interval runs from one training batch's end to the next one's end (so data
    loading, the step and the optimiser are counted), synchronising CUDA so that asynchronous
    kernels are counted too; the clock restarts at every epoch start, so validation is excluded.
    Logged as ``train/<unit>_per_s`` at epoch end; :attr:`per_s` holds the whole-run value.
    """

    def __init__(self, warmup: int = 5) -> None:
        self.warmup = warmup
        self.steps = 0
        self.units = 0
        self.seconds = 0.0
        self.unit = "images"
        self._last: float | None = None

    @staticmethod
    def _now(pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self.unit = getattr(pl_module, "throughput_unit", "images")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self._now(pl_module)
        self.steps += 1
        if self.steps > self.warmup and self._last is not None:
            self.seconds += now - self._last
            count = getattr(pl_module, "count_units", None)
            self.units += int(count(batch)) if count is not None else int(batch["image"].shape[0])
        self._last = now

    @property
    def per_s(self) -> float:
        """Units per second over the timed steps (NaN before any)."""
        return self.units / self.seconds if self.seconds > 0 else float("nan")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.seconds > 0:
            pl_module.log(f"train/{self.unit}_per_s", self.per_s)
