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
- On the CPU the per-chunk top-k is :func:`topk_rows` (group maxima first, then a top-k over the
  few groups that can hold a neighbour); on a GPU it is ``torch.topk``.

Backends (``backend=`` of :func:`knn_search`, :func:`kth_neighbor_sim`, :func:`knn_vote`):

- ``"torch"``: the search above, on any device and in any precision.
- ``"faiss"``: faiss's exact brute-force inner-product search (``faiss.knn`` with
  ``METRIC_INNER_PRODUCT``, the search behind ``IndexFlatIP``) on the CPU in float32, run with
  ``torch.get_num_threads()`` OpenMP threads. Each bank part is searched as it is (float32 CPU
  tensors are handed over as numpy views, without a copy; other dtypes are converted in row
  blocks of :data:`MAX_SHARD_ROWS`) and the per-part top-k lists are merged as in the torch path.
  faiss is an optional dependency (``pip install faiss-cpu``, the ``faiss`` extra).
- ``"auto"`` (default): ``"faiss"`` when the search runs on the CPU, ``precision="fp32"`` and
  faiss is importable, else ``"torch"`` (:func:`resolve_backend`). GPU searches always use torch.

Both backends return the same similarities up to float32 rounding of the dot products (the
summation order differs; about 2e-7 on unit vectors) and the same neighbours except where two
bank rows are that close to tied.
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from zoo.core.errors import ZooError

#: A single bank tensor with more rows than this is processed as several row views. With the
#: default ``chunk_size`` of 1024 one similarity block is then at most 1024 x 65536 fp32 = 256 MiB.
MAX_SHARD_ROWS = 65_536

#: Upper bound on elements of the gathered (rows, candidates, C) block in the rerank step
#: (2**26 fp32 elements = 256 MiB); query chunks are split further to stay under it.
RERANK_BUDGET = 1 << 26

#: Columns per group in :func:`topk_rows`; rows narrower than ``TOPK_MIN_GROUPS * k`` groups of
#: this width fall back to ``torch.topk``.
TOPK_GROUP = 32
TOPK_MIN_GROUPS = 4

Precision = Literal["fp32", "bf16_rerank", "fp16_rerank"]
Backend = Literal["auto", "torch", "faiss"]
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


@functools.cache
def faiss_available() -> bool:
    """Whether the optional dependency faiss (``faiss-cpu``) can be imported (checked once)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(
    backend: Backend, device: str | torch.device, precision: Precision = "fp32"
) -> Literal["torch", "faiss"]:
    """The backend a search with these options runs on (see the module docstring).

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"faiss"``.
        device: where the search runs.
        precision: the search precision.

    Returns:
        ``"faiss"`` or ``"torch"``.

    Raises:
        ValueError: an unknown backend, or ``"faiss"`` with a non-CPU device or a non-fp32 precision.
        ZooError: ``backend="faiss"`` and faiss is not installed.
    """
    dev = torch.device(device)
    if backend == "auto":
        return "faiss" if dev.type == "cpu" and precision == "fp32" and faiss_available() else "torch"
    if backend == "torch":
        return "torch"
    if backend != "faiss":
        raise ValueError(f"backend must be one of 'auto', 'torch', 'faiss', got {backend!r}")
    if dev.type != "cpu":
        raise ValueError(f"backend='faiss' searches on the CPU only, got device {str(dev)!r}")
    if precision != "fp32":
        raise ValueError(f"backend='faiss' supports precision='fp32' only, got {precision!r}")
    if not faiss_available():
        raise ZooError("backend='faiss': faiss is not installed (pip install faiss-cpu, or the zoo's 'faiss' extra)")
    return "faiss"


def _as_parts(bank: Tensor | Sequence[Tensor], dim: int) -> list[Tensor]:
    """Validate the bank and return its non-empty (rows, C) parts as given."""
    parts = [bank] if isinstance(bank, Tensor) else list(bank)
    for i, part in enumerate(parts):
        if not isinstance(part, Tensor) or part.ndim != 2:
            shape = tuple(part.shape) if isinstance(part, Tensor) else type(part).__name__
            raise ValueError(f"bank shard {i} must be a 2-D (rows, C) tensor, got {shape}")
        if part.shape[1] != dim:
            raise ValueError(f"bank dim {part.shape[1]} (shard {i}) does not match query dim {dim}")
    return [p for p in parts if p.shape[0] > 0]


def _as_shards(bank: Tensor | Sequence[Tensor], dim: int) -> list[Tensor]:
    """Validate the bank and return it as a list of (rows, C) shards of at most MAX_SHARD_ROWS."""
    return [s for part in _as_parts(bank, dim) for s in part.split(MAX_SHARD_ROWS)]


def _check_inputs(queries: Tensor, bank: Tensor | Sequence[Tensor], k: int) -> tuple[list[Tensor], int]:
    """Validate queries, bank and k; returns the bank's non-empty parts and its total row count."""
    if queries.ndim != 2:
        raise ValueError(f"queries must be (Q, C), got shape {tuple(queries.shape)}")
    parts = _as_parts(bank, queries.shape[1])
    rows = sum(p.shape[0] for p in parts)
    if not 1 <= k <= rows:
        raise ValueError(f"k={k} must be between 1 and the bank size M={rows}")
    return parts, rows


