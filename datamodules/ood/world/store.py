"""The on-disk cache of ClutterGlyphs-32.

:func:`load_world` caches each split as ``<root>/clutterglyphs32-<hash>/<split>-n<N>.npz``.
The directory hash covers :data:`~datamodules.ood.world.config.WORLD_VERSION`, the seed and every
:class:`~datamodules.ood.world.config.WorldConfig` knob; the file name covers the size. Files are
written atomically (temp file + ``os.replace``, :func:`zoo.core.io.atomic_write`); a corrupt file
is regenerated with a warning.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from datamodules.common.world import world_key
from datamodules.ood.world.config import SPLITS, WORLD_NAME, WORLD_VERSION, WorldConfig
from datamodules.ood.world.render import generate_split
from zoo.core.io import atomic_write, atomic_write_text

__all__ = ["load_world", "world_dir"]


def world_dir(root: str | Path, seed: int = 0, cfg: WorldConfig | None = None) -> Path:
    """Cache directory ``<root>/clutterglyphs32-<hash>`` for (version, seed, every knob)."""
    cfg = cfg or WorldConfig()
    return Path(root) / world_key(WORLD_NAME, {"version": WORLD_VERSION, "seed": int(seed), "cfg": asdict(cfg)})


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
        atomic_write_text(meta, text)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        n = int(sizes.get(name, SPLITS[name]))
        path = d / f"{name}-n{n}.npz"
        data = _try_load(path, n, cfg.image_size)
        if data is None:
            data = generate_split(name, n, seed, cfg, progress=progress)
            images, labels = data
            atomic_write(path, lambda f: np.savez(f, images=images, labels=labels))
        out[name] = data
    return out
