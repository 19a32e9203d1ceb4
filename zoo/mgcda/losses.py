"""MGCDA's losses, schedules and anomaly score.

Ref: Zhang et al., "Improving Anomaly Segmentation with Multi-Granularity Cross-Domain
Alignment", ACM MM 2023, arXiv:2308.08696v1 (only the abstract and Fig. 2 were available: the MDAT
and CACL formulas follow the zoo spec ``specs/mgcda.md``, "Losses", every number [R]). The base
methods: PEBAL (Tian et al., "Pixel-wise Energy-biased Abstention Learning for Anomaly Segmentation
on Complex Urban Driving Scenes", ECCV 2022, arXiv:2111.12264, Sec. 3, with the constants of its
public ``code/losses.py``) and Meta-OoD (Chan et al., "Entropy Maximization and Meta Classification
for Out-of-Distribution Detection in Semantic Segmentation", ICCV 2021, arXiv:2012.06575, Sec. 3).
We could not check the base papers' equation numbers, so the citations below name the paper's
section and the spec section instead of "Eq. (N)".

Total (spec): ``L = L_base + L_MDAT + lambda_cl * L_CACL``.

Label conventions: ``label`` (B, H, W) int64, classes 0..n-1, 254 = pasted (outlier-exposure)
anomaly, 255 = void. Every loss runs in fp32 with autocast off (energies, soft CE and contrastive
logits must not be bf16) and returns a zero that is still attached to the graph when its pixel
set is empty, so ``backward()`` always works.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.core.errors import ZooError

OE_INDEX = 254
VOID_INDEX = 255
_NEG = -1e9  # a finite "minus infinity" for masked logsumexp (keeps gradients finite)


def _no_autocast(t: Tensor) -> torch.autocast:
    return torch.autocast(device_type=t.device.type, enabled=False)


def _check_labels(label: Tensor, n: int, where: str) -> None:
    bad = (label < 0) | ((label >= n) & (label != OE_INDEX) & (label != VOID_INDEX))
    if bool(bad.any()):
        v = int(label[bad][0])
        raise ZooError(f"{where}: label values must be 0..{n - 1}, {OE_INDEX} (OE anomaly) or {VOID_INDEX} "
                       f"(void), got {v}")


def _check_shapes(logits: Tensor, label: Tensor, where: str) -> None:
    if logits.ndim != 4 or label.shape != (logits.shape[0], *logits.shape[2:]):
        raise ZooError(f"{where}: logits (B, C, H, W) and label (B, H, W) must match, got "
                       f"{tuple(logits.shape)} and {tuple(label.shape)}")


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask`` (float 0/1, broadcastable); 0 (attached) when the mask is empty."""
    return (x * mask).sum() / mask.expand_as(x).sum().clamp(min=1.0)


