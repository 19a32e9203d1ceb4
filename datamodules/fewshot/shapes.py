"""ShapesB2N: the embedded procedural world of the few-shot base-to-new prompt-tuning bench.

The world serves two purposes:

* a **caption corpus** (``n_captions`` image-caption pairs, no domain shift) to pretrain a tiny
  CLIP (:class:`ShapesCaptions`), and
* a **48-class task** ("{colour} {shape}") for base-to-new prompt tuning (DePT vs CoOp), written
  on disk in the CoOp ``split_zhou`` format so that the generic few-shot reader loads it like any
  real dataset. Base classes are labels 0..23 (circle/square/triangle/diamond), new classes 24..47
  (cross/ring/star/heart). Task images carry a domain shift relative to the corpus.

Images are 32x32 RGB uint8: one shape (8 kinds, 6 colours, 2 sizes) on a background texture
(plain/striped/checkered/dotted, two muted random colours), rendered by numpy only at 4x
supersampling and box-downsampled (anti-aliased edges).

Labels are **shape-major**: ``label = shape_index * 6 + colour_index`` (0 = "red circle",
5 = "orange circle", 6 = "red square", 24 = "red cross").

Domain shift (task images only, strength ``shift``): the shape colour is mixed ``0.4 * shift``
toward the local background colour, Gaussian pixel noise of sigma ``18 * shift`` (0-255 scale) is
added, and a random 2-px-wide straight stripe of random colour crosses the image (opacity
``min(shift, 1)``). Every random number is drawn whatever ``shift`` is, so a task image rendered
with ``shift=0`` is the clean version of the same scene.

Determinism:
    Sample ``i`` of stream ``name`` draws from
    ``np.random.SeedSequence([seed, crc32(name)], spawn_key=(i,))``; the streams are
    ``"captions"`` and ``"<split>/<label>"`` (e.g. ``"train/07"``), so any sample regenerates
    byte-identically on its own (:func:`render_task`, :func:`caption_pair`) and a smaller world
    is a prefix of a larger one.

On disk (:func:`ensure_world`), ``R = <cache>/worlds/shapes_b2n-<hash>``::

    R/config.json                                   every parameter + WORLD_VERSION
    R/captions/captions.npz                         images (N,32,32,3) uint8, captions (N,) unicode,
                                                    + colour/shape/size/texture/template/label (N,) int64
    R/captions/meta.json                            names of the attributes + per-pair indices
    R/shapes_b2n/split_zhou_ShapesB2N.json          {"train"|"val"|"test": [[rel_path, label, classname]]}
    R/shapes_b2n/images/<split>/<label:02d>_<colour>_<shape>/<index:05d>.png

The world is built in a temporary sibling folder and renamed to ``R`` at the end, so ``R``
existing means the world is complete; concurrent builders race on the rename and the loser
discards its copy.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.fewshot.base import CLIP_MEAN, CLIP_STD
from datamodules.fewshot.real import read_split
from datamodules.ood.base import TransformedArrays
from datamodules.ood.world import pixel_grid

__all__ = [
    "BASE",
    "CLASSNAMES",
    "CLIP_MEAN",
    "CLIP_STD",
    "COLOURS",
    "DATASET_DIR",
    "NEW",
    "SHAPES",
    "SIZES",
    "SPLIT_FILE",
    "TEMPLATES",
    "TEXTURES",
    "VOCAB",
    "WORLD_NAME",
    "WORLD_VERSION",
    "ShapesCaptions",
    "caption",
    "caption_pair",
    "class_folder",
    "default_cache",
    "ensure_world",
    "render",
    "render_task",
    "save_preview",
    "words",
    "world_dir",
]

WORLD_NAME = "shapes_b2n"
#: Bump when the renderer or the layout changes so that old caches are not reused.
WORLD_VERSION = 1
#: Dataset folder inside the world root, and its CoOp split file.
DATASET_DIR = "shapes_b2n"
SPLIT_FILE = "split_zhou_ShapesB2N.json"

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "heart")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: tuple[str, ...] = ("small", "large")
TEXTURES: tuple[str, ...] = ("plain", "striped", "checkered", "dotted")

#: The 48 class names in label order (shape-major: ``label = shape * 6 + colour``).
CLASSNAMES: list[str] = [f"{c} {s}" for s in SHAPES for c in COLOURS]
BASE: list[int] = list(range(24))
NEW: list[int] = list(range(24, 48))

#: Caption templates (chosen uniformly for each corpus pair).
TEMPLATES: tuple[str, ...] = (
    "a photo of a {colour} {shape}.",
    "a {size} {colour} {shape}.",
    "a {colour} {shape} on a {texture} background.",
    "the {shape} is {colour}.",
    "a {size} {colour} {shape} on a {texture} background.",
    "a picture of the {colour} {shape}.",
    "a {colour} {shape} with a {texture} background.",
)

#: Every word a caption (or a prompt of the bench) may use; the tiny CLIP's tokenizer imports it.
VOCAB: list[str] = [
    "a", "an", "the", "photo", "picture", "of", "on", "with", "is", "background", "shape",
    "small", "large", "plain", "striped", "checkered", "dotted",
    "red", "green", "blue", "yellow", "purple", "orange",
    "circle", "square", "triangle", "diamond", "cross", "ring", "star", "heart",
    "x", ".", ",",
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


def words(text: str) -> list[str]:
    """Lower-case word split with ``.`` and ``,`` as separate tokens: ``"a red circle."`` ->
    ``["a", "red", "circle", "."]``."""
    return text.lower().replace(".", " . ").replace(",", " , ").split()


def caption(colour: int, shape: int, size: int, texture: int, template: int) -> str:
    """The caption of a corpus pair from attribute indices (into COLOURS, SHAPES, SIZES, TEXTURES,
    TEMPLATES)."""
    return TEMPLATES[template].format(colour=COLOURS[colour], shape=SHAPES[shape], size=SIZES[size],
                                      texture=TEXTURES[texture])


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


def _in_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over pixels."""
    inside = np.zeros(u.shape, dtype=bool)
    xj, yj = poly[-1]
    for xi, yi in poly:
        if yi != yj:
            inside ^= ((yi > v) != (yj > v)) & (u < (xj - xi) * (v - yi) / (yj - yi) + xi)
        xj, yj = xi, yi
    return inside


