"""Anomaly heat-maps: the score map over the input image, for ``zoo.predict`` and the bench."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.common.harness.plots import _save, denormalise


def overlay(image: np.ndarray, score: np.ndarray, lo: float | None = None, hi: float | None = None,
            alpha: float = 0.55) -> np.ndarray:
    """The score map (min-max scaled to ``[lo, hi]``, 'inferno' colour map) blended over the image."""
    import matplotlib

    lo = float(np.min(score)) if lo is None else lo
    hi = float(np.max(score)) if hi is None else hi
    u = np.clip((score - lo) / max(hi - lo, 1e-8), 0, 1)
    heat = matplotlib.colormaps["inferno"](u)[..., :3]
    return (1 - alpha) * image + alpha * heat


def save_heatmap(x: Tensor, score: Tensor, spec: dict[str, Any], path: str | Path) -> Path:
    """Write the input | overlay side by side as a PNG (atomically); returns the path."""
    from PIL import Image

    from zoo.core.io import atomic_write

    img = denormalise(x, spec)
    ov = overlay(img, score.detach().float().cpu().numpy())
    both = np.concatenate([img, np.ones((img.shape[0], 2, 3)), ov], axis=1)
    arr = (both * 255).round().astype(np.uint8)
    path = Path(path)
    atomic_write(path, lambda f: Image.fromarray(arr).save(f, format="PNG"))
    return path


def heatmap_grid(rows: list[tuple[str, np.ndarray, list[tuple[str, np.ndarray]]]], path: str | Path) -> Path:
    """A grid of examples for the bench: per row an image, its ground truth and one map per method.

    Args:
        rows: ``(title, image (H, W, 3), [(method, score (H, W)), ...])``; the first map entry may be
            the ground truth (values 0/1/255).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 1 + max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.6 * ncol, 1.5 * len(rows)), squeeze=False)
    for i, (title, img, maps) in enumerate(rows):
        axes[i][0].imshow(img)
        axes[i][0].set_title(title, fontsize=7)
        for j, (name, m) in enumerate(maps, start=1):
            axes[i][j].imshow(m, cmap="inferno")
            axes[i][j].set_title(name, fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, dpi=110)
