"""Exact resume: the random streams travel with the checkpoint.

A run killed in the middle of an epoch resumes from ``last.ckpt`` (written at the end of the
previous epoch) and must end where the uninterrupted run ends. The weights, optimiser, schedulers
and loop counters are Lightning's; what else decides the rest of the run is randomness:

* the training sampler's shuffle order and the DataLoader workers' base seed, drawn from the
  datamodule's own ``torch.Generator`` (``datamodules.common.sampling.SeededShuffle``), whose state
  the datamodule saves in the checkpoint;
* the global Python, NumPy and torch (CPU and CUDA) generators, used by augmentations in the main
  process and by the model (dropout, random masks): :class:`RNGState` saves them with every
  checkpoint (per rank under DDP) and restores them at the start of the first resumed training
  epoch, i.e. at the same point of the loop where the uninterrupted run stood when it saved them
  (after the resumed run's sanity check and data setup, which draw from the global generators).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback


def capture() -> dict[str, Any]:
    """The global generators' states as tensors and ints (``torch.load(weights_only=True)``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    state = {"python": [py[0], list(py[1]), py[2]], "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture`."""
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class RNGState(Callback):
    """Save the global RNG states with every checkpoint; restore them when a run resumes.

    ``zoo.core.training`` adds it to every run, so ``--ckpt_path`` resumes exactly.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        mine = capture()
        rank, world = _rank()
        if world == 1:
            return {"ranks": [mine]}
        states: list[Any] = [None] * world
        torch.distributed.all_gather_object(states, mine)  # every rank dumps; rank 0 writes
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("ranks") or []
        rank, world = _rank()
        if len(ranks) == world:  # a different world size cannot be resumed stream by stream
            self._pending = ranks[rank]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._pending is not None:
            restore(self._pending)
            self._pending = None
