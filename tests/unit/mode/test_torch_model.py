"""MODE torch model: regions, ALPA similarity and loss, SupCon, CSD/KNN scores, MODEModel.

Ref: arXiv:2308.10239v1.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from zoo.core.errors import ZooError
from zoo.mode.torch_model import (
    ALPAAttention,
    MODEModel,
    alpa_loss,
    csd_score,
    knn_score,
    region_features,
    supcon_loss,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.set_num_threads(2)
    torch.manual_seed(0)


# --------------------------------------------------------------------------- region_features


def test_regions_4x4_by_hand():
    ramp = torch.arange(16.0).reshape(4, 4)  # x[r, c] = 4r + c
    delta = torch.zeros(4, 4)
    delta[0, 0] = 16.0
    fmap = torch.stack([ramp, delta])[None]  # (1, 2, 4, 4)
    z = region_features(fmap)
    assert z.shape == (1, 6, 2)
    # ramp: q00 = mean(0,1,4,5), q01 = mean(2,3,6,7), q10 = mean(8,9,12,13),
    # q11 = mean(10,11,14,15),
    # global = 7.5, centre = mean(5,6,9,10) = 7.5.
    assert_close(z[0, :, 0], torch.tensor([2.5, 4.5, 10.5, 12.5, 7.5, 7.5]))
    # delta of 16 at (0, 0): only q00 sees it (16/4); global 16/16; centre [1:3, 1:3] misses it.
    assert_close(z[0, :, 1], torch.tensor([4.0, 0.0, 0.0, 0.0, 1.0, 0.0]))


def test_regions_global_is_mean_of_quadrants_on_4x4():
    z = region_features(torch.rand(3, 5, 4, 4))
    assert_close(z[:, 4], z[:, :4].mean(dim=1))


def test_regions_7x7_follow_documented_rule():
    ramp = torch.arange(49.0).reshape(7, 7)  # x[r, c] = 7r + c
    delta = torch.zeros(7, 7)
    delta[3, 3] = 16.0
    z = region_features(torch.stack([ramp, delta])[None])
    # Adaptive 2x2 windows are rows/cols [0:4] and [3:7] (mean index 1.5 and 4.5):
    # q00 = 7*1.5+1.5 = 12, q01 = 7*1.5+4.5 = 15, q10 = 7*4.5+1.5 = 33, q11 = 7*4.5+4.5 = 36.
    # global = 7*3+3 = 24. Centre rows/cols [7//4 : 7//4+ceil(3.5)] = [1:5] (mean 2.5):
    # 7*2.5+2.5 = 20.
    assert_close(z[0, :, 0], torch.tensor([12.0, 15.0, 33.0, 36.0, 24.0, 20.0]))
    # (3, 3) lies in all four overlapping 4x4 windows and in the 4x4 centre: 16/16 = 1 each.
    assert_close(z[0, :, 1], torch.tensor([1.0, 1.0, 1.0, 1.0, 16.0 / 49.0, 1.0]))


def test_regions_batch_one_keeps_batch_dim():
    assert region_features(torch.rand(1, 1, 4, 4)).shape == (1, 6, 1)


# --------------------------------------------------------------------------- ALPA similarity


def _reference_similarity(alpa: ALPAAttention, tokens: torch.Tensor, agg: str) -> torch.Tensor:
    """Pair-by-pair loops of the spec formula, float64."""
    alpa = alpa.double()
    x = tokens.double()
    q, k, v = alpa.phi_q(x), alpa.phi_k(x), alpa.phi_v(x)
    n = x.shape[0]
    t = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            a = torch.softmax(q[i] @ k[j].T / math.sqrt(alpa.dim), dim=-1)  # (P, P)
            cos = F.cosine_similarity(v[i], a @ v[j], dim=-1)  # (P,)
            t[i, j] = {"mean": cos.mean(), "max": cos.max(), "sum": cos.sum(),
                       "logsumexp": torch.logsumexp(cos, 0)}[agg]
    return t + t.T


def _tokens(n: int = 5, p: int = 4, c: int = 12) -> torch.Tensor:
    return torch.rand(n, p, c)  # non-negative, like post-ReLU layer4 tokens


def test_attention_rows_sum_to_one():
    alpa = ALPAAttention(12, 6)
    attn = alpa.attention(_tokens())
    assert attn.shape == (5, 5, 4, 4)
    assert_close(attn.sum(dim=-1), torch.ones(5, 5, 4))


@pytest.mark.parametrize("agg", ["mean", "max", "sum", "logsumexp"])
def test_similarity_matches_pairwise_reference(agg):
    alpa = ALPAAttention(12, 6)
    tokens = _tokens()
    sim = alpa(tokens, agg=agg)
    assert sim.shape == (5, 5)
    assert_close(sim.double(), _reference_similarity(alpa, tokens, agg), atol=1e-5, rtol=1e-5)


def test_similarity_symmetric_and_bounded():
    alpa = ALPAAttention(12, 6)
    sim = alpa(torch.randn(6, 4, 12))
    assert torch.equal(sim, sim.T)
    assert sim.min() >= -2.0 and sim.max() <= 2.0


@pytest.mark.parametrize("chunk", [1, 2, 3, 100])
def test_chunked_equals_unchunked(chunk):
    alpa = ALPAAttention(12, 6)
    tokens = _tokens(n=7)
    assert_close(alpa(tokens, chunk_size=chunk), alpa(tokens))


def test_identical_positive_tokens_give_similarity_two():
    # All V tokens equal v: every aligned value A_ij V_j is a convex combination of v, i.e. v,
    # so every cosine is 1, t_ij = 1 and s_ij = 2.
    alpa = ALPAAttention(12, 6)
    tokens = torch.rand(12).expand(4, 3, 12).contiguous()
    assert_close(alpa(tokens), torch.full((4, 4), 2.0))


def test_alpa_param_count_at_paper_size():
    # 3 projectors x (512*512 + 512*80) = 3 x 303,104 = 909,312 (spec, Architecture).
    assert sum(p.numel() for p in ALPAAttention(512, 80).parameters()) == 909_312


def test_bad_aggregation_raises():
    with pytest.raises(ValueError, match="agg"):
        ALPAAttention(4, 2)(torch.rand(2, 3, 4), agg="median")


# --------------------------------------------------------------------------- ALPA loss


def test_alpa_loss_equal_similarities():
    # Off-diagonal s all equal: each anchor has 1 positive among 3 others -> -log(1/3) = log 3.
    # The diagonal (9.0) must be masked out of the denominator.
    sim = torch.full((4, 4), 0.3)
    sim.fill_diagonal_(9.0)
    assert_close(alpa_loss(sim, torch.tensor([0, 0, 1, 1])), torch.tensor(math.log(3.0)))


def test_alpa_loss_anchor_without_positive_counts_in_mean():
    # Labels [0, 0, 1, 2]: anchors 0, 1 give log 3 each, anchors 2, 3 have no positive and give 0,
    # but the mean divides by N = 4: (2 log 3) / 4.
    sim = torch.full((4, 4), 0.3)
    assert_close(alpa_loss(sim, torch.tensor([0, 0, 1, 2])), torch.tensor(math.log(3.0) / 2))


def test_alpa_loss_unequal_similarities_by_hand():
    # N = 3, labels [0, 0, 1], 1/tau = 2, s01 = 1.0, s02 = 0.5, s12 = -0.5.
    # anchor 0: logits to 1, 2 = 2, 1  -> -log(e^2 / (e^2 + e^1)) = log(1 + e^-1) = 0.3132617
    # anchor 1: logits to 0, 2 = 2, -1 -> -log(e^2 / (e^2 + e^-1)) = log(1 + e^-3) = 0.0485874
    # anchor 2: no positive -> 0.
    # L = (0.3132617 + 0.0485874) / 3 = 0.1206164
    sim = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, -0.5], [0.5, -0.5, 0.0]])
    expected = (math.log1p(math.exp(-1)) + math.log1p(math.exp(-3))) / 3
    assert abs(expected - 0.1206164) < 1e-6
    assert_close(alpa_loss(sim, torch.tensor([0, 0, 1]), inv_temperature=2.0),
                 torch.tensor(expected))


def test_alpa_loss_two_positives_average():
    # N = 3, all one class, 1/tau = 1, s01 = 1, s02 = 0, s12 = 0.
    # anchor 0: logits 1, 0: -(1/2)[log(e/(e+1)) + log(1/(e+1))] = log(1+e) - 1/2
    # anchor 1: same by symmetry; anchor 2: logits 0, 0: -(1/2)[2 log(1/2)] = log 2.
    sim = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = (2 * (math.log(1 + math.e) - 0.5) + math.log(2)) / 3
    assert_close(alpa_loss(sim, torch.zeros(3, dtype=torch.long), inv_temperature=1.0),
                 torch.tensor(expected))


def test_alpa_loss_stable_and_differentiable():
    sim = (torch.rand(6, 6) * 4 - 2).requires_grad_()
    loss = alpa_loss(sim, torch.tensor([0, 0, 1, 1, 2, 3]), inv_temperature=1000.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(sim.grad).all()
    assert sim.grad.diagonal().abs().sum() == 0  # self-pairs take no part


def test_alpa_loss_single_sample_is_zero():
    assert alpa_loss(torch.zeros(1, 1), torch.tensor([0])).item() == 0.0


# --------------------------------------------------------------------------- SupCon loss


def test_supcon_by_hand():
    # z0 = (1,0), z1 = (0,1), z2 = (-1,0); labels [0, 0, 1]; tau = tau_b = 1 (factor 1).
    # anchor 0: sims to 1, 2 = 0, -1 -> log(1 + e^-1) = 0.3132617
    # anchor 1: sims to 0, 2 = 0, 0  -> log 2 = 0.6931472
    # anchor 2: no positive -> excluded from the SupCon mean (which is over 2 anchors).
    # L = (0.3132617 + 0.6931472) / 2 = 0.5032044
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    assert_close(supcon_loss(z, y, temperature=1.0, base_temperature=1.0),
                 torch.tensor(0.5032044))
    # tau = 0.5, tau_b = 0.07: anchor 0: log(1 + e^-2) = 0.1269280, anchor 1: log 2;
    # mean 0.4100376, times 0.5 / 0.07 = 2.9288400.
    assert_close(supcon_loss(z, y, temperature=0.5, base_temperature=0.07),
                 torch.tensor(2.9288400))


def test_supcon_normalises_features():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    assert_close(supcon_loss(z * torch.tensor([[3.0], [0.5], [7.0]]), y), supcon_loss(z, y))


def test_supcon_two_views_default_temperature():
    # Two views per image: every anchor has exactly its other view as positive.
    feats = F.normalize(torch.randn(8, 5), dim=1).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loss = supcon_loss(feats, y)
    logits = feats @ feats.T / 0.1
    logits.fill_diagonal_(float("-inf"))
    partner = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    ref = -(logits.log_softmax(dim=1)[torch.arange(8), partner]).mean() * (0.1 / 0.07)
    assert_close(loss, ref)
    loss.backward()
    assert torch.isfinite(feats.grad).all()


def _supcontrast_reference(features: torch.Tensor, labels: torch.Tensor, temperature: float,
                           base_temperature: float = 0.07) -> torch.Tensor:
    """SupContrast's SupConLoss (Khosla et al. 2020, arXiv:2004.11362v5), ``contrast_mode="all"``,
    transcribed step by step: features (B, n_views, D) unit rows, labels (B,)."""
    bsz, n_views = features.shape[:2]
    mask = torch.eq(labels[:, None], labels[None, :]).to(features.dtype)
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    mask = mask.repeat(n_views, n_views)
    logits_mask = torch.ones_like(mask).scatter(1, torch.arange(bsz * n_views)[:, None], 0)
    mask = mask * logits_mask
    log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True))
    pos = mask.sum(1)
    pos = torch.where(pos < 1e-6, torch.ones_like(pos), pos)
    mean_log_prob_pos = (mask * log_prob).sum(1) / pos
    return (-(temperature / base_temperature) * mean_log_prob_pos).view(n_views, bsz).mean()


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_loss_and_grads_equal_the_supcontrast_reference(temperature):
    """The control behind the model card's SupCon-collapse note: value and gradient agree with the
    reference formulation in float64, on a batch with repeated classes and two views. Gradients are
    taken w.r.t. the raw head outputs, which both sides L2-normalise first (the zoo's SupCon head
    normalises, as SupContrast's does)."""
    y = torch.tensor([0, 1, 2, 0, 1, 3])
    raw = torch.randn(6, 2, 16, dtype=torch.float64)
    a = raw.clone().requires_grad_()
    ref = _supcontrast_reference(F.normalize(a, dim=-1), y, temperature)
    ref.backward()
    b = raw.clone().requires_grad_()
    z = F.normalize(b, dim=-1)
    ours = supcon_loss(torch.cat([z[:, 0], z[:, 1]]), torch.cat([y, y]), temperature=temperature)
    ours.backward()
    assert ours.dtype == torch.float64
    assert_close(ours, ref, atol=1e-12, rtol=0)
    assert_close(b.grad, a.grad, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- bf16 autocast


def test_losses_run_in_fp32_under_bf16_autocast():
    """Under CPU bf16 autocast (what ``bf16-mixed`` does on a GPU) the ALPA projections, attention,
    similarity and loss and the SupCon matrix product give their fp32 values, also when the tokens
    and embeddings arrive in bf16 from an autocast backbone."""
    alpa = ALPAAttention(32, 8)
    tokens = torch.rand(8, 16, 32)  # N = 2B = 8 views, 4x4 map, C = 32
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    feats = torch.randn(8, 16)
    sim32 = alpa(tokens, chunk_size=3)
    ref = {"sim": sim32, "attn": alpa.attention(tokens), "alpa": alpa_loss(sim32, y), "supcon": supcon_loss(feats, y)}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sim = alpa(tokens, chunk_size=3)
        got = {"sim": sim, "attn": alpa.attention(tokens), "alpa": alpa_loss(sim, y), "supcon": supcon_loss(feats, y)}
        # the control: a bare projection or matrix product in the same region does run in bf16
        assert alpa.phi_q(tokens).dtype == torch.bfloat16
        z = F.normalize(feats, dim=1)
        assert (z @ z.T).dtype == torch.bfloat16
        bf_tokens, bf_feats = tokens.bfloat16(), feats.bfloat16()
        sim_bf_in = alpa(bf_tokens)
        alpa_bf_in, supcon_bf_in = alpa_loss(sim_bf_in, y), supcon_loss(bf_feats, y)
    for name, v in got.items():
        assert v.dtype == torch.float32, name
        assert_close(v, ref[name], atol=1e-6, rtol=1e-6, msg=name)
    assert_close(alpa_bf_in, alpa_loss(alpa(bf_tokens.float()), y), atol=1e-6, rtol=1e-6)
    assert_close(supcon_bf_in, supcon_loss(bf_feats.float(), y), atol=1e-6, rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # gradients flow back to bf16 inputs
        leaf = bf_feats.clone().requires_grad_()
        supcon_loss(leaf, y).backward()
    assert leaf.grad is not None and leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad.float()).all()


# --------------------------------------------------------------------------- CSD / KNN scores


def _brute_kth_sim(queries: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    q = F.normalize(queries.double(), dim=1)
    sims = q @ bank.double().T
    return sims.sort(dim=1, descending=True).values[:, k - 1]


@pytest.mark.parametrize("k", [1, 3, 10])
def test_csd_matches_brute_force(k):
    regions = torch.rand(7, 6, 16)
    bank = F.normalize(torch.rand(40, 16), dim=1)
    sim_k = _brute_kth_sim(regions.reshape(-1, 16), bank, k).reshape(7, 6)
    expected = (-(2 - 2 * sim_k)).amax(dim=1)
    got = csd_score(regions, bank, k=k, chunk_size=5)
    assert got.shape == (7,)
    assert_close(got.double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", [1, 4])
def test_knn_matches_brute_force(k):
    feats = torch.randn(9, 16)
    bank = F.normalize(torch.randn(30, 16), dim=1)
    expected = -(2 - 2 * _brute_kth_sim(feats, bank, k))
    assert_close(knn_score(feats, bank, k=k).double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_csd_at_least_knn_global_at_equal_k(k):
    # The CSD bank holds all 6 regions of the train images, so it contains the KNN bank (global
    # rows): the global region's k-th NN in the larger bank is at least as close, and CSD takes a
    # max over regions that include the global one. Hence CSD >= KNN-global (spec invariant).
    train = torch.rand(50, 6, 16)
    test = torch.rand(20, 6, 16)
    csd_bank = F.normalize(train.reshape(-1, 16), dim=1)
    knn_bank = F.normalize(train[:, 4], dim=1)
    csd = csd_score(test, csd_bank, k=k)
    knn = knn_score(test[:, 4], knn_bank, k=k)
    assert (csd >= knn - 1e-6).all()


def test_scores_span_minus_four_to_zero():
    # All regions antipodal to the only bank row: d = 2 - 2(-1) = 4, S = -4.
    far = torch.tensor([-1.0, 0.0, 0.0, 0.0]).expand(1, 6, 4)
    assert_close(csd_score(far, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), k=1), torch.tensor([-4.0]))
    # One region (after normalisation) equals a bank row: d = 0 for it, S = max_r(-d_r) = 0.
    bank = torch.eye(4)
    near = torch.rand(1, 6, 4)
    near[0, 2] = torch.tensor([0.0, 0.0, 5.0, 0.0])
    assert_close(csd_score(near, bank, k=1), torch.tensor([0.0]))
    s = csd_score(torch.randn(30, 6, 4), bank, k=2)
    assert (s >= -4).all() and (s <= 0).all()


# --------------------------------------------------------------------------- MODEModel


@pytest.mark.parametrize("batch", [1, 3])
def test_model_forward_shapes(batch):
    model = MODEModel(backbone="test_resnet", num_classes=5, alpa_dim=8, supcon_dim=7).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, 32, 32))
    assert set(out) == {"fmap", "tokens", "regions", "global", "logits", "proj"}
    assert out["fmap"].shape == (batch, 16, 4, 4)
    assert out["tokens"].shape == (batch, 16, 16)
    assert out["regions"].shape == (batch, 6, 16)
    assert out["global"].shape == (batch, 16)
    assert out["logits"].shape == (batch, 5)
    assert out["proj"].shape == (batch, 7)
    assert all(v.dtype == torch.float32 for v in out.values())
    assert_close(out["global"], out["regions"][:, 4])
    assert_close(out["global"], out["fmap"].mean(dim=(2, 3)))
    assert_close(out["proj"].norm(dim=1), torch.ones(batch))
    # tokens are positions flattened row-major: token p is fmap[:, :, p // 4, p % 4].
    assert_close(out["tokens"][:, 6], out["fmap"][:, :, 1, 2])
    assert (out["fmap"] >= 0).all()


def test_model_alpa_loss_reaches_backbone_and_attention():
    model = MODEModel(backbone="test_resnet", num_classes=3, alpa_dim=8).train()
    out = model(torch.randn(4, 3, 32, 32))
    loss = alpa_loss(model.alpa(out["tokens"]), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    for name, param in model.named_parameters():
        assert (param.grad is None) == name.startswith(("fc.", "proj.")), name
    # timm zero-initialises each block's last BN, so at init the gradient reaches the residual
    # branch only through bn2's scale; the stem and shortcut path carry it to the input.
    for param in (model.backbone.conv1.weight, model.backbone.layer4[0].bn2.weight,
                  model.backbone.layer4[0].downsample[0].weight,
                  model.alpa.phi_q[0].weight, model.alpa.phi_k[2].weight,
                  model.alpa.phi_v[2].weight):
        assert param.grad.abs().sum() > 0


def test_model_heads_and_bad_head():
    model = MODEModel(backbone="test_resnet", num_classes=4, head="supcon")
    assert model.fc.out_features == 4 and model.proj[-1].out_features == 128
    assert model.alpa.dim == 80 and model.alpa.in_dim == 16
    with pytest.raises(ZooError, match="head"):
        MODEModel(backbone="test_resnet", head="arcface")


def test_model_loads_backbone_weights(tmp_path):
    src = MODEModel(backbone="test_resnet")
    path = tmp_path / "bb.pt"
    torch.save(src.backbone.state_dict(), path)
    dst = MODEModel(backbone="test_resnet", backbone_weights=str(path))
    assert torch.equal(dst.backbone.conv1.weight, src.backbone.conv1.weight)
    torch.save({"model": {"encoder." + k: v for k, v in src.backbone.state_dict().items()}}, path)
    dst = MODEModel(backbone="test_resnet", backbone_weights=str(path),
                    backbone_weights_prefix="encoder.")
    assert torch.equal(dst.backbone.conv1.weight, src.backbone.conv1.weight)
