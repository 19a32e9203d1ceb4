"""A PNG preview grid of ClutterGlyphs-32 for the model card (rendered in memory, no cache)."""

from __future__ import annotations

from pathlib import Path

from datamodules.ood.world.config import CLASS_NAMES, SPLITS, WorldConfig
from datamodules.ood.world.render import generate_split

__all__ = ["save_preview"]


def save_preview(
    path: str | Path, seed: int = 0, cfg: WorldConfig | None = None, per_split: int = 8, zoom: int = 3
) -> Path:
    """Write a PNG grid: one row per split (first ``per_split`` images), for the model card.

    Args:
        path: output PNG path.
        seed: world seed.
        cfg: world knobs; defaults to ``WorldConfig()``.
        per_split: images per row.
        zoom: nearest-neighbour upscaling of each tile.

    Returns:
        The written path.
    """
    from PIL import Image, ImageDraw

    cfg = cfg or WorldConfig()
    size, pad, label_w = cfg.image_size * zoom, 4, 110
    rows = list(SPLITS)
    canvas = Image.new("RGB", (label_w + per_split * (size + pad) + pad, len(rows) * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(rows):
        images, labels = generate_split(name, per_split, seed, cfg)
        top = pad + r * (size + pad)
        draw.text((4, top + size // 2 - 6), name, fill="black")
        for c in range(per_split):
            tile = Image.fromarray(images[c]).resize((size, size), Image.NEAREST)
            left = label_w + pad + c * (size + pad)
            canvas.paste(tile, (left, top))
            if labels[c] >= 0:
                draw.text((left + 2, top + 1), CLASS_NAMES[labels[c]][:4], fill="white")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