def _unit_shape(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of shape ``shape`` in unit coordinates (u right, v down); every shape lies in [-1, 1]^2."""
    name = SHAPES[shape]
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if name == "triangle":
        return _in_polygon(u, v, _TRIANGLE)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.32) & (av <= 0.95)) | ((av <= 0.32) & (au <= 0.95))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.5**2)
    if name == "star":
        return _in_polygon(u, v, _STAR)
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


def _rng_for(name: str, index: int, seed: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))], spawn_key=(int(index),))
    return np.random.default_rng(ss)


def render_task(split: str, label: int, index: int, seed: int = 0, shift: float = 1.0,
                return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Task image ``index`` of class ``label`` in ``split`` (what :func:`ensure_world` writes).
    Size and texture are uniform; ``shift=0`` gives the clean version of the same scene."""
    if not 0 <= label < len(CLASSNAMES):
        raise IndexError(f"label must be in 0..{len(CLASSNAMES) - 1}, got {label}")
    rng = _rng_for(f"{split}/{label:02d}", index, seed)
    size, texture = int(rng.integers(len(SIZES))), int(rng.integers(len(TEXTURES)))
    shape, colour = divmod(label, len(COLOURS))
    return render(shape, colour, size, texture, rng, shift=shift, return_mask=return_mask)


def caption_pair(index: int, seed: int = 0) -> tuple[np.ndarray, str, dict[str, int]]:
    """Caption-corpus pair ``index``: (image (32,32,3) uint8, caption, attribute indices
    ``{"colour", "shape", "size", "texture", "template", "label"}``). Attributes are uniform."""
    rng = _rng_for("captions", index, seed)
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


# --------------------------------------------------------------------------- cache


def default_cache() -> Path:
    """``$ZOO_CACHE`` or ``~/.cache/zoo`` (worlds go to its ``worlds/`` subfolder)."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo"))


def _params(seed: int, shift: float, n_captions: int, train_per_class: int, val_per_class: int,
            test_per_class: int) -> dict[str, Any]:
    p = {"seed": int(seed), "shift": float(shift), "n_captions": int(n_captions),
         "train_per_class": int(train_per_class), "val_per_class": int(val_per_class),
         "test_per_class": int(test_per_class)}
    if p["seed"] < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not np.isfinite(p["shift"]) or p["shift"] < 0:
        raise ValueError(f"shift must be a finite number >= 0, got {shift}")
    for k in ("n_captions", "train_per_class", "val_per_class", "test_per_class"):
        if p[k] < 0:
            raise ValueError(f"{k} must be >= 0, got {p[k]}")
    return p


def world_dir(seed: int = 0, shift: float = 1.0, n_captions: int = 20000, train_per_class: int = 32,
              val_per_class: int = 8, test_per_class: int = 50, cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/worlds/shapes_b2n-<sha1(params, WORLD_VERSION)[:12]>`` (not created)."""
    p = _params(seed, shift, n_captions, train_per_class, val_per_class, test_per_class)
    key = json.dumps({"world": WORLD_NAME, "version": WORLD_VERSION, **p}, sort_keys=True)
    root = Path(cache_dir) if cache_dir is not None else default_cache()
    return root / "worlds" / f"{WORLD_NAME}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _complete(root: Path) -> bool:
    return ((root / "config.json").is_file() and (root / DATASET_DIR / SPLIT_FILE).is_file()
            and (root / "captions" / "captions.npz").is_file())


def _bar(it, total: int, desc: str, progress: bool):
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False)


