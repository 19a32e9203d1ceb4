"""MODE: Multi-scale OOD DEtection = ALPA training objective + CSD test-time score.

Ref: Zhang et al., "From Global to Local: Multi-scale Out-of-distribution Detection",
arXiv:2308.10239v1 (IEEE TIP 32, 2023).

Plain PyTorch only (no lightning): region features, the ALPA attention similarity and loss,
the SupCon loss used by MODE-T, the CSD and KNN scores, and the backbone + heads module.

Score convention: :func:`csd_score` and :func:`knn_score` return **higher = more ID**, as in
the paper and knn-ood (the zoo default is higher = more OOD; these two are the documented
exception, because the MODE protocol thresholds S(x) at 95% ID TPR).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.common.vision.backbones import build_backbone
from zoo.core.errors import ZooError
from zoo.common.vision.knn import kth_neighbor_sim, sim_to_sqdist

_COS_EPS = 1e-8
_AGGREGATIONS = ("mean", "max", "sum", "logsumexp")
_HEADS = ("ce", "supcon")


def _no_autocast(t: Tensor) -> torch.autocast:
    """Autocast switched off on ``t``'s device: the losses run in fp32 under ``bf16-mixed``.

    ``.float()`` on an input alone is not enough: inside an autocast region every ``Linear``,
    ``einsum`` and ``@`` would still be cast back to bf16.
    """
    return torch.autocast(device_type=t.device.type, enabled=False)


def _fp32(t: Tensor) -> Tensor:
    """``t`` in at least fp32 (bf16/fp16 are upcast; fp64 stays fp64, for reference checks)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def region_features(fmap: Tensor) -> Tensor:
    """The 6 CSD region vectors of a feature map: 4 quadrants, global and centre.

    Ref: arXiv:2308.10239v1, Sec. III (multi-scale region features Z(x)).

    - Quadrants: ``adaptive_avg_pool2d(fmap, 2)``, row-major: q00 top-left, q01 top-right,
      q10 bottom-left, q11 bottom-right. On odd sizes (e.g. 7x7) the windows overlap by one
      row/column (PyTorch's adaptive pooling: rows [0:4] and [3:7]).
    - Global: mean over the whole map. On a 4x4 (any even) map it equals the quadrant mean.
    - Centre: mean over rows and columns ``[H//4 : H//4 + ceil(H/2)]`` (and the same for W).
      On 4x4 this is the code's ``[1:3, 1:3]``; for other sizes (7x7 -> ``[1:5, 1:5]``) the
      released code has no rule and this is the zoo choice.

    Args:
        fmap: (B, C, H, W) post-ReLU layer4 map, H, W >= 2.

    Returns:
        (B, 6, C) ordered q00, q01, q10, q11, global, centre (not normalised).
    """
    if fmap.ndim != 4:
        raise ValueError(f"region_features expects (B, C, H, W), got shape {tuple(fmap.shape)}")
    b, c, h, w = fmap.shape
    quads = F.adaptive_avg_pool2d(fmap, 2).reshape(b, c, 4).transpose(1, 2)  # (B, 4, C)
    glob = fmap.mean(dim=(2, 3))
    h0, w0 = h // 4, w // 4
    centre = fmap[:, :, h0 : h0 + math.ceil(h / 2), w0 : w0 + math.ceil(w / 2)].mean(dim=(2, 3))
    return torch.cat([quads, glob[:, None], centre[:, None]], dim=1)


def _projector(in_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, in_dim, bias=False), nn.ReLU(), nn.Linear(in_dim, dim, bias=False)
    )


