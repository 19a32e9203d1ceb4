"""Shapes on clutter: the embedded world of PTA (spec "Default proposal").

64 x 64 RGB scenes, numpy only: a low-frequency colour-noise background with thin clutter (5-15
1-px lines, half of ``n_clutter`` 2-px dots), and 3-5 non-overlapping objects (6 shapes x 8 colours, 12-24 px, anti-aliased
at 4x supersampling) with exact tight boxes. Within a scene every (colour, shape) is unique, so a
caption names objects unambiguously. Each scene has two captions naming *different* sets of 1-2
objects ("a red circle", "a red circle and a blue ring", "a red circle left of a blue ring" -- a
relation only when true by the box centres); the unnamed objects are distractors of the same size
and colours, which is what makes the patch detector's job text-dependent.

Every scene is a pure function of ``(seed, split, index)`` (:func:`datamodules.common.world.rng_for`).
Test captions are unique within the split: when a scene's captions repeat an earlier one, its
captions (not its pixels) are drawn again from the next attempt stream (``"<split>/captions#<attempt>"``),
deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.common.world import pixel_grid, rng_for
from datamodules.vlp.records import ImageRecord, VLPObject

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white")
RGB = {"red": (225, 40, 40), "green": (40, 190, 60), "blue": (45, 85, 230), "yellow": (240, 220, 40),
       "magenta": (210, 50, 210), "cyan": (40, 215, 225), "orange": (245, 140, 25), "white": (245, 245, 245)}
RELATIONS = ("left of", "right of", "above", "below")
SS = 4


@dataclass(frozen=True)
class ShapesWorldConfig:
    """Knobs of the world (sizes in pixels).

    Args:
        seed: world seed. image_size: side. n_objects, object_px, n_clutter: ranges (inclusive).
        captions_per_image: captions per scene. relation_p: chance that a two-object caption uses a
            true spatial relation instead of "and". val, test: split sizes.
    """

    seed: int = 0
    image_size: int = 64
    n_objects: tuple[int, int] = (3, 5)
    object_px: tuple[int, int] = (12, 24)
    n_clutter: tuple[int, int] = (10, 30)
    captions_per_image: int = 2
    relation_p: float = 0.3
    val: int = 500
    test: int = 1000

    def __post_init__(self) -> None:
        if self.n_objects[0] < self.captions_per_image or self.n_objects[0] > self.n_objects[1]:
            raise ValueError(f"n_objects {self.n_objects} must be a range with at least captions_per_image objects")
        if not 4 <= self.object_px[0] <= self.object_px[1] <= self.image_size // 2:
            raise ValueError(f"object_px {self.object_px} must be a range within 4..image_size/2")
        if self.captions_per_image < 1:
            raise ValueError("captions_per_image must be >= 1")


def vocabulary(cfg: ShapesWorldConfig | None = None) -> list[str]:
    """Every word a caption can use, sorted."""
    words = {"a", "and", "left", "right", "of", "above", "below", *SHAPES, *COLOURS}
    return sorted(words)


def _mask(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d = dx * dx + dy * dy
        return (d <= r * r) & (d >= (0.55 * r) ** 2)
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "cross":
        w = 0.36 * r
        return ((np.abs(dx) <= r) & (np.abs(dy) <= w)) | ((np.abs(dy) <= r) & (np.abs(dx) <= w))
    # triangle: apex up, base at cy + r
    return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted low-frequency colour noise (bilinear from a 4x4 grid) with thin lines and dots."""
    grid = rng.uniform(60, 170, size=(4, 4, 3))
    t = np.linspace(0, 3, size)
    i0 = np.minimum(t.astype(int), 2)
    f = (t - i0)[:, None]
    rows = grid[i0] * (1 - f[:, :, None]) + grid[i0 + 1] * f[:, :, None]  # (size, 4, 3)
    g = (t - i0)[None, :, None]
    img = rows[:, i0] * (1 - g) + rows[:, i0 + 1] * g
    for _ in range(int(rng.integers(5, 16))):  # 1-px lines
        c = rng.uniform(30, 230, 3)
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        xs = np.clip(np.linspace(x0, x1, n).astype(int), 0, size - 1)
        ys = np.clip(np.linspace(y0, y1, n).astype(int), 0, size - 1)
        img[ys, xs] = 0.5 * img[ys, xs] + 0.5 * c
    return img