# ----------------------------------------------------------------------------- blur and score
def gaussian_blur(x: Tensor, kernel: int = 7, sigma: float = 1.0) -> Tensor:
    """Separable Gaussian blur of a stack of maps, as ``torchvision.transforms.GaussianBlur``.

    The 1-D kernel is ``exp(-t^2 / (2 sigma^2))`` on ``t = -(k-1)/2 .. (k-1)/2``, normalised;
    borders are reflect-padded (replicate-padded when a side is not longer than ``k // 2``, where
    reflection is undefined).

    Args:
        x: (B, H, W) maps.
        kernel: odd kernel size k >= 1; sigma: > 0.

    Returns:
        (B, H, W) blurred maps, fp32.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ZooError(f"gaussian blur kernel must be an odd integer >= 1, got {kernel}")
    if sigma <= 0:
        raise ZooError(f"gaussian blur sigma must be > 0, got {sigma}")
    y = x.float()[:, None]
    if kernel == 1:
        return y[:, 0]
    half = (kernel - 1) / 2
    t = torch.linspace(-half, half, kernel, dtype=torch.float32, device=x.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    p = kernel // 2
    mode = "reflect" if min(y.shape[-2:]) > p else "replicate"
    y = F.pad(y, (p, p, p, p), mode=mode)
    y = F.conv2d(y, g.view(1, 1, 1, kernel))
    y = F.conv2d(y, g.view(1, 1, kernel, 1))
    return y[:, 0]


def anomaly_score(logits: Tensor, num_classes: int, blur: bool = True, kernel: int = 7,
                  sigma: float = 1.0) -> Tensor:
    """Pixel anomaly score: the free energy of the class logits, Gaussian-blurred.

    ``s = GaussBlur_{k, sigma}(-logsumexp_{c < n} f_c)``; the abstention channel (index n and
    above) is ignored. Higher = more anomalous. PEBAL, arXiv:2111.12264, Sec. 3 (the free energy
    as anomaly score, Gaussian-smoothed at inference); MGCDA spec, "Inference and anomaly score".

    Args:
        logits: (B, C, H, W) with C >= num_classes (upsample to the input size first).
        num_classes: n, the number of semantic class logits.
        blur: apply the Gaussian blur; kernel, sigma: its size (odd) and width.

    Returns:
        (B, H, W) fp32 scores.
    """
    if logits.ndim != 4 or logits.shape[1] < num_classes:
        raise ZooError(f"anomaly_score: logits must be (B, C >= {num_classes}, H, W), got {tuple(logits.shape)}")
    with _no_autocast(logits):
        e = -torch.logsumexp(logits[:, :num_classes].float(), dim=1)
        return gaussian_blur(e, kernel, sigma) if blur else e


# ----------------------------------------------------------------------------- schedules (MDAT)
def grl_lambda(p: float, scale: float = 0.1, gamma: float = 10.0) -> float:
    """GRL strength ramp ``lambda_t = scale * (2 / (1 + exp(-gamma p)) - 1)`` [R: scale 0.1, gamma 10].

    Ref: Ganin & Lempitsky, arXiv:1409.7495 (DANN), the lambda_p = 2/(1+exp(-10 p)) - 1 ramp of its
    experiments section, scaled; MGCDA spec, "MDAT".

    Args:
        p: training progress step/total, clipped to [0, 1].
    """
    p = min(1.0, max(0.0, float(p)))
    return scale * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def smoothing_eps(p: float, eps_max: float = 0.2, K: int = 3,
                  mode: Literal["linear", "constant", "adaptive"] = "linear", acc: float | None = None) -> float:
    """Dynamic label-smoothing strength eps_t of the soft domain labels [R].

    MGCDA spec, "MDAT": ``linear``: ``eps_t = eps_max * p``; ``constant``: ``eps_max``;
    ``adaptive``: ``eps_max * clip((a_t - 1/K) / (1 - 1/K), 0, 1)`` with ``a_t`` (``acc``) an EMA
    of the discriminators' accuracy (:class:`DomainAccuracyEMA`). ``eps_max < (K-1)/K`` is
    required: at ``(K-1)/K`` the target is uniform and carries no domain information.

    Args:
        p: progress in [0, 1] (clipped).
        eps_max: the largest smoothing [R: 0.2]; K: number of domains (>= 2).
        mode: the schedule; acc: a_t, required for ``adaptive``.
    """
    if K < 2:
        raise ZooError(f"smoothing_eps: K (number of domains) must be >= 2, got {K}")
    if not 0.0 <= eps_max < (K - 1) / K:
        raise ZooError(f"eps_max must be in [0, (K-1)/K) = [0, {(K - 1) / K:.4f}) for K={K}, got {eps_max}")
    p = min(1.0, max(0.0, float(p)))
    if mode == "linear":
        return eps_max * p
    if mode == "constant":
        return float(eps_max)
    if mode == "adaptive":
        if acc is None:
            raise ZooError("smoothing_eps: mode='adaptive' needs acc (the EMA of discriminator accuracy)")
        return eps_max * min(1.0, max(0.0, (float(acc) - 1.0 / K) / (1.0 - 1.0 / K)))
    raise ZooError(f"smoothing_eps: mode must be 'linear', 'constant' or 'adaptive', got {mode!r}")


class DomainAccuracyEMA(nn.Module):
    """``a_t``: an exponential moving average of the discriminators' domain accuracy (for the
    adaptive smoothing schedule), kept as a buffer so it is checkpointed. Starts at chance, 1/K.

    Args:
        K: number of domains; momentum: ``a <- momentum * a + (1 - momentum) * acc`` [R: 0.99].
    """

    def __init__(self, K: int, momentum: float = 0.99) -> None:
        super().__init__()
        self.momentum = float(momentum)
        self.register_buffer("value", torch.tensor(1.0 / K))

    @torch.no_grad()
    def update(self, disc_logits: list[Tensor], domain: Tensor) -> float:
        """Fold in this batch's accuracy (mean over taps of ``argmax == domain``); returns a_t."""
        acc = torch.stack([(z.argmax(1) == domain).float().mean() for z in disc_logits]).mean()
        self.value.mul_(self.momentum).add_((1.0 - self.momentum) * acc.to(self.value))
        return float(self.value)


