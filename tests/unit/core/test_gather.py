"""Evaluation helpers for DDP: padded-duplicate removal and unpadded rank shares."""

from __future__ import annotations

import pytest
import torch

from zoo.core.gather import first_occurrences, gather_cat, gather_sum, rank_shard


def test_first_occurrences_keeps_each_index_once_in_ascending_order():
    index = torch.tensor([3, 0, 2, 0, 3, 1])
    assert first_occurrences(index).tolist() == [1, 5, 2, 0]


@pytest.mark.parametrize("n,world", [(9, 2), (7, 2), (10, 3), (1, 2), (0, 2)])
def test_rank_shards_are_disjoint_unpadded_and_cover_every_item(n, world):
    shards = [list(rank_shard(n, r, world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError):
        rank_shard(n, world, world)


def test_gathers_are_the_identity_outside_ddp():
    t = torch.arange(6).view(3, 2)
    assert gather_cat(t) is t and gather_sum(t) is t
