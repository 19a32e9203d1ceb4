"""Rendering ShapesB2N: shape geometry, backgrounds, the domain shift, and the two sample streams.

Images are 32x32 RGB uint8: one shape (8 kinds, 6 colours, 2 sizes) on a background texture
(plain/striped/checkered/dotted, two muted random colours), rendered by numpy only at 4x
supersampling and box-downsampled (anti-aliased edges).

Domain shift (task images only, strength ``shift``): the shape colour is mixed ``0.4 * shift``
toward the local background colour, Gaussian pixel noise of sigma ``18 * shift`` (0-255 scale) is
added, and a random 2-px-wide straight stripe of random colour crosses the image (opacity
``min(shift, 1)``). Every random number is drawn whatever ``shift`` is, so a task image rendered
with ``shift=0`` is the clean version of the same scene.

Determinism:
    Sample ``i`` of stream ``name`` draws from
    ``np.random.SeedSequence([seed, crc32(name)], spawn_key=(i,))``
    (:func:`datamodules.common.world.rng_for`); the streams are ``"captions"`` and
    ``"<split>/<label>"`` (e.g. ``"train/07"``), so any sample regenerates byte-identically on its
    own (:func:`render_task`, :func:`caption_pair`) and a smaller world is a prefix of a larger one.
"""

from __future__ import annotations

import colorsys

import numpy as np

from datamodules.common.world import in_polygon, pixel_grid, rng_for
from datamodules.fewshot.shapes.config import CLASSNAMES, COLOURS, SHAPES, SIZES, TEMPLATES, TEXTURES, caption

__all__ = [
    "COLOUR_JITTER",
    "IMAGE_SIZE",
    "RADII",
    "SHIFT_MIX",
    "SHIFT_NOISE",
    "SHIFT_STRIPE_WIDTH",
    "SUPERSAMPLE",
    "caption_pair",
    "class_folder",
    "render",
    "render_task",
]

# --------------------------------------------------------------------------- render knobs

IMAGE_SIZE = 32
SUPERSAMPLE = 4  # fixed: the box filter (_box4) assumes 4
#: Saturated base colour of each entry of COLOURS (0-255), jittered by +-COLOUR_JITTER per channel.
_BASE_RGB = np.array(
    [(220, 40, 40), (40, 180, 60), (40, 80, 225), (235, 215, 40), (150, 50, 205), (245, 140, 30)],
    dtype=np.float32,
)
COLOUR_JITTER = 20
#: Nominal radius (px) of each entry of SIZES; the drawn radius is within +-8% of it.
RADII = (6.0, 10.0)
_RADIUS_JITTER = 0.08
#: Margin (px) between the shape's bounding box and the border: border pixels never show the shape.
_MARGIN = 1.0
#: Domain shift per unit of ``shift``: colour mix toward the background, noise sigma (0-255).
SHIFT_MIX = 0.4
SHIFT_NOISE = 18.0
SHIFT_STRIPE_WIDTH = 2.0


# --------------------------------------------------------------------------- geometry


def _star(n: int = 5, inner: float = 0.42) -> np.ndarray:
    pts = []
    for k in range(2 * n):
        rad = 1.0 if k % 2 == 0 else inner
        a = -np.pi / 2 + k * np.pi / n
        pts.append((rad * np.cos(a), rad * np.sin(a)))
    poly = np.array(pts)
    poly[:, 1] += -(poly[:, 1].max() + poly[:, 1].min()) / 2  # centre vertically
    return poly


_TRIANGLE = np.array([(0.0, -0.95), (1.0, 0.8), (-1.0, 0.8)])
_STAR = _star()


