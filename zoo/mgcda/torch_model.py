"""MGCDA's training-only modules around a segmenter: gradient reversal, the MDAT domain
discriminators, the CACL projection head, and :class:`MGCDANet` that holds them.

Ref: Zhang et al., "Improving Anomaly Segmentation with Multi-Granularity Cross-Domain
Alignment", ACM MM 2023, arXiv:2308.08696v1 (abstract and Fig. 2 only; every layer size here is the
zoo's reconstruction, marked [R], from the spec's "Architecture" section).

Plain PyTorch. The segmenter is any module with ``forward(x) -> logits`` and
``forward_features(x) -> (logits, {"mid": ..., "dec": ...})`` plus the attributes
``mid_channels``, ``dec_channels`` and ``num_classes`` (:mod:`zoo.common.vision.deeplab`).
Discriminators and head are used in training only; :meth:`MGCDANet.inference_model` is the bare
segmenter, with exactly its parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.core.errors import ZooError


class GradReverse(torch.autograd.Function):
    """Gradient reversal layer (GRL): identity forward, ``-lam * grad`` backward.

    Ref: Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015,
    arXiv:1409.7495 (the gradient reversal pseudo-function R_lambda); MGCDA spec, "MDAT".
    Only the gradient that flows *into the features* is reversed: the modules after the GRL (the
    discriminator) are trained with the ordinary, un-reversed gradient.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, lam: float) -> Tensor:  # noqa: D102
        ctx.lam = float(lam)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return -ctx.lam * grad, None


def grad_reverse(x: Tensor, lam: float) -> Tensor:
    """``GradReverse.apply(x, lam)``: ``x`` unchanged; its gradient is multiplied by ``-lam``.

    Args:
        x: any tensor (features of shape (B, C, h, w) here).
        lam: the reversal strength lambda_t >= 0 (:func:`zoo.mgcda.losses.grl_lambda`).
    """
    return GradReverse.apply(x, lam)


