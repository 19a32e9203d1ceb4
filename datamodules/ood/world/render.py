"""Rendering ClutterGlyphs-32: glyphs, the background/clutter/fill/occluder layers and whole samples.

Determinism:
    Image ``i`` of split ``name`` is drawn from
    ``np.random.SeedSequence([seed, crc32(name)], spawn_key=(i,))``
    (:func:`datamodules.common.world.rng_for`), so any split, any prefix of a split and any
    single image regenerate byte-identically on their own (:func:`generate_split`,
    :func:`render_sample`).

Rendering:
    Geometry is in final-pixel units (0..32). Each image is rendered at
    ``supersample`` x resolution and box-downsampled (anti-aliasing); Gaussian
    pixel noise is added at the final resolution; output is uint8 HWC RGB.

Coordinates:
    ``x`` is the column, ``y`` the row (pointing down). An orientation ``theta`` means
    the stripe *normal* (intensity gradient direction) is ``(cos theta, sin theta)``
    in ``(x, y)``.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np

from datamodules.common.world import in_polygon, pixel_grid, rng_for
from datamodules.ood.world.config import (
    CLASS_NAMES,
    FAR_TEXTURES,
    NEAR_GLYPHS,
    SPLIT_KIND,
    SPLITS,
    WORLD_NAME,
    WorldConfig,
    class_angles,
)

__all__ = ["generate_split", "render_sample"]


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
        return in_polygon(u, v, _POLYGONS[name])
    raise KeyError(f"unknown glyph {name!r}")


@lru_cache(maxsize=None)
def _unit_area(name: str) -> float:
    """Area of the unit glyph (numerical, 400x400 grid over [-1.5, 1.5]^2)."""
    c = (np.arange(400) + 0.5) / 400 * 3.0 - 1.5
    u, v = np.meshgrid(c, c)
    return float(_unit_glyph(name, u, v).sum()) * (3.0 / 400) ** 2


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


def _render(name: str, index: int, seed: int, cfg: WorldConfig) -> tuple[np.ndarray, int, np.ndarray]:
    kind = SPLIT_KIND[name]
    rng = rng_for(name, index, seed)
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