class ALPAAttention(nn.Module):
    """ALPA's cross-image attention similarity s_ij between all pairs of a batch.

    Ref: arXiv:2308.10239v1, Sec. III-B (Attention-based Local PropAgation, ALPA).
    The module follows Spatial Contrastive Learning (Ouali et al. 2021) as reused by MODE.

    Three projectors phi_q, phi_k, phi_v, each ``Linear(C, C, bias=False) -> ReLU ->
    Linear(C, d, bias=False)`` (909,312 parameters at C=512, d=80). For tokens X_i (P x C):

        A_ij = softmax_keys(Q_i K_j^T / sqrt(d))                (P x P, rows sum to 1)
        V~_(j->i) = A_ij V_j                                    (P x d)
        t_ij = agg_p cos(V_i[p], V~_(j->i)[p])
        s_ij = t_ij + t_ji                                       (symmetric, in [-2, 2] for mean)

    Dropout is 0, all N x N pairs are used (no sampling). Projections, attention and similarity
    always run in fp32 with autocast disabled (the module's own weights must be fp32).

    Args:
        in_dim: token width C (512 for CIFAR ResNet-18/34, 2048 for ResNet-50).
        dim: projection width d (80 in the paper, 32 in the zoo's procedural world).
    """

    def __init__(self, in_dim: int, dim: int = 80) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.dim = dim
        self.phi_q = _projector(in_dim, dim)
        self.phi_k = _projector(in_dim, dim)
        self.phi_v = _projector(in_dim, dim)

    def _project(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if tokens.ndim != 3:
            raise ValueError(f"ALPA tokens must be (N, P, C), got shape {tuple(tokens.shape)}")
        return self.phi_q(tokens), self.phi_k(tokens), self.phi_v(tokens)

    def _attention(self, q_anchor: Tensor, k: Tensor) -> Tensor:
        logits = torch.einsum("ipd,jqd->ijpq", q_anchor, k) / math.sqrt(self.dim)
        return logits.softmax(dim=-1)

    def attention(self, tokens: Tensor) -> Tensor:
        """The alignment maps A_ij for all pairs (for inspection and tests).

        Args:
            tokens: (N, P, C) tokens; P = H*W positions flattened row-major.

        Returns:
            (N, N, P, P) with ``A[i, j, p, q]`` the weight of j's position q for i's position p;
            every row (last dim) sums to 1.
        """
        with _no_autocast(tokens):
            q, k, _ = self._project(_fp32(tokens))
            return self._attention(q, k)

    def forward(self, tokens: Tensor, agg: str = "mean", chunk_size: int | None = None) -> Tensor:
        """Pair similarity s for all N x N pairs.

        Memory is O(c * N * P * max(P, d)) for an anchor chunk of size c; ``chunk_size`` bounds
        it without changing the result (anchors are independent).

        Args:
            tokens: (N, P, C) post-ReLU layer4 tokens, (N, C, H, W) flattened row-major over
                positions: ``fmap.flatten(2).transpose(1, 2)``.
            agg: aggregation over positions p: ``"mean"`` (paper/code default), ``"max"``,
                ``"sum"`` or ``"logsumexp"``.
            chunk_size: number of anchors i processed at once; None = all N.

        Returns:
            (N, N) symmetric similarity s (diagonal included; callers mask it).
        """
        if agg not in _AGGREGATIONS:
            raise ValueError(f"agg must be one of {_AGGREGATIONS}, got {agg!r}")
        with _no_autocast(tokens):
            return self._similarity(_fp32(tokens), agg, chunk_size)

    def _similarity(self, tokens: Tensor, agg: str, chunk_size: int | None) -> Tensor:
        q, k, v = self._project(tokens)
        n = tokens.shape[0]
        step = n if chunk_size is None else max(1, int(chunk_size))
        v_unit = F.normalize(v, dim=-1, eps=_COS_EPS)  # (N, P, d)
        rows = []
        for start in range(0, n, step):
            stop = min(start + step, n)
            attn = self._attention(q[start:stop], k)  # (c, N, P, P)
            aligned = torch.einsum("ijpq,jqd->ijpd", attn, v)  # V~_(j->i), (c, N, P, d)
            aligned = F.normalize(aligned, dim=-1, eps=_COS_EPS)
            cos = torch.einsum("ipd,ijpd->ijp", v_unit[start:stop], aligned)  # (c, N, P)
            rows.append(_aggregate(cos, agg))
        t = torch.cat(rows, dim=0)  # t_ij, (N, N)
        return t + t.T


def _aggregate(cos: Tensor, agg: str) -> Tensor:
    if agg == "mean":
        return cos.mean(dim=-1)
    if agg == "max":
        return cos.amax(dim=-1)
    if agg == "sum":
        return cos.sum(dim=-1)
    return torch.logsumexp(cos, dim=-1)


def alpa_loss(sim: Tensor, labels: Tensor, inv_temperature: float = 10.0) -> Tensor:
    """Supervised-contrastive loss on the ALPA pair similarity.

    Ref: arXiv:2308.10239v1, Sec. III-B, ALPA objective (code form,
    ``temperature_s=10`` multiplies, i.e. tau = 0.1):

        L = -(1/N) sum_i (1/|P(i)|) sum_{j in P(i)}
                log( exp(s_ij/tau) / sum_{a != i} exp(s_ia/tau) )

    with P(i) = {j != i : y_j = y_i}. Self-pairs are excluded from numerator and denominator.
    An anchor with no positives contributes 0 but still counts in the 1/N mean (unlike
    :func:`supcon_loss`). There is no base-temperature factor. Computed in fp32 with autocast
    disabled.

    Args:
        sim: (N, N) pair similarity s from :class:`ALPAAttention`.
        labels: (N,) integer labels (repeated for both views).
        inv_temperature: 1/tau (10 in the paper).

    Returns:
        Scalar loss.
    """
    n = sim.shape[0]
    if sim.shape != (n, n) or labels.shape != (n,):
        raise ValueError(f"alpa_loss needs sim (N, N) and labels (N,), got {tuple(sim.shape)}, "
                         f"{tuple(labels.shape)}")
    if n < 2:
        return _fp32(sim).sum() * 0.0
    with _no_autocast(sim):
        return _alpa_loss_fp32(_fp32(sim), labels, inv_temperature)


def _alpa_loss_fp32(sim: Tensor, labels: Tensor, inv_temperature: float) -> Tensor:
    n = sim.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=sim.device)
    logits = (sim * inv_temperature).masked_fill(self_mask, float("-inf"))
    logits = logits - logits.amax(dim=1, keepdim=True).detach()
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
    per_anchor = pos_log_prob / positives.sum(dim=1).clamp(min=1)
    return -per_anchor.sum() / n


