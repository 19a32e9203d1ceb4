"""DeepLabv3+ segmenters (MGCDA spec, Architecture): shapes, taps, parameter counts, NVIDIA key
names and strict ``cityscapes_best.pth`` loading (with the 19 -> 20 row growth), frozen early BN."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.common.vision.deeplab import DeepWV3Plus, MiniDeepLabV3Plus, freeze_early, load_nvidia_cityscapes
from zoo.core.errors import ZooError


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _nvidia_file(path, model: nn.Module, extra: dict | None = None, drop: tuple[str, ...] = (),
                 rename=None, wrap: bool = True) -> None:
    """Save ``model`` as NVIDIA does: ``{"state_dict": {"module." + k: v}, "epoch", "mean_iu", ...}``."""
    state = {}
    for k, v in model.state_dict().items():
        if k in drop:
            continue
        state["module." + (rename(k) if rename else k)] = v
    state.update(extra or {})
    obj = {"state_dict": state, "epoch": 175, "mean_iu": np.float64(0.8146), "command": "train.py --arch x"}
    torch.save(obj if wrap else state, path)


# ---------------------------------------------------------------- MiniDeepLabV3Plus


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 64, 128), (2, 60, 100)])
def test_mini_shapes_and_taps(batch, height, width):
    model = MiniDeepLabV3Plus().eval()
    with torch.no_grad():
        logits, taps = model.forward_features(torch.randn(batch, 3, height, width))
    assert logits.shape == (batch, 7, height, width) and logits.dtype == torch.float32
    assert set(taps) == {"mid", "dec"}
    assert taps["mid"].shape == (batch, model.mid_channels, math.ceil(height / 8), math.ceil(width / 8))
    assert taps["dec"].shape == (batch, model.dec_channels, math.ceil(height / 4), math.ceil(width / 4))
    assert (model.num_classes, model.mid_channels, model.dec_channels) == (7, 64, 64)
    assert (model.mid_stride, model.dec_stride) == (8, 4)
    assert taps["dec"].min() >= 0  # penultimate = after final's second ReLU


def test_mini_forward_is_upsampled_classifier_of_dec():
    model = MiniDeepLabV3Plus(num_classes=5, widths=(8, 8, 16, 16), aspp_channels=8,
                              skip_channels=4, decoder_channels=12).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        logits, taps = model.forward_features(x)
        expected = F.interpolate(model.final[6](taps["dec"]), size=(32, 48), mode="bilinear", align_corners=False)
        plain = model(x)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(plain, logits)
    assert taps["dec"].shape[1] == 12 and taps["mid"].shape[1] == 16


def test_mini_param_count():
    # 0.65M at the defaults: stage4 (229k) and the dense ASPP (258k) dominate.
    model = MiniDeepLabV3Plus(num_classes=7)
    assert _n_params(model) == 650_391
    aspp_convs = 4096 + 3 * 128 * 64 * 9 + 128 * 64  # 1x1 + three 3x3 branches + image pooling
    assert sum(p.numel() for n, p in model.aspp.named_parameters() if p.ndim == 4) == aspp_convs + 4096


def test_mini_bad_widths():
    with pytest.raises(ZooError, match="widths"):
        MiniDeepLabV3Plus(widths=(16, 32, 64))


def test_single_image_training_batch_is_a_clear_error():
    model = MiniDeepLabV3Plus(num_classes=4, widths=(8, 8, 16, 16), aspp_channels=8,
                              skip_channels=4, decoder_channels=8).train()
    with pytest.raises(ZooError, match=">= 2 images per batch"):
        model(torch.randn(1, 3, 32, 32))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 4, 32, 32)


@pytest.mark.parametrize("batch", [2, 3])
def test_mini_backward_reaches_all_parameters(batch):
    model = MiniDeepLabV3Plus(num_classes=4, widths=(8, 8, 16, 16), aspp_channels=8,
                              skip_channels=4, decoder_channels=8)
    logits, taps = model.forward_features(torch.randn(batch, 3, 32, 32))
    (logits.square().mean() + taps["mid"].mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------- groups and freezing


def _group_names(model: nn.Module) -> dict[str, set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {g: {names[id(p)] for p in ps} for g, ps in model.trainable_groups().items()}


def test_mini_groups_partition_parameters():
    model = MiniDeepLabV3Plus()
    groups = _group_names(model)
    assert set(groups) == {"early", "late"}
    assert groups["early"].isdisjoint(groups["late"])
    assert groups["early"] | groups["late"] == {n for n, _ in model.named_parameters()}
    assert {n.split(".")[0] for n in groups["early"]} == {"stem", "stage1", "stage2"}
    late = {"stage3", "stage4", "aspp", "bot_aspp", "bot_fine", "final"}
    assert {n.split(".")[0] for n in groups["late"]} == late


def test_freeze_early_keeps_bn_in_eval_and_stats_fixed():
    model = freeze_early(MiniDeepLabV3Plus(num_classes=4, widths=(8, 8, 16, 16), aspp_channels=8,
                                           skip_channels=4, decoder_channels=8))
    parent = nn.ModuleDict({"seg": model, "head": nn.Conv2d(8, 2, 1)})  # as inside MGCDANet
    parent.eval()
    parent.train()
    early_bn = [m for e in model.early_modules() for m in e.modules() if isinstance(m, nn.BatchNorm2d)]
    late_bn = [m for m in model.stage4.modules() if isinstance(m, nn.BatchNorm2d)]
    assert early_bn and late_bn
    assert all(not m.training for m in early_bn) and all(m.training for m in late_bn)
    before = [m.running_mean.clone() for m in early_bn]
    late_before = [m.running_mean.clone() for m in late_bn]
    logits = model(torch.randn(4, 3, 32, 32) * 3 + 1)
    logits.mean().backward()
    for m, b in zip(early_bn, before, strict=True):
        torch.testing.assert_close(m.running_mean, b, rtol=0, atol=0)
    assert any(not torch.equal(m.running_mean, b) for m, b in zip(late_bn, late_before, strict=True))
    groups = model.trainable_groups()
    assert all(not p.requires_grad and p.grad is None for p in groups["early"])
    assert all(p.requires_grad and p.grad is not None for p in groups["late"])
    clone = copy.deepcopy(model).train()  # MGCDANet.inference_model() may deepcopy
    assert all(not m.training for e in clone.early_modules() for m in e.modules())


def test_freeze_early_needs_a_segmenter():
    with pytest.raises(TypeError, match="DeepWV3Plus"):
        freeze_early(nn.Conv2d(1, 1, 1))


# ---------------------------------------------------------------- DeepWV3Plus (real size)


@pytest.fixture(scope="module")
def nvidia_19(tmp_path_factory):
    """A real-size 19-class DeepWV3Plus, perturbed, saved in NVIDIA's checkpoint layout."""
    torch.manual_seed(0)
    src = DeepWV3Plus(num_classes=19)
    with torch.no_grad():
        for name, buf in src.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
    path = tmp_path_factory.mktemp("nvidia") / "cityscapes_best.pth"
    _nvidia_file(path, src, extra={"module.criterion.nll_loss.weight": torch.ones(19)})
    state = {k: v.clone() for k in ("mod1.conv1.weight", "mod7.block1.convs.conv3.weight",
                                    "aspp.features.3.1.running_mean", "final.6.weight")
             for v in [src.state_dict()[k]]}
    del src
    return path, state