def topk_rows(sims: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest values of each row and their column indices, like ``sims.topk(k, dim=1)``.

    Faster than ``torch.topk`` on the CPU for wide rows: each row is cut into groups of
    :data:`TOPK_GROUP` columns (the last ``M mod TOPK_GROUP`` columns stay loose), the k groups with
    the largest maxima are kept, and the top-k is taken over their ``k * TOPK_GROUP`` columns plus
    the loose ones. This is exact: if t is the k-th largest value of a row, every group holding a
    value > t has a maximum > t, and fewer than k values are > t, so the kept groups hold all of
    them, plus enough values equal to t. Tied values may come back with other (equally tied)
    column indices than ``torch.topk`` gives. Rows with fewer than ``TOPK_MIN_GROUPS * k`` groups
    use ``torch.topk`` directly.

    Args:
        sims: (n, M) scores whose rows are contiguous (a row slice of a larger block is fine).
        k: 1 <= k <= M.

    Returns:
        values (n, k) sorted descending, in ``sims.dtype``; indices (n, k) int64 into the M columns.
    """
    n, width = sims.shape
    g = TOPK_GROUP
    groups = width // g
    if groups < TOPK_MIN_GROUPS * k or sims.stride(1) != 1:
        top = sims.topk(k, dim=1)
        return top.values, top.indices
    main = groups * g
    grouped = sims[:, :main].unflatten(1, (groups, g))  # a view: (n, groups, g)
    gid = grouped.amax(dim=2).topk(k, dim=1).indices  # (n, k)
    cand = grouped.gather(1, gid[:, :, None].expand(n, k, g)).flatten(1)  # (n, k * g)
    cols = (gid[:, :, None] * g + torch.arange(g, device=sims.device)).flatten(1)
    if main < width:  # the loose columns are always candidates
        cand = torch.cat([cand, sims[:, main:]], dim=1)
        cols = torch.cat([cols, torch.arange(main, width, device=sims.device).expand(n, -1)], dim=1)
    top = cand.topk(k, dim=1)
    return top.values, cols.gather(1, top.indices)


def _gather_dot(q: Tensor, shard: Tensor, cand: Tensor) -> Tensor:
    """Exact float32 similarities of q (n, C) with shard rows cand (n, K'); returns (n, K')."""
    n, width = cand.shape
    step = max(1, RERANK_BUDGET // max(1, width * shard.shape[1]))
    out = []
    for lo in range(0, n, step):
        rows = shard[cand[lo : lo + step]].float()  # (n', K', C)
        out.append(torch.bmm(rows, q[lo : lo + step, :, None]).squeeze(-1))
    return torch.cat(out)


def _merge(
    best: Tensor | None, best_idx: Tensor | None, vals: Tensor, idx: Tensor | None, k: int
) -> tuple[Tensor, Tensor | None]:
    """Merge a running top-k (n, k') with new candidates (n, k''); keeps min(k, k' + k'') columns."""
    if best is None:
        return vals, idx
    merged = torch.cat([best, vals], dim=1).topk(min(k, best.shape[1] + vals.shape[1]), dim=1)
    if best_idx is None or idx is None:
        return merged.values, None
    return merged.values, torch.cat([best_idx, idx], dim=1).gather(1, merged.indices)


def _topk(sims: Tensor, k: int) -> tuple[Tensor, Tensor]:
    top = sims.topk(k, dim=1)
    return top.values, top.indices


@torch.no_grad()
def _search_torch(
    queries: Tensor,
    parts: list[Tensor],
    k: int,
    chunk_size: int,
    device: torch.device,
    precision: str,
    margin: int,
    progress: bool,
    with_indices: bool,
) -> tuple[Tensor, Tensor | None]:
    """The torch backend: running top-k over shards of at most MAX_SHARD_ROWS rows."""
    from tqdm.auto import tqdm

    shards = [s for part in parts for s in part.split(MAX_SHARD_ROWS)]
    cand_dtype = _CANDIDATE_DTYPES.get(precision)
    select = topk_rows if device.type == "cpu" else _topk
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
                    vals, idx = select(q @ s_main.T, min(k, rows))
                else:
                    _, cand = select(q_low[lo:hi] @ s_main.T, min(k + margin, rows))
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


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run faiss with ``n`` OpenMP threads inside the block, then restore its previous count."""
    import faiss

    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def _cpu_f32(x: Tensor) -> Tensor:
    """x as a contiguous float32 CPU tensor (the same storage when it already is one)."""
    return x.detach().to("cpu", torch.float32).contiguous()


@torch.no_grad()
def _search_faiss(
    queries: Tensor, parts: list[Tensor], k: int, progress: bool, with_indices: bool
) -> tuple[Tensor, Tensor | None]:
    """The faiss backend: ``faiss.knn`` (inner product) per bank part, top-k lists merged."""
    import faiss
    from tqdm.auto import tqdm

    # float32 contiguous CPU parts go over whole (numpy views); others are converted in row blocks
    pieces = [piece for part in parts for piece in
              ([part] if part.device.type == "cpu" and part.dtype == torch.float32 and part.is_contiguous()
               else part.split(MAX_SHARD_ROWS))]
    q = _cpu_f32(queries).numpy()
    best: Tensor | None = None
    best_idx: Tensor | None = None
    offset = 0
    bar = tqdm(total=len(pieces), desc="kNN search") if progress else contextlib.nullcontext()
    with faiss_threads(torch.get_num_threads()), bar:
        for piece in pieces:
            rows = piece.shape[0]
            sims, idx = faiss.knn(q, _cpu_f32(piece).numpy(), min(k, rows), metric=faiss.METRIC_INNER_PRODUCT)
            ids = torch.from_numpy(idx) if with_indices else None
            if ids is not None and offset:
                ids += offset
            best, best_idx = _merge(best, best_idx, torch.from_numpy(sims), ids, k)
            offset += rows
            if progress:
                bar.update(1)
    assert best is not None  # parts is non-empty because k >= 1 rows exist
    return best, best_idx


def _search(
    queries: Tensor,
    parts: list[Tensor],
    k: int,
    chunk_size: int,
    device: torch.device,
    precision: str,
    rerank_margin: int | None,
    progress: bool,
    with_indices: bool,
    backend: Backend,
) -> tuple[Tensor, Tensor | None]:
    """Check the options and run the chosen backend. Returns sims (Q, k) descending and indices or None."""
    if precision not in ("fp32", *_CANDIDATE_DTYPES):
        raise ValueError(f"precision must be one of 'fp32', 'bf16_rerank', 'fp16_rerank', got {precision!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    margin = max(32, 2 * k) if rerank_margin is None else rerank_margin
    if margin < 0:
        raise ValueError(f"rerank_margin must be >= 0, got {rerank_margin}")
    if resolve_backend(backend, device, precision) == "faiss":  # type: ignore[arg-type]
        return _search_faiss(queries, parts, k, progress, with_indices)
    return _search_torch(queries, parts, k, chunk_size, device, precision, margin, progress, with_indices)


def knn_search(
    queries: Tensor,
    bank: Tensor | Sequence[Tensor],
    k: int,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    progress: bool = False,
    rerank_margin: int | None = None,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """The k most similar bank rows of each query (exact k-NN on unit vectors).

    Args:
        queries: (Q, C) L2-normalised query rows, any float dtype.
        bank: (M, C) L2-normalised rows, or a sequence of (M_i, C) shards (row order = concatenation
            order; possibly fp16 in pinned CPU memory, streamed to ``device`` one at a time).
        k: number of neighbours, 1 <= k <= M.
        chunk_size: query rows per matmul (torch backend).
        device: where the search runs; default ``queries.device``.
        precision: ``"fp32"`` (exact, TF32 off) or ``"bf16_rerank"`` / ``"fp16_rerank"``
            (low-precision candidate search + exact float32 rerank; torch backend only).
        progress: show a tqdm bar ("kNN search") over shard x query-chunk steps (faiss: over parts).
        rerank_margin: extra candidates per query for the rerank paths; default ``max(32, 2k)``.
        backend: ``"auto"``, ``"torch"`` or ``"faiss"`` (see the module docstring).

    Returns:
        sims (Q, k) float32 sorted descending and indices (Q, k) int64 into the concatenated bank,
        both on ``device``.

    Raises:
        ValueError: k outside [1, M], a dimension mismatch, or a bad option.
        ZooError: ``backend="faiss"`` without faiss installed.
    """
    parts, _ = _check_inputs(queries, bank, k)
    dev = torch.device(device) if device is not None else queries.device
    sims, idx = _search(queries, parts, k, chunk_size, dev, precision, rerank_margin, progress, True, backend)
    assert idx is not None
    return sims, idx


def kth_neighbor_sim(
    queries: Tensor,
    bank: Tensor | Sequence[Tensor],
    k: int,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    progress: bool = False,
    rerank_margin: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """Similarity of each query to its k-th most similar bank row (exact k-NN on unit vectors).

    The squared L2 distance to the k-th neighbour is ``sim_to_sqdist(result)``, as used by the
    KNN score ``-d_k`` and by CSD (MODE, arXiv:2308.10239v1, Sec. III-C).

    Args:
        queries: (Q, C) L2-normalised query rows, any float dtype.
        bank: (M, C) L2-normalised rows, or a sequence of (M_i, C) shards (possibly fp16, pinned
            CPU memory) that are streamed to ``device`` one at a time.
        k: neighbour rank, 1 <= k <= M (k=1 is the nearest row).
        chunk_size: query rows per matmul (torch backend).
        device: where the search runs; default ``queries.device``.
        precision: ``"fp32"`` (exact, TF32 off) or ``"bf16_rerank"`` / ``"fp16_rerank"``
            (low-precision candidate search + exact float32 rerank; see the module docstring).
        progress: show a tqdm bar ("kNN search") over shard x query-chunk steps (faiss: over parts).
        rerank_margin: extra candidates per query for the rerank paths; default ``max(32, 2k)``.
        backend: ``"auto"`` (faiss on the CPU in fp32 when installed, else torch), ``"torch"`` or
            ``"faiss"``; see the module docstring.

    Returns:
        (Q,) float32 on ``queries.device``.

    Raises:
        ValueError: k outside [1, M], a dimension mismatch, or a bad option.
        ZooError: ``backend="faiss"`` without faiss installed.
    """
    parts, _ = _check_inputs(queries, bank, k)
    dev = torch.device(device) if device is not None else queries.device
    sims, _ = _search(queries, parts, k, chunk_size, dev, precision, rerank_margin, progress, False, backend)
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
    backend: Backend = "auto",
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
        backend: as in :func:`kth_neighbor_sim`.

    Returns:
        (Q,) int64 predicted labels on ``queries.device``.
    """
    parts, rows = _check_inputs(queries, bank, k)
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
    sims, idx = _search(queries, parts, k, chunk_size, dev, precision, None, False, True, backend)
    labels = bank_labels.to(sims.device, torch.long)[idx]  # (Q, k)
    weights = torch.ones_like(sims) if weighting == "majority" else sims
    votes = torch.zeros((queries.shape[0], num_classes), dtype=torch.float64, device=sims.device)
    votes.scatter_add_(1, labels, weights.double())
    return votes.argmax(dim=1).to(queries.device)  # argmax returns the first (smallest) maximal label


def _unit_data(num_queries: int, bank_rows: int, dim: int, device: torch.device, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator(device=device).manual_seed(seed)
    queries = torch.nn.functional.normalize(torch.randn(num_queries, dim, device=device, generator=gen), dim=1)
    bank = torch.nn.functional.normalize(torch.randn(bank_rows, dim, device=device, generator=gen), dim=1)
    return queries, bank


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
    backend: Backend = "auto",
) -> dict:
    """Time :func:`kth_neighbor_sim` on random unit vectors (1 warm-up run, median of 3).

    Returns a dict with the conditions (device name, torch version, sizes, the backend that ran),
    ``seconds`` (median), ``queries_per_s``, and ``max_abs_diff_vs_fp32`` on the first ``subset``
    queries (0 for fp32).
    """
    dev = torch.device(device)
    queries, bank = _unit_data(num_queries, bank_rows, dim, dev, seed)
    ran = resolve_backend(backend, dev, precision)

    def run() -> tuple[float, Tensor]:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        out = kth_neighbor_sim(queries, bank, k, chunk_size=chunk_size, device=dev, precision=precision, backend=ran)
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
        ref = kth_neighbor_sim(queries[:n_sub], bank, k, chunk_size=chunk_size, device=dev, precision="fp32",
                               backend="torch")
        diff = float((out[:n_sub] - ref).abs().max()) if n_sub else 0.0
    return {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "precision": precision,
        "backend": ran,
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


def benchmark_knn_vs_faiss(
    num_queries: int,
    bank_rows: int,
    dim: int,
    k: int,
    backends: Sequence[Backend] = ("auto", "torch"),
    target_seconds: float | None = 1.0,
    min_queries: int = 1024,
    repeats: int = 3,
    chunk_size: int = 1024,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the zoo's exact fp32 CPU search against faiss's ``IndexFlatIP`` on the same unit vectors.

    Everything runs in this process on the CPU with ``torch.get_num_threads()`` threads (faiss gets
    the same count). One round times :func:`knn_search` once per entry of ``backends`` and then
    ``IndexFlatIP.search``; rounds are repeated ``repeats`` times after one warm-up round and the
    best time of each is kept, so a neighbour process that slows one round does not decide the
    ratio. The query count is ``num_queries``, lowered (but not below ``min_queries``) so that one
    faiss search (torch without faiss) takes about ``target_seconds``, judged from one probe search
    of ``min_queries`` queries. Not much lower: faiss's queries/s drop for small query batches
    (its per-block overheads), which would flatter the zoo's torch backend.

    Args:
        num_queries: most queries per search.
        bank_rows: M, bank rows.
        dim: C, the vector width.
        k: neighbours per query.
        backends: zoo backends to time (``"faiss"`` is skipped when faiss is missing).
        target_seconds: wanted duration of one search; None times all ``num_queries``.
        min_queries: fewest queries per search (and the probe's size) when ``target_seconds`` is set.
        repeats: timed rounds.
        chunk_size: the torch backend's query chunk.
        seed: seed of the random data.

    Returns:
        A dict: ``threads``, ``faiss`` (version, or None when not installed), ``num_queries`` (used),
        ``bank_rows``, ``dim``, ``k``, ``repeats``; ``queries_per_s`` per timed name (the backends and
        ``"faiss_indexflatip"``); ``backend_of`` (what each zoo backend ran); and, when faiss is installed,
        ``ratio_vs_faiss`` (zoo queries/s over faiss queries/s) and ``max_abs_diff_vs_faiss`` (largest
        |difference| of the (Q, k) similarity lists) per zoo backend.
    """
    if min(num_queries, dim, k, repeats, min_queries) < 1 or bank_rows < k:
        raise ValueError(f"need Q, C, k, repeats, min_queries >= 1 and k <= M, got Q={num_queries}, M={bank_rows}, "
                         f"C={dim}, k={k}, repeats={repeats}, min_queries={min_queries}")
    cpu = torch.device("cpu")
    threads = torch.get_num_threads()
    queries, bank = _unit_data(num_queries, bank_rows, dim, cpu, seed)
    have_faiss = faiss_available()
    names = [b for b in dict.fromkeys(backends) if have_faiss or b != "faiss"]
    index = None
    faiss_version = None
    if have_faiss:
        import faiss

        faiss_version = faiss.__version__
        index = faiss.IndexFlatIP(dim)
        index.add(bank.numpy())

    def zoo(b: str, q: Tensor) -> Tensor:
        return knn_search(q, bank, k, chunk_size=chunk_size, device=cpu, backend=b)[0]

    def ref(q: Tensor) -> Tensor:
        with faiss_threads(threads):
            return torch.from_numpy(index.search(q.numpy(), k)[0])

    n = num_queries
    if target_seconds is not None:  # one probe search of min_queries queries sets the count
        n0 = min(num_queries, min_queries)
        t0 = time.perf_counter()
        ref(queries[:n0]) if index is not None else zoo("torch", queries[:n0])
        dt = time.perf_counter() - t0
        n = min(num_queries, max(n0, int(n0 * target_seconds / max(dt, 1e-9))))
    q = queries[:n]

    runs = {b: (lambda b=b: zoo(b, q)) for b in names}
    if index is not None:
        runs["faiss_indexflatip"] = lambda: ref(q)
    best = {name: math.inf for name in runs}
    out: dict[str, Tensor] = {}
    for rnd in range(repeats + 1):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            out[name] = fn()
            if rnd:  # round 0 is the warm-up
                best[name] = min(best[name], time.perf_counter() - t0)
    result: dict[str, Any] = {
        "threads": threads, "faiss": faiss_version, "num_queries": n, "bank_rows": bank_rows, "dim": dim,
        "k": k, "repeats": repeats, "queries_per_s": {name: n / t for name, t in best.items()},
        "backend_of": {b: resolve_backend(b, cpu) for b in names},
    }
    if index is not None:
        fq = result["queries_per_s"]["faiss_indexflatip"]
        result["ratio_vs_faiss"] = {b: result["queries_per_s"][b] / fq for b in names}
        result["max_abs_diff_vs_faiss"] = {b: float((out[b] - out["faiss_indexflatip"]).abs().max()) for b in names}
    return result