def supcon_loss(
    features: Tensor, labels: Tensor, temperature: float = 0.1, base_temperature: float = 0.07
) -> Tensor:
    """SupContrast loss (Khosla et al. 2020), ``contrast_mode="all"``, used by MODE-T.

    Ref: arXiv:2308.10239v1, Sec. IV (MODE-T = L_SupCon + lambda L_ALPA)
    (SupContrast carries the tau/0.07 factor, 1.43 at tau = 0.1).

        L = (tau / tau_b) * mean_{i: |P(i)|>0} -(1/|P(i)|) sum_{j in P(i)}
            log( exp(z_i.z_j/tau) / sum_{a != i} exp(z_i.z_a/tau) )

    The N rows are all views (the caller stacks both crops, labels repeated), positives are
    same-label rows excluding self. The mean runs over anchors with at least one positive.
    This differs from :func:`alpa_loss` (which divides by N) only when some anchor has no
    positive, which cannot happen with two views per image. The normalisation and the N x N matrix
    product run in fp32 with autocast disabled (under ``bf16-mixed`` a bare ``z @ z.T`` would be
    computed in bf16).

    Args:
        features: (N, D) embeddings; L2-normalised here (a no-op for the unit-norm ``proj``).
        labels: (N,) integer labels.
        temperature: tau.
        base_temperature: tau_b (0.07 in SupContrast).

    Returns:
        Scalar loss (0 with grad if no anchor has a positive).
    """
    n = features.shape[0]
    if features.ndim != 2 or labels.shape != (n,):
        raise ValueError(f"supcon_loss needs features (N, D) and labels (N,), got "
                         f"{tuple(features.shape)}, {tuple(labels.shape)}")
    self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = positives.sum(dim=1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return _fp32(features).sum() * 0.0
    with _no_autocast(features):
        z = F.normalize(_fp32(features), dim=1)
        logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
        logits = logits - logits.amax(dim=1, keepdim=True).detach()
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    mean_log_prob_pos = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    return -(temperature / base_temperature) * mean_log_prob_pos[has_pos].mean()


def csd_score(
    regions: Tensor, bank: Tensor | Sequence[Tensor], k: int = 10, **knn_kwargs
) -> Tensor:
    """Cross-Scale Decision score S(x) = max_r(-d_r); **higher = more ID**.

    Ref: arXiv:2308.10239v1, Sec. III-C (CSD, the equation for S(x)). Each of the 6 test regions is L2-normalised; d_r is its squared L2 distance to
    its k-th nearest neighbour in one bank holding all 6 normalised regions of every ID train
    image, d_r = 2 - 2 sim_k. S lies in [-4, 0] (clamped against rounding). It is a max over
    regions, not a mean, and there is one shared bank (no per-scale banks).

    Args:
        regions: (Q, 6, C) region vectors from :func:`region_features` (any norm).
        bank: (M, C) unit rows, or a sequence of shards (see ``zoo.common.vision.knn``).
        k: neighbour rank (10 in the code).
        **knn_kwargs: passed to ``zoo.common.vision.knn.kth_neighbor_sim`` (``chunk_size``,
            ``device``, ``precision``).

    Returns:
        (Q,) scores in [-4, 0].
    """
    if regions.ndim != 3:
        raise ValueError(f"csd_score expects regions (Q, R, C), got {tuple(regions.shape)}")
    q, r, c = regions.shape
    flat = F.normalize(regions.reshape(q * r, c).float(), dim=1)
    sim_k = kth_neighbor_sim(flat, bank, k, **knn_kwargs).reshape(q, r)
    return (-sim_to_sqdist(sim_k)).amax(dim=1)


def knn_score(
    global_feats: Tensor, bank_global: Tensor | Sequence[Tensor], k: int = 50, **knn_kwargs
) -> Tensor:
    """KNN baseline score (Sun et al., ICML'22): -d_k on the global feature; **higher = more ID**.

    Ref: arXiv:2308.10239v1, Sec. IV (KNN baseline) (k=50 CIFAR-10, 200
    CIFAR-100, 1000 ImageNet; also report it at CSD's k).

    Args:
        global_feats: (Q, C) global pooled features (L2-normalised here).
        bank_global: (M, C) unit-norm global features of ID train images, or shards.
        k: neighbour rank.
        **knn_kwargs: passed to ``zoo.common.vision.knn.kth_neighbor_sim``.

    Returns:
        (Q,) scores -d_k in [-4, 0], d_k = 2 - 2 sim_k.
    """
    if global_feats.ndim != 2:
        raise ValueError(f"knn_score expects (Q, C), got {tuple(global_feats.shape)}")
    queries = F.normalize(global_feats.float(), dim=1)
    sim_k = kth_neighbor_sim(queries, bank_global, k, **knn_kwargs)
    return -sim_to_sqdist(sim_k)


class MODEModel(nn.Module):
    """Backbone + CE head + SupCon head + ALPA attention (MODE-T / MODE-F / baselines).

    Ref: arXiv:2308.10239v1, Sec. III and "Objectives". Both heads always
    exist so every checkpoint has the same keys; ``head`` records which one trains the
    backbone (``"ce"``: Linear(C, n_cls); ``"supcon"``: MLP C->C->ReLU->supcon_dim, unit norm).
    Neither head is used by CSD, which reads the post-ReLU layer4 map.

    Args:
        backbone: a name in ``zoo.common.vision.backbones.BACKBONES``.
        num_classes: ID classes for the CE head.
        head: ``"ce"`` or ``"supcon"``.
        alpa_dim: ALPA projection width d.
        supcon_dim: SupCon embedding width.
        backbone_weights: optional local weight file for the backbone (strict load).
        backbone_weights_prefix: key prefix to select and strip in that file (e.g. ``"module."``);
            see ``zoo.common.vision.backbones.build_backbone``.
    """

    def __init__(
        self,
        backbone: str = "world_resnet",
        num_classes: int = 6,
        head: str = "ce",
        alpa_dim: int = 80,
        supcon_dim: int = 128,
        backbone_weights: str | None = None,
        backbone_weights_prefix: str = "",
    ) -> None:
        super().__init__()
        if head not in _HEADS:
            raise ZooError(f"unknown MODE head {head!r}; expected one of {_HEADS}")
        self.head = head
        self.backbone = build_backbone(
            backbone, weights=backbone_weights, weights_prefix=backbone_weights_prefix
        )
        c = int(self.backbone.num_features)
        self.num_features = c
        self.fc = nn.Linear(c, num_classes)
        self.proj = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, supcon_dim))
        self.alpa = ALPAAttention(c, alpa_dim)
        # channels-last convolutions: 1.35x (train) to 1.5x (eval) faster on CPU, and the layout
        # tensor cores want on GPUs; the state dict is unchanged.
        self.backbone.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Features for every MODE objective and score.

        Args:
            x: (B, 3, H, W) images.

        Returns:
            Dict with ``fmap`` (B, C, h, w) post-ReLU layer4 map; ``tokens`` (B, h*w, C),
            row-major positions for :class:`ALPAAttention`; ``regions`` (B, 6, C) from
            :func:`region_features` (not normalised); ``global`` (B, C) = ``regions[:, 4]``;
            ``logits`` (B, num_classes) from ``fc`` on the global pool; ``proj``
            (B, supcon_dim) L2-normalised SupCon embedding.
        """
        fmap = self.backbone.forward_features(x.contiguous(memory_format=torch.channels_last))
        tokens = fmap.flatten(2).transpose(1, 2)
        regions = region_features(fmap)
        glob = regions[:, 4]
        return {
            "fmap": fmap,
            "tokens": tokens,
            "regions": regions,
            "global": glob,
            "logits": self.fc(glob),
            "proj": F.normalize(self.proj(glob), dim=1),
        }
