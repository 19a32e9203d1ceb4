"""zoo.common.vision.knn against a float64 brute-force reference and hand-worked toys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import zoo.common.vision.knn as knn
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