def _build(tmp: Path, p: dict[str, Any], progress: bool) -> None:
    from PIL import Image

    seed, shift = p["seed"], p["shift"]
    # caption corpus
    n = p["n_captions"]
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    caps: list[str] = []
    attrs = {k: np.empty(n, dtype=np.int64) for k in ("colour", "shape", "size", "texture", "template", "label")}
    for i in _bar(range(n), n, "ShapesB2N captions", progress):
        images[i], cap, a = caption_pair(i, seed)
        caps.append(cap)
        for k, v in a.items():
            attrs[k][i] = v
    cap_dir = tmp / "captions"
    cap_dir.mkdir()
    captions = np.array(caps, dtype=f"<U{max([len(c) for c in caps] + [1])}")
    with open(cap_dir / "captions.npz", "wb") as f:
        np.savez(f, images=images, captions=captions, **attrs)
    meta = {"colours": list(COLOURS), "shapes": list(SHAPES), "sizes": list(SIZES), "textures": list(TEXTURES),
            "templates": list(TEMPLATES), **{k: v.tolist() for k, v in attrs.items()}}
    (cap_dir / "meta.json").write_text(json.dumps(meta))
    # task images, CoOp split_zhou layout
    data = tmp / DATASET_DIR
    splits = {"train": p["train_per_class"], "val": p["val_per_class"], "test": p["test_per_class"]}
    jobs = [(s, label, i) for s, k in splits.items() for label in range(len(CLASSNAMES)) for i in range(k)]
    table: dict[str, list[list[Any]]] = {s: [] for s in splits}
    made: set[Path] = set()
    for split, label, i in _bar(jobs, len(jobs), "ShapesB2N task images", progress):
        rel = f"{split}/{class_folder(label)}/{i:05d}.png"
        path = data / "images" / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        Image.fromarray(render_task(split, label, i, seed, shift)).save(path)
        table[split].append([rel, label, CLASSNAMES[label]])
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / SPLIT_FILE).write_text(json.dumps(table))
    config = {"world": WORLD_NAME, "version": WORLD_VERSION, **p, "classnames": CLASSNAMES, "base": BASE,
              "new": NEW}
    (tmp / "config.json").write_text(json.dumps(config, indent=2))  # written last


