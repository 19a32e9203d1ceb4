"""Rendering RoadWorld-64: the scene layout, the palette and textures of a style, the global
pipeline, the test anomalies and the OE proxies.

Determinism:
    Sample ``i`` of split ``name`` is drawn from
    ``np.random.SeedSequence([seed, crc32(name)], spawn_key=(i,))``
    (:func:`datamodules.common.world.rng_for`): any sample regenerates byte-identically on its own,
    in any order, and a split of ``n`` images is the first ``n`` of a longer one.

Scene (``x`` = column, ``y`` = row pointing down, pixel centres at ``+0.5``; depth ``t`` = 0 at
the horizon row ``yh`` and 1 at the bottom row):
    * road: a trapezoid from the bottom row to the vanishing point ``(xv, yh)``: row ``y`` holds
      ``|x - xc(t)| <= t * rb`` with ``xc`` moving linearly from the bottom centre to ``xv``;
    * sidewalks: wedges along both road edges (a side may have none);
    * sides: beyond the sidewalks and above the horizon, each side is either lined with 1-3
      buildings whose roof lines converge to the vanishing point (window grids in perspective), or
      a vegetation hedge; sky above;
    * 0-4 tree crowns (vegetation) along the sides and 0-3 vehicles on the road, sized by depth
      and drawn far to near;
    * val/test only: 1-2 anomalies (cones, boxes, rings, blob animals) standing on the road or a
      sidewalk, depth-scaled, coloured from the image's own palette (+ jitter), never overlapping a
      vehicle, then everything goes through the style's global pipeline;
    * the bottom ``void_rows`` rows are the ego hood: void (label 255, anomaly 255).

OE proxies are rendered on their own (random polygons and ellipses with flat, striped, checker,
noise or gradient textures in free colours), never through a style: the datamodule hard-pastes
them into training images after rendering (:mod:`datamodules.anomaly.pasting`).
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from datamodules.common.world import in_polygon, rng_for
from datamodules.anomaly.world.config import (
    ANOMALY_SHAPES,
    VOID,
    Style,
    WorldConfig,
    split_style,
)

__all__ = ["apply_pipeline", "generate_split", "render_oe", "render_sample", "render_scene"]

ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, VEHICLE = range(6)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------- helpers


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres: x (1, W) and y (H, 1), float32, read-only."""
    x = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    y = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@lru_cache(maxsize=32)
def _noise_weights(h: int, w: int, cy: int, cx: int) -> tuple[np.ndarray, ...]:
    gy = (np.arange(h) + 0.5) / h * cy
    gx = (np.arange(w) + 0.5) / w * cx
    iy, ix = np.floor(gy).astype(np.int64), np.floor(gx).astype(np.int64)
    fy, fx = gy - iy, gx - ix
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep
    return iy, ix, fy.astype(np.float32)[:, None], fx.astype(np.float32)[None, :]


