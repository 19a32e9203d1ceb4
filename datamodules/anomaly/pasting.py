"""Outlier-exposure pasting and the joint image/label augmentation of anomaly segmentation.

The OE recipe of the MGCDA spec ("Outlier-exposure data synthesis", after PEBAL / Meta-OoD): crop
an object mask's bounding box, place it at a uniform random position of the scene (no rescale),
copy only the mask pixels and label them :data:`OE_LABEL` (254); then augment image and label
jointly: horizontal flip, a random scale (bilinear image, nearest label, so 254 and 255 survive),
a random crop padded with 0 (image) and 255 (label).

Every function takes tensors: images float ``(3, H, W)`` (any range; padding writes ``pad_image``),
labels int64 ``(H, W)``, masks bool ``(h, w)``. Randomness comes from ``generator`` (a
``torch.Generator``) or, when it is None, from torch's global generator (seeded per DataLoader
worker by the loader).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["OE_LABEL", "VOID", "crop_to_mask", "fit_object", "joint_augment", "mask_bbox", "paste_object",
           "paste_objects", "random_paste"]

OE_LABEL = 254
VOID = 255


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[0, high)`` (``high >= 1``)."""
    return int(torch.randint(0, max(int(high), 1), (1,), generator=generator))


def mask_bbox(mask: Tensor) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` (end-exclusive) of the True pixels of a (h, w) mask.

    Raises:
        ValueError: the mask is empty.
    """
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("empty object mask")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_to_mask(image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The object's bounding box: ``(image (3, h', w'), mask (h', w'))``."""
    y0, y1, x0, x1 = mask_bbox(mask)
    return image[:, y0:y1, x0:x1], mask[y0:y1, x0:x1]


def fit_object(obj_image: Tensor, obj_mask: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Shrink an object (keeping its aspect) so that it fits a ``height x width`` scene; an object
    that fits is returned as it is. The real recipe never needs this (COCO objects are at most
    640 px, the scenes 1024 x 2048); it keeps tiny test scenes and odd data from losing the object.
    """
    h, w = obj_mask.shape
    if h <= height and w <= width:
        return obj_image, obj_mask
    f = min(height / h, width / w)
    size = (max(1, int(h * f)), max(1, int(w * f)))
    img = F.interpolate(obj_image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    mask = F.interpolate(obj_mask[None, None].float(), size=size, mode="nearest-exact")[0, 0] > 0.5
    if not mask.any():  # a sliver lost in the shrink: keep its centre pixel
        mask[size[0] // 2, size[1] // 2] = True
    if not obj_image.dtype.is_floating_point:
        img = img.round().clamp(0, 255)
    return img.to(obj_image.dtype), mask


def paste_object(image: Tensor, label: Tensor, obj_image: Tensor, obj_mask: Tensor, top: int, left: int,
                 value: int = OE_LABEL) -> tuple[Tensor, Tensor]:
    """Copy the mask pixels of an object whose top-left corner goes to ``(top, left)``.

    The object is clipped at the scene's borders. Returns new tensors (the inputs are unchanged).

    Args:
        image: (3, H, W) scene.
        label: (H, W) scene labels.
        obj_image: (3, h, w) object pixels (its dtype is cast to the scene's).
        obj_mask: (h, w) bool, the pixels to copy.
        top, left: position of the object's top-left corner in the scene.
        value: label written on the copied pixels.

    Returns:
        (image, label) with the object pasted.
    """
    H, W = label.shape
    h, w = obj_mask.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, H), min(left + w, W)
    image, label = image.clone(), label.clone()
    if y1 <= y0 or x1 <= x0:
        return image, label
    m = obj_mask[y0 - top:y1 - top, x0 - left:x1 - left].bool()
    src = obj_image[:, y0 - top:y1 - top, x0 - left:x1 - left].to(image.dtype)
    dst = image[:, y0:y1, x0:x1]
    image[:, y0:y1, x0:x1] = torch.where(m[None], src, dst)
    label[y0:y1, x0:x1] = torch.where(m, torch.as_tensor(value, dtype=label.dtype), label[y0:y1, x0:x1])
    return image, label


def random_paste(image: Tensor, label: Tensor, obj_image: Tensor, obj_mask: Tensor,
                 generator: torch.Generator | None = None,
                 value: int = OE_LABEL) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """Crop the object to its mask's bounding box and paste it at a uniform random position where
    the box fits (``top`` uniform in ``[0, H - h]``, ``left`` in ``[0, W - w]``). No rescaling,
    except that a box larger than the scene is shrunk to fit (:func:`fit_object`).

    Returns:
        (image, label, (top, left)).
    """
    obj_image, obj_mask = crop_to_mask(obj_image, obj_mask)
    H, W = label.shape
    obj_image, obj_mask = fit_object(obj_image, obj_mask, H, W)
    h, w = obj_mask.shape
    top = _randint(H - h + 1, generator)
    left = _randint(W - w + 1, generator)
    image, label = paste_object(image, label, obj_image, obj_mask, top, left, value)
    return image, label, (top, left)


def paste_objects(image: Tensor, label: Tensor, objects: Sequence[tuple[Tensor, Tensor]],
                  generator: torch.Generator | None = None, value: int = OE_LABEL) -> tuple[Tensor, Tensor]:
    """:func:`random_paste` of each ``(obj_image, obj_mask)`` in turn (later objects on top)."""
    for obj_image, obj_mask in objects:
        image, label, _ = random_paste(image, label, obj_image, obj_mask, generator, value)
    return image, label


def joint_augment(image: Tensor, label: Tensor, hflip: bool = True, scale: Sequence[float] = (1.0, 1.0),
                  crop: Sequence[int] | None = None, generator: torch.Generator | None = None,
                  pad_image: float = 0.0, pad_label: int = VOID) -> tuple[Tensor, Tensor]:
    """Flip, rescale and crop an image and its labels together.

    1. With ``hflip``, flip both horizontally with probability 0.5.
    2. Rescale by ``s ~ U(scale[0], scale[1])``: the image bilinearly (antialiased when
       shrinking), the labels by nearest neighbour (so 254 / 255 never blend into other values).
    3. With ``crop = (ch, cw)``: pad bottom/right up to the crop size (image ``pad_image``,
       labels ``pad_label``), then take a uniform random ``ch x cw`` window.

    Args:
        image: (3, H, W) float.
        label: (H, W) int64.
        hflip: random horizontal flips.
        scale: ``(lo, hi)`` scale range (``(1, 1)`` = none).
        crop: ``(height, width)`` of the output, or None for the rescaled size.
        generator: the random stream (None: torch's global one).
        pad_image, pad_label: padding values.

    Returns:
        (image (3, ch, cw), label (ch, cw)).
    """
    if hflip and _rand(generator) < 0.5:
        image, label = image.flip(-1), label.flip(-1)
    lo, hi = float(scale[0]), float(scale[1])
    s = lo + (hi - lo) * _rand(generator) if hi > lo else lo
    if s != 1.0:
        H, W = label.shape
        size = (max(1, round(H * s)), max(1, round(W * s)))
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False,
                              antialias=s < 1.0)[0]
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(label.dtype)
    if crop is not None:
        ch, cw = int(crop[0]), int(crop[1])
        H, W = label.shape
        ph, pw = max(ch - H, 0), max(cw - W, 0)
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), value=pad_image)
            label = F.pad(label, (0, pw, 0, ph), value=pad_label)
            H, W = label.shape
        y0, x0 = _randint(H - ch + 1, generator), _randint(W - cw + 1, generator)
        image, label = image[:, y0:y0 + ch, x0:x0 + cw], label[y0:y0 + ch, x0:x0 + cw]
    return image.contiguous(), label.contiguous()
