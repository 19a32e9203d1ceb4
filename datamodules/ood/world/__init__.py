"""ClutterGlyphs-32: a seeded procedural world for OOD detection with local features.

The world is the default CPU testbed for MODE (arXiv:2308.10239v1: local region features vs. a
single global feature for OOD detection). Images are 32x32 RGB, rendered by numpy only.

Design intent:
    * **The class is revealed locally.** Each of the K=6 in-distribution (ID) classes is
      a glyph (disk, square, triangle, plus, ring, diamond) filled with stripes at a
      class-specific orientation (0, 30, ..., 150 degrees by default). A small patch
      of the object interior suffices to tell the class.
    * **The global feature varies within a class.** Random hue, scale (45-85% of the
      side), position with up to 25% truncation, low-frequency colour backgrounds,
      0-5 thin lines or blobs of clutter (behind or in front of the object) and, with
      p=0.35, an occluder covering 15-35% of the object all spread a pooled global
      feature, while the striped interior stays intact somewhere in the image.
    * **OOD-near shares everything but the object.** Held-out glyphs (star, bow-tie,
      H) with dot or checker fills are drawn with the same background, clutter,
      occluder, colour, scale and truncation statistics, so only the object's shape
      and fill differ from ID.
    * **OOD-far** is full-frame texture (checker, rings, polka dots, plaid,
      high-frequency noise). **OOD-bg** is background + clutter with no object; it is
      the adversarial case for local scores and is reported only as a diagnostic.

Modules:
    * :mod:`~datamodules.ood.world.config`: the splits, :class:`WorldConfig` (every knob) and
      the class stripe angles.
    * :mod:`~datamodules.ood.world.render`: glyphs, layers and samples (:func:`render_sample`,
      :func:`generate_split`); determinism, rendering and coordinate conventions.
    * :mod:`~datamodules.ood.world.store`: the on-disk cache (:func:`world_dir`,
      :func:`load_world`).
    * :mod:`~datamodules.ood.world.preview`: :func:`save_preview` for the model card.

Every public name is re-exported here, so ``from datamodules.ood import world as W`` then
``W.load_world(...)``, ``W.WorldConfig``, ``W.SPLITS`` ... is the usual entry point.
"""

from __future__ import annotations

from datamodules.common.world import pixel_grid
from datamodules.ood.world.config import (
    CLASS_NAMES,
    FAR_TEXTURES,
    ID_SPLITS,
    NEAR_GLYPHS,
    OOD_SPLITS,
    OOD_VAL_SPLITS,
    SPLIT_KIND,
    SPLITS,
    WORLD_NAME,
    WORLD_VERSION,
    WorldConfig,
    class_angles,
)
from datamodules.ood.world.preview import save_preview
from datamodules.ood.world.render import generate_split, render_sample
from datamodules.ood.world.store import load_world, world_dir

__all__ = [
    "CLASS_NAMES",
    "FAR_TEXTURES",
    "ID_SPLITS",
    "NEAR_GLYPHS",
    "OOD_SPLITS",
    "OOD_VAL_SPLITS",
    "SPLITS",
    "SPLIT_KIND",
    "WORLD_NAME",
    "WORLD_VERSION",
    "WorldConfig",
    "class_angles",
    "generate_split",
    "load_world",
    "pixel_grid",
    "render_sample",
    "save_preview",
    "world_dir",
]