def soft_domain_targets(domain: Tensor, K: int, eps: float) -> Tensor:
    """``y~ = (1 - eps) * onehot(d) + eps / K``: each row sums to 1. MGCDA spec, "MDAT".

    Args:
        domain: (B,) int64 in 0..K-1; eps: smoothing in [0, (K-1)/K).

    Returns:
        (B, K) fp32 targets.
    """
    if domain.ndim != 1:
        raise ZooError(f"domain must be (B,), got shape {tuple(domain.shape)}")
    if bool(((domain < 0) | (domain >= K)).any()):
        raise ZooError(f"domain labels must be in 0..{K - 1}, got {sorted(set(domain.tolist()))}")
    if not 0.0 <= eps < (K - 1) / K:
        raise ZooError(f"label smoothing eps must be in [0, (K-1)/K) for K={K}, got {eps}")
    onehot = F.one_hot(domain.long(), K).float()
    return (1.0 - eps) * onehot + eps / K


def mdat_loss(disc_logits: list[Tensor], domain: Tensor, eps: float) -> Tensor:
    """Multi-level domain adversarial loss ``sum_s mean_i CE(D_s(GRL(f_s(x_i))), y~_i)``.

    MGCDA spec, "MDAT" [R]: soft cross-entropy ``-sum_k y~_ik log softmax(D_s)_ik`` against the
    smoothed one-hot domain labels (:func:`soft_domain_targets`), mean over images, summed over
    the taps. The GRL sits inside the discriminators, so minimising this trains the
    discriminators and pushes the features towards domain confusion.

    Args:
        disc_logits: one (B, K) logit tensor per tap.
        domain: (B,) int64 domain labels.
        eps: eps_t (:func:`smoothing_eps`).

    Returns:
        Scalar fp32 loss.
    """
    if not disc_logits:
        raise ZooError("mdat_loss: no discriminator logits (MDAT needs at least one tap)")
    K = disc_logits[0].shape[1]
    with _no_autocast(disc_logits[0]):
        target = soft_domain_targets(domain.to(disc_logits[0].device), K, eps)
        total = disc_logits[0].new_zeros((), dtype=torch.float32)
        for z in disc_logits:
            if z.shape != (domain.shape[0], K):
                raise ZooError(f"mdat_loss: every tap must give (B, K) = ({domain.shape[0]}, {K}) logits, "
                               f"got {tuple(z.shape)}")
            total = total + (-(target * F.log_softmax(z.float(), dim=1)).sum(1)).mean()
    return total