@pytest.fixture(scope="module")
def wv3():
    return DeepWV3Plus(num_classes=20)


def test_wv3_param_count_and_groups(wv3):
    assert _n_params(wv3) == 137_104_192  # NVIDIA's DeepWV3Plus: ~137M
    assert wv3.final[6].weight.numel() == 20 * 256  # the 20th (abstention) row adds 256
    groups = _group_names(wv3)
    assert {n.split(".")[0] for n in groups["early"]} == {"mod1", "mod2", "mod3", "mod4"}
    late = {"mod5", "mod6", "mod7", "aspp", "bot_fine", "bot_aspp", "final"}
    assert {n.split(".")[0] for n in groups["late"]} == late
    assert len(groups["early"]) + len(groups["late"]) == len(list(wv3.parameters()))


def test_wv3_nvidia_key_names(wv3):
    keys = set(wv3.state_dict())
    expected = {
        "mod1.conv1.weight",
        "mod2.block1.bn1.0.weight", "mod2.block1.bn1.0.running_var",
        "mod2.block1.convs.conv1.weight", "mod2.block1.convs.bn2.0.bias", "mod2.block1.convs.conv2.weight",
        "mod2.block1.proj_conv.weight", "mod2.block3.convs.conv2.weight",
        "mod3.block1.proj_conv.weight", "mod4.block6.convs.conv2.weight", "mod5.block3.bn1.0.weight",
        "mod6.block1.convs.conv3.weight", "mod6.block1.convs.bn3.0.running_mean", "mod7.block1.proj_conv.weight",
        "aspp.img_conv.0.weight", "aspp.img_conv.1.running_mean", "aspp.features.0.0.weight",
        "aspp.features.3.1.weight", "bot_fine.weight", "bot_aspp.weight",
        "final.0.weight", "final.1.weight", "final.3.weight", "final.4.running_var", "final.6.weight",
    }
    assert expected <= keys
    assert not any(k.startswith(("pool", "bn_out", "classifier", "mod2.block2.proj_conv")) for k in keys)
    sd = wv3.state_dict()
    assert sd["mod5.block1.convs.conv1.weight"].shape == (512, 512, 3, 3)
    assert sd["mod5.block1.proj_conv.weight"].shape == (1024, 512, 1, 1)
    assert sd["mod7.block1.convs.conv3.weight"].shape == (4096, 2048, 1, 1)
    assert sd["aspp.features.1.0.weight"].shape == (256, 4096, 3, 3)
    assert sd["bot_fine.weight"].shape == (48, 128, 1, 1) and sd["bot_aspp.weight"].shape == (256, 1280, 1, 1)
    assert sd["final.0.weight"].shape == (256, 304, 3, 3) and sd["final.6.weight"].shape == (20, 256, 1, 1)
    assert wv3.mod4.block1.convs.conv1.stride == (2, 2) and wv3.mod5.block1.convs.conv1.dilation == (2, 2)
    assert wv3.mod7.block1.convs.conv2.dilation == (4, 4)
    assert [m.p for m in wv3.modules() if isinstance(m, nn.Dropout2d)] == [0.3, 0.5]
    rates = [m.dilation for m in wv3.aspp.features[1:].modules() if isinstance(m, nn.Conv2d)]
    assert rates == [(12, 12), (24, 24), (36, 36)]


