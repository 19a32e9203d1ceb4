"""Evaluation under DDP: de-duplicating the items that ``DistributedSampler`` padding repeats."""

from __future__ import annotations

import torch
from torch import Tensor


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
