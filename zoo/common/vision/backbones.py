"""Backbones for the zoo, built offline and loaded strictly from local weight files.

Every builder returns a timm ``ResNet`` with ``num_classes=0`` (no classifier). The module has
``num_features`` (C) and ``forward_features(x) -> (B, C, h, w)``, the post-ReLU layer4 map.

Weights never come from a hub: ``pretrained=False`` always, and a weight file is a local path
that must match the architecture key for key (see :func:`build_backbone`). A loose load
(``strict=False``) that silently leaves random weights is the failure the MODE spec warns about.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from zoo.core.errors import ZooError
from zoo.core.weights import load_strict, read_weights

_BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def cifar_resnet(layers: Sequence[int], channels: Sequence[int], block: str = "basic") -> ResNet:
    """A timm ResNet with the zoo's CIFAR stem: 3x3 stride-1 conv and no max-pool.

    This is the documented zoo variant of the CIFAR ResNet (MODE spec, Architecture: "CIFAR
    ResNet (3x3 stride-1 stem, no max-pool)", as in SupContrast / knn-ood). The stem differs
    from timm's ResNet: ``conv1`` becomes ``Conv2d(3, channels[0], 3, stride=1, padding=1,
    bias=False)`` and ``maxpool`` becomes ``nn.Identity``. The total stride is therefore 8, so a
    32x32 input gives a (B, C, 4, 4) map from ``forward_features``, with
    C = ``channels[-1]`` for basic blocks (``4 * channels[-1]`` for bottlenecks). The stem BN
    and the first stage take ``channels[0]`` inputs (timm's plain stem is always 64 wide, so for
    ``channels[0] != 64`` they are rebuilt; ResNet-18/34 keep timm's modules as built).

    Args:
        layers: number of blocks per stage, e.g. ``[2, 2, 2, 2]`` for ResNet-18.
        channels: base width per stage, e.g. ``(64, 128, 256, 512)``.
        block: ``"basic"`` or ``"bottleneck"``.

    Returns:
        A ``timm.models.resnet.ResNet`` with ``num_classes=0`` and ``num_features`` set.
    """
    if block not in _BLOCKS:
        raise ZooError(f"unknown ResNet block {block!r}; expected one of {sorted(_BLOCKS)}")
    if len(layers) != len(channels):
        raise ZooError(f"layers {list(layers)} and channels {list(channels)} differ in length")
    model = ResNet(
        _BLOCKS[block],
        tuple(layers),
        channels=tuple(channels),
        stem_width=channels[0],
        num_classes=0,
    )
    width = channels[0]
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    if width != 64:
        # timm hard-codes a 64-channel plain stem (stem_width only sizes deep stems), so the
        # stem BN and the first stage are rebuilt to take channels[0] inputs.
        model.bn1 = nn.BatchNorm2d(width)
        model.layer1 = _stage(_BLOCKS[block], width, width, layers[0])
    model.init_weights(zero_init_last=True)  # timm's init, also for the replaced modules
    for info, reduction in zip(model.feature_info, (1, 1, 2, 4, 8), strict=False):
        info["reduction"] = reduction
    model.feature_info[0]["num_chs"] = width
    return model


def _stage(block_cls: type[nn.Module], inplanes: int, planes: int, depth: int) -> nn.Sequential:
    """A stride-1 ResNet stage of ``depth`` blocks (timm block classes, projection shortcut)."""
    out = planes * block_cls.expansion
    downsample = None
    if inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, kernel_size=1, stride=1, bias=False), nn.BatchNorm2d(out)
        )
    blocks = [block_cls(inplanes, planes, downsample=downsample)]
    blocks += [block_cls(out, planes) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


def _timm_resnet50() -> nn.Module:
    return timm.create_model("resnet50", pretrained=False, num_classes=0)


BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "cifar_resnet18": lambda: cifar_resnet([2, 2, 2, 2], (64, 128, 256, 512)),
    "cifar_resnet34": lambda: cifar_resnet([3, 4, 6, 3], (64, 128, 256, 512)),
    "world_resnet": lambda: cifar_resnet([1, 1, 1, 1], (16, 32, 64, 128)),
    "resnet50": _timm_resnet50,
    "test_resnet": lambda: cifar_resnet([1, 1, 1, 1], (8, 8, 16, 16)),
}
"""Named backbone builders. ``resnet50`` is timm's standard ImageNet ResNet-50 (224 px input,
7x7x2048 map); the others are CIFAR ResNets (32 px input, 4x4 map). ``world_resnet`` is the
procedural-world model of the MODE spec; ``test_resnet`` is for unit tests only."""


def _extract_state_dict(obj: Any, path: Path, prefix: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ZooError(f"weights file {path} holds a {type(obj).__name__}, not a state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise ZooError(f"weights file {path} has no key starting with prefix {prefix!r}")
    # The backbone is built with num_classes=0, so a classifier head in the file is dropped.
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def build_backbone(name: str, weights: str | None = None, weights_prefix: str = "") -> nn.Module:
    """Build a named backbone and optionally load a local weight file strictly.

    Loading (MODE spec, Pitfalls: never leave random weights silently):

    1. ``.safetensors`` files are read with safetensors, others with
       ``torch.load(path, map_location="cpu", weights_only=True)``.
    2. A dict holding ``"state_dict"`` (Lightning) or ``"model"`` (SupContrast) is unwrapped.
    3. With ``weights_prefix``, only keys starting with it are kept and the prefix is stripped
       (e.g. ``"module."`` for DataParallel, ``"encoder."`` for SupCon, ``"model.backbone."`` for
       a zoo Lightning checkpoint).
    4. Classifier keys ``fc.*`` are dropped (the backbone has ``num_classes=0``).
    5. ``load_state_dict(strict=True)``; any missing, unexpected or mis-shaped key raises.

    For ``resnet50`` the file is the user's local torchvision or timm ResNet-50 file; both use
    the same key names as timm's ResNet. Nothing is ever downloaded.

    Args:
        name: a key of :data:`BACKBONES`.
        weights: path to a local weight file, or None for random initialisation.
        weights_prefix: key prefix to select and strip before loading.

    Returns:
        The backbone, with ``num_features`` (C) and ``forward_features(x) -> (B, C, h, w)``.

    Raises:
        ZooError: unknown name, missing or unreadable file, or a key mismatch. The message is
            one line naming the file and the first few offending keys.
    """
    if name not in BACKBONES:
        raise ZooError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    model = BACKBONES[name]()
    if weights is None:
        return model
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ZooError(f"backbone weights file not found: {path}")
    state = _extract_state_dict(read_weights(path), path, weights_prefix)
    load_strict(model, state, path, f"backbone {name!r}",
                hint="set weights_prefix to strip a prefix such as 'module.' or 'encoder.'")
    return model