def test_wv3_forward_shapes(wv3):
    wv3.eval()
    with torch.no_grad():
        logits, taps = wv3.forward_features(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 20, 64, 64)
    assert taps["mid"].shape == (1, 1024, 8, 8) and taps["dec"].shape == (1, 256, 32, 32)
    assert (wv3.mid_channels, wv3.dec_channels, wv3.mid_stride, wv3.dec_stride) == (1024, 256, 8, 2)
    expected = F.interpolate(wv3.final[6](taps["dec"]), size=(64, 64), mode="bilinear", align_corners=True)
    torch.testing.assert_close(logits, expected)


def test_load_nvidia_grows_final_strictly(wv3, nvidia_19):
    path, src = nvidia_19
    load_nvidia_cityscapes(wv3, path, generator=torch.Generator().manual_seed(1))
    sd = wv3.state_dict()
    for key in ("mod1.conv1.weight", "mod7.block1.convs.conv3.weight", "aspp.features.3.1.running_mean"):
        torch.testing.assert_close(sd[key], src[key], rtol=0, atol=0)
    grown = sd["final.6.weight"]
    torch.testing.assert_close(grown[:19], src["final.6.weight"], rtol=0, atol=0)
    new_row = grown[19]
    assert torch.isfinite(new_row).all() and new_row.abs().sum() > 0
    assert 0.5 * math.sqrt(2 / 256) < new_row.std() < 1.5 * math.sqrt(2 / 256)  # He-normal, fan-in 256


