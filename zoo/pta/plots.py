"""Pictures of the text-aware patch selection: kept patches bright, dropped ones dimmed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from zoo.common.harness.plots import _save, denormalise


def selection_picture(image: np.ndarray, keep: np.ndarray, patch: int, dim: float = 0.25) -> np.ndarray:
    """(H, W, 3) float image with every patch outside ``keep`` (flat row-major indices) dimmed."""
    H, W = image.shape[:2]
    w = W // patch
    mask = np.zeros((H // patch) * w, dtype=bool)
    mask[np.asarray(keep, dtype=int)] = True
    m = np.repeat(np.repeat(mask.reshape(H // patch, w), patch, 0), patch, 1)[..., None]
    return np.where(m, image, image * dim)


def save_selection(x: Tensor, keep: Tensor, patch: int, spec: dict[str, Any], path: str | Path,
                   title: str = "") -> Path:
    """Input | selection side by side (scaled up for small images), captioned; written atomically."""
    from PIL import Image, ImageDraw

    from zoo.core.io import atomic_write

    img = denormalise(x, spec)
    both = np.concatenate([img, np.ones((img.shape[0], 2, 3)), selection_picture(img, keep.numpy(), patch)], 1)
    pic = Image.fromarray((both * 255).round().astype(np.uint8))
    scale = max(1, 256 // pic.height)
    pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
    if title:
        canvas = Image.new("RGB", (pic.width, pic.height + 14), "white")
        canvas.paste(pic, (0, 0))
        ImageDraw.Draw(canvas).text((2, pic.height + 1), title[:80], fill="black")
        pic = canvas
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: pic.save(f, format="PNG"))
    return path


def selection_grid(examples: list[tuple[Tensor, Tensor, Tensor, Tensor, str]], patch: int, spec: dict[str, Any],
                   path: str | Path) -> Path:
    """Bench figure: per example the image, the mentioned (green) / distractor (red) patch labels and
    the detector's kept patches, captioned."""
    from zoo.common.harness.plots import _plt

    plt = _plt()
    fig, axes = plt.subplots(len(examples), 3, figsize=(6.6, 2.2 * len(examples)), squeeze=False)
    for row, (x, keep, pos, dis, cap) in zip(axes, examples):
        img = denormalise(x, spec)
        H, W = img.shape[:2]
        lab = np.zeros((H // patch, W // patch, 3))
        lab[..., 1] = pos.numpy().reshape(H // patch, W // patch)
        lab[..., 0] = dis.numpy().reshape(H // patch, W // patch) * (1 - lab[..., 1])
        lab = np.repeat(np.repeat(lab, patch, 0), patch, 1)
        for ax, pic, t in zip(row, (img, 0.5 * img + 0.5 * lab, selection_picture(img, keep.numpy(), patch)),
                              (cap, "mentioned / distractor", f"kept {len(keep)}")):
            ax.imshow(pic, interpolation="nearest")
            ax.set_title(t, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, dpi=110)