def ensure_world(seed: int = 0, shift: float = 1.0, n_captions: int = 20000, train_per_class: int = 32,
                 val_per_class: int = 8, test_per_class: int = 50, cache_dir: str | None = None,
                 progress: bool = True) -> Path:
    """Build the world once (cached) and return its root folder ``R`` (layout: module docstring).

    Args:
        seed: world seed.
        shift: domain-shift strength of the task images (the corpus is never shifted).
        n_captions: caption-corpus size.
        train_per_class, val_per_class, test_per_class: task images per class and split.
        cache_dir: cache root; the world goes to ``<cache_dir>/worlds/``. Default ``$ZOO_CACHE`` or
            ``~/.cache/zoo``.
        progress: tqdm bars while building.
    """
    p = _params(seed, shift, n_captions, train_per_class, val_per_class, test_per_class)
    root = world_dir(cache_dir=cache_dir, **p)
    if _complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists():  # not built by us (the rename is atomic): move it aside, then rebuild
        print(f"zoo: discarding the incomplete world {root}", file=sys.stderr)
        trash = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.broken-"))
        try:
            os.rename(root, trash / "w")
        except OSError:
            pass
        shutil.rmtree(trash, ignore_errors=True)
    n_task = len(CLASSNAMES) * (p["train_per_class"] + p["val_per_class"] + p["test_per_class"])
    print(f"zoo: building the ShapesB2N world once ({p['n_captions']} captions + {n_task} task images) "
          f"in {root} ...", file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        _build(tmp, p, progress)
        try:
            os.rename(tmp, root)
        except OSError:
            if not _complete(root):  # not a lost race: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


# --------------------------------------------------------------------------- preview


def save_preview(path: str | Path, seed: int = 0, shift: float = 1.0, zoom: int = 3) -> Path:
    """Write a PNG grid (rendered in memory, no cache): the first train image of every base class
    and every new class in the clean corpus domain (``shift=0``), then the same images as task
    images (``shift``), for the model card.

    Returns:
        The written path.
    """
    from PIL import Image, ImageDraw

    tile, pad, label_w = IMAGE_SIZE * zoom, 4, 120
    rows = [("base (clean)", BASE, 0.0), ("new (clean)", NEW, 0.0),
            (f"base (shift={shift:g})", BASE, shift), (f"new (shift={shift:g})", NEW, shift)]
    n_cols = max(len(labels) for _, labels, _ in rows)
    canvas = Image.new("RGB", (label_w + n_cols * (tile + pad) + pad, len(rows) * (tile + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (title, labels, s) in enumerate(rows):
        top = pad + r * (tile + pad)
        draw.text((4, top + tile // 2 - 6), title, fill="black")
        for c, label in enumerate(labels):
            img = Image.fromarray(render_task("train", label, 0, seed, s)).resize((tile, tile), Image.NEAREST)
            canvas.paste(img, (label_w + pad + c * (tile + pad), top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


# --------------------------------------------------------------------------- caption datamodule


class _Pairs(Dataset):
    """Normalised float images (N,3,H,W) + captions -> ``{"image", "text"}``."""

    def __init__(self, images: torch.Tensor, captions: list[str], hflip: bool = False) -> None:
        self.images, self.captions, self.hflip = images, captions, hflip

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = self.images[i]
        if self.hflip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        return {"image": img, "text": self.captions[i]}


def _collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([it["image"] for it in items]), "text": [it["text"] for it in items]}


class ShapesCaptions(LightningDataModule):
    """The ShapesB2N caption corpus for tiny-CLIP pretraining, with zero-shot base/new monitoring.

    ``train_dataloader()`` yields ``{"image": float [B,3,S,S], "text": list[str]}`` (shuffled,
    ``drop_last``). ``val_dataloader()`` returns ``[base, new]`` loaders over the first
    ``val_per_class`` *test* task images of each class (labels relabelled 0..23 within each half),
    yielding ``{"image", "label"}``; ``test_dataloader()`` is the same over all test images. Images
    are normalised with the CLIP mean/std once, in memory.

    Args:
        seed, shift, n_captions: world parameters (see :func:`ensure_world`).
        world_train_per_class, world_val_per_class, world_test_per_class: task split sizes of the
            world (keep them equal to those of the few-shot datamodule so both share one cache).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: DataLoader workers (0 is best for in-memory tensors on 2 cores).
        val_per_class: test images per class used by the validation loaders.
        cache_dir: cache root (default ``$ZOO_CACHE`` or ``~/.cache/zoo``).
        hflip: random horizontal flips of training images.
        image_size: model input side; images are bicubically resized once if it is not 32.
    """

    def __init__(self, seed: int = 0, shift: float = 1.0, n_captions: int = 20000, batch_size: int = 256,
                 eval_batch_size: int = 256, num_workers: int = 0, val_per_class: int = 10,
                 cache_dir: str | None = None, hflip: bool = False, image_size: int = 32,
                 world_train_per_class: int = 32, world_val_per_class: int = 8,
                 world_test_per_class: int = 50) -> None:
        super().__init__()
        self.save_hyperparameters()
        if val_per_class < 1:
            raise ValueError(f"val_per_class must be >= 1, got {val_per_class}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.world_args = {"seed": seed, "shift": shift, "n_captions": n_captions,
                           "train_per_class": world_train_per_class, "val_per_class": world_val_per_class,
                           "test_per_class": world_test_per_class, "cache_dir": cache_dir}
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.val_per_class, self.hflip, self.image_size = val_per_class, hflip, image_size
        self.mean, self.std = list(CLIP_MEAN), list(CLIP_STD)
        self.classnames = {"base": [CLASSNAMES[i] for i in BASE], "new": [CLASSNAMES[i] for i in NEW]}
        self.template = "a photo of a {}."
        self.val_set_names = ["base", "new"]
        self.test_set_names = ["base", "new"]
        self.root: Path | None = None
        self._train: _Pairs | None = None
        self._eval: dict[str, dict[str, TransformedArrays]] = {}

    # -- helpers -------------------------------------------------------------------------------
    def _to_float(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N,H,W,3) -> normalised float (N,3,S,S), resized once if needed."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        if self.image_size != x.shape[-1] and len(x):
            x = torch.nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic",
                                                align_corners=False, antialias=True).clamp_(0.0, 1.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def _task_sets(self, per_class: int | None) -> dict[str, TransformedArrays]:
        from datamodules.ood.real import load_rgb

        # the task's test split through the real CoOp-layout reader (the world is written in it)
        by_label: dict[int, list[str]] = {}
        for d in sorted(read_split(str(self.root), "shapes_b2n").test, key=lambda d: (d.label, d.path)):
            by_label.setdefault(d.label, []).append(d.path)
        out = {}
        for name, labels in (("base", BASE), ("new", NEW)):
            imgs, ys = [], []
            for j, label in enumerate(labels):
                for path in by_label.get(label, [])[:per_class]:
                    imgs.append(np.asarray(load_rgb(path)))
                    ys.append(j)
            arr = np.stack(imgs) if imgs else np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
            out[name] = TransformedArrays(self._to_float(arr), torch.tensor(ys, dtype=torch.long))
        return out

    # -- lightning -----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        ensure_world(**self.world_args)

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        self.root = ensure_world(**self.world_args)
        with np.load(self.root / "captions" / "captions.npz", allow_pickle=False) as z:
            images, captions = z["images"], z["captions"]
        self._train = _Pairs(self._to_float(images), [str(c) for c in captions], hflip=self.hflip)
        self._eval = {"val": self._task_sets(self.val_per_class), "test": self._task_sets(None)}

    def eval_transform_spec(self) -> dict[str, Any]:
        return {"resize": self.image_size, "crop": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": "bicubic"}

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self._train, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=_collate_pairs)

    def _eval_loaders(self, which: str) -> list[DataLoader]:
        self.setup()
        return [DataLoader(self._eval[which][name], batch_size=self.eval_batch_size, shuffle=False)
                for name in ("base", "new")]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
