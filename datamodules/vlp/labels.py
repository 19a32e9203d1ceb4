"""Box -> patch labels and the geometric transforms that move boxes with the image (PTA spec,
"Patch labels from boxes", rules 1-5).

Cell ``(r, c)`` covers ``[cP, (c+1)P) x [rP, (r+1)P)``; its patch index is ``r * w + c``
(row-major, the ViT's flattening order). ``y_rc = 1`` iff ``area(cell ∩ U) / P^2 >= tau``, U the
union of the given boxes. The union area is exact: boxes and cell edges are compressed onto one
grid of elementary rectangles, each either inside some box or not.
"""

from __future__ import annotations

import re

import numpy as np

from zoo.core.errors import ZooError

_EPS = 1e-9


def patch_labels(boxes: np.ndarray, size: tuple[int, int], patch: int, tau: float = 0.5) -> np.ndarray:
    """Binary patch labels of the union of ``boxes``.

    Args:
        boxes: (M, 4) ``[x1, y1, x2, y2]`` pixels in the (transformed) image; M may be 0.
        size: ``(H, W)`` of the image, multiples of ``patch``.
        patch: patch size P.
        tau: coverage threshold in [0, 1]; 0 means "any overlap" (a cell touched by a positive area).

    Returns:
        (h * w,) float32 0/1, row-major.
    """
    H, W = size
    if H % patch or W % patch:
        raise ZooError(f"patch_labels: image size {size} is not a multiple of the patch size {patch}")
    if not 0 <= tau <= 1:
        raise ZooError(f"patch_labels: tau must be in [0, 1], got {tau}")
    h, w = H // patch, W // patch
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.stack([b[:, 0].clip(0, W), b[:, 1].clip(0, H), b[:, 2].clip(0, W), b[:, 3].clip(0, H)], 1)
    b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    if not len(b):
        return np.zeros(h * w, dtype=np.float32)
    xs = np.unique(np.concatenate([np.arange(w + 1) * patch, b[:, 0], b[:, 2]]))
    ys = np.unique(np.concatenate([np.arange(h + 1) * patch, b[:, 1], b[:, 3]]))
    mx, my = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    inside_x = (mx[None, :] > b[:, 0:1]) & (mx[None, :] < b[:, 2:3])  # (M, nx)
    inside_y = (my[None, :] > b[:, 1:2]) & (my[None, :] < b[:, 3:4])  # (M, ny)
    covered = (inside_y[:, :, None] & inside_x[:, None, :]).any(0)  # (ny, nx)
    area = np.diff(ys)[:, None] * np.diff(xs)[None, :] * covered
    cell = (my // patch).astype(int)[:, None] * w + (mx // patch).astype(int)[None, :]
    per_cell = np.zeros(h * w)
    np.add.at(per_cell, cell.ravel(), area.ravel())
    frac = per_cell / patch**2
    out = frac > _EPS if tau == 0 else frac >= tau - _EPS
    return out.astype(np.float32)


def resize_boxes(boxes: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """Scale (M, 4) xyxy boxes from an image of ``src = (H, W)`` to ``dst = (H', W')``."""
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])


def crop_boxes(boxes: np.ndarray, top: float, left: float, height: float, width: float) -> np.ndarray:
    """Boxes in the frame of the crop ``[left, left + width) x [top, top + height)``, clipped to it
    (boxes left with no area are kept with zero area; :func:`patch_labels` ignores them)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - np.array([left, top, left, top])
    return np.stack([b[:, 0].clip(0, width), b[:, 1].clip(0, height), b[:, 2].clip(0, width),
                     b[:, 3].clip(0, height)], 1)


def hflip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Mirror (M, 4) xyxy boxes in an image of ``width``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], 1)


_LR = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(caption: str) -> str:
    """A caption for the mirrored image: "left" <-> "right" (spec pitfall: a flip swaps them)."""
    def sub(m: re.Match) -> str:
        word = "right" if m.group(1).lower() == "left" else "left"
        return word.capitalize() if m.group(1)[0].isupper() else word

    return _LR.sub(sub, caption)
