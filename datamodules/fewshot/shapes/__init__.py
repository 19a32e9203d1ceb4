"""ShapesB2N: the embedded procedural world of the few-shot base-to-new prompt-tuning bench.

The world serves two purposes:

* a **caption corpus** (``n_captions`` image-caption pairs, no domain shift) to pretrain a tiny
  CLIP (:class:`datamodules.fewshot.procedural.ShapesCaptions`), and
* a **48-class task** ("{colour} {shape}") for base-to-new prompt tuning (DePT, arXiv:2309.07439v2,
  vs CoOp, arXiv:2109.01134v6), written on disk in the CoOp ``split_zhou`` format so that the
  generic few-shot reader loads it like any real dataset
  (:class:`datamodules.fewshot.procedural.ShapesFewShot`). Base classes are labels 0..23
  (circle/square/triangle/diamond), new classes 24..47 (cross/ring/star/heart). Task images carry
  a domain shift relative to the corpus.

Images are 32x32 RGB uint8: one shape (8 kinds, 6 colours, 2 sizes) on a background texture
(plain/striped/checkered/dotted, two muted random colours), rendered by numpy only.

Modules:
    * :mod:`~datamodules.fewshot.shapes.config`: names, the 48 classes (shape-major labels),
      caption templates and the vocabulary (read from the package file ``vocab.txt``).
    * :mod:`~datamodules.fewshot.shapes.rendering`: geometry, backgrounds, the domain shift and
      the sample streams (:func:`render`, :func:`render_task`, :func:`caption_pair`); determinism.
    * :mod:`~datamodules.fewshot.shapes.store`: the on-disk world (:func:`world_dir`,
      :func:`ensure_world`) and its layout.
    * :mod:`~datamodules.fewshot.shapes.preview`: :func:`save_preview` for the model card.

Every public name is re-exported here (``from datamodules.fewshot import shapes as S``).
"""

from __future__ import annotations

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
    caption,
    words,
)
from datamodules.fewshot.shapes.preview import save_preview
from datamodules.fewshot.shapes.rendering import (
    COLOUR_JITTER,
    IMAGE_SIZE,
    RADII,
    SHIFT_MIX,
    SHIFT_NOISE,
    SHIFT_STRIPE_WIDTH,
    SUPERSAMPLE,
    caption_pair,
    class_folder,
    render,
    render_task,
)
from datamodules.fewshot.shapes.store import ensure_world, world_dir

__all__ = [
    "BASE",
    "CLASSNAMES",
    "COLOURS",
    "COLOUR_JITTER",
    "DATASET_DIR",
    "IMAGE_SIZE",
    "NEW",
    "RADII",
    "SHAPES",
    "SHIFT_MIX",
    "SHIFT_NOISE",
    "SHIFT_STRIPE_WIDTH",
    "SIZES",
    "SPLIT_FILE",
    "SUPERSAMPLE",
    "TEMPLATES",
    "TEXTURES",
    "VOCAB",
    "VOCAB_FILE",
    "WORLD_NAME",
    "WORLD_VERSION",
    "caption",
    "caption_pair",
    "class_folder",
    "ensure_world",
    "render",
    "render_task",
    "save_preview",
    "words",
    "world_dir",
]