def _unit_shape(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of shape ``shape`` in unit coordinates (u right, v down); every shape lies in [-1, 1]^2."""
    name = SHAPES[shape]
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if name == "triangle":
        return in_polygon(u, v, _TRIANGLE)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.32) & (av <= 0.95)) | ((av <= 0.32) & (au <= 0.95))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.5**2)
    if name == "star":
        return in_polygon(u, v, _STAR)
    if name == "heart":  # (x^2 + y^2 - 1)^3 <= x^2 y^3, x in [-1.14, 1.14], y in [-1, 1.24] (y up)
        x, y = 1.15 * u, 0.118 - 1.15 * v
        q = x * x + y * y - 1.0
        return q * q * q <= x * x * y * y * y
    raise IndexError(f"unknown shape index {shape}")


# --------------------------------------------------------------------------- rendering


def _muted_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two low-saturation background colours (0-255) with a visible brightness difference."""
    h1, h2 = rng.random(2)
    s1, s2 = rng.uniform(0.0, 0.25, 2)
    v1 = rng.uniform(0.35, 0.85)
    dv = rng.uniform(0.15, 0.3) * (1.0 if rng.random() < 0.5 else -1.0)
    v2 = v1 + dv if 0.2 <= v1 + dv <= 0.95 else v1 - dv
    c1 = np.array(colorsys.hsv_to_rgb(h1, s1, v1), dtype=np.float32) * 255.0
    c2 = np.array(colorsys.hsv_to_rgb(h2, s2, v2), dtype=np.float32) * 255.0
    return c1, c2


def _fmod(t: np.ndarray, period: float) -> np.ndarray:
    """``t mod period`` (float32; much faster than ``np.mod``)."""
    p = np.float32(period)
    return t - np.floor(t * np.float32(1.0 / period)) * p


def _box4(a: np.ndarray) -> np.ndarray:
    """Sum of each 4x4 block over the first two axes (the supersampling factor is 4)."""
    a = a[0::4] + a[1::4] + a[2::4] + a[3::4]
    return a[:, 0::4] + a[:, 1::4] + a[:, 2::4] + a[:, 3::4]


def _background(texture: int, rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 background at the supersampled resolution (0-255 scale)."""
    c1, c2 = _muted_pair(rng)
    p = rng.random(5)  # texture parameters, always drawn (same stream consumption for every texture)
    name = TEXTURES[texture]
    if name == "plain":
        return np.broadcast_to(c1, x.shape + (3,)).copy()
    if name == "striped":
        period = 4.0 + 3.0 * p[0]
        th = np.pi * p[1]
        t = x * np.float32(np.cos(th)) + y * np.float32(np.sin(th)) + np.float32(period * p[2])
        w = _fmod(t, period) < np.float32(period / 2)
    elif name == "checkered":
        cell = 3.0 + 2.0 * p[0]
        inv = np.float32(1.0 / cell)
        w = (np.floor((x + np.float32(cell * p[1])) * inv) + np.floor((y + np.float32(cell * p[2])) * inv))
        w = _fmod(w, 2.0) > 0.5
    elif name == "dotted":
        period = 5.0 + 2.0 * p[0]
        rad = (0.22 + 0.1 * p[3]) * period
        dx = _fmod(x + np.float32(period * p[1]), period) - np.float32(period / 2)
        dy = _fmod(y + np.float32(period * p[2]), period) - np.float32(period / 2)
        w = dx * dx + dy * dy <= np.float32(rad * rad)
    else:
        raise IndexError(f"unknown texture index {texture}")
    return np.take(np.stack([c1, c2]), w.view(np.uint8), axis=0)


def _draw(
    shape: int, colour: int, size: int, texture: int, rng: np.random.Generator, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    for name, v, n in (("shape", shape, len(SHAPES)), ("colour", colour, len(COLOURS)),
                       ("size", size, len(SIZES)), ("texture", texture, len(TEXTURES))):
        if not 0 <= int(v) < n:
            raise IndexError(f"{name} index must be in 0..{n - 1}, got {v}")
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    S, ss = IMAGE_SIZE, SUPERSAMPLE
    x, y = pixel_grid(S, ss)
    img = _background(int(texture), rng, x, y)
    col = _BASE_RGB[colour] + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3).astype(np.float32)
    col = np.clip(col, 0.0, 255.0)
    r = RADII[size] * (1.0 + rng.uniform(-_RADIUS_JITTER, _RADIUS_JITTER))
    cx, cy = rng.uniform(r + _MARGIN, S - r - _MARGIN, 2)
    # the shape, computed in its bounding window only
    r0, r1 = max(int(np.floor((cy - r) * ss)), 0), min(int(np.ceil((cy + r) * ss)), S * ss)
    c0, c1 = max(int(np.floor((cx - r) * ss)), 0), min(int(np.ceil((cx + r) * ss)), S * ss)
    inv = np.float32(1.0 / r)
    win = _unit_shape(int(shape), (x[r0:r1, c0:c1] - np.float32(cx)) * inv, (y[r0:r1, c0:c1] - np.float32(cy)) * inv)
    mask = np.zeros(x.shape, dtype=bool)
    mask[r0:r1, c0:c1] = win
    sub = img[r0:r1, c0:c1]
    mix = np.float32(min(max(SHIFT_MIX * shift, 0.0), 1.0))
    if mix > 0:
        sub[win] = (1.0 - mix) * col + mix * sub[win]
    else:
        sub[win] = col
    # occluding stripe (parameters always drawn)
    px, py = rng.uniform(S * 0.25, S * 0.75, 2)
    th = rng.uniform(0.0, np.pi)
    stripe_col = rng.uniform(0.0, 255.0, 3).astype(np.float32)
    alpha = min(float(shift), 1.0)
    if alpha > 0:
        d = np.abs((x - np.float32(px)) * np.float32(-np.sin(th)) + (y - np.float32(py)) * np.float32(np.cos(th)))
        m = d <= np.float32(SHIFT_STRIPE_WIDTH / 2)
        img[m] = (1.0 - alpha) * img[m] + alpha * stripe_col
    out = _box4(img) * np.float32(1.0 / (ss * ss))
    noise = rng.standard_normal((S, S, 3), dtype=np.float32)
    if shift > 0:
        out += np.float32(SHIFT_NOISE * shift) * noise
    cover = _box4(mask.view(np.uint8)).astype(np.float32) * np.float32(1.0 / (ss * ss))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), cover


def render(shape: int, colour: int, size: int, texture: int, rng: np.random.Generator, shift: float = 0.0,
           return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render one 32x32 RGB uint8 image.

    Args:
        shape, colour, size, texture: indices into SHAPES, COLOURS, SIZES, TEXTURES.
        rng: the sample's generator (its draws do not depend on ``shift``).
        shift: domain-shift strength (0 = the clean caption-corpus domain).
        return_mask: also return the shape's coverage, (32, 32) float32 in [0, 1] (the fraction of
            each pixel covered by the shape before the shift stripe).

    Returns:
        (32, 32, 3) uint8, or (image, coverage) with ``return_mask``.
    """
    img, cover = _draw(shape, colour, size, texture, rng, float(shift))
    return (img, cover) if return_mask else img


def render_task(split: str, label: int, index: int, seed: int = 0, shift: float = 1.0,
                return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Task image ``index`` of class ``label`` in ``split`` (what
    :func:`~datamodules.fewshot.shapes.store.ensure_world` writes). Size and texture are uniform;
    ``shift=0`` gives the clean version of the same scene."""
    if not 0 <= label < len(CLASSNAMES):
        raise IndexError(f"label must be in 0..{len(CLASSNAMES) - 1}, got {label}")
    rng = rng_for(f"{split}/{label:02d}", index, seed)
    size, texture = int(rng.integers(len(SIZES))), int(rng.integers(len(TEXTURES)))
    shape, colour = divmod(label, len(COLOURS))
    return render(shape, colour, size, texture, rng, shift=shift, return_mask=return_mask)


def caption_pair(index: int, seed: int = 0) -> tuple[np.ndarray, str, dict[str, int]]:
    """Caption-corpus pair ``index``: (image (32,32,3) uint8, caption, attribute indices
    ``{"colour", "shape", "size", "texture", "template", "label"}``). Attributes are uniform."""
    rng = rng_for("captions", index, seed)
    colour, shape, size, texture, template = (int(v) for v in rng.integers(
        0, [len(COLOURS), len(SHAPES), len(SIZES), len(TEXTURES), len(TEMPLATES)]))
    img = render(shape, colour, size, texture, rng, shift=0.0)
    attrs = {"colour": colour, "shape": shape, "size": size, "texture": texture, "template": template,
             "label": shape * len(COLOURS) + colour}
    return img, caption(colour, shape, size, texture, template), attrs


def class_folder(label: int) -> str:
    """Folder name of a class: ``"<label:02d>_<colour>_<shape>"``."""
    shape, colour = divmod(label, len(COLOURS))
    return f"{label:02d}_{COLOURS[colour]}_{SHAPES[shape]}"