def value_noise(rng: np.random.Generator, h: int, w: int, cy: int, cx: int) -> np.ndarray:
    """Smooth value noise (H, W) float32 with about ``cy`` x ``cx`` cells, values in [-1, 1]."""
    g = rng.uniform(-1.0, 1.0, (cy + 1, cx + 1)).astype(np.float32)
    iy, ix, fy, fx = _noise_weights(h, w, cy, cx)
    a, b = g[iy][:, ix], g[iy][:, ix + 1]
    c, d = g[iy + 1][:, ix], g[iy + 1][:, ix + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _jitter(rng: np.random.Generator, c: tuple[float, float, float] | np.ndarray, j: float) -> np.ndarray:
    return np.clip(np.asarray(c, dtype=np.float32) + rng.uniform(-j, j, 3).astype(np.float32), 0.0, 1.0)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _hue_matrix(turns: float) -> np.ndarray:
    """3x3 RGB rotation about the grey axis by ``turns`` of a full turn (a hue shift)."""
    a = 2 * np.pi * turns
    c, s = np.cos(a), np.sin(a)
    k = 1.0 / 3.0
    q = np.sqrt(k)
    return np.array([
        [c + (1 - c) * k, k * (1 - c) - q * s, k * (1 - c) + q * s],
        [k * (1 - c) + q * s, c + k * (1 - c), k * (1 - c) - q * s],
        [k * (1 - c) - q * s, k * (1 - c) + q * s, c + k * (1 - c)],
    ], dtype=np.float32)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((x - cx) / max(rx, 1e-3)) ** 2 + ((y - cy) / max(ry, 1e-3)) ** 2 <= 1.0


def _rect(x: np.ndarray, y: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


# --------------------------------------------------------------------------- the scene


def _layout(rng: np.random.Generator, cfg: WorldConfig) -> dict[str, Any]:
    H, W = cfg.height, cfg.width
    sw = [0.0 if rng.random() < cfg.sidewalk_missing_p else float(rng.uniform(cfg.sidewalk_min, cfg.sidewalk_max))
          for _ in range(2)]
    return {
        "yh": float(rng.uniform(cfg.horizon_min, cfg.horizon_max) * H),
        "xv": float(W / 2 + rng.uniform(-cfg.vp_jitter, cfg.vp_jitter) * W),
        "xb": float(W / 2 + rng.uniform(-cfg.road_shift, cfg.road_shift) * W),
        "rb": float(rng.uniform(cfg.road_half_width_min, cfg.road_half_width_max) * W),
        "sw": sw,
    }


def _row_geometry(lay: dict[str, Any], y: float | np.ndarray, H: int) -> tuple[Any, Any, Any]:
    """Depth t, road centre xc and road half-width hw at row(s) y."""
    t = np.clip((y - lay["yh"]) / (H - lay["yh"]), 0.0, None)
    return t, lay["xv"] + t * (lay["xb"] - lay["xv"]), t * lay["rb"]


def render_scene(rng: np.random.Generator, cfg: WorldConfig, style: Style,
                 anomalies: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One scene before the global pipeline.

    Args:
        rng: the sample's generator.
        cfg: world knobs.
        style: palette and textures.
        anomalies: draw the test anomalies (val/test).

    Returns:
        (image (H, W, 3) float32 in about [0, 1], label (H, W) uint8 with classes 0..5 and 255 on
        void and anomaly pixels, anomaly (H, W) uint8 0/1/255, far (H, W) float32 in [0, 1]:
        1 = at the horizon or beyond, the depth-haze weight).
    """
    H, W = cfg.height, cfg.width
    x, y = _grid(H, W)
    tex = style.texture
    j = style.colour_jitter
    pal = {k: _jitter(rng, getattr(style, k), j) for k in ("road", "sidewalk", "building", "vegetation")}
    sky_top, sky_hor = _jitter(rng, style.sky_top, j), _jitter(rng, style.sky_horizon, j)
    lay = _layout(rng, cfg)
    yh, xv = lay["yh"], lay["xv"]
    t_row, xc_row, hw_row = _row_geometry(lay, y[:, 0], H)  # (H,)
    t, xc, hw = t_row[:, None], xc_row[:, None], hw_row[:, None]
    below = y > yh
    dx = x - xc
    far = np.broadcast_to(1.0 - np.clip(t, 0, 1), (H, W)).astype(np.float32)

    img = np.empty((H, W, 3), dtype=np.float32)
    lab = np.full((H, W), SKY, dtype=np.uint8)

    # sky: vertical gradient + clouds
    g = np.clip(y / max(yh, 1.0), 0.0, 1.0)[..., None]
    img[...] = sky_top * (1 - g) + sky_hor * g
    img += (0.05 * tex * value_noise(rng, H, W, 3, 6))[..., None]

    # sides: buildings or a hedge, up to a roof line converging to the vanishing point
    edge_l = xc - hw * (1 + lay["sw"][0])
    edge_r = xc + hw * (1 + lay["sw"][1])
    for side in (0, 1):
        inside = (x < edge_l) if side == 0 else (x > edge_r)
        span = max(xv if side == 0 else W - xv, 1.0)
        s = np.clip(((xv - x) if side == 0 else (x - xv)) / span, 1e-3, None)  # (1, W), 0 at the VP
        s = np.broadcast_to(s, (H, W))
        if rng.random() < cfg.building_p:
            k = int(rng.integers(cfg.buildings_min, cfg.buildings_max + 1))
            cuts = np.sort(rng.uniform(0.0, 1.0, k - 1)) if k > 1 else np.zeros(0)
            heights = rng.uniform(cfg.building_height_min, cfg.building_height_max, k) * H
            colours = np.stack([_jitter(rng, pal["building"], 0.08) for _ in range(k)])
            which = np.searchsorted(cuts, s[0])  # (W,) building index per column
            roof = yh - s * heights[which][None, :]
            mask = inside & (y >= roof)
            fa, fb = rng.uniform(4.0, 7.0), rng.uniform(0.15, 0.25)
            a, b = 1.0 / s, (y - yh) / s
            win = (np.mod(a * fa, 1.0) > 0.35) & (np.mod(b * fb + rng.random(), 1.0) > 0.45) & (b < -1.5)
            col = colours[which][None, :, :] * (1.0 - 0.45 * tex * win[..., None])
            col = col + (0.04 * tex * value_noise(rng, H, W, 8, 16))[..., None]
            img[mask] = np.broadcast_to(col, (H, W, 3))[mask]
            lab[mask] = BUILDING
        else:
            hh = rng.uniform(cfg.hedge_height_min, cfg.hedge_height_max) * H
            mask = inside & (y >= yh - s * hh)
            col = pal["vegetation"] * (1.0 + 0.25 * tex * value_noise(rng, H, W, 16, 32))[..., None]
            img[mask] = col[mask]
            lab[mask] = VEGETATION
        far = np.where(mask, np.clip(1.0 - s, 0.0, 1.0), far)

    # road: value noise + dashed centre line (dashes periodic in depth 1 / t)
    road = below & (np.abs(dx) <= hw)
    z = 1.0 / np.maximum(t, 1e-3)
    rc = pal["road"] * (1.0 + 0.08 * tex * value_noise(rng, H, W, 8, 16))[..., None]
    dash = (np.abs(dx) <= np.maximum(0.025 * hw, 0.35)) & (np.mod(z * 0.6 + rng.random(), 1.0) < 0.5) & road
    rc = np.where(dash[..., None], np.clip(rc + 0.45 * tex, 0.0, 1.0), rc)
    img[road] = rc[road]
    lab[road] = ROAD
    # sidewalks: paving lines in depth + noise
    side_walk = below & ~road & (x >= edge_l) & (x <= edge_r)
    sc = pal["sidewalk"] * (1.0 + 0.06 * tex * value_noise(rng, H, W, 8, 16))[..., None]
    lines = np.mod(z * 2.0, 1.0) < 0.15
    sc = np.where(lines[..., None], sc * (1.0 - 0.25 * tex), sc)
    img[side_walk] = sc[side_walk]
    lab[side_walk] = SIDEWALK

    # trees along the sides
    for _ in range(int(rng.integers(cfg.trees_min, cfg.trees_max + 1))):
        side = int(rng.integers(2))
        tt = float(rng.uniform(0.05, 0.7))
        yb = yh + tt * (H - yh)
        _, xct, hwt = _row_geometry(lay, yb, H)
        xe = xct - hwt * (1 + lay["sw"][0]) if side == 0 else xct + hwt * (1 + lay["sw"][1])
        r = tt * H * float(rng.uniform(0.2, 0.4)) + 1.0
        xt = xe + (-0.6 * r if side == 0 else 0.6 * r)
        crown = _ellipse(x, y, xt, yb - 1.5 * r, r, 1.1 * r)
        trunk = _rect(x, y, xt - max(0.5, 0.12 * r), xt + max(0.5, 0.12 * r), yb - 1.5 * r, yb)
        mask = crown | trunk
        col = _jitter(rng, pal["vegetation"], 0.05) * (1.0 + 0.3 * tex * value_noise(rng, H, W, 16, 32))[..., None]
        col = np.where(trunk[..., None] & ~crown[..., None], col * 0.5, col)
        img[mask] = col[mask]
        lab[mask] = VEGETATION
        far = np.where(mask, 1.0 - tt, far)

    # vehicles on the road, far to near
    occupied = np.zeros((H, W), dtype=bool)
    n_veh = int(rng.integers(cfg.vehicles_min, cfg.vehicles_max + 1))
    for tt in np.sort(rng.uniform(0.15, 0.95, n_veh)):
        yb = min(yh + tt * (H - yh), H - cfg.void_rows + 1.0)
        _, xct, hwt = _row_geometry(lay, yb, H)
        w = float(rng.uniform(cfg.vehicle_width_min, cfg.vehicle_width_max)) * 2 * hwt
        xcar = xct + rng.uniform(-1.0, 1.0) * max(hwt - w / 2, 0.0)
        h = w * float(rng.uniform(0.5, 0.75))
        x0, x1 = xcar - w / 2, xcar + w / 2
        body = _rect(x, y, x0, x1, yb - 0.55 * h, yb)
        cabin = _rect(x, y, x0 + 0.18 * w, x1 - 0.18 * w, yb - h, yb - 0.55 * h)
        window = _rect(x, y, x0 + 0.24 * w, x1 - 0.24 * w, yb - 0.88 * h, yb - 0.58 * h)
        wheels = (_rect(x, y, x0 + 0.1 * w, x0 + 0.32 * w, yb - 0.2 * h, yb)
                  | _rect(x, y, x1 - 0.32 * w, x1 - 0.1 * w, yb - 0.2 * h, yb))
        mask = body | cabin
        colour = _hsv(rng.random(), rng.uniform(*style.vehicle_sat), rng.uniform(*style.vehicle_val))
        shade = (1.0 - 0.25 * np.clip((y - (yb - h)) / max(h, 1e-3), 0, 1))[..., None]
        col = np.broadcast_to(colour * shade, (H, W, 3)).copy()
        col[window] = col[window] * 0.35 + 0.1
        col[wheels] = 0.06
        img[mask] = col[mask]
        lab[mask] = VEHICLE
        occupied |= mask
        far = np.where(mask, 1.0 - tt, far)

    anom = np.zeros((H, W), dtype=np.uint8)
    if anomalies and rng.random() < cfg.anomaly_p:
        cands = [pal["building"], pal["vegetation"], sky_hor,
                 _hsv(rng.random(), rng.uniform(*style.vehicle_sat), rng.uniform(*style.vehicle_val))]
        for _ in range(int(rng.integers(cfg.anomalies_min, cfg.anomalies_max + 1))):
            placed = _place_anomaly(rng, cfg, style, lay, pal, cands, x, y, occupied)
            if placed is None:
                continue
            mask, col, tt = placed
            img[mask] = col[mask]
            lab[mask] = VOID
            anom[mask] = 1
            occupied |= mask
            far = np.where(mask, 1.0 - tt, far)

    # ego hood
    if cfg.void_rows:
        hood = _jitter(rng, style.hood, 0.02)
        sheen = 1.0 + 0.3 * np.abs(np.linspace(-1.0, 1.0, W, dtype=np.float32))[None, :, None]
        img[H - cfg.void_rows:] = hood * sheen
        lab[H - cfg.void_rows:] = VOID
        anom[H - cfg.void_rows:] = VOID
        far = far.copy()
        far[H - cfg.void_rows:] = 0.0
    return img, lab, anom, np.asarray(far, dtype=np.float32)


def _anomaly_mask(shape: str, x: np.ndarray, y: np.ndarray, xa: float, yb: float, h: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(mask, highlight) of a test anomaly standing at (xa, yb) with height h (px)."""
    if shape == "cone":
        half = 0.38 * h
        top = yb - h
        frac = np.clip((y - top) / max(h, 1e-3), 0.0, 1.0)
        mask = (y >= top) & (y < yb) & (np.abs(x - xa) <= 0.12 * half + frac * half)
        band = mask & (frac > 0.45) & (frac < 0.65)
        return mask, band
    if shape == "box":
        w = h * float(rng.uniform(0.8, 1.6))
        front = _rect(x, y, xa - w / 2, xa + w / 2, yb - 0.8 * h, yb)
        top = _rect(x, y, xa - w / 2 + 0.15 * h, xa + w / 2 + 0.15 * h, yb - h, yb - 0.8 * h)
        return front | top, top
    if shape == "ring":
        ry = 0.5 * h
        rx = ry * float(rng.uniform(0.45, 1.0))
        outer = _ellipse(x, y, xa, yb - ry, rx, ry)
        inner = _ellipse(x, y, xa, yb - ry, 0.5 * rx, 0.5 * ry)
        return outer & ~inner, np.zeros_like(outer)
    # a blob animal: body, head, four legs
    d = 1.0 if rng.random() < 0.5 else -1.0
    bw, bh = 0.75 * h, 0.28 * h
    by = yb - 0.55 * h
    body = _ellipse(x, y, xa, by, bw, bh)
    head = _ellipse(x, y, xa + d * 0.85 * bw, by - 0.3 * h, 0.25 * h, 0.2 * h)
    legs = np.zeros_like(body)
    lw = max(0.6, 0.08 * h)
    for f in (-0.6, -0.3, 0.3, 0.6):
        legs |= _rect(x, y, xa + f * bw - lw / 2, xa + f * bw + lw / 2, by, yb)
    return body | head | legs, legs


def _place_anomaly(rng: np.random.Generator, cfg: WorldConfig, style: Style, lay: dict[str, Any],
                   pal: dict[str, np.ndarray], cands: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                   occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """A test anomaly on the road or a sidewalk: (mask, colour image, depth), or None after 20 tries."""
    H, W = cfg.height, cfg.width
    yh = lay["yh"]
    y_max = H - cfg.void_rows - 0.5
    t_max = min(cfg.anomaly_depth_max, (y_max - yh) / (H - yh))
    walks = [s for s in (0, 1) if lay["sw"][s] > 0]
    shape = ANOMALY_SHAPES[int(rng.integers(len(ANOMALY_SHAPES)))]
    for attempt in range(20):
        lo = min(cfg.anomaly_depth_min + attempt * 0.03, t_max)  # nearer after each failure
        tt = float(rng.uniform(lo, t_max))
        yb = yh + tt * (H - yh)
        _, xct, hwt = _row_geometry(lay, yb, H)
        on_road = rng.random() < cfg.anomaly_road_p or not walks
        if on_road:
            xa = xct + float(rng.uniform(-0.85, 0.85)) * hwt
            surface = pal["road"]
        else:
            s = walks[int(rng.integers(len(walks)))]
            wd = hwt * lay["sw"][s]
            off = hwt + float(rng.uniform(0.2, 0.8)) * wd
            xa = xct - off if s == 0 else xct + off
            surface = pal["sidewalk"]
        h = tt * float(rng.uniform(cfg.anomaly_size_min, cfg.anomaly_size_max))
        mask, highlight = _anomaly_mask(shape, x, y, xa, yb, h, rng)
        if mask.sum() < cfg.anomaly_min_pixels or (mask & occupied).any():
            continue
        # a palette colour that differs from the surface it stands on
        others = [c for c in cands + [pal["road"], pal["sidewalk"]] if np.abs(c - surface).max() > 0.15]
        base = others[int(rng.integers(len(others)))] if others else cands[0]
        colour = _jitter(rng, base, cfg.anomaly_jitter)
        shade = 1.0 - 0.3 * np.clip((y - (yb - h)) / max(h, 1e-3), 0.0, 1.0)
        col = colour * (shade * (1.0 + 0.08 * style.texture * value_noise(rng, H, W, 8, 16)))[..., None]
        col = np.where(highlight[..., None], np.clip(col * 1.35 + 0.1, 0, 1), col)
        return mask, col.astype(np.float32), tt
    return None


def apply_pipeline(rng: np.random.Generator, img: np.ndarray, far: np.ndarray, style: Style) -> np.ndarray:
    """The style's global pipeline on a float (H, W, 3) scene; returns uint8 (H, W, 3).

    Order: hue rotation, saturation, depth haze (weight ``haze * far ** 1.5``), cast and gain,
    contrast, blur, gamma, vignette, sensor noise (``noise * sqrt(x)`` luma + ``chroma_noise``
    per channel), posterisation, rounding.
    """
    H, W, _ = img.shape
    j = style.jitter
    if style.hue_shift:
        img = img @ _hue_matrix(style.hue_shift).T
    if style.saturation != 1.0:
        lum = (img @ _LUMA)[..., None]
        img = lum + style.saturation * (img - lum)
    haze = style.haze * float(rng.uniform(1 - j, 1 + j))
    if haze > 0:
        wgt = np.clip(haze * far ** 1.5, 0.0, 1.0)[..., None]
        img = img * (1 - wgt) + np.asarray(style.haze_colour, dtype=np.float32) * wgt
    img = img * (np.asarray(style.cast, dtype=np.float32) * style.gain * float(rng.uniform(1 - j, 1 + j)))
    if style.contrast != 1.0:
        img = (img - 0.5) * style.contrast + 0.5
    if style.blur > 0:
        img = gaussian_filter(img, sigma=(style.blur, style.blur, 0.0), mode="nearest", truncate=3.0)
    img = np.clip(img, 0.0, 1.0) ** style.gamma
    if style.vignette > 0:
        x, y = _grid(H, W)
        r2 = (((x - W / 2) / (W / 2)) ** 2 + ((y - H / 2) / (H / 2)) ** 2) / 2.0
        img = img * (1.0 - style.vignette * r2)[..., None]
    noise = style.noise * float(rng.uniform(1 - j, 1 + j))
    if noise > 0:
        img = img + noise * np.sqrt(np.clip(img, 0.0, 1.0)) * rng.standard_normal((H, W, 1), dtype=np.float32)
    if style.chroma_noise > 0:
        img = img + style.chroma_noise * rng.standard_normal((H, W, 3), dtype=np.float32)
    img = np.clip(img, 0.0, 1.0)
    if style.posterize:
        levels = style.posterize - 1
        img = np.round(img * levels) / levels
    return np.rint(img * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- OE proxies


def render_oe(rng: np.random.Generator, cfg: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
    """One OE proxy in an ``oe_size_max`` square patch: (patch (S, S, 3) uint8, mask (S, S) bool).

    A random star-shaped polygon (5-10 vertices) or a rotated ellipse whose longer side is
    ``oe_size_min..oe_size_max`` px, with its own texture (flat, stripes, checker, per-pixel noise
    or a gradient between two free colours), not styled.
    """
    S = cfg.oe_size_max
    long = float(rng.integers(cfg.oe_size_min, cfg.oe_size_max + 1))
    aspect = float(rng.uniform(0.45, 1.0))
    c = (np.arange(S, dtype=np.float32) + 0.5)
    xx, yy = np.meshgrid(c, c)
    cx, cy = S / 2, S / 2
    rot = float(rng.uniform(0, np.pi))
    cr, sr = np.cos(rot), np.sin(rot)
    poly = None
    if rng.random() < 0.5:  # a star-shaped polygon, its extent normalised to [-1, 1]^2
        n = int(rng.integers(5, 11))
        ang = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n) + rng.uniform(0, 2 * np.pi)
        rad = rng.uniform(0.45, 1.0, n)
        poly = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
        lo, hi = poly.min(0), poly.max(0)
        poly = (poly - (lo + hi) / 2) / np.maximum((hi - lo) / 2, 1e-6)
    for _ in range(2 * S):  # grow until the box's longer side reaches oe_size_min (thin rotated shapes)
        u = ((xx - cx) * cr + (yy - cy) * sr) / (long / 2)
        v = (-(xx - cx) * sr + (yy - cy) * cr) / (long * aspect / 2)
        mask = in_polygon(u, v, poly) if poly is not None else u * u + v * v <= 1.0
        side = max(int(mask.any(0).sum()), int(mask.any(1).sum()))
        if (side >= cfg.oe_size_min and mask.sum() >= 3) or long >= S:
            break
        long = min(long + 1.0, float(S))
    c1 = _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.25, 1.0))
    c2 = _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.25, 1.0))
    kind = int(rng.integers(5))
    if kind == 0:
        patch = np.broadcast_to(c1, (S, S, 3)).copy()
    elif kind in (1, 2):
        period = float(rng.uniform(2.0, 6.0))
        a = float(rng.uniform(0, np.pi))
        p = xx * np.cos(a) + yy * np.sin(a)
        if kind == 1:
            w = (np.mod(p / period, 1.0) < 0.5)
        else:
            q = -xx * np.sin(a) + yy * np.cos(a)
            w = (np.floor(p / period) + np.floor(q / period)) % 2 == 0
        patch = np.where(w[..., None], c1, c2)
    elif kind == 3:
        patch = c1 + rng.normal(0.0, 0.15, (S, S, 3)).astype(np.float32)
    else:
        g = np.clip((yy - cy) / max(long / 2, 1) * 0.5 + 0.5, 0, 1)[..., None]
        patch = c1 * (1 - g) + c2 * g
    patch = np.clip(np.rint(np.clip(patch, 0, 1) * 255.0), 0, 255).astype(np.uint8)
    patch[~mask] = 0
    return patch, mask


# --------------------------------------------------------------------------- samples and splits


def render_sample(name: str, index: int, seed: int = 0, cfg: WorldConfig | None = None) -> dict[str, np.ndarray]:
    """Sample ``index`` of split ``name`` alone (identical to the split's entry).

    Args:
        name: ``train_<S>``, ``val_<S>`` (S in S1, S2, S3), ``test_T`` or ``oe``.
        index: sample index (>= 0; may exceed the configured size).
        seed: world seed.
        cfg: world knobs; defaults to ``WorldConfig()``.

    Returns:
        Scenes: ``{"image": (H, W, 3) uint8, "label": (H, W) uint8, "anomaly": (H, W) uint8}``
        (train scenes have no anomalies: anomaly is 0, or 255 on void). The OE bank:
        ``{"patch": (S, S, 3) uint8, "mask": (S, S) bool}``.
    """
    cfg = cfg or WorldConfig()
    style_name = split_style(name)
    rng = rng_for(name, index, seed)
    if style_name is None:
        patch, mask = render_oe(rng, cfg)
        return {"patch": patch, "mask": mask}
    style = cfg.style(style_name)
    img, lab, anom, far = render_scene(rng, cfg, style, anomalies=not name.startswith("train_"))
    return {"image": apply_pipeline(rng, img, far, style), "label": lab, "anomaly": anom}


def generate_split(name: str, n: int, seed: int = 0, cfg: WorldConfig | None = None,
                   progress: bool = False) -> dict[str, np.ndarray]:
    """Generate ``n`` samples of a split in memory (no caching).

    Returns:
        Scenes: ``{"images": (N, H, W, 3), "labels": (N, H, W), "anomaly": (N, H, W)}`` uint8;
        the OE bank: ``{"patches": (N, S, S, 3) uint8, "masks": (N, S, S) bool}``.
    """
    cfg = cfg or WorldConfig()
    split_style(name)
    it = range(n)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"RoadWorld {name}", leave=False)
    if name == "oe":
        S = cfg.oe_size_max
        patches = np.zeros((n, S, S, 3), dtype=np.uint8)
        masks = np.zeros((n, S, S), dtype=bool)
        for i in it:
            s = render_sample(name, i, seed, cfg)
            patches[i], masks[i] = s["patch"], s["mask"]
        return {"patches": patches, "masks": masks}
    H, W = cfg.height, cfg.width
    images = np.zeros((n, H, W, 3), dtype=np.uint8)
    labels = np.zeros((n, H, W), dtype=np.uint8)
    anomaly = np.zeros((n, H, W), dtype=np.uint8)
    for i in it:
        s = render_sample(name, i, seed, cfg)
        images[i], labels[i], anomaly[i] = s["image"], s["label"], s["anomaly"]
    return {"images": images, "labels": labels, "anomaly": anomaly}