# ----------------------------------------------------------------------------- base losses
def pebal_loss(logits: Tensor, label: Tensor, *, ood_weight: float = 0.1, energy_weight: float = 0.1,
               m_in: float = -12.0, m_out: float = -6.0, sparse_weight: float = 5e-4, smooth_weight: float = 3e-6,
               reward_blur: bool = True, reward_kernel: int = 7, reward_sigma: float = 1.0,
               reward_min: float = 1e-6, detach_reward: bool = False) -> dict[str, Tensor]:
    """PEBAL: pixel-wise abstention learning + energy hinge + smoothness and sparsity of E.

    PEBAL, arXiv:2111.12264, Sec. 3: the total loss (abstention + lambda * energy loss + the
    smoothness/sparsity regulariser), the pixel-wise abstention loss with the energy-adaptive
    reward, the energy hinge; constants from its public ``code/losses.py`` and
    ``code/engine/trainer.py``; MGCDA spec, "Losses / Base (PEBAL)". With
    ``f`` the (n+1) logits, ``p = softmax(f)``, ``E = -logsumexp(f_1..n)`` and the reward
    ``r = GaussBlur_{7,1}(logsumexp(f_1..n)^2)`` (square, then blur, as the code does):

    - ``abstention``: per image group, ``-mean_{inlier} log(p_y + p_{n+1}/r)`` plus, for images
      holding OE pixels, ``ood_weight * mean_{OE pixel, c < n} [-log(p_c + p_{n+1}/r)]``; the
      group without OE and the group with OE are computed separately and summed. Void is skipped.
      (The public code applies ``log`` twice to the OE term, an evident slip; we use one log, as
      the spec and the paper's abstention loss do.)
    - ``energy``: ``0.5 * [mean_in ReLU(E - m_in)^2 + mean_OE ReLU(m_out - E)^2]``; with no OE
      pixel in the batch, the in-term alone, unhalved.
    - ``sparse``: ``||E_OE||_2`` (L2 norm over the OE pixels; 0 without OE pixels).
    - ``smooth``: ``(sum (E[i+1, j] - E[i, j])^2 + sum (E[i, j+1] - E[i, j])^2) / 2`` over all
      pixels of the batch (a sum, not a mean).
    - ``loss = abstention + energy_weight * (energy + sparse_weight * sparse + smooth_weight * smooth)``
      (the code's ``loss += 0.1 * energy_loss`` scales all three energy terms).

    ``log(p_y + p_{n+1}/r)`` is computed as ``logaddexp(log p_y, log p_{n+1} - log r)``, exact and
    free of the code's 1e-7 clamp. The reward is not detached (as in the code) unless
    ``detach_reward``; it is clamped at ``reward_min`` so ``log r`` stays finite.

    Args:
        logits: (B, n+1, H, W); the last channel is the abstention channel.
        label: (B, H, W) int64, 0..n-1, 254 OE, 255 void.
        ood_weight: weight of the OE abstention term (0.1). energy_weight: 0.1. m_in, m_out: -12, -6.
        sparse_weight, smooth_weight: 5e-4, 3e-6 (inside ``energy_weight``).
        reward_blur, reward_kernel, reward_sigma: the reward's Gaussian blur (7, 1.0).
        reward_min: lower clamp of r. detach_reward: stop gradients through r.

    Returns:
        dict of fp32 scalars: ``loss``, ``abstention``, ``energy`` (the hinge), ``smooth``, ``sparse``
        (the last three unweighted).
    """
    _check_shapes(logits, label, "pebal_loss")
    n = logits.shape[1] - 1
    if n < 1:
        raise ZooError(f"pebal_loss: logits need n >= 1 class channels plus the abstention channel, got "
                       f"{logits.shape[1]} channels")
    _check_labels(label, n, "pebal_loss")
    with _no_autocast(logits):
        f = logits.float()
        logp = F.log_softmax(f, dim=1)  # (B, n+1, H, W)
        lse = torch.logsumexp(f[:, :n], dim=1)  # (B, H, W)
        r = lse.pow(2)
        if reward_blur:
            r = gaussian_blur(r, reward_kernel, reward_sigma)
        r = r.clamp(min=reward_min)
        if detach_reward:
            r = r.detach()
        log_abst = logp[:, n] - torch.log(r)  # log(p_{n+1} / r)
        log_q = torch.logaddexp(logp[:, :n], log_abst[:, None])  # (B, n, H, W): log(p_c + p_{n+1}/r)

        # masked sums instead of boolean indexing: no host sync, no pixel copies; an empty set gives 0
        inlier = (label < n).float()
        oe = (label == OE_INDEX).float()
        nll_y = -log_q.gather(1, label.clamp(0, n - 1)[:, None])[:, 0]  # (B, H, W)
        img_oe = (oe.flatten(1).sum(1) > 0).float()[:, None, None]  # (B, 1, 1): image holds OE pixels
        abst_no_oe = _masked_mean(nll_y, inlier * (1.0 - img_oe))
        abst_in_oe = _masked_mean(nll_y, inlier * img_oe)
        out_term = (-log_q * oe[:, None]).sum() / (oe.sum() * n).clamp(min=1.0)  # mean over OE pixels, classes
        abstention = abst_no_oe + abst_in_oe + ood_weight * out_term

        e = -lse
        any_oe = (oe.sum() > 0).float()
        hinge_in = _masked_mean(F.relu(e - m_in).pow(2), inlier)
        hinge_out = _masked_mean(F.relu(m_out - e).pow(2), oe)
        energy = any_oe * 0.5 * (hinge_in + hinge_out) + (1.0 - any_oe) * hinge_in
        sparse = torch.linalg.vector_norm(e * oe)  # ||E_OE||_2 (0, with a 0 gradient, without OE)
        smooth = ((e[:, 1:] - e[:, :-1]).pow(2).sum() + (e[:, :, 1:] - e[:, :, :-1]).pow(2).sum()) / 2
        loss = abstention + energy_weight * (energy + sparse_weight * sparse + smooth_weight * smooth)
    return {"loss": loss, "abstention": abstention, "energy": energy, "smooth": smooth, "sparse": sparse}


