"""DeepLabv3+ segmenters for anomaly segmentation: a mini CPU model and NVIDIA's WideResNet38 one.

Both segmenters share one interface (used by MGCDA, arXiv:2308.08696, and its PEBAL base):

- ``forward(x) -> logits`` of shape (B, num_classes, H, W), bilinearly upsampled to the input;
- ``forward_features(x) -> (logits, {"mid": (B, mid_channels, H/8, W/8),
  "dec": (B, dec_channels, H/dec_stride, W/dec_stride)})``; ``"dec"`` is the penultimate map of
  the head ``final`` (after its second conv-BN-ReLU), ``"mid"`` a backbone stage at 1/8;
- attributes ``num_classes``, ``mid_channels``, ``dec_channels``, ``mid_stride`` (8) and
  ``dec_stride`` (4 for the mini model, **2** for DeepWV3Plus, whose decoder runs on mod2 at 1/2);
- ``trainable_groups() -> {"early": [...], "late": [...]}`` (every parameter in exactly one group)
  and :func:`freeze_early`, which freezes the early group and keeps its BatchNorm layers in eval
  mode through later ``model.train()`` calls.

:class:`DeepWV3Plus` reconstructs the module tree of NVIDIA semantic-segmentation (``sdcnet``
branch, ``network/deepv3.py:DeepWV3Plus`` on ``network/wider_resnet.py:WiderResNetA2``, structure
[3, 3, 6, 3, 1, 1], dilated to output stride 8) so that the state-dict names of NVIDIA's
``cityscapes_best.pth`` load with :func:`load_nvidia_cityscapes`. It was written from that code's
published structure; **no real checkpoint was available to verify the names against**, only the
fixture state dicts the tests generate from the class itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from zoo.core.errors import ZooError
from zoo.core.weights import load_strict, read_weights

__all__ = [
    "DeepWV3Plus",
    "MiniDeepLabV3Plus",
    "freeze_early",
    "load_nvidia_cityscapes",
]

def _bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm + ReLU as one Sequential, so BN parameters are named ``<name>.0.*`` (NVIDIA's
    ``bnrelu``: its state dict holds ``bn1.0.weight``, not in-place-ABN's flat ``bn1.weight``)."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image pooling (DeepLabv3, arXiv:1706.05587v3, Sec. 3.3).

    Branches, concatenated in this order: image pooling (``img_conv``: global average pool,
    1x1 conv, BN, ReLU, broadcast back), then ``features.0`` (1x1 conv) and ``features.1..`` (one
    3x3 conv per rate with that dilation), each conv-BN-ReLU to ``channels``. The order and names
    follow NVIDIA's ``_AtrousSpatialPyramidPoolingModule``.

    Args:
        in_channels: C_in of the input map.
        channels: width of each branch; the output has ``(len(rates) + 2) * channels`` channels.
        rates: dilation of each 3x3 branch.
    """

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int]) -> None:
        super().__init__()
        branches = [_conv_bn_relu(in_channels, channels, 1)]
        branches += [_conv_bn_relu(in_channels, channels, 3, dilation=int(r)) for r in rates]
        self.features = nn.ModuleList(branches)
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = _conv_bn_relu(in_channels, channels, 1)
        self.out_channels = (len(rates) + 2) * channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, h, w) -> (B, (len(rates) + 2) * channels, h, w).

        Raises:
            ZooError: training on a single image with a plain (not synchronised) BatchNorm in the
                image-pooling branch, which would normalise one value per channel.
        """
        norm = self.img_conv[1]
        if x.shape[0] == 1 and norm.training and not isinstance(norm, nn.SyncBatchNorm):
            raise ZooError("segmenter training needs >= 2 images per batch (per rank): the ASPP image-pooling "
                           "BatchNorm sees one value per channel (use a larger batch or SyncBatchNorm)")
        pooled = self.img_conv(self.img_pooling(x)).expand(-1, -1, x.shape[2], x.shape[3])
        return torch.cat([pooled] + [f(x) for f in self.features], dim=1)


def _head(cin: int, width: int, num_classes: int, bias: bool) -> nn.Sequential:
    """``final``: 3x3 conv-BN-ReLU (cin -> width), 3x3 conv-BN-ReLU, 1x1 conv to the classes.

    Indices 0..6 match NVIDIA's ``final.0`` .. ``final.6``; ``final[:6]`` gives the ``dec`` tap.
    """
    return nn.Sequential(
        nn.Conv2d(cin, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, num_classes, 1, bias=bias),
    )


def _penultimate(final: nn.Sequential, x: Tensor) -> Tensor:
    """``final[0..5]`` (two conv-BN-ReLU) without building a sliced Sequential per call."""
    for index in range(6):
        x = final[index](x)
    return x


class _Segmenter(nn.Module):
    """Shared behaviour: parameter groups and frozen-early BatchNorm handling."""

    num_classes: int
    mid_channels: int
    dec_channels: int
    mid_stride: int = 8
    dec_stride: int
    _EARLY: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.early_frozen = False

    def early_modules(self) -> list[nn.Module]:
        """The child modules of the "early" group (frozen in the real recipe)."""
        return [getattr(self, name) for name in self._EARLY]

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters split into ``"early"`` (see the class docstring) and ``"late"`` (the rest).

        Returns:
            ``{"early": [...], "late": [...]}``; every parameter is in exactly one list.
        """
        early_ids = {id(p) for m in self.early_modules() for p in m.parameters()}
        early = [p for p in self.parameters() if id(p) in early_ids]
        late = [p for p in self.parameters() if id(p) not in early_ids]
        return {"early": early, "late": late}

    def train(self, mode: bool = True) -> _Segmenter:
        """``nn.Module.train``, except that frozen early modules (see :func:`freeze_early`) stay
        in eval mode, so their BatchNorm running statistics never change."""
        super().train(mode)
        if self.early_frozen:
            for module in self.early_modules():
                module.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> (B, num_classes, H, W) logits."""
        return self.forward_features(x)[0]

    def forward_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover
        raise NotImplementedError


class MiniDeepLabV3Plus(_Segmenter):
    """A small DeepLabv3+ for the procedural road world (MGCDA spec, "Default" section).

    Ref: DeepLabv3+, Chen et al., arXiv:1802.02611v3, Fig. 2 (encoder with ASPP, decoder fusing a
    stride-4 skip); laid out like :class:`DeepWV3Plus` (``aspp``, ``bot_fine``, ``bot_aspp``,
    ``final``) so both models go through the same code.

    Layout at defaults (input H x W; timm ``BasicBlock`` residual stages with BatchNorm):

    - ``stem``: 3x3 conv stride 2, BN, ReLU -> widths[0] at 1/2; ``stage1``: a block at 1/2;
    - ``stage2``: a block stride 2 -> widths[1] at 1/4 (the skip);
    - ``stage3``: a block stride 2 -> widths[2] at 1/8 (the ``"mid"`` tap);
    - ``stage4``: a block with dilation 2 -> widths[3] at 1/8 (output stride 8);
    - ``aspp``: 1x1 + 3x3 at ``aspp_rates`` + image pooling, each to ``aspp_channels``;
      ``bot_aspp``: 1x1 to ``aspp_channels``, upsampled to 1/4;
    - ``bot_fine``: 1x1 of the stride-4 skip to ``skip_channels``;
    - ``final``: two 3x3 conv-BN-ReLU to ``decoder_channels`` (output = the ``"dec"`` tap at 1/4)
      and a 1x1 classifier (with bias), logits upsampled bilinearly to H x W.

    About 0.65M parameters at the defaults with ``num_classes=7`` (most in stage4 and the ASPP).

    Groups **[R]**: ``"early"`` = stem, stage1, stage2 (the part below the ``"mid"`` tap, so MDAT
    on ``"mid"`` still trains stage3 when early is frozen); ``"late"`` = everything else.

    Args:
        num_classes: output channels (n classes + 1 abstention channel for PEBAL).
        widths: widths of the four stages.
        aspp_channels: width of every ASPP branch and of ``bot_aspp``.
        aspp_rates: dilations of the 3x3 ASPP branches (at output stride 8).
        skip_channels: width of the projected stride-4 skip.
        decoder_channels: width of the two decoder convs (= ``dec_channels``).
    """

    _EARLY = ("stem", "stage1", "stage2")
    dec_stride = 4

    def __init__(
        self,
        num_classes: int = 7,
        widths: Sequence[int] = (16, 32, 64, 128),
        aspp_channels: int = 64,
        aspp_rates: Sequence[int] = (1, 2, 4),
        skip_channels: int = 16,
        decoder_channels: int = 64,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4:
            raise ZooError(f"MiniDeepLabV3Plus widths must have 4 values, got {list(widths)}")
        if num_classes < 1:
            raise ZooError(f"MiniDeepLabV3Plus num_classes must be >= 1, got {num_classes}")
        w0, w1, w2, w3 = widths
        self.num_classes = int(num_classes)
        self.mid_channels = w2
        self.dec_channels = int(decoder_channels)

        self.stem = _conv_bn_relu(3, w0, 3, stride=2)
        self.stage1 = _block(w0, w0)
        self.stage2 = _block(w0, w1, stride=2)
        self.stage3 = _block(w1, w2, stride=2)
        self.stage4 = _block(w2, w3, dilation=2)
        self.aspp = _ASPP(w3, aspp_channels, aspp_rates)
        self.bot_aspp = nn.Conv2d(self.aspp.out_channels, aspp_channels, 1, bias=False)
        self.bot_fine = nn.Conv2d(w1, skip_channels, 1, bias=False)
        self.final = _head(aspp_channels + skip_channels, self.dec_channels, self.num_classes, bias=True)
        _kaiming_init(self)

    def forward_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and taps.

        Args:
            x: (B, 3, H, W) normalised images.

        Returns:
            ``(logits (B, num_classes, H, W), {"mid": (B, widths[2], ~H/8, ~W/8),
            "dec": (B, decoder_channels, ~H/4, ~W/4)})`` (sizes round up for odd inputs).
        """
        size = x.shape[2:]
        skip = self.stage2(self.stage1(self.stem(x)))
        mid = self.stage3(skip)
        aspp = self.bot_aspp(self.aspp(self.stage4(mid)))
        aspp = F.interpolate(aspp, size=skip.shape[2:], mode="bilinear", align_corners=False)
        dec = _penultimate(self.final, torch.cat([self.bot_fine(skip), aspp], dim=1))
        logits = F.interpolate(self.final[6](dec), size=size, mode="bilinear", align_corners=False)
        return logits, {"mid": mid, "dec": dec}


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> BasicBlock:
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, stride=stride, downsample=downsample, dilation=dilation, first_dilation=dilation)


