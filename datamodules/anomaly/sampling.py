"""Domain-balanced training batches: every batch holds a fixed number of images of every domain.

MDAT's discriminators and CACL's cross-domain contrast need every batch (on every rank) to hold
at least two domains (MGCDA spec, "Pitfalls"). :class:`DomainBalancedSampler` is a batch sampler
(``DataLoader(batch_sampler=...)``): each domain's indices are shuffled with the sampler's own
``torch.Generator`` (the datamodule's, saved in its ``state_dict``), and batch ``b`` takes the
next ``per_domain[d]`` indices of every domain ``d``, grouped by domain in ascending domain order.

Under DDP each rank builds the same sampler (same generator state) with its ``rank`` and
``num_replicas`` and keeps the batches ``b`` with ``b % num_replicas == rank``, so the batches of
all ranks are disjoint and every one of them is balanced. Lightning must then be told not to
replace the sampler (``Trainer(use_distributed_sampler=False)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from zoo.core.errors import ZooError

__all__ = ["DomainBalancedSampler"]


class DomainBalancedSampler(Sampler[list[int]]):
    """Yield batches of dataset indices with ``per_domain[d]`` images of every domain ``d``.

    Args:
        domains: the domain id of every dataset index, ``(N,)`` ints in ``0..K-1``; every id in
            that range must occur.
        per_domain: images per domain and batch, one int for all domains or one per domain.
        generator: the shuffling stream (None: torch's global generator).
        num_batches: batches per epoch (over all ranks). Default: the fewest any domain can fill
            without repeating an image, ``min_d floor(N_d / per_domain[d])``. A larger number
            cycles through the smaller domains, each pass in a new order.
        shuffle: shuffle every domain each epoch (False: index order, for checks).
        rank, num_replicas: this process's share under DDP (see the module docstring).

    Raises:
        ZooError: no domain, a missing domain id, a per-domain count < 1, or a domain with fewer
            images than its per-batch count.
    """

    def __init__(self, domains: Sequence[int] | torch.Tensor, per_domain: int | Sequence[int],
                 generator: torch.Generator | None = None, num_batches: int | None = None, shuffle: bool = True,
                 rank: int = 0, num_replicas: int = 1) -> None:
        d = torch.as_tensor(domains, dtype=torch.long).flatten()
        if d.numel() == 0:
            raise ZooError("DomainBalancedSampler: no training images")
        if int(d.min()) < 0:
            raise ZooError(f"DomainBalancedSampler: domain ids must be >= 0, got {int(d.min())}")
        k = int(d.max()) + 1
        self.pools = [torch.nonzero(d == i).flatten() for i in range(k)]
        missing = [i for i, p in enumerate(self.pools) if p.numel() == 0]
        if missing:
            raise ZooError(f"DomainBalancedSampler: domain ids {missing} have no images (ids must cover 0..{k - 1})")
        per = [int(per_domain)] * k if isinstance(per_domain, int) else [int(p) for p in per_domain]
        if len(per) != k or min(per) < 1:
            raise ZooError(f"DomainBalancedSampler: per_domain must be one int >= 1 or {k} of them, got {per_domain!r}")
        short = [(i, p.numel(), per[i]) for i, p in enumerate(self.pools) if p.numel() < per[i]]
        if short:
            i, n, m = short[0]
            raise ZooError(f"DomainBalancedSampler: domain {i} has {n} images, fewer than the {m} each batch needs")
        if not 0 <= rank < num_replicas:
            raise ZooError(f"DomainBalancedSampler: rank {rank} outside 0..{num_replicas - 1}")
        self.per_domain = per
        self.generator, self.shuffle = generator, shuffle
        self.rank, self.num_replicas = rank, num_replicas
        full = min(p.numel() // m for p, m in zip(self.pools, per))
        total = full if num_batches is None else int(num_batches)
        if total < 1:
            raise ZooError(f"DomainBalancedSampler: num_batches must be >= 1, got {num_batches}")
        self.total_batches = total - total % num_replicas
        if self.total_batches == 0:
            raise ZooError(f"DomainBalancedSampler: {total} batches cannot feed {num_replicas} ranks")

    @property
    def num_domains(self) -> int:
        return len(self.pools)

    @property
    def batch_size(self) -> int:
        return sum(self.per_domain)

    def __len__(self) -> int:
        return self.total_batches // self.num_replicas

    def _stream(self, pool: torch.Tensor, need: int) -> torch.Tensor:
        """``need`` indices of one domain: whole passes over ``pool``, each in a fresh order."""
        parts, have = [], 0
        while have < need:
            n = pool.numel()
            order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
            parts.append(pool[order])
            have += pool.numel()
        return torch.cat(parts)[:need]

    def __iter__(self) -> Iterator[list[int]]:
        streams = [self._stream(p, m * self.total_batches) for p, m in zip(self.pools, self.per_domain)]
        for b in range(self.total_batches):
            if b % self.num_replicas != self.rank:
                continue
            batch: list[int] = []
            for s, m in zip(streams, self.per_domain):
                batch += s[b * m:(b + 1) * m].tolist()
            yield batch