def meta_ood_loss(logits: Tensor, label: Tensor, alpha: float = 0.9,
                  num_classes: int | None = None) -> dict[str, Tensor]:
    """Meta-OoD outlier exposure: CE on inliers + a uniform-target CE on OE pixels.

    Meta-OoD, arXiv:2012.06575, Sec. 3 (entropy maximisation: ``(1 - lambda) l_in + lambda l_out``,
    lambda = 0.9); MGCDA spec, "Baselines" (B2). The exact formula used here::

        L = (1 - alpha) * mean_{inlier} [-log p_y] + alpha * mean_{OE pixel} [-(1/n) sum_c log p_c]

    with ``p = softmax`` over the first n logits: each pixel set is averaged on its own, then mixed
    by alpha. (Meta-OoD's public code mixes both pixel sets in one target tensor and averages
    over all pixels at once, which weights inliers against OE pixels by their counts; the zoo
    fixes the normalised form above.) A term whose pixel set is empty is 0.

    Args:
        logits: (B, C, H, W); the first ``num_classes`` channels are used (default: all C).
        label: (B, H, W) int64, 0..n-1, 254 OE, 255 void.
        alpha: weight of the OE term (0.9).

    Returns:
        dict of fp32 scalars ``loss``, ``ce`` (inlier CE), ``oe`` (uniform-target CE).
    """
    _check_shapes(logits, label, "meta_ood_loss")
    n = logits.shape[1] if num_classes is None else int(num_classes)
    _check_labels(label, n, "meta_ood_loss")
    with _no_autocast(logits):
        logp = F.log_softmax(logits[:, :n].float(), dim=1)
        inlier, oe = (label < n).float(), (label == OE_INDEX).float()
        ce = _masked_mean(-logp.gather(1, label.clamp(0, n - 1)[:, None])[:, 0], inlier)
        oe_term = _masked_mean(-logp.mean(1), oe)
        loss = (1.0 - alpha) * ce + alpha * oe_term
    return {"loss": loss, "ce": ce, "oe": oe_term}


def plain_ce_loss(logits: Tensor, label: Tensor, num_classes: int | None = None) -> dict[str, Tensor]:
    """Pixel cross-entropy over inlier pixels (OE 254 and void 255 ignored): stage A / no-OE baseline.

    ``L = mean_{inlier} [-log softmax(f_1..n)_y]`` (MGCDA spec, "Baselines", B0).

    Args:
        logits: (B, C, H, W); the first ``num_classes`` channels are used (default: all C).
        label: (B, H, W) int64.

    Returns:
        dict of fp32 scalars ``loss`` and ``ce`` (equal; 0, attached, when no pixel is an inlier).
    """
    _check_shapes(logits, label, "plain_ce_loss")
    n = logits.shape[1] if num_classes is None else int(num_classes)
    _check_labels(label, n, "plain_ce_loss")
    with _no_autocast(logits):
        logp = F.log_softmax(logits[:, :n].float(), dim=1)
        ce = _masked_mean(-logp.gather(1, label.clamp(0, n - 1)[:, None])[:, 0], (label < n).float())
    return {"loss": ce, "ce": ce}