def _kaiming_init(module: nn.Module) -> None:
    """He-normal convs (fan-out, ReLU gain), BN weight 1 and bias 0, zero conv biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _IdentityResidualBlock(nn.Module):
    """WiderResNet pre-activation block (NVIDIA ``IdentityResidualBlock``; Wu et al., "Wider or
    Deeper", arXiv:1611.10080v1).

    ``out = convs(bn1(x)) + shortcut`` with ``shortcut = proj_conv(bn1(x))`` when the stride or
    width changes, else ``x``. ``bn1`` and the inner ``bn2``/``bn3`` are BN + ReLU. Two channels
    give two 3x3 convs (``convs.conv1``, ``convs.bn2``, ``convs.conv2``); three give a bottleneck
    1x1 -> 3x3 -> 1x1 (``conv1``, ``bn2``, ``conv2``, ``bn3``, ``conv3``) with an optional
    ``Dropout2d`` before ``conv3``. The stride sits on ``conv1``, the dilation on the 3x3 convs.
    """

    def __init__(self, cin: int, channels: Sequence[int], stride: int = 1, dilation: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = _bn_relu(cin)
        layers: list[tuple[str, nn.Module]]
        if len(channels) == 2:
            layers = [
                ("conv1", nn.Conv2d(cin, channels[0], 3, stride=stride, padding=dilation,
                                    dilation=dilation, bias=False)),
                ("bn2", _bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, padding=dilation,
                                    dilation=dilation, bias=False)),
            ]
        elif len(channels) == 3:
            layers = [
                ("conv1", nn.Conv2d(cin, channels[0], 1, stride=stride, bias=False)),
                ("bn2", _bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, padding=dilation,
                                    dilation=dilation, bias=False)),
                ("bn3", _bn_relu(channels[1])),
                ("conv3", nn.Conv2d(channels[1], channels[2], 1, bias=False)),
            ]
        else:
            raise ValueError(f"channels must have 2 or 3 values, got {list(channels)}")
        if dropout > 0:
            layers.insert(len(layers) - 1, ("dropout", nn.Dropout2d(dropout)))
        self.convs = nn.Sequential(OrderedDict(layers))
        self.proj_conv = None
        if stride != 1 or cin != channels[-1]:
            self.proj_conv = nn.Conv2d(cin, channels[-1], 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, cin, h, w) -> (B, channels[-1], h / stride, w / stride)."""
        pre = self.bn1(x)
        shortcut = x if self.proj_conv is None else self.proj_conv(pre)
        return self.convs(pre) + shortcut


# WiderResNet38-A2, dilated (NVIDIA wider_resnet38_a2(dilation=True)): blocks, inner channels,
# first-block stride, dilation and dropout of mod2..mod7.
_WRN38_A2 = (
    (3, (128, 128), 1, 1, 0.0),
    (3, (256, 256), 1, 1, 0.0),
    (6, (512, 512), 2, 1, 0.0),
    (3, (512, 1024), 1, 2, 0.0),
    (1, (512, 1024, 2048), 1, 4, 0.3),
    (1, (1024, 2048, 4096), 1, 4, 0.5),
)


class DeepWV3Plus(_Segmenter):
    """DeepLabv3+ on a dilated WiderResNet38-A2, with NVIDIA's module names (MGCDA spec,
    Architecture; the segmenter of PEBAL and Meta-OoD).

    Ref: DeepLabv3+, arXiv:1802.02611v3; WiderResNet, arXiv:1611.10080v1; module tree of NVIDIA
    semantic-segmentation (sdcnet branch) ``DeepWV3Plus``. Reconstructed: the tree below follows
    that code's structure so the state-dict names match ``cityscapes_best.pth`` with ``module.``
    stripped; it was **not verified against the real file** (none was available).

    Tree (input H x W):

    - ``mod1.conv1``: 3x3 conv 3 -> 64 at 1/1; ``pool2`` (3x3 max-pool stride 2) -> 1/2;
    - ``mod2`` (3 blocks, 128) at 1/2 -> ``bot_fine`` skip; ``pool3`` -> 1/4; ``mod3`` (3, 256);
    - ``mod4`` (6, 512; first block stride 2) at 1/8; ``mod5`` (3, 512 -> 1024, dilation 2) = the
      ``"mid"`` tap; ``mod6`` (1 bottleneck 512/1024/2048, dilation 4, dropout 0.3) and ``mod7``
      (1 bottleneck 1024/2048/4096, dilation 4, dropout 0.5); blocks are ``modN.blockK`` with
      ``bn1.0``, ``convs.conv1``, ``convs.bn2.0``, ..., ``proj_conv`` (no final ``bn_out``);
    - ``aspp`` on mod7 (4096 -> 5 x 256 = 1280; 3x3 rates 12/24/36 = NVIDIA's 6/12/18 doubled at
      output stride 8); ``bot_aspp`` 1x1 1280 -> 256, upsampled to mod2's size;
      ``bot_fine`` 1x1 128 -> 48;
    - ``final``: 3x3 conv 304 -> 256, BN, ReLU, 3x3 conv 256 -> 256, BN, ReLU (= the ``"dec"`` tap,
      at **1/2**), 1x1 conv 256 -> num_classes without bias; logits upsampled bilinearly
      (``align_corners=True``, as NVIDIA's ``Upsample``) to H x W.

    Every BN + ReLU pair is ``nn.Sequential(BatchNorm2d, ReLU)`` (NVIDIA ``bnrelu``; NVIDIA's
    code builds WiderResNetA2 with plain BN + ReLU, not in-place ABN), so block BN parameters are
    named e.g. ``mod2.block1.bn1.0.weight``. :func:`load_nvidia_cityscapes` also accepts the flat
    ABN-style spelling ``mod2.block1.bn1.weight``. 137.1M parameters with ``num_classes=20``.

    Groups (MGCDA spec, Training recipe **[R]**): ``"early"`` = mod1-mod4 (frozen, BN in eval);
    ``"late"`` = mod5-mod7, aspp, bot_fine, bot_aspp, final.

    Args:
        num_classes: output channels; 20 = 19 Cityscapes trainIds + PEBAL's abstention channel.
        width_divisor: divides every width (testing knob; 1 = the real network). The state-dict
            names do not depend on it.
    """

    _EARLY = ("mod1", "mod2", "mod3", "mod4")
    dec_stride = 2

    def __init__(self, num_classes: int = 20, width_divisor: int = 1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ZooError(f"DeepWV3Plus num_classes must be >= 1, got {num_classes}")
        if width_divisor not in (1, 2, 4, 8, 16):
            raise ZooError(f"DeepWV3Plus width_divisor must be 1, 2, 4, 8 or 16 (1 = the real network), "
                           f"got {width_divisor}")
        d = int(width_divisor)
        self.num_classes = int(num_classes)
        self.width_divisor = d

        self.mod1 = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(3, 64 // d, 3, padding=1, bias=False))]))
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool3 = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64 // d
        for index, (blocks, channels, stride, dilation, dropout) in enumerate(_WRN38_A2):
            chans = tuple(c // d for c in channels)
            mod = []
            for k in range(blocks):
                mod.append((f"block{k + 1}", _IdentityResidualBlock(
                    cin, chans, stride=stride if k == 0 else 1, dilation=dilation, dropout=dropout)))
                cin = chans[-1]
            self.add_module(f"mod{index + 2}", nn.Sequential(OrderedDict(mod)))
        self.mid_channels = 1024 // d
        self.dec_channels = 256 // d

        self.aspp = _ASPP(4096 // d, 256 // d, rates=(12, 24, 36))
        self.bot_fine = nn.Conv2d(128 // d, 48 // d, 1, bias=False)
        self.bot_aspp = nn.Conv2d(self.aspp.out_channels, 256 // d, 1, bias=False)
        self.final = _head(256 // d + 48 // d, 256 // d, self.num_classes, bias=False)
        for head in (self.aspp, self.bot_fine, self.bot_aspp, self.final):
            _nvidia_init(head)

    def forward_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and taps.

        Args:
            x: (B, 3, H, W) normalised images.

        Returns:
            ``(logits (B, num_classes, H, W), {"mid": mod5 (B, 1024, ~H/8, ~W/8),
            "dec": (B, 256, ~H/2, ~W/2)})`` (sizes round up for odd inputs).
        """
        size = x.shape[2:]
        m2 = self.mod2(self.pool2(self.mod1(x)))
        mid = self.mod5(self.mod4(self.mod3(self.pool3(m2))))
        aspp = self.bot_aspp(self.aspp(self.mod7(self.mod6(mid))))
        aspp = F.interpolate(aspp, size=m2.shape[2:], mode="bilinear", align_corners=True)
        dec = _penultimate(self.final, torch.cat([self.bot_fine(m2), aspp], dim=1))
        logits = F.interpolate(self.final[6](dec), size=size, mode="bilinear", align_corners=True)
        return logits, {"mid": mid, "dec": dec}


def _nvidia_init(module: nn.Module) -> None:
    """NVIDIA ``initialize_weights``: He-normal (fan-in) convs, BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def freeze_early(model: _Segmenter) -> _Segmenter:
    """Freeze the ``"early"`` group: no gradients, BatchNorm (and the whole early part) in eval.

    MGCDA spec, Training recipe **[R]**: "freeze mod1-4 with BN in eval". The model's ``train()``
    keeps the early modules in eval mode afterwards (also when a wrapper calls it), so their
    running statistics never change.

    Args:
        model: a :class:`MiniDeepLabV3Plus` or :class:`DeepWV3Plus`.

    Returns:
        The same model, modified in place.
    """
    if not isinstance(model, _Segmenter):
        raise TypeError(f"freeze_early needs a MiniDeepLabV3Plus or DeepWV3Plus, got {type(model).__name__}")
    for p in model.trainable_groups()["early"]:
        p.requires_grad_(False)
    model.early_frozen = True
    model.train(model.training)
    return model


def _numpy_safe_globals() -> list[Any]:
    """numpy scalar/dtype reconstructors, so ``weights_only`` reads NVIDIA's checkpoint, which
    also stores ``mean_iu`` as a numpy float (pickled by numpy 1.x as ``numpy.core.multiarray``)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    scalar = core.multiarray.scalar
    f64 = type(np.dtype("float64"))
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype, f64, (f64, "numpy.dtypes.Float64DType")]


def _alias_flat_bn(state: dict[str, Tensor], own: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename ABN-style ``...bnK.<p>`` keys to this tree's ``...bnK.0.<p>`` where that is ours."""
    out = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        alias = f"{head}.0.{leaf}"
        if key not in own and head.rpartition(".")[2] in ("bn1", "bn2", "bn3") and alias in own:
            key = alias
        out[key] = value
    return out


def load_nvidia_cityscapes(model: DeepWV3Plus, path: str | Path,
                           generator: torch.Generator | None = None) -> DeepWV3Plus:
    """Load NVIDIA's ``cityscapes_best.pth`` into a :class:`DeepWV3Plus` strictly.

    MGCDA spec, Architecture: "Grow ``final.6`` from 19 to 20 rows (Kaiming-init the new row)".

    Steps: read with ``weights_only=True`` (numpy scalars allowed); take ``"state_dict"`` if the
    file holds one; strip the DataParallel prefix ``module.``; drop ``criterion.*`` (the training
    loss's class-weight buffer that NVIDIA's file carries, which PEBAL drops too); rename flat
    ABN-style BN keys (see :func:`_alias_flat_bn`); grow ``final.6.weight`` from the file's rows
    to ``model.num_classes`` rows, the new rows He-normal (``kaiming_normal_``, fan-in, as
    PEBAL); then ``load_state_dict(strict=True)``.

    Args:
        model: the DeepWV3Plus to fill (``width_divisor=1``), typically ``num_classes=20``.
        path: local path of ``cityscapes_best.pth``.
        generator: RNG for the new rows (None: torch's global RNG).

    Returns:
        ``model``, loaded in place.

    Raises:
        ZooError: a missing or unreadable file, or any missing, unexpected or mis-shaped key
            (one line naming the file and the first keys).
    """
    if not isinstance(model, DeepWV3Plus):
        raise ZooError(f"NVIDIA Cityscapes weights need a DeepWV3Plus segmenter, got {type(model).__name__}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ZooError(f"NVIDIA Cityscapes checkpoint not found: {path} (expected cityscapes_best.pth)")
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        obj = read_weights(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ZooError(f"weights file {path} holds a {type(obj).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}
    state = {k: v for k, v in state.items() if not k.startswith("criterion.")}
    own = model.state_dict()
    state = _alias_flat_bn(state, own)
    key = "final.6.weight"
    if key in state:
        old, target = state[key], own[key]
        if old.ndim == 4 and old.shape[1:] == target.shape[1:] and old.shape[0] < target.shape[0]:
            grown = torch.empty(target.shape, dtype=old.dtype)
            nn.init.kaiming_normal_(grown, generator=generator)
            grown[: old.shape[0]] = old
            state[key] = grown
    load_strict(model, state, path, "DeepWV3Plus (NVIDIA semantic-segmentation cityscapes_best.pth)",
                hint="expected the sdcnet-branch DeepWV3Plus checkpoint with 19 classes")
    return model
