"""A PNG preview grid of ShapesB2N for the model card (rendered in memory, no cache)."""

from __future__ import annotations

from pathlib import Path

from datamodules.fewshot.shapes.config import BASE, NEW
from datamodules.fewshot.shapes.rendering import IMAGE_SIZE, render_task

__all__ = ["save_preview"]


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
