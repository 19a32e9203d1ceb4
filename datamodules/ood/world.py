"""ClutterGlyphs-32: a seeded procedural world for OOD detection with local features.

The world is the default CPU testbed for MODE (local region features vs. a single
global feature for OOD detection). Images are 32x32 RGB, rendered by numpy only.

Design intent:
    * **The class is revealed locally.** Each of the K=6 in-distribution (ID) classes is
      a glyph (disk, square, triangle, plus, ring, diamond) filled with stripes at a
      class-specific orientation (0, 30, ..., 150 degrees by default). A small patch
      of the object interior suffices to tell the class.
    * **The global feature varies within a class.** Random hue, scale (45-85% of the
      side), position with up to 25% truncation, low-frequency colour backgrounds,
      0-5 thin lines or blobs of clutter (behind or in front of the object) and, with
      p=0.35, an occluder covering 15-35% of the object all spread a pooled global
      feature, while the striped interior stays intact somewhere in the image.
    * **OOD-near shares everything but the object.** Held-out glyphs (star, bow-tie,
      H) with dot or checker fills are drawn with the same background, clutter,
      occluder, colour, scale and truncation statistics, so only the object's shape
      and fill differ from ID.
    * **OOD-far** is full-frame texture (checker, rings, polka dots, plaid,
      high-frequency noise). **OOD-bg** is background + clutter with no object; it is
      the adversarial case for local scores and is reported only as a diagnostic.

Determinism:
    Image ``i`` of split ``name`` is drawn from
    ``np.random.SeedSequence([seed, crc32(name)], spawn_key=(i,))``, so any split,
    any prefix of a split and any single image regenerate byte-identically on their
    own (:func:`generate_split`, :func:`render_sample`).

Rendering:
    Geometry is in final-pixel units (0..32). Each image is rendered at
    ``supersample`` x resolution and box-downsampled (anti-aliasing); Gaussian
    pixel noise is added at the final resolution; output is uint8 HWC RGB.

Caching:
    :func:`load_world` caches each split as ``<root>/clutterglyphs32-<hash>/<split>-n<N>.npz``.
    The directory hash covers :data:`WORLD_VERSION`, the seed and every
    :class:`WorldConfig` knob; the file name covers the size. Files are written
    atomically (temp file + ``os.replace``); a corrupt file is regenerated with a warning.

Coordinates:
    ``x`` is the column, ``y`` the row (pointing down). An orientation ``theta`` means
    the stripe *normal* (intensity gradient direction) is ``(cos theta, sin theta)``
    in ``(x, y)``.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import tempfile
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "FAR_TEXTURES",
    "ID_SPLITS",
    "NEAR_GLYPHS",
    "OOD_SPLITS",
    "OOD_VAL_SPLITS",
    "SPLITS",
    "SPLIT_KIND",
    "WORLD_NAME",
    "WORLD_VERSION",
    "WorldConfig",
    "class_angles",
    "generate_split",
    "load_world",
    "render_sample",
    "save_preview",
    "world_dir",
]

WORLD_NAME = "clutterglyphs32"
#: Bump when the renderer changes so old caches are not reused.
WORLD_VERSION = 1

CLASS_NAMES: tuple[str, ...] = ("disk", "square", "triangle", "plus", "ring", "diamond")
NEAR_GLYPHS: tuple[str, ...] = ("star", "bowtie", "H")
FAR_TEXTURES: tuple[str, ...] = ("checker", "rings", "polka", "plaid", "noise")

#: Default number of images per split (9,500 in all).
SPLITS: dict[str, int] = {
    "id_train": 4000,
    "id_val": 500,
    "id_test": 1000,
    "ood_near": 1000,
    "ood_far": 1000,
    "ood_bg": 1000,
    "ood_val_near": 500,
    "ood_val_far": 500,
}
#: Which generator each split uses: "id", "near", "far" or "bg".
SPLIT_KIND: dict[str, str] = {
    "id_train": "id",
    "id_val": "id",
    "id_test": "id",
    "ood_near": "near",
    "ood_far": "far",
    "ood_bg": "bg",
    "ood_val_near": "near",
    "ood_val_far": "far",
}
ID_SPLITS: tuple[str, ...] = ("id_train", "id_val", "id_test")
#: Test-time OOD sets (never use them for checkpoint selection).
OOD_SPLITS: dict[str, str] = {
    "ood_near": "held-out glyphs (star, bow-tie, H) with dot/checker fills on the ID background and clutter",
    "ood_far": "full-frame textures: checker, rings, polka dots, plaid, high-frequency noise",
    "ood_bg": "background + clutter, no object (diagnostic; adversarial for local scores)",
}
#: Validation OOD sets (same generators as the test sets, different seeds): for
#: checkpoint selection and monitoring only.
OOD_VAL_SPLITS: dict[str, str] = {
    "ood_val_near": "validation draw of ood_near (different seed)",
    "ood_val_far": "validation draw of ood_far (different seed)",
}


@dataclass
class WorldConfig:
    """Every knob of ClutterGlyphs-32. Lengths are in final (32 px) pixel units.

    Args:
        image_size: output side in pixels.
        supersample: render at this factor and box-downsample (1 = no anti-aliasing).
        n_classes: number of ID classes, the first ``n_classes`` of :data:`CLASS_NAMES`.
        bg_components_min: fewest low-frequency background components.
        bg_components_max: most low-frequency background components.
        bg_base_min: lower bound of the per-channel background base colour.
        bg_base_max: upper bound of the per-channel background base colour.
        bg_amp: max per-channel amplitude of each background component.
        bg_freq_min: lowest sinusoid frequency, cycles per image side.
        bg_freq_max: highest sinusoid frequency, cycles per image side.
        bg_sine_p: probability that a component is a sinusoid (else a linear gradient).
        noise_sigma: std of the Gaussian pixel noise (on the [0, 1] scale).
        sat_min: lower bound of HSV saturation of object/clutter/occluder colours.
        sat_max: upper bound of HSV saturation.
        val_min: lower bound of HSV value.
        val_max: upper bound of HSV value.
        scale_min: smallest object bounding-box side, fraction of the image side.
        scale_max: largest object bounding-box side, fraction of the image side.
        max_trunc: largest fraction of the object area allowed outside the frame.
        rotate_max_deg: glyph rotation is uniform in +-rotate_max_deg (the fill is not rotated).
        stripe_period: stripe period in pixels.
        stripe_period_jitter: relative uniform jitter of the period.
        stripe_contrast: dark stripe = colour * (1 - stripe_contrast).
        stripe_sharpness: 0.5 = sinusoid, larger = squarer stripes.
        stripe_angle_step: class k has stripe normal angle offset + k * step (degrees).
        stripe_angle_offset: angle of class 0 (degrees).
        stripe_jitter_deg: uniform jitter of the stripe angle (degrees).
        clutter_min: fewest clutter items.
        clutter_max: most clutter items.
        clutter_line_p: probability that a clutter item is a line (else a blob).
        clutter_front_p: probability that a clutter item is drawn over the object.
        clutter_texture_p: probability that a blob is filled with a dot/checker texture (the
            OOD-near fill statistics) instead of a flat colour: textured distractors that spread
            the global feature of ID images (0 = flat blobs only, the spec's world).
        line_width_min: thinnest clutter line.
        line_width_max: thickest clutter line.
        line_len_min: shortest clutter line.
        line_len_max: longest clutter line.
        blob_radius_min: smallest blob semi-axis.
        blob_radius_max: largest blob semi-axis.
        occlude_p: probability of an occluder on the object.
        occlude_frac_min: smallest fraction of the (visible) object the occluder covers.
        occlude_frac_max: largest fraction of the (visible) object the occluder covers.
        near_period: period of the OOD-near dot/checker fills, pixels.
        near_dot_radius: dot radius as a fraction of ``near_period``.
        near_checker_p: probability of a checker fill (else dots) for OOD-near.
        far_period_min: smallest OOD-far texture period, pixels.
        far_period_max: largest OOD-far texture period, pixels.
        far_noise_sigma_min: smallest std of the OOD-far noise texture.
        far_noise_sigma_max: largest std of the OOD-far noise texture.
    """

    image_size: int = 32
    supersample: int = 2
    n_classes: int = 6
    # background
    bg_components_min: int = 2
    bg_components_max: int = 3
    bg_base_min: float = 0.2
    bg_base_max: float = 0.8
    bg_amp: float = 0.25
    bg_freq_min: float = 0.3
    bg_freq_max: float = 1.5
    bg_sine_p: float = 0.5
    noise_sigma: float = 0.03
    # colours (objects, clutter, occluders)
    sat_min: float = 0.45
    sat_max: float = 1.0
    val_min: float = 0.55
    val_max: float = 1.0
    # object geometry
    scale_min: float = 0.45
    scale_max: float = 0.85
    max_trunc: float = 0.25
    rotate_max_deg: float = 15.0
    # ID stripe fill
    stripe_period: float = 4.5
    stripe_period_jitter: float = 0.15
    stripe_contrast: float = 0.6
    stripe_sharpness: float = 1.0
    stripe_angle_step: float = 30.0
    stripe_angle_offset: float = 0.0
    stripe_jitter_deg: float = 5.0
    # clutter
    clutter_min: int = 0
    clutter_max: int = 5
    clutter_line_p: float = 0.5
    clutter_front_p: float = 0.5
    clutter_texture_p: float = 0.0
    line_width_min: float = 0.8
    line_width_max: float = 2.0
    line_len_min: float = 8.0
    line_len_max: float = 28.0
    blob_radius_min: float = 1.5
    blob_radius_max: float = 4.0
    # occluder
    occlude_p: float = 0.35
    occlude_frac_min: float = 0.15
    occlude_frac_max: float = 0.35
    # OOD-near fills
    near_period: float = 4.5
    near_dot_radius: float = 0.3
    near_checker_p: float = 0.5
    # OOD-far textures
    far_period_min: float = 3.0
    far_period_max: float = 8.0
    far_noise_sigma_min: float = 0.12
    far_noise_sigma_max: float = 0.3

    def __post_init__(self) -> None:
        if not 1 <= self.n_classes <= len(CLASS_NAMES):
            raise ValueError(f"n_classes must be in 1..{len(CLASS_NAMES)}, got {self.n_classes}")
        if self.image_size < 4 or self.supersample < 1:
            raise ValueError("image_size must be >= 4 and supersample >= 1")
        for lo, hi in [
            ("bg_components_min", "bg_components_max"),
            ("bg_base_min", "bg_base_max"),
            ("bg_freq_min", "bg_freq_max"),
            ("sat_min", "sat_max"),
            ("val_min", "val_max"),
            ("scale_min", "scale_max"),
            ("clutter_min", "clutter_max"),
            ("line_width_min", "line_width_max"),
            ("line_len_min", "line_len_max"),
            ("blob_radius_min", "blob_radius_max"),
            ("occlude_frac_min", "occlude_frac_max"),
            ("far_period_min", "far_period_max"),
            ("far_noise_sigma_min", "far_noise_sigma_max"),
        ]:
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo}={getattr(self, lo)} > {hi}={getattr(self, hi)}")
        if not 0.0 <= self.max_trunc < 1.0:
            raise ValueError(f"max_trunc must be in [0, 1), got {self.max_trunc}")
        if self.stripe_period <= 0 or self.near_period <= 0 or self.far_period_min <= 0:
            raise ValueError("periods must be positive")


def class_angles(cfg: WorldConfig | None = None) -> np.ndarray:
    """Stripe-normal angle of each ID class in degrees, shape (n_classes,)."""
    cfg = cfg or WorldConfig()
    return cfg.stripe_angle_offset + cfg.stripe_angle_step * np.arange(cfg.n_classes, dtype=np.float64)


# --------------------------------------------------------------------------- glyphs

_POLYGONS: dict[str, np.ndarray] = {
    "triangle": np.array([(0.0, -0.95), (1.0, 0.8), (-1.0, 0.8)]),
    "bowtie": np.array([(-1.0, -0.85), (0.0, -0.15), (1.0, -0.85), (1.0, 0.85), (0.0, 0.15), (-1.0, 0.85)]),
    "star": np.array(
        [
            ((1.0 if k % 2 == 0 else 0.45) * np.cos(-np.pi / 2 + k * np.pi / 5),
             (1.0 if k % 2 == 0 else 0.45) * np.sin(-np.pi / 2 + k * np.pi / 5) + 0.1)
            for k in range(10)
        ]
    ),
}


def _in_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over pixels."""
    inside = np.zeros(u.shape, dtype=bool)
    xj, yj = poly[-1]
    for xi, yi in poly:
        if yi != yj:
            cross = ((yi > v) != (yj > v)) & (u < (xj - xi) * (v - yi) / (yj - yi) + xi)
            inside ^= cross
        xj, yj = xi, yi
    return inside


def _unit_glyph(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of glyph ``name`` in unit coordinates (bounding box about [-1, 1]^2)."""
    au, av = np.abs(u), np.abs(v)
    if name == "disk":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(au, av) <= 0.82
    if name == "plus":
        return ((au <= 0.34) & (av <= 1.0)) | ((av <= 0.34) & (au <= 1.0))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.42**2)
    if name == "diamond":
        return au + av <= 1.0
    if name == "H":
        return (au <= 0.92) & (av <= 0.95) & ((au >= 0.46) | (av <= 0.2))
    if name in _POLYGONS:
        return _in_polygon(u, v, _POLYGONS[name])
    raise KeyError(f"unknown glyph {name!r}")


@lru_cache(maxsize=None)
def _unit_area(name: str) -> float:
    """Area of the unit glyph (numerical, 400x400 grid over [-1.5, 1.5]^2)."""
    c = (np.arange(400) + 0.5) / 400 * 3.0 - 1.5
    u, v = np.meshgrid(c, c)
    return float(_unit_glyph(name, u, v).sum()) * (3.0 / 400) ** 2


@lru_cache(maxsize=8)
def pixel_grid(size: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (X = column, Y = row, final-pixel units) of the supersampled canvas
    (shared with the ShapesB2N world); read-only, cached."""
    c = ((np.arange(size * ss) + 0.5) / ss).astype(np.float32)
    x, y = np.meshgrid(c, c)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


# --------------------------------------------------------------------------- layers


def _rand_color(rng: np.random.Generator, cfg: WorldConfig) -> np.ndarray:
    h = rng.random()
    s = rng.uniform(cfg.sat_min, cfg.sat_max)
    v = rng.uniform(cfg.val_min, cfg.val_max)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _background(rng: np.random.Generator, cfg: WorldConfig, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Base colour + 2-3 low-frequency linear gradients / sinusoids, (H, W, 3) float32."""
    size = cfg.image_size
    img = np.empty(x.shape + (3,), dtype=np.float32)
    img[...] = rng.uniform(cfg.bg_base_min, cfg.bg_base_max, 3).astype(np.float32)
    for _ in range(int(rng.integers(cfg.bg_components_min, cfg.bg_components_max + 1))):
        th = rng.uniform(0.0, 2 * np.pi)
        t = ((x - size / 2) * np.cos(th) + (y - size / 2) * np.sin(th)) / size  # ~[-0.7, 0.7]
        if rng.random() < cfg.bg_sine_p:
            f = rng.uniform(cfg.bg_freq_min, cfg.bg_freq_max)
            g = np.sin(2 * np.pi * f * t + rng.uniform(0.0, 2 * np.pi))
        else:
            g = t * 1.4  # ~[-1, 1]
        amp = rng.uniform(-cfg.bg_amp, cfg.bg_amp, 3).astype(np.float32)
        img += g[..., None] * amp
    return img


def _clutter_item(
    rng: np.random.Generator, cfg: WorldConfig, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One thin line segment or small ellipse blob: (mask (H, W) bool, colour (3,), is_blob)."""
    size = cfg.image_size
    if rng.random() < cfg.clutter_line_p:
        x0, y0 = rng.uniform(0.0, size, 2)
        length = rng.uniform(cfg.line_len_min, cfg.line_len_max)
        th = rng.uniform(0.0, 2 * np.pi)
        dx, dy = length * np.cos(th), length * np.sin(th)
        w = rng.uniform(cfg.line_width_min, cfg.line_width_max)
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / (length * length), 0.0, 1.0)
        ex, ey = x - x0 - t * dx, y - y0 - t * dy
        mask = ex * ex + ey * ey <= (w / 2) ** 2
    else:
        cx, cy = rng.uniform(0.0, size, 2)
        a, b = rng.uniform(cfg.blob_radius_min, cfg.blob_radius_max, 2)
        th = rng.uniform(0.0, np.pi)
        c, s = np.cos(th), np.sin(th)
        du, dv = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
        mask = (du / a) ** 2 + (dv / b) ** 2 <= 1.0
        return mask, _rand_color(rng, cfg), True
    return mask, _rand_color(rng, cfg), False


def _place_glyph(
    rng: np.random.Generator, cfg: WorldConfig, x: np.ndarray, y: np.ndarray, glyph: str
) -> tuple[np.ndarray, float, float, float]:
    """Random scale/rotation/position with truncation <= max_trunc (rejection sampling).

    Returns:
        (mask (H, W) bool, cx, cy, r) with r the half side of the glyph bounding box.
    """
    size, ss = cfg.image_size, cfg.supersample
    r = rng.uniform(cfg.scale_min, cfg.scale_max) * size / 2
    rot = np.deg2rad(rng.uniform(-cfg.rotate_max_deg, cfg.rotate_max_deg))
    c, s = np.float32(np.cos(rot)), np.float32(np.sin(rot))
    full = _unit_area(glyph) * r * r * ss * ss  # expected supersampled pixel count
    lo = r - 2 * r * cfg.max_trunc
    hi = size - lo
    for _ in range(50):
        cx, cy = rng.uniform(lo, hi, 2)
        dx, dy = (x - cx) / r, (y - cy) / r
        mask = _unit_glyph(glyph, dx * c + dy * s, -dx * s + dy * c)
        if mask.sum() >= (1.0 - cfg.max_trunc) * full:
            return mask, float(cx), float(cy), float(r)
    cx = cy = size / 2  # fallback: centred (never truncated)
    dx, dy = (x - cx) / r, (y - cy) / r
    return _unit_glyph(glyph, dx * c + dy * s, -dx * s + dy * c), cx, cy, float(r)


def _two_tone(color: np.ndarray, w: np.ndarray, contrast: float) -> np.ndarray:
    """color where w=0, color * (1 - contrast) where w=1; (H, W, 3)."""
    return color * (1.0 - contrast * w)[..., None]


def _stripes(x: np.ndarray, y: np.ndarray, angle: float, period: float, phase: float, sharp: float) -> np.ndarray:
    t = x * np.float32(np.cos(angle)) + y * np.float32(np.sin(angle))
    return np.clip(0.5 + sharp * np.sin(np.float32(2 * np.pi / period) * t + np.float32(phase)), 0.0, 1.0)


def _rotated(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return x * c + y * s, -x * s + y * c


def _stripe_fill(rng: np.random.Generator, cfg: WorldConfig, x: np.ndarray, y: np.ndarray, label: int) -> np.ndarray:
    color = _rand_color(rng, cfg)
    period = cfg.stripe_period * (1.0 + rng.uniform(-cfg.stripe_period_jitter, cfg.stripe_period_jitter))
    angle = np.deg2rad(class_angles(cfg)[label] + rng.uniform(-cfg.stripe_jitter_deg, cfg.stripe_jitter_deg))
    w = _stripes(x, y, angle, period, rng.uniform(0.0, 2 * np.pi), cfg.stripe_sharpness)
    return _two_tone(color, w, cfg.stripe_contrast)


def _near_fill(rng: np.random.Generator, cfg: WorldConfig, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Dot or checker fill with the ID colour/contrast statistics."""
    color = _rand_color(rng, cfg)
    period = cfg.near_period * (1.0 + rng.uniform(-cfg.stripe_period_jitter, cfg.stripe_period_jitter))
    a, b = _rotated(x, y, rng.uniform(0.0, np.pi / 2))
    a = a + np.float32(rng.uniform(0.0, period))
    b = b + np.float32(rng.uniform(0.0, period))
    if rng.random() < cfg.near_checker_p:
        w = ((np.floor(a * (2 / period)) + np.floor(b * (2 / period))) % 2).astype(np.float32)
    else:
        da, db = np.mod(a, period) - period / 2, np.mod(b, period) - period / 2
        w = (da * da + db * db <= (cfg.near_dot_radius * period) ** 2).astype(np.float32)
    return _two_tone(color, w, cfg.stripe_contrast)


def _occluder(
    rng: np.random.Generator, cfg: WorldConfig, x: np.ndarray, y: np.ndarray, obj: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    """Ellipse near the object edge covering exactly a fraction in [min, max] of ``obj``."""
    frac = rng.uniform(cfg.occlude_frac_min, cfg.occlude_frac_max)
    phi = rng.uniform(0.0, 2 * np.pi)
    rho = rng.uniform(0.5, 1.0) * r
    ox, oy = cx + rho * np.cos(phi), cy + rho * np.sin(phi)
    aspect = rng.uniform(0.5, 1.0)
    du, dv = _rotated(x - np.float32(ox), y - np.float32(oy), rng.uniform(0.0, np.pi))
    d = (du / np.float32(aspect)) ** 2 + dv * dv
    radius2 = np.quantile(d[obj], frac)
    return d <= radius2


def _far_texture(rng: np.random.Generator, cfg: WorldConfig, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Full-frame texture, (H, W, 3) float32, and its index in FAR_TEXTURES (drawn uniformly)."""
    size, ss = cfg.image_size, cfg.supersample
    kind = int(rng.integers(len(FAR_TEXTURES)))
    name = FAR_TEXTURES[kind]
    c1, c2 = _rand_color(rng, cfg), _rand_color(rng, cfg)
    if rng.random() < 0.5 or np.abs(c1 - c2).max() < 0.3:  # make sure the two tones contrast
        c2 = c2 * np.float32(rng.uniform(0.2, 0.5))
    period = rng.uniform(cfg.far_period_min, cfg.far_period_max)
    a, b = _rotated(x, y, rng.uniform(0.0, np.pi))
    a = a + np.float32(rng.uniform(0.0, period))
    b = b + np.float32(rng.uniform(0.0, period))
    if name == "checker":
        w = ((np.floor(a * (2 / period)) + np.floor(b * (2 / period))) % 2).astype(np.float32)
    elif name == "rings":
        ox, oy = rng.uniform(-0.5 * size, 1.5 * size, 2)
        rr = np.sqrt((x - np.float32(ox)) ** 2 + (y - np.float32(oy)) ** 2)
        w = np.clip(0.5 + np.sin(np.float32(2 * np.pi / period) * rr), 0.0, 1.0)
    elif name == "polka":
        rad = rng.uniform(0.2, 0.38) * period
        da, db = np.mod(a, period) - period / 2, np.mod(b, period) - period / 2
        w = (da * da + db * db <= rad * rad).astype(np.float32)
    elif name == "plaid":
        c3 = _rand_color(rng, cfg)
        p2 = rng.uniform(cfg.far_period_min, cfg.far_period_max)
        w1 = _stripes(a, b, 0.0, period, 0.0, 1.0)
        w2 = _stripes(a, b, np.pi / 2, p2, 0.0, 1.0)
        img = c1 * (1 - w1)[..., None] + c2 * w1[..., None]
        return img * (1 - 0.5 * w2)[..., None] + 0.5 * c3 * w2[..., None], kind
    else:  # high-frequency noise at the final resolution
        sigma = rng.uniform(cfg.far_noise_sigma_min, cfg.far_noise_sigma_max)
        ch = 3 if rng.random() < 0.5 else 1
        noise = rng.normal(0.0, sigma, (size, size, ch)).astype(np.float32)
        noise = np.repeat(np.repeat(noise, ss, axis=0), ss, axis=1)
        return (c1 + noise).astype(np.float32), kind
    return c1 * (1 - w)[..., None] + c2 * w[..., None], kind


# --------------------------------------------------------------------------- samples


def _rng_for(name: str, index: int, seed: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))], spawn_key=(int(index),))
    return np.random.default_rng(ss)


def _render(name: str, index: int, seed: int, cfg: WorldConfig) -> tuple[np.ndarray, int, np.ndarray]:
    kind = SPLIT_KIND[name]
    rng = _rng_for(name, index, seed)
    size, ss = cfg.image_size, cfg.supersample
    x, y = pixel_grid(size, ss)
    visible = np.zeros(x.shape, dtype=bool)
    label = -1
    if kind == "far":
        img, _ = _far_texture(rng, cfg, x, y)
    else:
        img = _background(rng, cfg, x, y)
        n_clutter = int(rng.integers(cfg.clutter_min, cfg.clutter_max + 1))
        items = [(*_clutter_item(rng, cfg, x, y), rng.random() < cfg.clutter_front_p) for _ in range(n_clutter)]
        if cfg.clutter_texture_p > 0:  # drawn only when enabled, so the default world is unchanged
            items = [(mask, _near_fill(rng, cfg, x, y) if blob and rng.random() < cfg.clutter_texture_p else color,
                      blob, front) for mask, color, blob, front in items]
        items = [(mask, color, front) for mask, color, _, front in items]
        for mask, color, front in items:
            if not front or kind == "bg":
                img[mask] = color if color.ndim == 1 else color[mask]
        if kind in ("id", "near"):
            if kind == "id":
                label = index % cfg.n_classes
                glyph = CLASS_NAMES[label]
            else:
                glyph = NEAR_GLYPHS[index % len(NEAR_GLYPHS)]
            obj, cx, cy, r = _place_glyph(rng, cfg, x, y, glyph)
            fill = _stripe_fill(rng, cfg, x, y, label) if kind == "id" else _near_fill(rng, cfg, x, y)
            img[obj] = fill[obj]
            visible = obj.copy()
            if rng.random() < cfg.occlude_p and obj.any():
                occ = _occluder(rng, cfg, x, y, obj, cx, cy, r)
                img[occ] = _rand_color(rng, cfg)
                visible &= ~occ
            for mask, color, front in items:
                if front:
                    img[mask] = color if color.ndim == 1 else color[mask]
                    visible &= ~mask
    img = img.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    img += rng.normal(0.0, cfg.noise_sigma, img.shape).astype(np.float32)
    out = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    cover = visible.reshape(size, ss, size, ss).mean(axis=(1, 3), dtype=np.float32)
    return out, label, cover


def render_sample(
    name: str, index: int, seed: int = 0, cfg: WorldConfig | None = None
) -> tuple[np.ndarray, int, np.ndarray]:
    """Render image ``index`` of split ``name`` alone (identical to ``generate_split(name)[0][index]``).

    Args:
        name: a key of :data:`SPLITS`.
        index: image index within the split (>= 0; may exceed the default size).
        seed: world seed.
        cfg: world knobs; defaults to ``WorldConfig()``.

    Returns:
        (image (H, W, 3) uint8, label (0..K-1 for ID, -1 for OOD), object coverage
        (H, W) float32 in [0, 1]: the fraction of each pixel covered by the *visible*
        object, after occluder and front clutter; all zero for ``ood_far``/``ood_bg``).
    """
    if name not in SPLITS:
        raise KeyError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
    return _render(name, index, seed, cfg or WorldConfig())


def generate_split(
    name: str, n: int | None = None, seed: int = 0, cfg: WorldConfig | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a split in memory (no caching).

    Image ``i`` depends only on (seed, name, i, cfg), so ``generate_split(name, m)`` is a
    prefix of ``generate_split(name, n)`` for m <= n.

    Args:
        name: a key of :data:`SPLITS`.
        n: number of images; default ``SPLITS[name]``.
        seed: world seed (>= 0).
        cfg: world knobs; defaults to ``WorldConfig()``.
        progress: show a tqdm bar.

    Returns:
        (images (N, H, W, 3) uint8 RGB, labels (N,) int64: 0..K-1 for ID splits, -1 for OOD splits).
    """
    if name not in SPLITS:
        raise KeyError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
    cfg = cfg or WorldConfig()
    n = SPLITS[name] if n is None else int(n)
    size = cfg.image_size
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty((n,), dtype=np.int64)
    it = range(n)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"{WORLD_NAME}/{name}", leave=False)
    for i in it:
        images[i], labels[i], _ = _render(name, i, seed, cfg)
    return images, labels


# --------------------------------------------------------------------------- cache


def world_dir(root: str | Path, seed: int = 0, cfg: WorldConfig | None = None) -> Path:
    """Cache directory ``<root>/clutterglyphs32-<hash>`` for (version, seed, every knob)."""
    cfg = cfg or WorldConfig()
    key = json.dumps({"version": WORLD_VERSION, "seed": int(seed), "cfg": asdict(cfg)}, sort_keys=True)
    return Path(root) / f"{WORLD_NAME}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _try_load(path: Path, n: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
        if images.shape != (n, size, size, 3) or images.dtype != np.uint8:
            raise ValueError(f"images have shape {images.shape} dtype {images.dtype}")
        if labels.shape != (n,) or labels.dtype != np.int64:
            raise ValueError(f"labels have shape {labels.shape} dtype {labels.dtype}")
    except Exception as e:  # truncated zip, bad CRC, missing key, wrong shape...
        warnings.warn(f"corrupt world cache {path} ({type(e).__name__}: {e}); regenerating", stacklevel=3)
        return None
    return images, labels


def load_world(
    root: str | Path,
    seed: int = 0,
    cfg: WorldConfig | None = None,
    splits: Sequence[str] | None = None,
    sizes: dict[str, int] | None = None,
    progress: bool = True,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load splits from the on-disk cache, generating (and caching) missing ones.

    Args:
        root: cache root; files go to ``world_dir(root, seed, cfg)/<split>-n<N>.npz``.
        seed: world seed.
        cfg: world knobs; defaults to ``WorldConfig()``. Any change gives a new cache dir.
        splits: split names; default all of :data:`SPLITS`.
        sizes: per-split image counts overriding :data:`SPLITS`.
        progress: show a tqdm bar while generating.

    Returns:
        ``{split: (images (N, H, W, 3) uint8, labels (N,) int64)}``.
    """
    cfg = cfg or WorldConfig()
    names = list(SPLITS) if splits is None else list(splits)
    sizes = dict(sizes or {})
    for name in list(names) + list(sizes):
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
    d = world_dir(root, seed, cfg)
    d.mkdir(parents=True, exist_ok=True)
    meta = d / "config.json"
    if not meta.exists():
        text = json.dumps({"world": WORLD_NAME, "version": WORLD_VERSION, "seed": int(seed), "cfg": asdict(cfg)}, indent=2)
        _atomic_write(meta, lambda f: f.write(text.encode()))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        n = int(sizes.get(name, SPLITS[name]))
        path = d / f"{name}-n{n}.npz"
        data = _try_load(path, n, cfg.image_size)
        if data is None:
            data = generate_split(name, n, seed, cfg, progress=progress)
            images, labels = data
            _atomic_write(path, lambda f: np.savez(f, images=images, labels=labels))
        out[name] = data
    return out


# --------------------------------------------------------------------------- preview


def save_preview(
    path: str | Path, seed: int = 0, cfg: WorldConfig | None = None, per_split: int = 8, zoom: int = 3
) -> Path:
    """Write a PNG grid: one row per split (first ``per_split`` images), for the model card.

    Args:
        path: output PNG path.
        seed: world seed.
        cfg: world knobs; defaults to ``WorldConfig()``.
        per_split: images per row.
        zoom: nearest-neighbour upscaling of each tile.

    Returns:
        The written path.
    """
    from PIL import Image, ImageDraw

    cfg = cfg or WorldConfig()
    size, pad, label_w = cfg.image_size * zoom, 4, 110
    rows = list(SPLITS)
    canvas = Image.new("RGB", (label_w + per_split * (size + pad) + pad, len(rows) * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(rows):
        images, labels = generate_split(name, per_split, seed, cfg)
        top = pad + r * (size + pad)
        draw.text((4, top + size // 2 - 6), name, fill="black")
        for c in range(per_split):
            tile = Image.fromarray(images[c]).resize((size, size), Image.NEAREST)
            left = label_w + pad + c * (size + pad)
            canvas.paste(tile, (left, top))
            if labels[c] >= 0:
                draw.text((left + 2, top + 1), CLASS_NAMES[labels[c]][:4], fill="white")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
