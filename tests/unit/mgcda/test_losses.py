"""MGCDA's losses, schedules and score against values worked out by hand on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.core.errors import ZooError
from zoo.mgcda.losses import (
    DomainAccuracyEMA,
    anomaly_score,
    cacl_loss,
    cacl_sample,
    gaussian_blur,
    grl_lambda,
    mdat_loss,
    meta_ood_loss,
    pebal_loss,
    plain_ce_loss,
    smoothing_eps,
    soft_domain_targets,
)

LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)


def _close(t, v, tol=1e-5):
    assert float(t.detach()) == pytest.approx(v, abs=tol, rel=tol)


# ----------------------------------------------------------------------------- PEBAL
def _pebal_case_a():
    """One 2x2 image, 3 classes + abstention. Class logits are permutations of [ln2, 0, 0], the
    abstention logit is 0, so everywhere lse = ln 4, softmax = (0.4, 0.2, 0.2 | 0.2)."""
    cls = {0: [LN2, 0.0, 0.0], 1: [0.0, LN2, 0.0], 2: [0.0, 0.0, LN2]}
    pix = [[cls[0], cls[0]], [cls[1], cls[2]]]  # (H, W, 3)
    f = torch.tensor(pix, dtype=torch.float32).permute(2, 0, 1)  # (3, 2, 2)
    logits = torch.cat([f, torch.zeros(1, 2, 2)])[None].requires_grad_(True)  # (1, 4, 2, 2)
    label = torch.tensor([[[0, 1], [254, 255]]])
    return logits, label


def test_pebal_terms_by_hand_with_oe_pixel():
    # r = blur((ln4)^2) = (ln4)^2 = 1.9218121 (a constant map is unchanged by the blur), p_abs/r = 0.2/r = 0.1040684
    # inliers: (0,0) label 0, p_y = 0.4; (0,1) label 1, p_y = 0.2 (its logits favour class 0)
    #   in  = (-ln(0.4 + 0.1040684) - ln(0.2 + 0.1040684)) / 2                        = 0.9377728
    # OE pixel (1,0), p = (0.2, 0.4, 0.2): out = (-2 ln(0.3040684) - ln(0.5040684)) / 3 = 1.0220160
    #   abstention = in + 0.1 * out                                                   = 1.0399744
    # E = -ln4 = -1.3862944: hinge = 0.5 * [(E + 12)^2 + relu(-6 - E)^2] = 0.5 * 10.6137056^2 = 56.3253737
    # sparse = ||E_OE||_2 = 1.3862944 ; smooth = 0 (E constant)
    # loss = 1.0399744 + 0.1 * (56.3253737 + 5e-4 * 1.3862944)                        = 6.6725811
    logits, label = _pebal_case_a()
    out = pebal_loss(logits, label)
    _close(out["abstention"], 1.0399744)
    _close(out["energy"], 56.3253737)
    _close(out["sparse"], 1.3862944)
    _close(out["smooth"], 0.0)
    _close(out["loss"], 6.6725811)
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()


def _pebal_case_b():
    """One 2x2 image without OE: class logits all equal to x in {0, 1, 2, 3}, abstention 0."""
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    logits = torch.cat([x.expand(3, 2, 2), torch.zeros(1, 2, 2)])[None].clone().requires_grad_(True)
    label = torch.tensor([[[0, 1], [2, 255]]])
    return logits, label


def test_pebal_without_oe_unhalved_hinge_and_smoothness():
    # no blur (reward_blur=False): lse = x + ln3, r = lse^2, p_c = e^x/(3e^x+1), p_abs = 1/(3e^x+1)
    #   x=0: 0.25 + 0.25/1.2069490      = 0.4571339
    #   x=1: 0.2969227 + 0.1092318/4.4041735 = 0.3217246
    #   x=2: 0.3189452 + 0.0431645/9.6013981 = 0.3234408   (x=3 is void)
    #   abstention = -(ln 0.4571339 + ln 0.3217246 + ln 0.3234408) / 3 = 1.0151925
    # hinge (no OE: in-term alone, not halved) = mean((12 - x - ln3)^2 over x = 0, 1, 2) = 98.7041453
    # E = -(x + ln3): vertical diffs (-2, -2) -> 8, horizontal (-1, -1) -> 2; smooth = (8 + 2) / 2 = 5
    # loss = 1.0151925 + 0.1 * (98.7041453 + 3e-6 * 5)                 = 10.8856085
    logits, label = _pebal_case_b()
    out = pebal_loss(logits, label, reward_blur=False)
    _close(out["abstention"], 1.0151925)
    _close(out["energy"], 98.7041453)
    _close(out["smooth"], 5.0)
    _close(out["sparse"], 0.0)
    _close(out["loss"], 10.8856085)


def test_pebal_groups_with_and_without_oe_are_summed():
    # abstention(batch [A, B]) = abstention(A) + abstention(B): each group has its own pixel mean
    la, ya = _pebal_case_a()
    lb, yb = _pebal_case_b()
    both = pebal_loss(torch.cat([la, lb]), torch.cat([ya, yb]), reward_blur=False)
    _close(both["abstention"], 1.0399744 + 1.0151925)
    # hinge over the batch: 0.5 * (mean over the 5 inlier pixels + OE term 0)
    hinge_in = (2 * (12 - LN4) ** 2 + sum((12 - x - LN3) ** 2 for x in (0, 1, 2))) / 5
    _close(both["energy"], 0.5 * hinge_in)


def test_pebal_rejects_unknown_labels():
    logits, label = _pebal_case_a()
    with pytest.raises(ZooError, match="label values"):
        pebal_loss(logits, label.masked_fill(label == 1, 7))


def test_pebal_all_void_is_zero_but_attached():
    logits, label = _pebal_case_b()
    out = pebal_loss(logits, torch.full_like(label, 255), reward_blur=False)
    _close(out["abstention"], 0.0)
    _close(out["energy"], 0.0)
    assert out["loss"].grad_fn is not None
    out["loss"].backward()


# ----------------------------------------------------------------------------- Meta-OoD and CE
def test_meta_ood_by_hand():
    # both pixels have logits [ln2, 0, 0] -> p = (1/2, 1/4, 1/4)
    # inlier (label 0): CE = ln 2 ; OE pixel: -(1/3)(ln 1/2 + 2 ln 1/4) = 5/3 ln 2 = 1.1552453
    # L = 0.1 * 0.6931472 + 0.9 * 1.1552453 = 1.1090355 (the void pixel is skipped)
    f = torch.tensor([LN2, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 1, 3).clone().requires_grad_(True)
    label = torch.tensor([[[0, 254, 255]]])
    out = meta_ood_loss(f, label, alpha=0.9)
    _close(out["ce"], LN2)
    _close(out["oe"], 5 / 3 * LN2)
    _close(out["loss"], 1.1090355)
    out["loss"].backward()


def test_plain_ce_ignores_oe_and_void():
    f = torch.tensor([LN2, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 1, 3).clone()
    out = plain_ce_loss(f, torch.tensor([[[0, 254, 255]]]))
    _close(out["loss"], LN2)  # only the inlier pixel: -ln(1/2)
    z = plain_ce_loss(f.requires_grad_(True), torch.tensor([[[254, 255, 255]]]))["loss"]
    assert z.item() == 0.0 and z.grad_fn is not None


# ----------------------------------------------------------------------------- score
def test_anomaly_score_ignores_abstention_channel():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 9, 11, generator=g)
    other = logits.clone()
    other[:, 3] = 100.0 * torch.randn(2, 9, 11, generator=g)  # only the abstention channel changes
    torch.testing.assert_close(anomaly_score(logits, 3), anomaly_score(other, 3))
    # by hand, no blur: class logits [0, ln2, 0] -> -ln 4
    one = torch.tensor([0.0, LN2, 0.0, 5.0]).view(1, 4, 1, 1)
    torch.testing.assert_close(anomaly_score(one.expand(1, 4, 3, 3), 3, blur=False), torch.full((1, 3, 3), -LN4))
    # a constant map is unchanged by the (normalised, reflect-padded) blur
    torch.testing.assert_close(anomaly_score(one.expand(1, 4, 8, 8), 3), torch.full((1, 8, 8), -LN4))


def test_gaussian_blur_matches_torchvision():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    x = torch.randn(2, 12, 10, generator=torch.Generator().manual_seed(1))
    ref = tvf.gaussian_blur(x[:, None], [7, 7], [1.0, 1.0])[:, 0]
    torch.testing.assert_close(gaussian_blur(x, 7, 1.0), ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- MDAT
def test_grl_lambda_ramp():
    # 0.1 * (2 / (1 + e^{-10 p}) - 1): p=0 -> 0, p=0.5 -> 0.0986614, p=1 -> 0.0999909
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(0.5) == pytest.approx(0.0986614, abs=1e-7)
    assert grl_lambda(1.0) == pytest.approx(0.0999909, abs=1e-7)
    assert grl_lambda(2.0) == grl_lambda(1.0)  # clipped


def test_soft_targets_sum_to_one_and_follow_schedule():
    K = 3
    d = torch.tensor([0, 2, 1])
    for p, eps in ((0.0, 0.0), (0.5, 0.1), (1.0, 0.2)):
        assert smoothing_eps(p, 0.2, K) == pytest.approx(eps)
        y = soft_domain_targets(d, K, smoothing_eps(p, 0.2, K))
        torch.testing.assert_close(y.sum(1), torch.ones(3))
        # true domain: 1 - eps + eps/3 ; others: eps/3
        assert y[1, 2].item() == pytest.approx(1 - eps + eps / 3)
        assert y[1, 0].item() == pytest.approx(eps / 3)
    # adaptive: a = 1/K -> 0 ; a = 1 -> eps_max ; a halfway -> eps_max / 2
    assert smoothing_eps(0.3, 0.2, K, "adaptive", acc=1 / 3) == pytest.approx(0.0)
    assert smoothing_eps(0.3, 0.2, K, "adaptive", acc=1.0) == pytest.approx(0.2)
    assert smoothing_eps(0.3, 0.2, K, "adaptive", acc=2 / 3) == pytest.approx(0.1)
    assert smoothing_eps(0.3, 0.2, K, "constant") == pytest.approx(0.2)


def test_eps_max_must_stay_below_uniform():
    with pytest.raises(ZooError, match="eps_max"):
        smoothing_eps(0.5, 0.5, 2)  # (K-1)/K = 0.5
    with pytest.raises(ZooError, match="adaptive"):
        smoothing_eps(0.5, 0.2, 3, "adaptive")
    assert smoothing_eps(1.0, 0.49, 2) == pytest.approx(0.49)


def test_mdat_soft_ce_by_hand():
    # tap 1: logits 0 -> p uniform, CE = ln 3 for any target                      = 1.0986123
    # tap 2: logits [ln2, 0, 0] -> p = (1/2, 1/4, 1/4); d = 0, eps = 0.3 -> y = (0.8, 0.1, 0.1)
    #        CE = 0.8 ln 2 + 0.2 ln 4                                             = 0.8317766
    # sum over taps                                                               = 1.9303889
    t1 = torch.zeros(1, 3, requires_grad=True)
    t2 = torch.tensor([[LN2, 0.0, 0.0]], requires_grad=True)
    loss = mdat_loss([t1, t2], torch.tensor([0]), 0.3)
    _close(loss, 1.9303889)
    loss.backward()
    # mean over images: a second image with the same tap-2 logits but domain 1:
    # y = (0.1, 0.8, 0.1): CE = 0.1 ln2 + 0.9 ln4 = 1.3169796 ; tap 2 mean = (0.8317766 + 1.3169796) / 2
    two = mdat_loss([torch.zeros(2, 3), torch.tensor([[LN2, 0.0, 0.0]] * 2)], torch.tensor([0, 1]), 0.3)
    _close(two, LN3 + (0.8317766 + 1.3169796) / 2)


def test_mdat_rejects_bad_domains():
    with pytest.raises(ZooError, match="domain labels"):
        mdat_loss([torch.zeros(2, 3)], torch.tensor([0, 3]), 0.1)


def test_domain_accuracy_ema():
    ema = DomainAccuracyEMA(K=2, momentum=0.5)
    assert float(ema.value) == pytest.approx(0.5)
    logits = [torch.tensor([[2.0, 0.0], [0.0, 1.0]])]  # both right
    assert ema.update(logits, torch.tensor([0, 1])) == pytest.approx(0.75)  # 0.5*0.5 + 0.5*1


# ----------------------------------------------------------------------------- CACL
def _z(vectors):
    """(B, W, D) python lists -> (B, D, 1, W) tensor requiring grad."""
    return torch.tensor(vectors, dtype=torch.float32).permute(0, 2, 1)[:, :, None].clone().requires_grad_(True)


def test_cacl_by_hand():
    # image 0 (domain 0): a0 = (1, 0) anomaly, n0 = (0, 1) normal, third pixel void
    # image 1 (domain 1): a1 = (1, 0), b1 = (0.6, 0.8) anomalies, n1 = (0, 1) normal; tau = 0.5
    # every sampled pixel is an anchor; contrast set = the other image's pixels
    # a0: P = {a1: 2, b1: 1.2}, N = {n1: 0}  -> 1/2 [ln(1 + e^-2) + ln(1 + e^-1.2)] = 0.1951052
    # n0: P = {n1: 2}, N = {a1: 0, b1: 1.6}  -> ln(1 + e^-2 + e^-0.4)                = 0.5909236
    # a1: P = {a0: 2}, N = {n0: 0}           -> ln(1 + e^-2)                         = 0.1269280
    # b1: P = {a0: 1.2}, N = {n0: 1.6}       -> ln(1 + e^0.4)                        = 0.9130153
    # n1: P = {n0: 2}, N = {a0: 0}           -> ln(1 + e^-2)                         = 0.1269280
    # mean over the 5 anchors                                                        = 0.3905800
    z = _z([[[1, 0], [0, 1], [1, 0]], [[1, 0], [0.6, 0.8], [0, 1]]])
    label = torch.tensor([[[254, 0, 255]], [[254, 254, 0]]])
    energy = torch.zeros(2, 1, 3)
    out = cacl_loss(z, label, energy, torch.tensor([0, 1]), tau=0.5, min_anomaly=1)
    _close(out["loss"], 0.3905800)
    assert out["n_anchors"] == 5 and out["n_images"] == 2
    out["loss"].backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("case", ["no_anomaly", "one_domain", "too_few_anomaly_pixels"])
def test_cacl_zero_but_attached(case):
    z = _z([[[1, 0], [0, 1], [1, 0]], [[1, 0], [0.6, 0.8], [0, 1]]])
    label = torch.tensor([[[254, 0, 255]], [[254, 254, 0]]])
    domain = torch.tensor([0, 1])
    min_anomaly = 1
    if case == "no_anomaly":
        label = torch.tensor([[[0, 1, 255]], [[2, 0, 0]]])
    elif case == "one_domain":
        domain = torch.tensor([1, 1])
    else:
        min_anomaly = 3
    out = cacl_loss(z, label, torch.zeros(2, 1, 3), domain, min_anomaly=min_anomaly)
    assert out["loss"].item() == 0.0 and out["n_anchors"] == 0
    assert out["loss"].grad_fn is not None
    out["loss"].backward()
    assert z.grad is not None and float(z.grad.abs().sum()) == 0.0


def test_cacl_hard_images_per_domain():
    # domain 0 holds images 0, 1 (both >= 2 anomaly pixels) and 2 (one anomaly pixel: not hard);
    # margin = mean_anom(s) - mean_norm(s): image 0: 5 - 0 = 5, image 1: 1 - 0 = 1 -> keep ceil(2/2) = 1: image 1
    # domain 1 holds image 3 only -> kept
    label = torch.tensor([[254, 254, 0, 0]] * 3 + [[254, 254, 0, 0]])[:, None]
    label[2, 0, 1] = 0
    s = torch.tensor([[5.0, 5.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [9.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0]])[:, None]
    out = cacl_sample(label, s, torch.tensor([0, 0, 0, 1]), min_anomaly=2)
    assert out["kept"].tolist() == [1, 3]


def test_cacl_hardest_and_random_anchors():
    # one image with 6 anomaly pixels (s = 0..5) and 6 normal pixels (s = 0..5); 4 per kind:
    # ceil(4/2) = 2 hardest (anomaly: lowest s -> pixels with s 0, 1; normal: highest s -> 5, 4) + 2 random
    s = torch.arange(6.0).repeat(2)[None, None]  # (1, 1, 12)
    label = torch.tensor([[[254] * 6 + [0] * 6]])
    dom = torch.tensor([0])
    g = torch.Generator().manual_seed(0)
    out = cacl_sample(label, s, dom, anchors_per_kind=4, min_anomaly=1, generator=g)
    an = out["pixel"][out["anomaly"]].tolist()
    no = out["pixel"][~out["anomaly"]].tolist()
    assert an[:2] == [0, 1] and no[:2] == [11, 10]
    assert len(set(an)) == 4 and len(set(no)) == 4
    assert all(p < 6 for p in an) and all(p >= 6 for p in no)
    capped = cacl_sample(label, s, dom, anchors_per_kind=4, max_anchors=3, min_anomaly=1, generator=g)
    assert int(capped["anchor"].sum()) == 3 and capped["pixel"].numel() == 8


def test_cacl_seeded_generator_is_reproducible():
    g = torch.Generator().manual_seed(3)
    z = torch.nn.functional.normalize(torch.randn(4, 8, 6, 6, generator=g), dim=1)
    label = torch.randint(0, 3, (4, 6, 6), generator=g)
    label[:, :3, :3] = 254
    s = torch.randn(4, 6, 6, generator=g)
    d = torch.tensor([0, 0, 1, 2])
    a = cacl_loss(z, label, s, d, anchors_per_kind=4, min_anomaly=4, generator=torch.Generator().manual_seed(7))
    b = cacl_loss(z, label, s, d, anchors_per_kind=4, min_anomaly=4, generator=torch.Generator().manual_seed(7))
    assert a["loss"].item() > 0 and a["loss"].item() == b["loss"].item()
    assert a["n_images"] == 3  # domain 0 keeps ceil(2/2) = 1, domains 1 and 2 one each


def test_losses_are_fp32_under_bf16_autocast():
    logits, label = _pebal_case_a()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pebal_loss(logits.bfloat16(), label)
        m = mdat_loss([torch.zeros(1, 3, dtype=torch.bfloat16)], torch.tensor([0]), 0.1)
    assert out["loss"].dtype == torch.float32 and m.dtype == torch.float32