class DomainDiscriminator(nn.Module):
    """K-way image-level domain classifier on a feature map [R, every layer].

    ``[GRL] -> conv3x3 s2 C->h1 -> LeakyReLU(0.2) -> conv3x3 s2 h1->h2 -> LeakyReLU(0.2) ->
    global average pool -> Linear(h2 -> K)``; no BatchNorm (its batch statistics would mix the
    domains the discriminator has to tell apart). MGCDA spec, "Architecture" / "MDAT".

    Args:
        in_channels: C of the tapped feature map.
        K: number of source domains (output logits).
        hidden: the two conv widths (h1, h2) [R: (256, 128)].
        reverse: apply the GRL inside :meth:`forward` (True) or leave it to the caller (False).
        negative_slope: LeakyReLU slope [R: 0.2].
    """

    def __init__(self, in_channels: int, K: int, hidden: Sequence[int] = (256, 128), reverse: bool = True,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if K < 2:
            raise ZooError(f"DomainDiscriminator: K (number of domains) must be >= 2, got {K}")
        if len(hidden) != 2:
            raise ZooError(f"DomainDiscriminator: hidden must hold two conv widths, got {list(hidden)}")
        h1, h2 = (int(h) for h in hidden)
        self.reverse = reverse
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, h1, 3, stride=2, padding=1), nn.LeakyReLU(negative_slope),
            nn.Conv2d(h1, h2, 3, stride=2, padding=1), nn.LeakyReLU(negative_slope),
        )
        self.classifier = nn.Linear(h2, K)

    def forward(self, x: Tensor, lam: float = 1.0) -> Tensor:
        """(B, C, h, w) features -> (B, K) domain logits.

        Args:
            x: the tapped feature map.
            lam: GRL strength when ``reverse`` is on (ignored otherwise).
        """
        if self.reverse:
            x = grad_reverse(x, lam)
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class ProjectionHead(nn.Module):
    """CACL pixel projection: ``1x1 C->hidden, BN, ReLU, 1x1 hidden->out``, L2-normalised [R].

    MGCDA spec, "Architecture" (CACL projection head on "dec").

    Args:
        in_channels: C of the decoder feature map.
        hidden: width of the hidden 1x1 conv [R: 256].
        out: embedding dimension D [R: 128].
    """

    def __init__(self, in_channels: int, hidden: int = 256, out: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, D, h, w) fp32 embeddings with unit L2 norm along D."""
        z = self.net(x)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return F.normalize(z.float(), dim=1, eps=1e-12)


class MGCDANet(nn.Module):
    """The segmenter plus MGCDA's training-only parts: one discriminator per tap (MDAT) and the
    projection head (CACL).

    Attribute names (the LightningModule strips these from exported checkpoints): ``segmenter``,
    ``disc_mid`` and ``disc_dec`` (on the segmenter's "mid" and "dec" features; ``None`` when MDAT
    is off), ``proj`` (on "dec"; ``None`` when CACL is off).

    Args:
        segmenter: the base network (see the module docstring for the interface).
        num_domains: K, the number of source domains.
        mdat: build the two domain discriminators.
        cacl: build the projection head.
        disc_hidden: the discriminators' conv widths [R: (256, 128)].
        proj_hidden, proj_dim: the projection head's widths [R: 256, 128].
    """

    def __init__(self, segmenter: nn.Module, num_domains: int = 3, mdat: bool = True, cacl: bool = True,
                 disc_hidden: Sequence[int] = (256, 128), proj_hidden: int = 256, proj_dim: int = 128) -> None:
        super().__init__()
        for attr in ("forward_features", "mid_channels", "dec_channels", "num_classes"):
            if not hasattr(segmenter, attr):
                raise ZooError(f"MGCDANet: the segmenter {type(segmenter).__name__} lacks '{attr}' "
                               "(expected forward_features, mid_channels, dec_channels, num_classes)")
        if (mdat or cacl) and num_domains < 2:
            raise ZooError(f"MGCDANet: MDAT/CACL need num_domains >= 2, got {num_domains}")
        self.segmenter = segmenter
        self.num_domains = int(num_domains)
        self.mdat = bool(mdat)
        self.cacl = bool(cacl)
        mid, dec = int(segmenter.mid_channels), int(segmenter.dec_channels)
        self.disc_mid = DomainDiscriminator(mid, num_domains, disc_hidden) if mdat else None
        self.disc_dec = DomainDiscriminator(dec, num_domains, disc_hidden) if mdat else None
        self.proj = ProjectionHead(dec, proj_hidden, proj_dim) if cacl else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, n+1, H, W) segmenter logits (inference path: no discriminator/head)."""
        return self.segmenter(x)

    def training_outputs(self, x: Tensor, lam: float) -> dict[str, Any]:
        """One training forward pass.

        Args:
            x: (B, 3, H, W) images.
            lam: GRL strength lambda_t for this step (:func:`zoo.mgcda.losses.grl_lambda`).

        Returns:
            ``logits`` (B, n+1, H, W); ``disc``: ``[D_mid (B, K), D_dec (B, K)]`` computed behind the
            GRL (``[]`` when MDAT is off); ``z``: (B, D, H/4, W/4) L2-normalised fp32 embeddings of
            "dec" (``None`` when CACL is off); ``features``: the segmenter's feature dict.
        """
        logits, feats = self.segmenter.forward_features(x)
        disc: list[Tensor] = []
        if self.disc_mid is not None and self.disc_dec is not None:
            disc = [self.disc_mid(feats["mid"], lam), self.disc_dec(feats["dec"], lam)]
        z = self.proj(feats["dec"]) if self.proj is not None else None
        return {"logits": logits, "disc": disc, "z": z, "features": feats}

    def inference_model(self) -> nn.Module:
        """The bare segmenter (the module itself, not a copy): the exported/inference network."""
        return self.segmenter

    def drop_training_parts(self) -> None:
        """Delete the discriminators and the head (after loading a checkpoint for inference)."""
        self.disc_mid = self.disc_dec = self.proj = None
        self.mdat = self.cacl = False


@torch.no_grad()
def pooled_features(segmenter: nn.Module, images: Tensor, tap: str = "mid", batch: int = 64) -> Tensor:
    """Global-average-pooled ``tap`` features (N, C) of a segmenter for the domain probe."""
    out = []
    for i in range(0, len(images), batch):
        feats = segmenter.forward_features(images[i:i + batch])[1][tap]
        out.append(feats.float().mean((2, 3)).cpu())
    return torch.cat(out)


def domain_probe_accuracy(features: Tensor, domains: Tensor, seed: int = 0) -> float:
    """The spec's linear domain probe: accuracy (%) of a logistic regression predicting the domain
    from pooled features, trained on a stratified half and scored on the other half. Chance = 100/K;
    lower means more domain-invariant features (what MDAT aims for)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = features.numpy(), domains.numpy()
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.5, stratify=y, random_state=seed)
    sc = StandardScaler().fit(xa)
    clf = LogisticRegression(max_iter=2000).fit(sc.transform(xa), ya)
    return 100.0 * float((clf.predict(sc.transform(xb)) == yb).mean())
