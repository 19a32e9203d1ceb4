"""ShapesB2N's names: the world's identity, its shapes/colours/sizes/textures, the 48 classes, the
caption templates and the vocabulary.

Labels are **shape-major**: ``label = shape_index * 6 + colour_index`` (0 = "red circle",
5 = "orange circle", 6 = "red square", 24 = "red cross").

The vocabulary lives in the package file ``vocab.txt`` (one word per line, in order; the single
source of truth): :data:`VOCAB` is read from it, and :func:`~datamodules.fewshot.shapes.store.ensure_world`
copies it into every world folder.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = [
    "BASE",
    "CLASSNAMES",
    "COLOURS",
    "DATASET_DIR",
    "NEW",
    "SHAPES",
    "SIZES",
    "SPLIT_FILE",
    "TEMPLATES",
    "TEXTURES",
    "VOCAB",
    "VOCAB_FILE",
    "WORLD_NAME",
    "WORLD_VERSION",
    "caption",
    "words",
]

WORLD_NAME = "shapes_b2n"
#: Bump when the renderer or the layout changes so that old caches are not reused.
WORLD_VERSION = 1
#: Dataset folder inside the world root, and its CoOp split file.
DATASET_DIR = "shapes_b2n"
SPLIT_FILE = "split_zhou_ShapesB2N.json"

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "heart")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: tuple[str, ...] = ("small", "large")
TEXTURES: tuple[str, ...] = ("plain", "striped", "checkered", "dotted")

#: The 48 class names in label order (shape-major: ``label = shape * 6 + colour``).
CLASSNAMES: list[str] = [f"{c} {s}" for s in SHAPES for c in COLOURS]
BASE: list[int] = list(range(24))
NEW: list[int] = list(range(24, 48))

#: Caption templates (chosen uniformly for each corpus pair).
TEMPLATES: tuple[str, ...] = (
    "a photo of a {colour} {shape}.",
    "a {size} {colour} {shape}.",
    "a {colour} {shape} on a {texture} background.",
    "the {shape} is {colour}.",
    "a {size} {colour} {shape} on a {texture} background.",
    "a picture of the {colour} {shape}.",
    "a {colour} {shape} with a {texture} background.",
)

#: Name of the vocabulary file, in this package and in every world folder's root.
VOCAB_FILE = "vocab.txt"
#: Every word a caption (or a prompt of the bench) may use, in the order of ``vocab.txt`` (blank
#: lines ignored); the tiny CLIP's tokenizer is built over it.
VOCAB: list[str] = [w.strip() for w in files(__package__).joinpath(VOCAB_FILE).read_text(encoding="utf-8").splitlines()
                    if w.strip()]


def words(text: str) -> list[str]:
    """Lower-case word split with ``.`` and ``,`` as separate tokens: ``"a red circle."`` ->
    ``["a", "red", "circle", "."]``."""
    return text.lower().replace(".", " . ").replace(",", " , ").split()


def caption(colour: int, shape: int, size: int, texture: int, template: int) -> str:
    """The caption of a corpus pair from attribute indices (into COLOURS, SHAPES, SIZES, TEXTURES,
    TEMPLATES)."""
    return TEMPLATES[template].format(colour=COLOURS[colour], shape=SHAPES[shape], size=SIZES[size],
                                      texture=TEXTURES[texture])
