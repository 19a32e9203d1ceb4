"""zoo.common.vision.knn against a float64 brute-force reference and hand-worked toys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import zoo.common.vision.knn as knn
from zoo.core.errors import ZooError
from zoo.common.vision.knn import benchmark_knn, kth_neighbor_sim, knn_vote, no_tf32, sim_to_sqdist


def unit(n: int, c: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, c, generator=g, dtype=torch.float64), dim=1).to(dtype)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return unit(60, 24, 0), unit(500, 24, 1)


def brute_kth(q: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    sims = q.double() @ bank.double().T
    return sims.sort(dim=1, descending=True).values[:, k - 1]


@pytest.mark.parametrize("k", [1, 5, 10])
def test_fp32_matches_float64_bruteforce(data, k) -> None:
    q, bank = data
    out = kth_neighbor_sim(q, bank, k)
    assert out.shape == (60,) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), brute_kth(q, bank, k), atol=1e-5, rtol=0)


def test_sharded_fp16_bank_equals_single_bank(data) -> None:
    q, bank = data
    bank16 = bank.half()
    shards = [bank16[:123], bank16[123:124], bank16[124:]]  # uneven, one single-row shard
    for k in (1, 10):
        single = kth_neighbor_sim(q, bank16.float(), k)
        torch.testing.assert_close(kth_neighbor_sim(q, shards, k), single, atol=1e-6, rtol=0)
        torch.testing.assert_close(single.double(), brute_kth(q, bank16, k), atol=1e-5, rtol=0)


def test_large_tensor_bank_split_internally(data, monkeypatch) -> None:
    q, bank = data
    whole = kth_neighbor_sim(q, bank, 10)
    monkeypatch.setattr(knn, "MAX_SHARD_ROWS", 64)  # 500 rows -> 8 shards
    assert len(knn._as_shards(bank, 24)) == 8
    torch.testing.assert_close(kth_neighbor_sim(q, bank, 10), whole, atol=1e-6, rtol=0)


def test_chunk_size_does_not_change_result(data) -> None:
    q, bank = data
    a = kth_neighbor_sim(q, bank, 5, chunk_size=7)
    b = kth_neighbor_sim(q, bank, 5, chunk_size=1024)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("precision", ["bf16_rerank", "fp16_rerank"])
@pytest.mark.parametrize("k", [1, 10])
def test_rerank_matches_fp32(data, precision, k) -> None:
    q, bank = data
    ref = kth_neighbor_sim(q, bank, k)
    out = kth_neighbor_sim(q, bank, k, precision=precision)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    shards = [bank[:200], bank[200:]]
    out = kth_neighbor_sim(q, shards, k, precision=precision, chunk_size=16)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_rerank_budget_subchunks(data, monkeypatch) -> None:
    q, bank = data
    ref = kth_neighbor_sim(q, bank, 10, precision="bf16_rerank")
    monkeypatch.setattr(knn, "RERANK_BUDGET", 1)  # one query row per gather
    torch.testing.assert_close(kth_neighbor_sim(q, bank, 10, precision="bf16_rerank"), ref, atol=1e-6, rtol=0)


def test_errors(data) -> None:
    q, bank = data
    with pytest.raises(ValueError, match=r"k=501 .*M=500"):
        kth_neighbor_sim(q, bank, 501)
    with pytest.raises(ValueError, match=r"k=0 .*M=500"):
        kth_neighbor_sim(q, bank, 0)
    with pytest.raises(ValueError, match=r"k=3 .*M=2"):
        kth_neighbor_sim(q, [bank[:1], bank[1:2]], 3)
    with pytest.raises(ValueError, match="bank dim 8 .* query dim 24"):
        kth_neighbor_sim(q, bank[:, :8], 1)
    with pytest.raises(ValueError, match="precision"):
        kth_neighbor_sim(q, bank, 1, precision="int8")  # type: ignore[arg-type]


def test_sim_to_sqdist() -> None:
    sims = torch.tensor([1.0, 0.5, 0.0, -1.0, 1.0000001])
    torch.testing.assert_close(sim_to_sqdist(sims), torch.tensor([0.0, 1.0, 2.0, 4.0, 0.0]))


def test_progress_bar_runs(data, capsys) -> None:
    q, bank = data
    kth_neighbor_sim(q, bank, 1, chunk_size=20, progress=True)
    assert "kNN search" in capsys.readouterr().err


def test_no_tf32_restores_cuda_flag() -> None:
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("torch < 2.9")
    old = matmul.fp32_precision
    with no_tf32(torch.device("cuda")):
        assert matmul.fp32_precision == "ieee"
    assert matmul.fp32_precision == old


# ---------------------------------------------------------------- knn_vote


def circle(deg: list[float]) -> torch.Tensor:
    rad = torch.tensor(deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1).float()


def test_knn_vote_toy() -> None:
    bank = circle([0, 10, 80, 90, 100, 180])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    q = circle([20])  # neighbours by angle gap: 10 (10), 0 (20), 80 (60), 90 (70), 100 (80), 180 (160)
    assert knn_vote(q, bank, labels, k=1, num_classes=3).tolist() == [0]
    assert knn_vote(q, bank, labels, k=3, num_classes=3).tolist() == [0]  # 0: 2 votes, 1: 1
    assert knn_vote(q, bank, labels, k=5, num_classes=3).tolist() == [1]  # 0: 2, 1: 3
    assert knn_vote(q, [bank[:3], bank[3:]], labels, k=5, num_classes=3).tolist() == [1]


def test_knn_vote_tie_rules() -> None:
    bank = circle([0, 5, 40, 45])
    labels = torch.tensor([1, 1, 0, 0])
    q = circle([10])  # 2-2 tie at k=4; label 1 is closer
    assert knn_vote(q, bank, labels, k=4, num_classes=2).tolist() == [0]  # smallest label
    # cos 10 + cos 5 = 1.981 > cos 30 + cos 35 = 1.685
    assert knn_vote(q, bank, labels, k=4, num_classes=2, weighting="similarity").tolist() == [1]


def test_knn_vote_label_checks() -> None:
    bank = circle([0, 90])
    with pytest.raises(ValueError, match="bank_labels must be"):
        knn_vote(circle([1]), bank, torch.tensor([0]), k=1, num_classes=2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        knn_vote(circle([1]), bank, torch.tensor([0, 2]), k=1, num_classes=2)


def test_benchmark_knn_cpu() -> None:
    r = benchmark_knn(64, 400, 16, k=5, device="cpu", precision="bf16_rerank", chunk_size=32)
    assert r["queries_per_s"] > 0 and r["device_name"] == "cpu" and r["diff_subset"] == 64
    assert r["max_abs_diff_vs_fp32"] < 1e-4


# ---------------------------------------------------------------- CPU top-k and the faiss backend


def test_topk_rows_hand_worked(monkeypatch) -> None:
    monkeypatch.setattr(knn, "TOPK_GROUP", 2)
    monkeypatch.setattr(knn, "TOPK_MIN_GROUPS", 1)
    # groups (0.1, 0.9) (0.8, 0.7) (0.2, 0.3), loose column 6 = 0.95; group maxima 0.9, 0.8, 0.3:
    # k=2 keeps groups 0 and 1, candidates 0.1 0.9 0.8 0.7 + 0.95 -> 0.95 (col 6), 0.9 (col 1)
    row = torch.tensor([[0.1, 0.9, 0.8, 0.7, 0.2, 0.3, 0.95]])
    vals, idx = knn.topk_rows(row, 2)
    torch.testing.assert_close(vals, torch.tensor([[0.95, 0.9]]))
    assert idx.tolist() == [[6, 1]]


@pytest.mark.parametrize("width", [2048, 2048 + 17])
@pytest.mark.parametrize("k", [1, 10, 16])
def test_topk_rows_equals_torch_topk(width, k) -> None:
    g = torch.Generator().manual_seed(width + k)
    sims = torch.randn(33, width, generator=g)
    ties = torch.randint(0, 6, (33, width), generator=g).float()  # many tied values
    for s in (sims, ties, sims[:, 3:]):  # the last one: rows are a strided slice
        vals, idx = knn.topk_rows(s, k)
        ref = s.topk(k, dim=1)
        assert idx.dtype == torch.int64 and vals.shape == idx.shape == (33, k)
        torch.testing.assert_close(vals, ref.values, atol=0, rtol=0)
        torch.testing.assert_close(s.gather(1, idx), vals, atol=0, rtol=0)  # indices point at the values
        assert all(len(set(r)) == k for r in idx.tolist())  # no column twice


@pytest.mark.parametrize("precision", ["fp32", "bf16_rerank"])
def test_torch_cpu_search_with_grouped_topk(data, monkeypatch, precision) -> None:
    q, bank = data
    monkeypatch.setattr(knn, "TOPK_GROUP", 4)  # 500 rows -> 125 groups, enough for k <= 31
    sims, idx = knn.knn_search(q, [bank[:123], bank[123:]], 10, chunk_size=16, precision=precision,
                               backend="torch")
    ref = (q.double() @ bank.double().T).topk(10, dim=1)
    torch.testing.assert_close(sims.double(), ref.values, atol=1e-4 if precision != "fp32" else 1e-5, rtol=0)
    assert torch.equal(idx, ref.indices)


def test_knn_search_contract(data) -> None:
    q, bank = data
    sims, idx = knn.knn_search(q, bank, 7, backend="torch")
    assert sims.shape == idx.shape == (60, 7) and sims.dtype == torch.float32 and idx.dtype == torch.int64
    assert bool((sims[:, :-1] >= sims[:, 1:]).all())  # sorted descending
    torch.testing.assert_close(sims[:, -1], kth_neighbor_sim(q, bank, 7, backend="torch"), atol=0, rtol=0)


def test_resolve_backend(monkeypatch) -> None:
    assert knn.resolve_backend("torch", "cpu") == "torch"
    assert knn.resolve_backend("auto", "cpu", "bf16_rerank") == "torch"
    assert knn.resolve_backend("auto", "cuda", "fp32") == "torch"  # no GPU needed: only the device type counts
    with pytest.raises(ValueError, match="backend must be"):
        knn.resolve_backend("numpy", "cpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CPU only"):
        knn.resolve_backend("faiss", "cuda")
    with pytest.raises(ValueError, match="fp32"):
        knn.resolve_backend("faiss", "cpu", "fp16_rerank")
    monkeypatch.setattr(knn, "faiss_available", lambda: False)
    assert knn.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ZooError, match="faiss is not installed"):
        knn.resolve_backend("faiss", "cpu")


def test_benchmark_without_faiss(monkeypatch) -> None:
    monkeypatch.setattr(knn, "faiss_available", lambda: False)
    r = knn.benchmark_knn_vs_faiss(32, 300, 8, 3, backends=("auto", "torch", "faiss"), target_seconds=None, repeats=1)
    assert r["faiss"] is None and set(r["queries_per_s"]) == {"auto", "torch"}
    assert r["backend_of"] == {"auto": "torch", "torch": "torch"} and "ratio_vs_faiss" not in r


def test_auto_picks_faiss_on_cpu() -> None:
    pytest.importorskip("faiss")
    assert knn.faiss_available()
    assert knn.resolve_backend("auto", "cpu") == "faiss"
    assert knn.resolve_backend("auto", torch.device("cpu"), "fp32") == "faiss"
    assert knn.resolve_backend("faiss", "cpu") == "faiss"


@pytest.mark.parametrize("k", [1, 10, 130])
def test_faiss_equals_torch(data, k) -> None:
    pytest.importorskip("faiss")
    q, bank = data
    banks = {"whole": bank, "sharded": [bank[:123], bank[123:124], bank[124:]],  # k > two of the shards
             "fp16 shards": [bank[:200].half(), bank[200:].half()], "strided": bank.T.contiguous().T}
    for name, b in banks.items():
        ts, ti = knn.knn_search(q, b, k, backend="torch")
        fs, fi = knn.knn_search(q, b, k, backend="faiss")
        assert fs.dtype == torch.float32 and fi.dtype == torch.int64 and fs.shape == fi.shape == (60, k), name
        torch.testing.assert_close(fs, ts, atol=1e-5, rtol=0, msg=name)
        assert torch.equal(fi, ti), name
        torch.testing.assert_close(kth_neighbor_sim(q, b, k, backend="faiss"), ts[:, -1], atol=1e-5, rtol=0)


def test_faiss_knn_vote_and_auto(data) -> None:
    pytest.importorskip("faiss")
    q, bank = data
    labels = torch.arange(500) % 7
    for w in ("majority", "similarity"):
        ref = knn_vote(q, bank, labels, k=9, num_classes=7, weighting=w, backend="torch")
        assert torch.equal(knn_vote(q, [bank[:50], bank[50:]], labels, k=9, num_classes=7, weighting=w), ref)
    torch.testing.assert_close(kth_neighbor_sim(q, bank, 5), kth_neighbor_sim(q, bank, 5, backend="faiss"),
                               atol=0, rtol=0)  # the default is faiss here


def test_faiss_gets_views_threads_and_blocks(data, monkeypatch) -> None:
    faiss = pytest.importorskip("faiss")
    q, bank = data
    calls = []
    real_knn = faiss.knn

    def spy_knn(xq, xb, k, metric):
        calls.append((xb.shape[0], xb.ctypes.data, faiss.omp_get_max_threads()))
        return real_knn(xq, xb, k, metric=metric)

    monkeypatch.setattr(faiss, "knn", spy_knn)
    monkeypatch.setattr(knn, "MAX_SHARD_ROWS", 64)
    old_torch = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = knn.knn_search(q, bank, 10, backend="torch")[0]
        torch.testing.assert_close(knn.knn_search(q, bank, 10, backend="faiss")[0], ref, atol=1e-5, rtol=0)
        assert calls == [(500, bank.data_ptr(), 1)]  # float32 bank: one call on a view, torch's thread count
        calls.clear()
        torch.testing.assert_close(knn.knn_search(q, bank.half(), 10, backend="faiss")[0],
                                   knn.knn_search(q, bank.half(), 10, backend="torch")[0], atol=1e-5, rtol=0)
        assert [c[0] for c in calls] == [64] * 7 + [52]  # fp16: converted in MAX_SHARD_ROWS blocks
    finally:
        torch.set_num_threads(old_torch)


def test_faiss_threads_restores() -> None:
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    with knn.faiss_threads(before + 1):
        assert faiss.omp_get_max_threads() == before + 1
    assert faiss.omp_get_max_threads() == before


def test_benchmark_knn_vs_faiss_small() -> None:
    pytest.importorskip("faiss")
    r = knn.benchmark_knn_vs_faiss(64, 2000, 16, 5, target_seconds=0.01, min_queries=32, repeats=1)
    assert 32 <= r["num_queries"] <= 64 and r["backend_of"] == {"auto": "faiss", "torch": "torch"}
    assert set(r["queries_per_s"]) == {"auto", "torch", "faiss_indexflatip"}
    assert all(v > 0 for v in r["ratio_vs_faiss"].values())
    assert r["max_abs_diff_vs_faiss"]["auto"] <= 1e-6 and r["max_abs_diff_vs_faiss"]["torch"] <= 1e-5
    with pytest.raises(ValueError, match="k <= M"):
        knn.benchmark_knn_vs_faiss(8, 4, 16, 5)
