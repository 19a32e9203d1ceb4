"""Exact k-nearest-neighbour search on unit vectors: chunked, sharded and streaming.

Used by the KNN (Sun et al.) and CSD (MODE) scores, and by ``knn_vote`` for the ID accuracy of
models without a trained classifier head (MODE, arXiv:2308.10239v1, Sec. III-C; Sun et al.,
ICML 2022).

Queries and bank rows are assumed L2-normalised by the caller, so the dot product is the cosine
similarity and the squared L2 distance is ``2 - 2 * sim`` (:func:`sim_to_sqdist`).

How it runs:

- The bank is one tensor or a sequence of shards (e.g. fp16 tensors in pinned CPU memory, for a
  bank larger than GPU memory). A tensor with more than :data:`MAX_SHARD_ROWS` rows is split into
  row views. Each shard is copied to ``device`` once, in its stored dtype.
- For every shard, query chunks of ``chunk_size`` rows go through one matmul and ``torch.topk``;
  a running top-k per query is merged across shards (concatenate, re-take top-k).
- ``precision="fp32"``: float32 matmul with TF32 switched off for the duration (restored after).
- ``precision="bf16_rerank"`` / ``"fp16_rerank"``: a bf16 / fp16 matmul picks the top
  ``k + rerank_margin`` candidates per query in each shard, then their similarities are
  recomputed exactly in float32 and the top-k is taken from those. The result equals the fp32
  search whenever every true top-k neighbour is among its shard's candidates; the default margin
  ``max(32, 2k)`` makes a miss unlikely, but it is not a proof. fp16 keeps 3 more mantissa bits
  than bf16 (same speed on tensor cores), so its candidate list is tighter; unit vectors cannot
  overflow it.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

#: A single bank tensor with more rows than this is processed as several row views. With the
#: default ``chunk_size`` of 1024 one similarity block is then at most 1024 x 65536 fp32 = 256 MiB.
MAX_SHARD_ROWS = 65_536

#: Upper bound on elements of the gathered (rows, candidates, C) block in the rerank step
#: (2**26 fp32 elements = 256 MiB); query chunks are split further to stay under it.
RERANK_BUDGET = 1 << 26

Precision = Literal["fp32", "bf16_rerank", "fp16_rerank"]
_CANDIDATE_DTYPES = {"bf16_rerank": torch.bfloat16, "fp16_rerank": torch.float16}


def sim_to_sqdist(sim: Tensor) -> Tensor:
    """Squared L2 distance between unit vectors from their cosine similarity: ``2 - 2 * sim``.

    The result is clamped to [0, 4], which only removes rounding error for unit vectors.
    """
    return (2.0 - 2.0 * sim).clamp(0.0, 4.0)


@contextlib.contextmanager
def no_tf32(device: torch.device) -> Iterator[None]:
    """Run CUDA float32 matmuls in full IEEE precision inside the block, then restore the setting.

    A no-op for non-CUDA devices. Uses the ``fp32_precision`` API where torch has it (2.9+),
    because mixing it with the legacy ``allow_tf32`` flag makes later reads of the legacy flags
    raise; older torch uses ``allow_tf32``.
    """
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        old = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = old
    else:  # pragma: no cover - torch < 2.9
        old = matmul.allow_tf32
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = old


def _as_shards(bank: Tensor | Sequence[Tensor], dim: int) -> list[Tensor]:
    """Validate the bank and return it as a list of (rows, C) shards of at most MAX_SHARD_ROWS."""
    parts = [bank] if isinstance(bank, Tensor) else list(bank)
    shards: list[Tensor] = []
    for i, part in enumerate(parts):
        if not isinstance(part, Tensor) or part.ndim != 2:
            shape = tuple(part.shape) if isinstance(part, Tensor) else type(part).__name__
            raise ValueError(f"bank shard {i} must be a 2-D (rows, C) tensor, got {shape}")
        if part.shape[1] != dim:
            raise ValueError(f"bank dim {part.shape[1]} (shard {i}) does not match query dim {dim}")
        shards.extend(s for s in part.split(MAX_SHARD_ROWS) if s.shape[0] > 0)
    return shards


def _check_inputs(queries: Tensor, bank: Tensor | Sequence[Tensor], k: int) -> tuple[list[Tensor], int]:
    if queries.ndim != 2:
        raise ValueError(f"queries must be (Q, C), got shape {tuple(queries.shape)}")
    shards = _as_shards(bank, queries.shape[1])
    rows = sum(s.shape[0] for s in shards)
    if not 1 <= k <= rows:
        raise ValueError(f"k={k} must be between 1 and the bank size M={rows}")
    return shards, rows


def _gather_dot(q: Tensor, shard: Tensor, cand: Tensor) -> Tensor:
    """Exact float32 similarities of q (n, C) with shard rows cand (n, K'); returns (n, K')."""
    n, width = cand.shape
    step = max(1, RERANK_BUDGET // max(1, width * shard.shape[1]))
    out = []
    for lo in range(0, n, step):
        rows = shard[cand[lo : lo + step]].float()  # (n', K', C)
        out.append(torch.bmm(rows, q[lo : lo + step, :, None]).squeeze(-1))
    return torch.cat(out)


@torch.no_grad()
def _search(
    queries: Tensor,
    shards: list[Tensor],
    k: int,
    chunk_size: int,
    device: torch.device,
    precision: str,
    rerank_margin: int | None,
    progress: bool,
    with_indices: bool,
) -> tuple[Tensor, Tensor | None]:
    """Running top-k over shards. Returns sims (Q, k) sorted descending and, optionally, indices."""
    if precision not in ("fp32", *_CANDIDATE_DTYPES):
        raise ValueError(f"precision must be one of 'fp32', 'bf16_rerank', 'fp16_rerank', got {precision!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    margin = max(32, 2 * k) if rerank_margin is None else rerank_margin
    if margin < 0:
        raise ValueError(f"rerank_margin must be >= 0, got {rerank_margin}")
    cand_dtype = _CANDIDATE_DTYPES.get(precision)

    from tqdm.auto import tqdm

    n_q = queries.shape[0]
    q_all = queries.to(device=device, dtype=torch.float32)
    q_low = q_all.to(cand_dtype) if cand_dtype is not None else None
    best = torch.full((n_q, k), -math.inf, device=device)
    best_idx = torch.zeros((n_q, k), dtype=torch.long, device=device) if with_indices else None
    n_chunks = math.ceil(n_q / chunk_size)
    offset = 0
    with no_tf32(device), tqdm(total=len(shards) * n_chunks, desc="kNN search", disable=not progress) as bar:
        for shard in shards:
            # copy in the stored dtype (fp16 moves half); async only host -> GPU, which is safe
            s = shard.to(device, non_blocking=device.type == "cuda")
            rows = s.shape[0]
            s_main = s.to(cand_dtype) if cand_dtype is not None else s.float()
            for lo in range(0, n_q, chunk_size):
                hi = min(lo + chunk_size, n_q)
                q = q_all[lo:hi]
                if cand_dtype is None:
                    top = (q @ s_main.T).topk(min(k, rows), dim=1)
                    vals, idx = top.values, top.indices
                else:
                    cand = (q_low[lo:hi] @ s_main.T).topk(min(k + margin, rows), dim=1).indices
                    exact = _gather_dot(q, s, cand)
                    top = exact.topk(min(k, cand.shape[1]), dim=1)
                    vals, idx = top.values, cand.gather(1, top.indices)
                merged = torch.cat([best[lo:hi], vals], dim=1).topk(k, dim=1)
                best[lo:hi] = merged.values
                if best_idx is not None:
                    all_idx = torch.cat([best_idx[lo:hi], idx + offset], dim=1)
                    best_idx[lo:hi] = all_idx.gather(1, merged.indices)
                bar.update(1)
            offset += rows
    return best, best_idx


def kth_neighbor_sim(
    queries: Tensor,
    bank: Tensor | Sequence[Tensor],
    k: int,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    progress: bool = False,
    rerank_margin: int | None = None,
) -> Tensor:
    """Similarity of each query to its k-th most similar bank row (exact k-NN on unit vectors).

    The squared L2 distance to the k-th neighbour is ``sim_to_sqdist(result)``, as used by the
    KNN score ``-d_k`` and by CSD (MODE, arXiv:2308.10239v1, Sec. III-C).

    Args:
        queries: (Q, C) L2-normalised query rows, any float dtype.
        bank: (M, C) L2-normalised rows, or a sequence of (M_i, C) shards (possibly fp16, pinned
            CPU memory) that are streamed to ``device`` one at a time.
        k: neighbour rank, 1 <= k <= M (k=1 is the nearest row).
        chunk_size: query rows per matmul.
        device: where the matmuls run; default ``queries.device``.
        precision: ``"fp32"`` (exact, TF32 off) or ``"bf16_rerank"`` / ``"fp16_rerank"``
            (low-precision candidate search + exact float32 rerank; see the module docstring).
        progress: show a tqdm bar ("kNN search") over shard x query-chunk steps.
        rerank_margin: extra candidates per query for the rerank paths; default ``max(32, 2k)``.

    Returns:
        (Q,) float32 on ``queries.device``.

    Raises:
        ValueError: k outside [1, M], a dimension mismatch, or a bad option.
    """
    shards, _ = _check_inputs(queries, bank, k)
    dev = torch.device(device) if device is not None else queries.device
    sims, _ = _search(queries, shards, k, chunk_size, dev, precision, rerank_margin, progress, False)
    return sims[:, k - 1].to(queries.device)


def knn_vote(
    queries: Tensor,
    bank: Tensor | Sequence[Tensor],
    bank_labels: Tensor,
    k: int,
    num_classes: int,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
    weighting: Literal["majority", "similarity"] = "majority",
    precision: Precision = "fp32",
) -> Tensor:
    """Predicted label of each query by a vote of its k nearest bank rows ("kNN-vote" ID accuracy).

    ``"majority"``: one vote per neighbour; ties go to the smallest label. ``"similarity"``: each
    neighbour votes with its cosine similarity (ties, now unlikely, also go to the smallest label).

    Args:
        queries: (Q, C) L2-normalised rows.
        bank: (M, C) L2-normalised rows, or a sequence of shards (row order = concatenation order).
        bank_labels: (M,) integer labels in [0, num_classes), aligned with the bank rows.
        k: number of neighbours, 1 <= k <= M.
        num_classes: number of classes.
        chunk_size: query rows per matmul.
        device: where the search runs; default ``queries.device``.
        weighting: ``"majority"`` or ``"similarity"``.
        precision: as in :func:`kth_neighbor_sim`.

    Returns:
        (Q,) int64 predicted labels on ``queries.device``.
    """
    shards, rows = _check_inputs(queries, bank, k)
    if bank_labels.ndim != 1 or bank_labels.shape[0] != rows:
        raise ValueError(f"bank_labels must be ({rows},) to match the bank, got {tuple(bank_labels.shape)}")
    if bank_labels.dtype.is_floating_point or bank_labels.dtype == torch.bool:
        raise ValueError(f"bank_labels must be an integer tensor, got {bank_labels.dtype}")
    if rows and (int(bank_labels.min()) < 0 or int(bank_labels.max()) >= num_classes):
        lo, hi = int(bank_labels.min()), int(bank_labels.max())
        raise ValueError(f"bank_labels must lie in [0, {num_classes}), got [{lo}, {hi}]")
    if weighting not in ("majority", "similarity"):
        raise ValueError(f"weighting must be 'majority' or 'similarity', got {weighting!r}")
    dev = torch.device(device) if device is not None else queries.device
    sims, idx = _search(queries, shards, k, chunk_size, dev, precision, None, False, True)
    labels = bank_labels.to(dev, torch.long)[idx]  # (Q, k)
    weights = torch.ones_like(sims) if weighting == "majority" else sims
    votes = torch.zeros((queries.shape[0], num_classes), dtype=torch.float64, device=dev)
    votes.scatter_add_(1, labels, weights.double())
    return votes.argmax(dim=1).to(queries.device)  # argmax returns the first (smallest) maximal label


def benchmark_knn(
    num_queries: int,
    bank_rows: int,
    dim: int,
    k: int,
    device: str | torch.device = "cpu",
    precision: Precision = "fp32",
    chunk_size: int = 1024,
    subset: int = 256,
    seed: int = 0,
) -> dict:
    """Time :func:`kth_neighbor_sim` on random unit vectors (1 warm-up run, median of 3).

    Returns a dict with the conditions (device name, torch version, sizes), ``seconds`` (median),
    ``queries_per_s``, and ``max_abs_diff_vs_fp32`` on the first ``subset`` queries (0 for fp32).
    """
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)
    queries = torch.nn.functional.normalize(torch.randn(num_queries, dim, device=dev, generator=gen), dim=1)
    bank = torch.nn.functional.normalize(torch.randn(bank_rows, dim, device=dev, generator=gen), dim=1)

    def run() -> tuple[float, Tensor]:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        out = kth_neighbor_sim(queries, bank, k, chunk_size=chunk_size, device=dev, precision=precision)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0, out

    run()
    times, out = [], None
    for _ in range(3):
        dt, out = run()
        times.append(dt)
    seconds = statistics.median(times)
    n_sub = min(subset, num_queries)
    if precision == "fp32":
        diff = 0.0
    else:
        ref = kth_neighbor_sim(queries[:n_sub], bank, k, chunk_size=chunk_size, device=dev, precision="fp32")
        diff = float((out[:n_sub] - ref).abs().max()) if n_sub else 0.0
    return {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "precision": precision,
        "num_queries": num_queries,
        "bank_rows": bank_rows,
        "dim": dim,
        "k": k,
        "chunk_size": chunk_size,
        "seconds": seconds,
        "queries_per_s": num_queries / seconds if seconds > 0 else float("inf"),
        "max_abs_diff_vs_fp32": diff,
        "diff_subset": n_sub,
    }
