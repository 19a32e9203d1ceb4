"""PTA / COPA objectives (arXiv:2308.03475; ALBEF arXiv:2107.07651 for ITC / ITM / MLM).

The total loss (spec "Objectives", weights all 1 [S], configurable):
``L = w_itc L_itc + w_itm L_itm + w_mlm L_mlm + w_pta L_pta``. Every loss is computed in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.core.errors import ZooError


def same_image(image_ids: Tensor) -> Tensor:
    """(B,) image ids -> (B, B) bool, True where two pairs show the same image."""
    return image_ids[:, None] == image_ids[None, :]


def itc_loss(img: Tensor, txt: Tensor, temp: Tensor | float, image_ids: Tensor) -> Tensor:
    """Symmetric InfoNCE of ALBEF (its Eq. 1-2):
    ``L_itc = 1/2 E[ H(y_i2t, p_i2t) + H(y_t2i, p_t2i) ]`` with ``p_i2t = softmax(s(I, T_m) / tau)``.

    The targets ``y`` spread uniformly over the in-batch pairs of the same image (a COCO batch can
    hold two captions of one image; ALBEF's retrieval fine-tuning does the same).

    Args:
        img, txt: (B, E) L2-normalised embeddings. temp: tau. image_ids: (B,) image of each pair.
    """
    sim = img.float() @ txt.float().t() / temp
    pos = same_image(image_ids).float()
    y = pos / pos.sum(1, keepdim=True)
    i2t = -(y * F.log_softmax(sim, dim=1)).sum(1).mean()
    t2i = -(y * F.log_softmax(sim.t(), dim=1)).sum(1).mean()
    return (i2t + t2i) / 2


def sample_hard_negatives(sim: Tensor, image_ids: Tensor, generator: torch.Generator | None = None
                          ) -> tuple[Tensor, Tensor]:
    """ALBEF's in-batch hard negatives: for each image a text drawn with probability
    ``softmax(s(I, T))`` over the texts of *other* images, and for each text an image likewise.

    Args:
        sim: (B, B) ITC similarities, rows = images, columns = texts (pair b = image b, text b).
        image_ids: (B,) image of each pair; same-image entries are never drawn.
        generator: the sampling RNG.

    Returns:
        ``(neg_text, neg_image)``: (B,) int64 indices, ``neg_text[b]`` a text for image b and
        ``neg_image[b]`` an image for text b.

    Raises:
        ZooError: a batch whose pairs all show one image (no negative exists).
    """
    mask = same_image(image_ids)
    if bool(mask.all(1).any()):
        raise ZooError("ITM hard negatives: a batch row has no pair of another image (the batch holds one image "
                       "only); use a larger batch or fewer captions per image")
    with torch.no_grad():
        w_i2t = F.softmax(sim.float(), dim=1).masked_fill(mask, 0) + (~mask) * 1e-12
        w_t2i = F.softmax(sim.float().t(), dim=1).masked_fill(mask, 0) + (~mask) * 1e-12
        neg_text = torch.multinomial(w_i2t, 1, generator=generator).squeeze(1)
        neg_image = torch.multinomial(w_t2i, 1, generator=generator).squeeze(1)
    return neg_text, neg_image


def itm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """ITM cross-entropy (ALBEF Eq. 3): ``L_itm = E[H(y_itm, p_itm(I, T))]`` over the B positive
    and 2B hard-negative pairs. logits (P, 2), labels (P,) 1 = match."""
    return F.cross_entropy(logits.float(), labels)


def mask_tokens(ids: Tensor, special: Tensor, mask_id: int, vocab_size: int, prob: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT masking: each non-special token is chosen with ``prob``; of those 80% become
    ``mask_id``, 10% a random token, 10% stay. Returns ``(masked_ids, labels)``, labels -100 on
    unchosen tokens. ``special`` (B, L) bool marks [CLS]/[SEP]/[PAD]."""
    g = generator
    chosen = (torch.rand(ids.shape, generator=g, device=ids.device) < prob) & ~special
    labels = ids.masked_fill(~chosen, -100)
    u = torch.rand(ids.shape, generator=g, device=ids.device)
    rand_tok = torch.randint(vocab_size, ids.shape, generator=g, device=ids.device)
    out = ids.clone()
    out[chosen & (u < 0.8)] = mask_id
    swap = chosen & (u >= 0.8) & (u < 0.9)
    out[swap] = rand_tok[swap]
    return out, labels


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """MLM cross-entropy (ALBEF Eq. 4): ``L_mlm = E[H(y_msk, p_msk(I, T_hat))]`` over the masked
    tokens; exactly 0 (attached to the graph) when no token is masked."""
    if bool((labels != -100).any()):
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
    return logits.float().sum() * 0.0


def pta_loss(logits: Tensor, labels: Tensor, has_boxes: Tensor, pos_weight_cap: float | None = None) -> Tensor:
    """The Patch-Text Alignment loss (COPA; spec "PTA"): BCE-with-logits between the TPD logits
    ``z_i`` and the box-derived patch labels ``y_i``, averaged over patches and annotated pairs:

    ``L_pta = 1/(|A| N) sum_{b in A} sum_i w_i BCE(z_bi, y_bi)``, A = pairs with boxes,
    ``w_i = pos_weight`` on positives (``#neg / #pos`` over A, capped) and 1 on negatives.

    Args:
        logits: (B, N) TPD logits. labels: (B, N) 0/1. has_boxes: (B,) bool.
        pos_weight_cap: None = no positive weighting; else ``min(#neg/#pos, cap)``.

    Returns:
        The scalar loss; exactly 0 (not NaN), still attached, when no pair has boxes.
    """
    if logits.shape != labels.shape or has_boxes.shape != logits.shape[:1]:
        raise ZooError(f"pta_loss: logits {tuple(logits.shape)}, labels {tuple(labels.shape)} and has_boxes "
                       f"{tuple(has_boxes.shape)} do not match")
    a = has_boxes.bool()
    if not bool(a.any()):
        return logits.float().sum() * 0.0
    z, y = logits[a].float(), labels[a].float()
    pw = None
    if pos_weight_cap is not None:
        n_pos = y.sum()
        pw = torch.clamp((y.numel() - n_pos) / n_pos.clamp_min(1), max=float(pos_weight_cap))
    return F.binary_cross_entropy_with_logits(z, y, pos_weight=pw)