def _objects(rng: np.random.Generator, cfg: ShapesWorldConfig) -> list[tuple[str, str, float, float, float]]:
    n = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    kinds = rng.permutation(len(SHAPES) * len(COLOURS))
    out: list[tuple[str, str, float, float, float]] = []
    boxes: list[tuple[float, float, float, float]] = []
    k = 0
    for _ in range(200):
        if len(out) == n:
            break
        side = rng.uniform(*cfg.object_px)
        r = side / 2
        cx, cy = rng.uniform(r + 1, cfg.image_size - r - 1, 2)
        b = (cx - r, cy - r, cx + r, cy + r)
        if any(b[0] < o[2] + 2 and o[0] < b[2] + 2 and b[1] < o[3] + 2 and o[1] < b[3] + 2 for o in boxes):
            continue
        shape, colour = SHAPES[kinds[k] % len(SHAPES)], COLOURS[kinds[k] // len(SHAPES)]
        k += 1
        out.append((shape, colour, cx, cy, r))
        boxes.append(b)
    return out


def _phrase(obj: VLPObject) -> str:
    return f"a {obj.name}"


def _relation(a: VLPObject, b: VLPObject) -> str | None:
    """The relation of a to b when their boxes are separated along an axis (else None)."""
    if a.box[2] < b.box[0]:
        return "left of"
    if a.box[0] > b.box[2]:
        return "right of"
    if a.box[3] < b.box[1]:
        return "above"
    if a.box[1] > b.box[3]:
        return "below"
    return None


def _captions(rng: np.random.Generator, objs: list[VLPObject], cfg: ShapesWorldConfig
              ) -> tuple[list[str], list[list[int]]]:
    caps, sets = [], []
    while len(caps) < cfg.captions_per_image:
        m = 1 if len(objs) < 2 else int(rng.integers(1, 3))
        pick = sorted(int(i) for i in rng.choice(len(objs), size=m, replace=False))
        if pick in sets:
            continue
        if m == 1:
            text = _phrase(objs[pick[0]])
        else:
            a, b = (pick if rng.random() < 0.5 else pick[::-1])
            rel = _relation(objs[a], objs[b]) if rng.random() < cfg.relation_p else None
            text = f"{_phrase(objs[a])} {rel} {_phrase(objs[b])}" if rel else f"{_phrase(objs[a])} and {_phrase(objs[b])}"
        caps.append(text)
        sets.append(pick)
    return caps, sets


def _render(rng: np.random.Generator, cfg: ShapesWorldConfig) -> tuple[np.ndarray, list[VLPObject]]:
    size = cfg.image_size
    img = _background(rng, size)
    x, y = pixel_grid(size, SS)
    objs = []
    for shape, colour, cx, cy, r in _objects(rng, cfg):
        x0, y0 = max(0, int(cx - r) - 1), max(0, int(cy - r) - 1)  # the object's pixel window
        x1, y1 = min(size, int(cx + r) + 2), min(size, int(cy + r) + 2)
        win = _mask(shape, x[y0 * SS:y1 * SS, x0 * SS:x1 * SS], y[y0 * SS:y1 * SS, x0 * SS:x1 * SS], cx, cy, r)
        cover = win.reshape(y1 - y0, SS, x1 - x0, SS).mean((1, 3))[..., None]
        jitter = rng.uniform(-15, 15, 3)
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - cover) + np.clip(np.array(RGB[colour]) + jitter, 0, 255) * cover
        ys, xs = np.nonzero(cover[..., 0] > 0)
        objs.append(VLPObject(f"{colour} {shape}", (float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1),
                                                     float(y0 + ys.max() + 1))))
    for _ in range(int(rng.integers(cfg.n_clutter[0], cfg.n_clutter[1] + 1)) // 2):  # small dots over everything
        px, py = rng.integers(0, size - 1, 2)
        img[py:py + 2, px:px + 2] = rng.uniform(30, 230, 3)
    return np.clip(img.round(), 0, 255).astype(np.uint8), objs


def render(split: str, index: int, cfg: ShapesWorldConfig | None = None, attempt: int = 0
           ) -> tuple[np.ndarray, ImageRecord]:
    """Scene ``index`` of ``split``: ``(pixels (H, W, 3) uint8, record)``; the pixels are pure in
    (seed, split, index), the captions also in ``attempt``."""
    cfg = cfg or ShapesWorldConfig()
    img, objs = _render(rng_for(split, index, cfg.seed), cfg)
    caps, sets = _captions(rng_for(f"{split}/captions#{attempt}", index, cfg.seed), objs, cfg)
    rec = ImageRecord(image=f"world:{split}/{index}", image_id=index, captions=caps, objects=objs, mentions=sets,
                      width=cfg.image_size, height=cfg.image_size)
    return img, rec


def generate_split(split: str, cfg: ShapesWorldConfig | None = None, n: int | None = None
                   ) -> tuple[np.ndarray, list[ImageRecord]]:
    """The first ``n`` scenes of ``split`` (default the config's size for val / test); for ``test``
    every caption of the split is unique."""
    cfg = cfg or ShapesWorldConfig()
    n = int(n if n is not None else getattr(cfg, split))
    images = np.zeros((n, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    recs, seen = [], set()
    for i in range(n):
        img, rec = render(split, i, cfg)
        attempt = 0
        while split == "test" and set(rec.captions) & seen:
            attempt += 1
            rec.captions, rec.mentions = _captions(rng_for(f"{split}/captions#{attempt}", i, cfg.seed), rec.objects, cfg)
        seen.update(rec.captions)
        images[i] = img
        recs.append(rec)
    return images, recs
