"""RoadWorld-64: a seeded procedural driving world for anomaly segmentation under domain shift.

The MGCDA spec's embedded default (arXiv:2308.08696 gives no data of its own; the spec's
"Default: procedural road world"). 64x128 RGB scenes, rendered by numpy alone:

* **Classes** road, sidewalk, building, vegetation, sky, vehicle (0..5); the bottom 3 rows are
  the ego hood (void, 255). Layout: a horizon at 0.35-0.5 H, a road trapezoid to a vanishing
  point, sidewalk wedges, buildings (perspective window grids) or hedges on each side, tree
  crowns and 0-3 depth-scaled vehicles.
* **Styles = domains.** Each style is a per-class palette and texture plus a global pipeline
  (hue rotation, saturation, depth haze, cast and gain, contrast, blur, gamma, vignette, sensor
  noise, posterisation). Sources S1 clear, S2 overcast/hazy, S3 dusk/noisy train and validate;
  the held-out target T (an unseen hue rotation, blur, sensor noise and a brightening gamma on
  S1's palette) is test-only.
* **OE proxies** (training): random polygons and ellipses with their own textures, rendered
  outside any style into a bank (split ``oe``); the datamodule hard-pastes 1-2 of them
  (4-24 px) into 50% of the training images each epoch, label 254.
* **Test anomalies** (val in the source styles, test in T): cones, boxes, rings and blob animals
  standing on the road or a sidewalk, depth-scaled, coloured from the scene's own palette plus
  jitter (colour is no shortcut), rendered *through* the style's pipeline. Ground truth
  ``anomaly`` is 0/1 with 255 on the void rows; ``label`` is 255 on anomaly pixels.

Splits: ``train_<S>`` (1500 per source), ``val_<S>`` (200 per source), ``test_T`` (300), ``oe``
(2000 objects); sizes and every other knob live in :class:`WorldConfig`.

Modules: :mod:`~datamodules.anomaly.world.config` (names, :class:`Style`, :class:`WorldConfig`),
:mod:`~datamodules.anomaly.world.render` (scenes, pipeline, OE proxies, :func:`render_sample`,
:func:`generate_split`), :mod:`~datamodules.anomaly.world.store` (the cache: :func:`load_world`,
:func:`world_dir`; :func:`save_preview` for the model card).
"""

from __future__ import annotations

from datamodules.anomaly.world.config import (
    ANOMALY_SHAPES,
    CLASS_NAMES,
    DEFAULT_STYLES,
    OE_LABEL,
    OE_SHAPES,
    SOURCE_STYLES,
    STYLES,
    TARGET_STYLE,
    VOID,
    WORLD_NAME,
    WORLD_VERSION,
    Style,
    WorldConfig,
    split_names,
    split_style,
)
from datamodules.anomaly.world.render import apply_pipeline, generate_split, render_oe, render_sample, render_scene
from datamodules.anomaly.world.store import load_world, save_preview, split_size, world_dir

__all__ = [
    "ANOMALY_SHAPES",
    "CLASS_NAMES",
    "DEFAULT_STYLES",
    "OE_LABEL",
    "OE_SHAPES",
    "SOURCE_STYLES",
    "STYLES",
    "TARGET_STYLE",
    "VOID",
    "WORLD_NAME",
    "WORLD_VERSION",
    "Style",
    "WorldConfig",
    "apply_pipeline",
    "generate_split",
    "load_world",
    "render_oe",
    "render_sample",
    "render_scene",
    "save_preview",
    "split_names",
    "split_size",
    "split_style",
    "world_dir",
]
