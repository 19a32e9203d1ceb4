"""Evaluation under DDP: de-duplicating the items that ``DistributedSampler`` padding repeats,
gathering per-rank results, and unpadded per-rank shares of an evaluation set."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics.utilities.distributed import gather_all_tensors


def first_occurrences(index: Tensor) -> Tensor:
    """Positions of the first occurrence of each value of ``index`` (N,), in ascending value order.

    Gathered per-item results keyed by their dataset index keep each item once with
    ``rows[first_occurrences(index)]``.
    """
    order = torch.sort(index, stable=True).indices
    sorted_index = index[order]
    first = torch.ones_like(sorted_index, dtype=torch.bool)
    first[1:] = sorted_index[1:] != sorted_index[:-1]
    return order[first]


def gather_any_device(result: Tensor, group: Any | None = None) -> list[Tensor]:
    """torchmetrics' ``gather_all_tensors`` (tensors of any, also unequal, first dimension), also for
    CPU tensors under NCCL: moved to the current GPU for the collective and back afterwards."""
    if result.device.type == "cpu" and dist.get_backend(group) == "nccl":
        dev = torch.device("cuda", torch.cuda.current_device())
        return [t.cpu() for t in gather_all_tensors(result.to(dev), group)]
    return gather_all_tensors(result, group)


def distributed() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_cat(t: Tensor) -> Tensor:
    """Every rank's ``t`` concatenated along dim 0, in rank order (``t`` itself outside DDP)."""
    return torch.cat(gather_any_device(t)) if distributed() else t


def gather_sum(t: Tensor) -> Tensor:
    """The sum of every rank's ``t`` (same shape on every rank; ``t`` itself outside DDP)."""
    return torch.stack(gather_any_device(t)).sum(0) if distributed() else t


def rank_shard(n: int, rank: int, world_size: int) -> range:
    """This rank's disjoint, unpadded share of ``n`` evaluation items: ``rank, rank + world, ...``.

    Shares differ in length by at most one; together they hold every item exactly once (unlike
    ``DistributedSampler``, which pads with repeats).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    return range(rank, n, world_size)
