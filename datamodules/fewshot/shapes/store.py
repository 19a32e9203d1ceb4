"""The on-disk ShapesB2N world: built once per parameter set, then reused.

On disk (:func:`ensure_world`), ``R = <cache>/worlds/shapes_b2n-<hash>``::

    R/config.json                                   every parameter + WORLD_VERSION
    R/vocab.txt                                     a copy of the package's vocabulary (one word a line)
    R/captions/captions.npz                         images (N,32,32,3) uint8, captions (N,) unicode,
                                                    + colour/shape/size/texture/template/label (N,) int64
    R/captions/meta.json                            names of the attributes + per-pair indices
    R/shapes_b2n/split_zhou_ShapesB2N.json          {"train"|"val"|"test": [[rel_path, label, classname]]}
    R/shapes_b2n/images/<split>/<label:02d>_<colour>_<shape>/<index:05d>.png

The world is built in a temporary sibling folder and renamed to ``R`` at the end
(:func:`zoo.core.io.build_folder_atomically`), so ``R`` existing means the world is complete;
concurrent builders race on the rename and the loser discards its copy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.common.world import world_key, worlds_root
from datamodules.fewshot.shapes.config import (
    BASE,
    CLASSNAMES,
    COLOURS,
    DATASET_DIR,
    NEW,
    SHAPES,
    SIZES,
    SPLIT_FILE,
    TEMPLATES,
    TEXTURES,
    VOCAB,
    VOCAB_FILE,
    WORLD_NAME,
    WORLD_VERSION,
)
from datamodules.fewshot.shapes.rendering import IMAGE_SIZE, caption_pair, class_folder, render_task
from zoo.core.io import atomic_write_text, build_folder_atomically

__all__ = ["ensure_world", "world_dir"]


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
    """``<cache_dir>/worlds/shapes_b2n-<sha1(params, WORLD_VERSION)[:12]>`` (not created); the cache
    root defaults to :func:`zoo.core.io.cache_root` (``$ZOO_CACHE`` or ``~/.cache/zoo``)."""
    p = _params(seed, shift, n_captions, train_per_class, val_per_class, test_per_class)
    return worlds_root(cache_dir) / world_key(WORLD_NAME, {"world": WORLD_NAME, "version": WORLD_VERSION, **p})


def _vocab_text() -> str:
    return "".join(f"{w}\n" for w in VOCAB)


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
    (tmp / VOCAB_FILE).write_text(_vocab_text(), encoding="utf-8")
    config = {"world": WORLD_NAME, "version": WORLD_VERSION, **p, "classnames": CLASSNAMES, "base": BASE,
              "new": NEW}
    (tmp / "config.json").write_text(json.dumps(config, indent=2))  # written last


def ensure_world(seed: int = 0, shift: float = 1.0, n_captions: int = 20000, train_per_class: int = 32,
                 val_per_class: int = 8, test_per_class: int = 50, cache_dir: str | None = None,
                 progress: bool = True) -> Path:
    """Build the world once (cached) and return its root folder ``R`` (layout: module docstring).

    A complete world cached without ``vocab.txt`` (built before the vocabulary became a file) gets
    the copy added; nothing else of a complete world is touched.

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
    if not _complete(root):
        if root.exists():  # not built by us (the rename is atomic): moved aside, then rebuilt
            print(f"zoo: discarding the incomplete world {root}", file=sys.stderr)
        n_task = len(CLASSNAMES) * (p["train_per_class"] + p["val_per_class"] + p["test_per_class"])
        print(f"zoo: building the ShapesB2N world once ({p['n_captions']} captions + {n_task} task images) "
              f"in {root} ...", file=sys.stderr, flush=True)
        build_folder_atomically(root, lambda tmp: _build(tmp, p, progress), _complete)
    if not (root / VOCAB_FILE).is_file():
        atomic_write_text(root / VOCAB_FILE, _vocab_text())
    return root