# ----------------------------------------------------------------------------- CACL
def cacl_sample(label_small: Tensor, energy_small: Tensor, domain: Tensor, anchors_per_kind: int = 64,
                max_anchors: int = 1024, min_anomaly: int = 16, hard_fraction: float = 0.5,
                keep_fraction: float = 0.5, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """CACL's anomaly-aware hard sampling (MGCDA spec, "CACL", steps 1-3) [R, every number].

    1. Hard images: images with >= ``min_anomaly`` anomaly (254) pixels and >= 1 normal pixel;
       ``margin_i = mean_anomaly(s) - mean_normal(s)``; per domain keep the
       ``ceil(keep_fraction * B_d)`` with the smallest margin (B_d = that domain's hard images).
    2. Per kept image and kind (anomaly / normal), ``min(anchors_per_kind, count)`` pixels:
       ``ceil(hard_fraction * k)`` hardest (anomaly: lowest s; normal: highest s), the rest drawn
       at random from the remaining pixels of that kind.
    3. All sampled pixels form the contrast set; at most ``max_anchors`` of them (a random subset)
       are anchors.

    Runs on CPU (a handful of small index tensors); ``s`` is detached.

    Args:
        label_small: (B, h, w) labels on the embedding grid (nearest-downsampled).
        energy_small: (B, h, w) energy E on that grid (the hardness score s).
        domain: (B,) int64.
        generator: a CPU ``torch.Generator`` for the random draws (default: the global RNG).

    Returns:
        dict of CPU tensors over the M sampled pixels: ``image`` (M,), ``pixel`` (M,) flat index in
        h*w, ``anomaly`` (M,) bool, ``domain`` (M,), ``anchor`` (M,) bool; and ``kept`` (the kept
        image indices, sorted).
    """
    if label_small.shape != energy_small.shape or label_small.ndim != 3 or domain.shape != label_small.shape[:1]:
        raise ZooError(f"cacl: label_small {tuple(label_small.shape)} and energy_small {tuple(energy_small.shape)} "
                       f"must be (B, h, w) and domain {tuple(domain.shape)} must be (B,)")
    lab = label_small.detach().cpu().flatten(1)
    s = energy_small.detach().float().cpu().flatten(1)
    dom = domain.detach().cpu().long()
    anom = lab == OE_INDEX
    norm = (lab != OE_INDEX) & (lab != VOID_INDEX) & (lab >= 0)
    n_anom, n_norm = anom.sum(1), norm.sum(1)
    eligible = (n_anom >= min_anomaly) & (n_norm >= 1)
    margin = (s * anom).sum(1) / n_anom.clamp(min=1) - (s * norm).sum(1) / n_norm.clamp(min=1)
    kept: list[int] = []
    for d in torch.unique(dom[eligible]).tolist():
        idx = torch.nonzero(eligible & (dom == d)).flatten()
        keep = math.ceil(keep_fraction * idx.numel())
        order = torch.argsort(margin[idx], stable=True)
        kept += idx[order[:keep]].tolist()
    kept.sort()
    images, pixels, kinds = [], [], []
    for i in kept:
        for is_anom, mask in ((True, anom[i]), (False, norm[i])):
            pix = torch.nonzero(mask).flatten()
            k = min(anchors_per_kind, pix.numel())
            n_hard = min(k, math.ceil(hard_fraction * k))
            order = torch.argsort(s[i, pix], descending=not is_anom, stable=True)
            hard, rest = pix[order[:n_hard]], pix[order[n_hard:]]
            rand = rest[torch.randperm(rest.numel(), generator=generator)[: k - n_hard]]
            chosen = torch.cat([hard, rand])
            images.append(torch.full_like(chosen, i))
            pixels.append(chosen)
            kinds.append(torch.full((chosen.numel(),), is_anom, dtype=torch.bool))
    empty = torch.zeros(0, dtype=torch.long)
    image = torch.cat(images) if images else empty
    pixel = torch.cat(pixels) if pixels else empty
    kind = torch.cat(kinds) if kinds else empty.bool()
    anchor = torch.ones(image.numel(), dtype=torch.bool)
    if image.numel() > max_anchors:
        anchor[:] = False
        anchor[torch.randperm(image.numel(), generator=generator)[:max_anchors]] = True
    return {"image": image, "pixel": pixel, "anomaly": kind, "domain": dom[image], "anchor": anchor,
            "kept": torch.tensor(kept, dtype=torch.long)}


def cacl_loss(z: Tensor, label_small: Tensor, energy_small: Tensor, domain: Tensor, tau: float = 0.1,
              anchors_per_kind: int = 64, max_anchors: int = 1024, min_anomaly: int = 16,
              generator: torch.Generator | None = None, hard_fraction: float = 0.5,
              keep_fraction: float = 0.5) -> dict[str, Tensor | int]:
    """Cross-domain anomaly-aware contrastive loss (MGCDA spec, "CACL", step 4) [R].

    On the pixels of :func:`cacl_sample`, for each anchor a, the contrast set is the sampled pixels
    of images from *other* domains; positives P(a) share a's kind (anomaly / normal), negatives
    N(a) do not::

        L = mean_a -(1/|P(a)|) sum_{p in P(a)} log[ e^{z_a.z_p/tau} / (e^{z_a.z_p/tau} + sum_{n in N(a)} e^{z_a.z_n/tau}) ]

    over the anchors with |P(a)| >= 1 (RPL/CoroCL-style: each positive against the negatives only).
    fp32 with autocast off. With no hard image, fewer than 2 kept domains, or no anchor with a
    positive, the loss is 0 attached to ``z``'s graph.

    Args:
        z: (B, D, h, w) L2-normalised embeddings (:class:`zoo.mgcda.torch_model.ProjectionHead`).
        label_small: (B, h, w) labels nearest-downsampled to z's grid (0..n-1 normal, 254 anomaly,
            255 void).
        energy_small: (B, h, w) energy on that grid (detached here).
        domain: (B,) int64 domains.
        tau: temperature [R: 0.1]; anchors_per_kind [R: 64]; max_anchors [R: 1024];
        min_anomaly: anomaly pixels an image needs to count as hard [R: 16];
        hard_fraction, keep_fraction: share of hardest anchors and of kept images [R: 0.5, 0.5].
        generator: CPU generator for the random draws.

    Returns:
        ``loss`` (fp32 scalar), ``n_anchors`` (anchors that had a positive) and ``n_images`` (kept
        hard images), the last two Python ints.
    """
    if z.ndim != 4 or z.shape[0] != label_small.shape[0] or z.shape[2:] != label_small.shape[1:]:
        raise ZooError(f"cacl_loss: z (B, D, h, w) {tuple(z.shape)} and label_small (B, h, w) "
                       f"{tuple(label_small.shape)} must match")
    with _no_autocast(z):
        zf = z.float()
        zero = zf.sum() * 0.0
        smp = cacl_sample(label_small, energy_small, domain, anchors_per_kind, max_anchors, min_anomaly,
                          hard_fraction, keep_fraction, generator)
        n_images = int(smp["kept"].numel())
        if n_images == 0 or torch.unique(smp["domain"]).numel() < 2:
            return {"loss": zero, "n_anchors": 0, "n_images": n_images}
        dev = z.device
        feats = zf.flatten(2)[smp["image"].to(dev), :, smp["pixel"].to(dev)]  # (M, D)
        anchor = smp["anchor"]
        sim = feats[anchor.to(dev)] @ feats.T / tau  # (A, M)
        cross = smp["domain"][anchor][:, None] != smp["domain"][None, :]
        same = smp["anomaly"][anchor][:, None] == smp["anomaly"][None, :]
        pos, neg = (cross & same).to(dev), (cross & ~same).to(dev)
        neg_lse = torch.logsumexp(sim.masked_fill(~neg, _NEG), dim=1, keepdim=True)  # (A, 1)
        log_prob = sim - torch.logaddexp(sim, neg_lse)
        n_pos = pos.sum(1)
        valid = n_pos > 0
        if not bool(valid.any()):
            return {"loss": zero, "n_anchors": 0, "n_images": n_images}
        per_anchor = -(log_prob * pos).sum(1) / n_pos.clamp(min=1)
        loss = per_anchor[valid].mean()
    return {"loss": loss, "n_anchors": int(valid.sum()), "n_images": n_images}
