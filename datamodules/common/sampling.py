"""Shuffling from a generator of the datamodule's own, saved with the checkpoint.

With the default DataLoader, the shuffle order and the workers' base seed come from torch's global
generator at the moment the epoch's iterator is created, a moment that differs between a run and
its resumed copy (Lightning creates the resumed epoch's iterator before the epoch-start hooks).
:class:`SeededShuffle` gives the training DataLoader its own ``torch.Generator`` (seeded once per
fit from the global seed) and saves its state through the LightningDataModule
``state_dict``/``load_state_dict`` hooks, so a resumed run shuffles exactly like the
uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch


class SeededShuffle:
    """Mixin for a LightningDataModule: ``self.train_generator()`` for ``DataLoader(generator=...)``."""

    _train_gen: torch.Generator | None = None

    def train_generator(self) -> torch.Generator:
        """The training loader's generator, created on first use from the global torch seed stream."""
        if self._train_gen is None:
            self._train_gen = torch.Generator()
            self._train_gen.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        return self._train_gen

    def state_dict(self) -> dict[str, Any]:
        return {"train_generator": self._train_gen.get_state()} if self._train_gen is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "train_generator" in state_dict:
            self.train_generator().set_state(state_dict["train_generator"])
