"""Backbones: CIFAR stem and strict local weight loading (MODE, arXiv:2308.10239v1: CIFAR ResNet; never a silent loose load)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.common.vision.backbones import BACKBONES, build_backbone, cifar_resnet
from zoo.core.errors import ZooError


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def test_cifar_stem_is_3x3_stride1_without_maxpool():
    model = cifar_resnet([1, 1, 1, 1], (8, 8, 16, 16))
    conv = model.conv1
    assert isinstance(conv, nn.Conv2d)
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
    assert conv.in_channels == 3 and conv.out_channels == 8 and conv.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    assert model.bn1.num_features == 8
    assert model.layer1[0].downsample is None  # stem width feeds layer1 directly
    assert model.num_features == 16


@pytest.mark.parametrize("batch", [1, 2])
def test_cifar_32px_gives_4x4_post_relu_map(batch):
    model = build_backbone("test_resnet").eval()
    with torch.no_grad():
        fmap = model.forward_features(torch.randn(batch, 3, 32, 32))
    assert fmap.shape == (batch, 16, 4, 4)
    assert fmap.min() >= 0  # post-ReLU layer4 output


def test_world_resnet_widths():
    model = build_backbone("world_resnet").eval()
    with torch.no_grad():
        fmap = model.forward_features(torch.randn(1, 3, 32, 32))
    assert model.num_features == 128 and fmap.shape == (1, 128, 4, 4)


def test_registry_names():
    assert {"cifar_resnet18", "cifar_resnet34", "world_resnet", "resnet50", "test_resnet"} <= set(
        BACKBONES
    )


def test_resnet50_is_standard_timm_without_classifier():
    model = build_backbone("resnet50")
    assert model.num_features == 2048
    assert isinstance(model.fc, nn.Identity)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)


def test_unknown_name_lists_known():
    with pytest.raises(ZooError, match="cifar_resnet18"):
        build_backbone("resnet_nope")


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip(tmp_path, suffix):
    src = build_backbone("test_resnet")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.5)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        torch.save(src.state_dict(), path)
    dst = build_backbone("test_resnet", weights=str(path))
    assert _same_weights(src, dst)


def test_wrapped_state_dict_and_classifier_dropped(tmp_path):
    src = build_backbone("test_resnet")
    state = dict(src.state_dict())
    state["fc.weight"] = torch.zeros(10, 16)
    state["fc.bias"] = torch.zeros(10)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": state, "epoch": 3}, path)
    assert _same_weights(src, build_backbone("test_resnet", weights=str(path)))
    torch.save({"state_dict": state}, path)
    assert _same_weights(src, build_backbone("test_resnet", weights=str(path)))


def test_renamed_key_raises_naming_file_and_key(tmp_path):
    state = dict(build_backbone("test_resnet").state_dict())
    state["layer1.0.shortcut.weight"] = state.pop("layer1.0.conv1.weight")
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ZooError) as info:
        build_backbone("test_resnet", weights=str(path))
    msg = str(info.value)
    assert str(path) in msg
    assert "layer1.0.conv1.weight" in msg and "layer1.0.shortcut.weight" in msg
    assert "\n" not in msg


def test_shape_mismatch_raises(tmp_path):
    path = tmp_path / "world.pt"
    torch.save(build_backbone("world_resnet").state_dict(), path)
    with pytest.raises(ZooError, match="world.pt"):
        build_backbone("test_resnet", weights=str(path))


def test_missing_file_raises(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(ZooError, match="nope.pt"):
        build_backbone("test_resnet", weights=str(path))


def test_prefix_strips_dataparallel(tmp_path):
    src = build_backbone("test_resnet")
    path = tmp_path / "dp.pt"
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, path)
    with pytest.raises(ZooError, match="module.conv1.weight"):
        build_backbone("test_resnet", weights=str(path))
    assert _same_weights(src, build_backbone("test_resnet", weights=str(path),
                                             weights_prefix="module."))


def test_prefix_absent_raises(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_backbone("test_resnet").state_dict(), path)
    with pytest.raises(ZooError, match="encoder."):
        build_backbone("test_resnet", weights=str(path), weights_prefix="encoder.")
