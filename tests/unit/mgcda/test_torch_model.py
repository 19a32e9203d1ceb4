"""MGCDA's GRL, discriminators, projection head and MGCDANet, on a tiny stand-in segmenter."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.core.errors import ZooError
from zoo.mgcda.losses import mdat_loss
from zoo.mgcda.torch_model import DomainDiscriminator, GradReverse, MGCDANet, ProjectionHead, grad_reverse


class TinySegmenter(nn.Module):
    """The segmenter interface in miniature: "mid" at 1/8, "dec" at 1/4, logits at full size."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.num_classes, self.mid_channels, self.dec_channels = num_classes, 8, 6
        self.stem = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.mid = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.dec = nn.Conv2d(8 + 4, 6, 1)
        self.final = nn.Conv2d(6, num_classes, 1)

    def forward_features(self, x):
        s = F.relu(self.stem(x))
        m = F.relu(self.mid(s))
        d = F.relu(self.dec(torch.cat([F.interpolate(m, size=s.shape[-2:]), s], 1)))
        logits = F.interpolate(self.final(d), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, {"mid": m, "dec": d}

    def forward(self, x):
        return self.forward_features(x)[0]


def test_grl_identity_forward_and_scaled_flipped_backward():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    up = torch.randn(2, 3, 4, 4)
    y = grad_reverse(x, 0.25)
    torch.testing.assert_close(y, x)
    y.backward(up)
    torch.testing.assert_close(x.grad, -0.25 * up)
    x.grad = None
    GradReverse.apply(x, 0.0).backward(up)
    torch.testing.assert_close(x.grad, torch.zeros_like(up))


def test_discriminator_gets_unreversed_gradient():
    torch.manual_seed(0)
    disc = DomainDiscriminator(8, 3, hidden=(16, 8), reverse=True)
    plain = copy.deepcopy(disc)
    plain.reverse = False
    feats = torch.randn(4, 8, 8, 8)
    d = torch.tensor([0, 1, 2, 0])
    lam = 0.3
    xa, xb = feats.clone().requires_grad_(True), feats.clone().requires_grad_(True)
    out_a, out_b = disc(xa, lam), plain(xb)
    assert out_a.shape == (4, 3)
    torch.testing.assert_close(out_a, out_b)
    mdat_loss([out_a], d, 0.1).backward()
    mdat_loss([out_b], d, 0.1).backward()
    for (_, pa), (_, pb) in zip(disc.named_parameters(), plain.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)  # discriminator: the ordinary gradient
    torch.testing.assert_close(xa.grad, -lam * xb.grad)  # features: reversed and scaled
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in disc.modules())


def test_projection_head_unit_norm_fp32_under_autocast():
    head = ProjectionHead(6, hidden=16, out=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = head(torch.randn(2, 6, 3, 4))
    assert z.shape == (2, 5, 3, 4) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2, 3, 4))


@pytest.mark.parametrize("b,hw", [(2, 32), (3, 48)])
def test_training_outputs_shapes(b, hw):
    net = MGCDANet(TinySegmenter(), num_domains=3, disc_hidden=(16, 8), proj_hidden=16, proj_dim=12)
    x = torch.randn(b, 3, hw, hw)
    out = net.training_outputs(x, 0.1)
    assert out["logits"].shape == (b, 4, hw, hw)
    assert len(out["disc"]) == 2 and all(t.shape == (b, 3) for t in out["disc"])
    assert out["z"].shape == (b, 12, hw // 4, hw // 4)
    torch.testing.assert_close(out["z"].norm(dim=1), torch.ones(b, hw // 4, hw // 4))
    torch.testing.assert_close(net(x), out["logits"])


def test_flags_off_build_nothing():
    net = MGCDANet(TinySegmenter(), num_domains=3, mdat=False, cacl=False)
    out = net.training_outputs(torch.randn(1, 3, 32, 32), 0.1)
    assert out["disc"] == [] and out["z"] is None
    assert set(net.state_dict()) == {f"segmenter.{k}" for k in net.segmenter.state_dict()}


def test_inference_model_is_exactly_the_segmenter():
    seg = TinySegmenter()
    net = MGCDANet(seg, num_domains=3, disc_hidden=(16, 8), proj_hidden=16, proj_dim=12)
    inf = net.inference_model()
    assert {id(p) for p in inf.parameters()} == {id(p) for p in seg.parameters()}
    keys = set(inf.state_dict())
    assert keys == set(seg.state_dict())
    assert not any(k.startswith(("disc", "proj")) for k in keys)
    n_inf = sum(p.numel() for p in inf.parameters())
    assert n_inf == sum(p.numel() for p in TinySegmenter().parameters())
    assert sum(p.numel() for p in net.parameters()) > n_inf  # the training-only parts exist...
    fresh = TinySegmenter()
    fresh.load_state_dict(inf.state_dict(), strict=True)  # ...but the export loads strictly
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(fresh(x), net(x))
    net.drop_training_parts()
    assert set(net.state_dict()) == {f"segmenter.{k}" for k in keys} and not net.mdat and not net.cacl


def test_mdat_gradient_reaches_the_segmenter_reversed():
    torch.manual_seed(0)
    net = MGCDANet(TinySegmenter(), num_domains=2, cacl=False, disc_hidden=(16, 8))
    x, d = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    out = net.training_outputs(x, 0.5)
    mdat_loss(out["disc"], d, 0.0).backward()
    g_rev = net.segmenter.mid.weight.grad.clone()
    net.zero_grad()
    mdat_loss(net.training_outputs(x, -1.0)["disc"], d, 0.0).backward()  # lam = -1: plain gradient
    torch.testing.assert_close(g_rev, -0.5 * net.segmenter.mid.weight.grad)


def test_bad_segmenter_and_domains():
    with pytest.raises(ZooError, match="forward_features"):
        MGCDANet(nn.Conv2d(3, 4, 1))
    with pytest.raises(ZooError, match="num_domains"):
        MGCDANet(TinySegmenter(), num_domains=1)
    MGCDANet(TinySegmenter(), num_domains=1, mdat=False, cacl=False)


def test_domain_probe_separates_separable_domains_and_not_identical_ones():
    from zoo.common.vision.deeplab import MiniDeepLabV3Plus
    from zoo.mgcda.torch_model import domain_probe_accuracy, pooled_features

    g = torch.Generator().manual_seed(0)
    dom = torch.arange(3).repeat_interleave(40)
    apart = torch.randn(120, 8, generator=g) * 0.1 + torch.nn.functional.one_hot(dom, 8).float() * 3
    assert domain_probe_accuracy(apart, dom) == 100.0
    same = torch.randn(120, 8, generator=g)
    assert domain_probe_accuracy(same, dom) < 60.0  # chance 33.3
    seg = MiniDeepLabV3Plus(num_classes=6).eval()
    f = pooled_features(seg, torch.randn(5, 3, 64, 128), batch=2)
    assert f.shape == (5, seg.mid_channels)
