"""Building blocks of the embedded procedural worlds: per-sample RNG streams, rasterisation on a
supersampled pixel grid, and the worlds' cache location.

Every sample of a world is a pure function of ``(world seed, split name, index)``:
:func:`rng_for` gives it its own NumPy stream, so a split can be regenerated in any order, in
parallel, or partly, with identical pixels.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from zoo.core.io import cache_root


def rng_for(name: str, index: int, seed: int) -> np.random.Generator:
    """The RNG of sample ``index`` of split ``name`` in the world with ``seed`` (both >= 0)."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))], spawn_key=(int(index),))
    return np.random.default_rng(ss)


def in_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over pixels.

    Args:
        u, v: pixel coordinates (any matching shape).
        poly: (V, 2) vertices.
    """
    inside = np.zeros(u.shape, dtype=bool)
    xj, yj = poly[-1]
    for xi, yi in poly:
        if yi != yj:
            inside ^= ((yi > v) != (yj > v)) & (u < (xj - xi) * (v - yi) / (yj - yi) + xi)
        xj, yj = xi, yi
    return inside


@lru_cache(maxsize=8)
def pixel_grid(size: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (X = column, Y = row, final-pixel units) of a ``size`` x ``size``
    canvas supersampled ``ss`` times per side; read-only, cached."""
    c = ((np.arange(size * ss) + 0.5) / ss).astype(np.float32)
    x, y = np.meshgrid(c, c)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def worlds_root(cache_dir: str | Path | None = None) -> Path:
    """Where generated worlds are cached: ``<cache_dir or the zoo cache root>/worlds``."""
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / "worlds"


def world_key(name: str, params: dict[str, Any]) -> str:
    """``<name>-<sha1 of the sorted-JSON params>[:12]``: a folder name that changes with any knob."""
    key = json.dumps(params, sort_keys=True)
    return f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