# ---------------------------------------------------------------- loader errors (small widths)


def _small(num_classes: int = 19) -> DeepWV3Plus:
    return DeepWV3Plus(num_classes=num_classes, width_divisor=16)


def test_small_variant_has_the_same_keys(wv3):
    small = _small(20).eval()
    assert list(small.state_dict()) == list(wv3.state_dict())
    assert _n_params(small) < 1_000_000
    with torch.no_grad():
        logits, taps = small.forward_features(torch.randn(1, 3, 40, 56))
    assert logits.shape == (1, 20, 40, 56)
    assert taps["dec"].shape == (1, 16, 20, 28) and taps["mid"].shape == (1, 64, 5, 7)


def test_load_small_round_trip_and_new_row_seeded(tmp_path):
    src = _small(19)
    path = tmp_path / "w.pth"
    _nvidia_file(path, src)
    a = load_nvidia_cityscapes(_small(20), path, generator=torch.Generator().manual_seed(3))
    b = load_nvidia_cityscapes(_small(20), path, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.final[6].weight, b.final[6].weight, rtol=0, atol=0)
    torch.testing.assert_close(a.final[6].weight[:19], src.final[6].weight, rtol=0, atol=0)
    same = load_nvidia_cityscapes(_small(19), path)  # no growth needed
    torch.testing.assert_close(same.final[6].weight, src.final[6].weight, rtol=0, atol=0)


def test_load_accepts_flat_bn_names_bare_dict_and_old_bn(tmp_path):
    src = _small(19)
    path = tmp_path / "flat.pth"

    def flat(k: str) -> str:  # ABN spelling: mod2.block1.bn1.weight
        for bn in ("bn1", "bn2", "bn3"):
            k = k.replace(f".{bn}.0.", f".{bn}.")
        return k

    drop = tuple(k for k in src.state_dict() if k.endswith("num_batches_tracked"))  # pre-0.4.1 files
    _nvidia_file(path, src, rename=flat, drop=drop, wrap=False)
    assert "module.mod2.block1.bn1.weight" in torch.load(path, weights_only=True)
    model = load_nvidia_cityscapes(_small(20), path)
    torch.testing.assert_close(model.mod2.block1.bn1[0].weight, src.mod2.block1.bn1[0].weight, rtol=0, atol=0)


def test_load_missing_key(tmp_path):
    path = tmp_path / "missing.pth"
    _nvidia_file(path, _small(19), drop=("mod3.block2.convs.conv1.weight",))
    with pytest.raises(ZooError, match=r"missing keys: mod3\.block2\.convs\.conv1\.weight") as err:
        load_nvidia_cityscapes(_small(20), path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_unexpected_key(tmp_path):
    path = tmp_path / "unexpected.pth"
    _nvidia_file(path, _small(19), extra={"module.dsn.4.weight": torch.zeros(19, 4, 1, 1)})
    with pytest.raises(ZooError, match=r"unexpected keys: dsn\.4\.weight"):
        load_nvidia_cityscapes(_small(20), path)


def test_load_shape_mismatch_and_bad_inputs(tmp_path):
    path = tmp_path / "wide.pth"
    _nvidia_file(path, DeepWV3Plus(num_classes=19, width_divisor=8))
    with pytest.raises(ZooError, match="shape mismatches"):
        load_nvidia_cityscapes(_small(20), path)
    with pytest.raises(ZooError, match="not found"):
        load_nvidia_cityscapes(_small(20), tmp_path / "nope.pth")
    with pytest.raises(ZooError, match="DeepWV3Plus"):
        load_nvidia_cityscapes(MiniDeepLabV3Plus(), path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ZooError, match="cannot read"):
        load_nvidia_cityscapes(_small(20), junk)
    with pytest.raises(ZooError, match="width_divisor"):
        DeepWV3Plus(width_divisor=3)
