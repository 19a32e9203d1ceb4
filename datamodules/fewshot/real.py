"""Readers for the 11 few-shot datasets of CoOp/CoCoOp/DePT, few-shot sampling and the
base-to-new class split.

Nothing is downloaded. Every dataset lives under a user-given ``root`` in the layout of CoOp's
``DATASETS.md`` (registry: :data:`DATASETS`):

- **split_zhou JSON** datasets: ``root/<folder>/<split_file>`` holds
  ``{"train": [[rel_path, label, classname], ...], "val": [...], "test": [...]}`` with
  ``rel_path`` relative to ``root/<folder>/<image_dir>`` (``image_dir`` is ``""`` for Stanford
  Cars, whose paths look like ``cars_train/00001.jpg``).
- **ImageNet**: ``root/imagenet/images/{train,val}/<wnid>/*.JPEG`` and
  ``root/imagenet/classnames.txt`` (lines ``"<wnid> <class name>"``; labels follow its order).
  train = the train folder, test = the val folder, and val = test (as in CoOp).
- **FGVC Aircraft**: ``root/fgvc_aircraft/{variants.txt, images_variant_{train,val,test}.txt,
  images/<id>.jpg}``; labels follow the order of ``variants.txt``.
- **A user's own class folders** (``dataset="folder"``, :func:`read_class_folders`): ``root`` itself
  is the tree, either ``root/<class>/...`` (one pool, split by a split JSON or the fallback below)
  or ``root/{train,test}/<class>/...`` with an optional ``root/val/<class>/...`` (the user's own
  split; without ``val/`` validation uses the test images, as CoOp does for ImageNet). A
  ``root/split_zhou_*.json`` (paths relative to ``root``), or the file given as ``split_file``,
  takes precedence. Labels follow the sorted class-folder names, so the base classes are the first
  half of the sorted names.

When a split JSON is missing, datasets whose image folder has one sub-folder per class
(Caltech101, Food101, DTD, EuroSAT, UCF101, shapes_b2n) and Oxford Flowers (``imagelabels.mat`` +
``cat_to_name.json``) fall back to a deterministic 50/20/30 per-class split, flagged
``comparable=False`` (numbers on it are not comparable to published ones).

Class names have ``"_"`` replaced by spaces (CoOp's prompt learner does the same before
tokenising), so UCF101's ``"Apply_Eye_Makeup"`` becomes ``"Apply Eye Makeup"``.

Few-shot sampling follows Dassl's ``generate_fewshot_dataset`` (K per class from train,
``min(K, 4)`` per class from val, over all classes, before the base/new split), with an explicit
``random.Random(seed)`` instead of the global RNG; :func:`subsample_classes` is CoOp's
``subsample_classes`` (base = first ``ceil(C/2)`` labels, new = the rest, each relabelled from 0).
"""

from __future__ import annotations

import json
import math
import os
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from datamodules.common.images import IMAGE_EXTENSIONS
from zoo.core.errors import ZooError
from zoo.core.io import atomic_write_text

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "Datum",
    "FOLDER",
    "FullSplit",
    "class_names_from_arg",
    "fewshot",
    "read_class_folders",
    "read_split",
    "sample_few_shot",
    "subsample_classes",
]



# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset lives under the data root and how it is prompted.

    Attributes:
        name: registry key (``--data.init_args.dataset``).
        folder: dataset folder under the root (CoOp's ``dataset_dir``).
        image_dir: image folder under ``folder``; JSON paths are relative to it.
        split_file: CoOp's split JSON next to ``image_dir``, or None (ImageNet, FGVC Aircraft).
        template: the hand prompt of CoOp's zero-shot CLIP (``CUSTOM_TEMPLATES`` in CoOp's
            ``trainers/zsclip.py``, the published zero-shot numbers), ``{}`` = the class name.
    """

    name: str
    folder: str
    image_dir: str
    split_file: str | None
    template: str


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("imagenet", "imagenet", "images", None, "a photo of a {}."),
        DatasetInfo("caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                    "a photo of a {}."),
        DatasetInfo("oxford_pets", "oxford_pets", "images", "split_zhou_OxfordPets.json",
                    "a photo of a {}, a type of pet."),
        DatasetInfo("stanford_cars", "stanford_cars", "", "split_zhou_StanfordCars.json", "a photo of a {}."),
        DatasetInfo("oxford_flowers", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                    "a photo of a {}, a type of flower."),
        DatasetInfo("food101", "food-101", "images", "split_zhou_Food101.json", "a photo of {}, a type of food."),
        DatasetInfo("fgvc_aircraft", "fgvc_aircraft", "images", None, "a photo of a {}, a type of aircraft."),
        DatasetInfo("sun397", "sun397", "SUN397", "split_zhou_SUN397.json", "a photo of a {}."),
        DatasetInfo("dtd", "dtd", "images", "split_zhou_DescribableTextures.json", "{} texture."),
        DatasetInfo("eurosat", "eurosat", "2750", "split_zhou_EuroSAT.json", "a centered satellite photo of {}."),
        DatasetInfo("ucf101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
                    "a photo of a person doing {}."),
        DatasetInfo("shapes_b2n", "shapes_b2n", "images", "split_zhou_ShapesB2N.json", "a photo of a {}."),
    ]
}
"""The supported datasets, keyed by ``--data.init_args.dataset``."""

FOLDER = "folder"
"""``--data.init_args.dataset`` of a user's own class-folder tree (:func:`read_class_folders`)."""
FOLDER_TEMPLATE = "a photo of a {}."
"""The hand prompt of a class-folder tree (CoOp's generic template)."""

# datasets whose image_dir has one sub-folder per class: the fallback split when the JSON is missing
_FOLDER_FALLBACK = ("caltech101", "food101", "dtd", "eurosat", "ucf101", "shapes_b2n")
_IGNORED_FOLDERS: dict[str, frozenset[str]] = {"caltech101": frozenset({"BACKGROUND_Google", "Faces_easy"})}
# CoOp's NEW_CNAMES for the fallback (the published JSONs already carry these names)
_RENAMES: dict[str, dict[str, str]] = {
    "caltech101": {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"},
    "eurosat": {
        "AnnualCrop": "Annual Crop Land", "Forest": "Forest", "HerbaceousVegetation": "Herbaceous Vegetation Land",
        "Highway": "Highway or Road", "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
        "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings", "River": "River",
        "SeaLake": "Sea or Lake",
    },
}
_FALLBACK_FRACTIONS = (0.5, 0.2)  # train, val; test gets the rest


# --------------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Datum:
    """One labelled image.

    Attributes:
        path: absolute image path.
        label: class index into the owning split's ``classnames``.
        classname: the class name (``classnames[label]``).
    """

    path: str
    label: int
    classname: str


@dataclass
class FullSplit:
    """Train/val/test lists of one dataset and its class names.

    Attributes:
        train, val, test: the items; labels index ``classnames``.
        classnames: class names in label order.
        dataset: registry key.
        comparable: False when the split is a fallback rebuilt locally (see ``note``).
        note: why the split is not comparable (empty otherwise).
        base_dir: the dataset folder (``root/<folder>``); few-shot caches store paths relative
            to it. Empty when unknown (paths are then cached as they are).
    """

    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    classnames: list[str]
    dataset: str
    comparable: bool = True
    note: str = ""
    base_dir: str = field(default="", compare=False)

    def _with(self, train: list[Datum], val: list[Datum], test: list[Datum], classnames: list[str]) -> FullSplit:
        return FullSplit(train, val, test, classnames, self.dataset, self.comparable, self.note, self.base_dir)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _info(dataset: str) -> DatasetInfo:
    if dataset not in DATASETS:
        raise ZooError(f"--data.init_args.dataset: unknown dataset {dataset!r}; expected {FOLDER!r} (your own "
                       f"class folders) or one of {', '.join(DATASETS)}")
    return DATASETS[dataset]


def _clean(name: str) -> str:
    return name.replace("_", " ").strip()


def _list_files(folder: str) -> list[str]:
    """Non-hidden image files directly inside ``folder``, sorted by name."""
    with os.scandir(folder) as it:
        names = [e.name for e in it if not e.name.startswith(".") and e.is_file()
                 and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(names)


def _list_dirs(folder: str) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def _require_file(path: str, expected: str) -> None:
    if not os.path.isfile(path):
        raise ZooError(f"{path}: not found; expected {expected}")


def _require_dir(path: str, expected: str) -> None:
    if not os.path.isdir(path):
        raise ZooError(f"{path}: {'not a directory' if os.path.exists(path) else 'not found'}; expected {expected}")


def _check_paths(source: str, paths: Iterable[str], where: str) -> None:
    """Raise when any of ``paths`` does not exist (names the first 3 and the count)."""
    paths = list(paths)
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        shown = ", ".join(missing[:3])
        raise ZooError(f"{source}: {len(missing)} of {len(paths)} image paths do not exist (first: {shown}); "
                       f"expected them under {where}")


def _finish(train: list[tuple[str, int, str]], val: list[tuple[str, int, str]], test: list[tuple[str, int, str]],
            source: str, dataset: str, base_dir: str, comparable: bool = True, note: str = "") -> FullSplit:
    """Validate ``(path, label, raw classname)`` triples and build the :class:`FullSplit`.

    Checks: integer labels 0..C-1 with none missing, one class name per label, distinct class
    names, and at least one train item per class. ``source`` names the file in error messages.
    """
    names: dict[int, str] = {}
    for part in (train, val, test):
        for path, label, cname in part:
            if isinstance(label, bool) or not isinstance(label, int) or label < 0:
                raise ZooError(f"{source}: item {path!r} has label {label!r}; expected a non-negative integer")
            if not isinstance(cname, str) or not cname.strip():
                raise ZooError(f"{source}: item {path!r} has class name {cname!r}; expected a non-empty string")
            seen = names.setdefault(label, cname)
            if seen != cname:
                raise ZooError(f"{source}: label {label} has two class names ({seen!r} and {cname!r}); "
                               f"expected one class name per label")
    if not names:
        raise ZooError(f"{source}: no items; expected train/val/test images")
    n_cls = max(names) + 1
    absent = [y for y in range(n_cls) if y not in names]
    if absent:
        raise ZooError(f"{source}: labels {absent[:5]} of 0..{n_cls - 1} have no items; expected contiguous labels")
    classnames = [_clean(names[y]) for y in range(n_cls)]
    by_name: dict[str, list[int]] = defaultdict(list)
    for y, c in enumerate(classnames):
        by_name[c].append(y)
    dups = {c: ys for c, ys in by_name.items() if len(ys) > 1}
    if dups:
        shown = "; ".join(f"{c!r} (labels {', '.join(map(str, ys))})" for c, ys in list(dups.items())[:5])
        raise ZooError(f"{source}: duplicate class names: {shown}; expected one distinct name per class")
    in_train = {label for _, label, _ in train}
    empty = [y for y in range(n_cls) if y not in in_train]
    if empty:
        shown = ", ".join(f"{classnames[y]!r} (label {y})" for y in empty[:5])
        raise ZooError(f"{source}: {len(empty)} class(es) have no train items: {shown}; "
                       f"expected at least one train image per class")

    def build(part: list[tuple[str, int, str]]) -> list[Datum]:
        return [Datum(p, y, classnames[y]) for p, y, _ in part]

    return FullSplit(build(train), build(val), build(test), classnames, dataset, comparable, note, base_dir)


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


def read_split(root: str, dataset: str, split_file: str | None = None) -> FullSplit:
    """Read a dataset's train/val/test split from CoOp's on-disk layout under ``root``.

    Args:
        root: the data root (``--data.init_args.root``), holding ``<folder>`` of :data:`DATASETS`;
            for ``dataset="folder"`` the class-folder tree itself (:func:`read_class_folders`).
        dataset: registry key, e.g. ``"oxford_pets"``, or ``"folder"``.
        split_file: ``"folder"`` only: the split JSON (default: ``root/split_zhou_*.json`` if any).

    Returns:
        The full split (all classes, all images), ``comparable=False`` for a fallback split.

    Raises:
        ZooError: unknown dataset, missing folder/files, image paths that do not exist,
            inconsistent or duplicate class names, classes without train images.
    """
    if dataset == FOLDER:
        return read_class_folders(root, split_file)
    if split_file is not None:
        raise ZooError(f"--data.init_args.split_file is for dataset={FOLDER!r} only; {dataset} reads CoOp's "
                       f"{DATASETS[dataset].split_file if dataset in DATASETS else 'split file'} from its folder")
    info = _info(dataset)
    base_dir = os.path.join(os.path.abspath(os.path.expanduser(root)), info.folder)
    _require_dir(base_dir, f"the {dataset} folder of CoOp's DATASETS.md layout under --data.root {root}")
    if dataset == "imagenet":
        return _read_imagenet(base_dir)
    if dataset == "fgvc_aircraft":
        return _read_fgvc(base_dir)
    assert info.split_file is not None
    split_path = os.path.join(base_dir, info.split_file)
    if os.path.isfile(split_path):
        return _read_split_zhou(split_path, os.path.join(base_dir, info.image_dir), dataset, base_dir)
    return _read_fallback(info, base_dir, split_path)


def _read_split_zhou(split_path: str, image_dir: str, dataset: str, base_dir: str) -> FullSplit:
    try:
        with open(split_path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise ZooError(f"{split_path}: cannot read JSON ({e}); expected CoOp's split_zhou file") from e
    if not isinstance(raw, dict) or any(k not in raw for k in ("train", "val", "test")):
        raise ZooError(f"{split_path}: expected a JSON object with keys 'train', 'val' and 'test'")
    parts: dict[str, list[tuple[str, int, str]]] = {}
    for key in ("train", "val", "test"):
        rows = raw[key]
        if not isinstance(rows, list):
            raise ZooError(f"{split_path}: '{key}' is {type(rows).__name__}; expected a list of "
                           f"[rel_path, label, classname]")
        out = []
        for i, row in enumerate(rows):
            if not (isinstance(row, (list, tuple)) and len(row) == 3 and isinstance(row[0], str)):
                raise ZooError(f"{split_path}: '{key}'[{i}] is {row!r}; expected [rel_path, label, classname]")
            out.append((os.path.normpath(os.path.join(image_dir, row[0])), row[1], row[2]))
        parts[key] = out
    _check_paths(split_path, (p for part in parts.values() for p, _, _ in part), image_dir)
    return _finish(parts["train"], parts["val"], parts["test"], split_path, dataset, base_dir)


def _read_imagenet(base_dir: str) -> FullSplit:
    names_path = os.path.join(base_dir, "classnames.txt")
    _require_file(names_path, "CoOp's ImageNet classnames.txt (lines '<wnid> <class name>')")
    wnids: dict[str, str] = {}
    with open(names_path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split(" ")
            if not parts[0]:
                continue
            if len(parts) < 2 or not " ".join(parts[1:]).strip():
                raise ZooError(f"{names_path}:{n}: {line.strip()!r}; expected '<wnid> <class name>'")
            if parts[0] in wnids:
                raise ZooError(f"{names_path}:{n}: wnid {parts[0]} listed twice; expected each wnid once")
            wnids[parts[0]] = " ".join(parts[1:]).strip()
    label_of = {w: y for y, w in enumerate(wnids)}

    def read(sub: str) -> list[tuple[str, int, str]]:
        d = os.path.join(base_dir, "images", sub)
        _require_dir(d, f"ImageNet's {sub} images as {sub}/<wnid>/*.JPEG")
        unknown = [w for w in _list_dirs(d) if w not in label_of]
        if unknown:
            raise ZooError(f"{d}: folders {unknown[:3]} ({len(unknown)} in all) are not listed in {names_path}; "
                           f"expected one folder per wnid of classnames.txt")
        items = []
        for w, y in label_of.items():
            folder = os.path.join(d, w)
            if os.path.isdir(folder):
                items += [(os.path.join(folder, fn), y, wnids[w]) for fn in _list_files(folder)]
        return items

    train, test = read("train"), read("val")
    # a class with neither train nor val images has no item to carry its name: check it here
    present = {y for _, y, _ in train}
    missing = [w for w, y in label_of.items() if y not in present]
    if missing:
        shown = ", ".join(f"{wnids[w]!r} ({w})" for w in missing[:5])
        raise ZooError(f"{os.path.join(base_dir, 'images', 'train')}: {len(missing)} class(es) of {names_path} "
                       f"have no train images: {shown}; expected at least one per class")
    return _finish(train, list(test), test, names_path, "imagenet", base_dir)


def _read_fgvc(base_dir: str) -> FullSplit:
    variants_path = os.path.join(base_dir, "variants.txt")
    _require_file(variants_path, "FGVC Aircraft's variants.txt (one variant per line)")
    with open(variants_path, encoding="utf-8") as f:
        classnames = [ln.strip() for ln in f if ln.strip()]
    dups = sorted(c for c, k in Counter(classnames).items() if k > 1)
    if dups:
        raise ZooError(f"{variants_path}: duplicate class names: {dups[:5]}; expected one distinct name per line")
    label_of = {c: y for y, c in enumerate(classnames)}
    parts: dict[str, list[tuple[str, int, str]]] = {}
    for key in ("train", "val", "test"):
        path = os.path.join(base_dir, f"images_variant_{key}.txt")
        _require_file(path, "FGVC Aircraft's images_variant_{train,val,test}.txt (lines '<id> <variant>')")
        items = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                words = line.strip().split(" ")
                if not words[0]:
                    continue
                name = " ".join(words[1:]).strip()
                if name not in label_of:
                    raise ZooError(f"{path}:{n}: variant {name!r} is not in {variants_path}; "
                                   f"expected '<id> <variant>' with a listed variant")
                items.append((os.path.join(base_dir, "images", words[0] + ".jpg"), label_of[name], name))
        _check_paths(path, (p for p, _, _ in items), os.path.join(base_dir, "images"))
        parts[key] = items
    in_train = {y for _, y, _ in parts["train"]}
    absent = [c for c, y in label_of.items() if y not in in_train]
    if absent:
        raise ZooError(f"{os.path.join(base_dir, 'images_variant_train.txt')}: {len(absent)} class(es) have no "
                       f"train items: {absent[:5]}; expected at least one train image per class")
    return _finish(parts["train"], parts["val"], parts["test"], os.path.join(base_dir, "images_variant_train.txt"),
                   "fgvc_aircraft", base_dir)


# --------------------------------------------------------------------------------------------
# a user's own class folders
# --------------------------------------------------------------------------------------------

_TREE = ("<root>/<class>/*.jpg, or <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg "
         "(optional <root>/val/<class>/)")


def _walk_images(folder: str) -> list[str]:
    """Image files under ``folder`` (any depth, hidden entries skipped), sorted by path."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, fn) for fn in filenames
                if not fn.startswith(".") and os.path.splitext(fn)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(out)


def _class_groups(folder: str, what: str) -> list[tuple[str, list[str]]]:
    """``[(class folder name, its image paths)]`` of ``folder``'s sub-folders, sorted by name."""
    classes = _list_dirs(folder)
    if not classes:
        loose = len(_list_files(folder))
        found = f"found {loose} image(s) directly in it but " if loose else ""
        raise ZooError(f"{folder}: {found}no class sub-folders; expected {what}")
    groups = [(c, _walk_images(os.path.join(folder, c))) for c in classes]
    if not any(paths for _, paths in groups):
        raise ZooError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its {len(groups)} class "
                       f"folder(s); expected {what}")
    return groups


def _tree_key(base: str) -> str:
    """A cache key unique to the tree (few-shot draws are cached per dataset key)."""
    import hashlib

    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in os.path.basename(base.rstrip(os.sep)))
    return f"{FOLDER}-{name or 'root'}-{hashlib.sha1(base.encode()).hexdigest()[:8]}"


def _find_split_json(base: str, split_file: str | None) -> str | None:
    if split_file is not None:
        path = split_file if os.path.isabs(split_file) else os.path.join(base, split_file)
        _require_file(path, "a CoOp split JSON {\"train\"|\"val\"|\"test\": [[rel_path, label, classname], ...]} "
                            "(--data.init_args.split_file; relative paths from --data.init_args.root)")
        return path
    found = sorted(fn for fn in os.listdir(base) if fn.startswith("split_zhou_") and fn.endswith(".json"))
    if len(found) > 1:
        raise ZooError(f"{base}: {len(found)} split files ({', '.join(found)}); pick one with "
                       f"--data.init_args.split_file")
    return os.path.join(base, found[0]) if found else None


def read_class_folders(root: str, split_file: str | None = None) -> FullSplit:
    """A user's own class-folder tree as a :class:`FullSplit` (``--data.init_args.dataset folder``).

    Layouts, in order of precedence:

    1. a split JSON, ``split_file`` or the one ``root/split_zhou_*.json``: CoOp's
       ``{"train"|"val"|"test": [[rel_path, label, classname], ...]}`` with paths relative to
       ``root``; labels and names come from it;
    2. ``root/train/<class>/`` and ``root/test/<class>/`` (optional ``root/val/<class>/``): the
       user's split; classes are the sorted folder names of ``train/``, and ``test/``/``val/`` may
       only hold those. Without ``val/``, validation uses the test images (CoOp's ImageNet rule;
       DePT selects nothing on validation);
    3. ``root/<class>/``: one pool per class, cut by the fallback 50/20/30 per-class split (seeded,
       flagged ``comparable=False``, with a warning), as for CoOp's datasets without their JSON.

    Images are found at any depth below a class folder. In layouts 2 and 3 the labels follow the
    sorted folder names; ``"_"`` in names becomes a space. The split's ``dataset`` is a key unique
    to ``root`` (the few-shot cache folder).

    Raises:
        ZooError: a missing root, no class folders, a class without images, unknown class folders
            in ``test/``/``val/``, several split JSONs, or a bad JSON (one line, naming the path).
    """
    base = os.path.abspath(os.path.expanduser(root))
    _require_dir(base, f"your class-folder tree (--data.init_args.root): {_TREE}")
    key = _tree_key(base)
    json_path = _find_split_json(base, split_file)
    if json_path is not None:
        return _read_split_zhou(json_path, base, key, base)
    if os.path.isdir(os.path.join(base, "train")):
        return _read_split_folders(base, key)
    groups = _class_groups(base, _TREE)
    return _fallback_split(groups, base, key, base, f"no split_zhou_*.json in {base}", "class folder(s)")


def _read_split_folders(base: str, key: str) -> FullSplit:
    train_dir, test_dir, val_dir = (os.path.join(base, s) for s in ("train", "test", "val"))
    _require_dir(test_dir, "test/<class>/*.jpg next to train/ (the test images of every class)")
    groups = _class_groups(train_dir, "train/<class>/*.jpg, one sub-folder of images per class")
    empty = [c for c, paths in groups if not paths]
    if empty:
        raise ZooError(f"{train_dir}: {len(empty)} class folder(s) have no images: {empty[:5]}; "
                       f"expected at least one training image per class")
    label_of = {c: y for y, (c, _) in enumerate(groups)}

    def items(folder: str) -> list[tuple[str, int, str]]:
        classes = _list_dirs(folder)
        unknown = [c for c in classes if c not in label_of]
        if unknown:
            raise ZooError(f"{folder}: class folder(s) {unknown[:5]} are not in {train_dir}; expected the "
                           f"classes of train/ only")
        out = [(p, label_of[c], c) for c in classes for p in _walk_images(os.path.join(folder, c))]
        if not out:
            raise ZooError(f"{folder}: no images; expected <class>/*.jpg sub-folders with the classes of train/")
        return out

    train = [(p, label_of[c], c) for c, paths in groups for p in paths]
    test = items(test_dir)
    if os.path.isdir(val_dir):
        val, note = items(val_dir), ""
    else:
        val, note = list(test), f"no {val_dir}: validation uses the test images (CoOp's ImageNet rule)"
    return _finish(train, val, test, train_dir, key, base, note=note)


# --------------------------------------------------------------------------------------------
# fallback split (no JSON)
# --------------------------------------------------------------------------------------------


def _split_counts(n: int) -> tuple[int, int, int]:
    """Per-class (train, val, test) sizes: 50/20/30 rounded, at least one each where possible."""
    if n <= 2:
        return (n, 0, 0) if n < 2 else (1, 0, 1)
    n_tr = max(1, round(n * _FALLBACK_FRACTIONS[0]))
    n_va = max(1, round(n * _FALLBACK_FRACTIONS[1]))
    while n - n_tr - n_va < 1:
        if n_tr > 1:
            n_tr -= 1
        else:
            n_va -= 1
    return n_tr, n_va, n - n_tr - n_va


def _split_per_class(groups: Sequence[tuple[str, list[str]]]) -> tuple[list, list, list]:
    """``groups`` = ``[(classname, sorted paths)]`` in label order -> shuffled 50/20/30 triples."""
    rng = random.Random(1)
    train, val, test = [], [], []
    for label, (cname, paths) in enumerate(groups):
        paths = list(paths)
        rng.shuffle(paths)
        n_tr, n_va, _ = _split_counts(len(paths))
        train += [(p, label, cname) for p in paths[:n_tr]]
        val += [(p, label, cname) for p in paths[n_tr:n_tr + n_va]]
        test += [(p, label, cname) for p in paths[n_tr + n_va:]]
    return train, val, test


def _read_fallback(info: DatasetInfo, base_dir: str, split_path: str) -> FullSplit:
    dataset = info.name
    if dataset not in _FOLDER_FALLBACK and dataset != "oxford_flowers":
        raise ZooError(f"{split_path}: not found; {dataset} needs CoOp's {info.split_file} (from CoOp's "
                       f"DATASETS.md), placed at {split_path}")
    image_dir = os.path.join(base_dir, info.image_dir)
    if dataset == "oxford_flowers":
        groups, source = _flowers_groups(base_dir, image_dir, split_path)
    else:
        _require_dir(image_dir, f"{info.split_file} or, for a fallback split, one sub-folder of images per class")
        ignored = _IGNORED_FOLDERS.get(dataset, frozenset())
        renames = _RENAMES.get(dataset, {})
        folders = [d for d in _list_dirs(image_dir) if d not in ignored]
        if not folders:
            raise ZooError(f"{image_dir}: no class sub-folders; expected {info.split_file} next to it or one "
                           f"sub-folder of images per class")
        groups = [(renames.get(d, d), [os.path.join(image_dir, d, fn) for fn in _list_files(os.path.join(image_dir, d))])
                  for d in folders]
        source = image_dir
    if not any(paths for _, paths in groups):
        raise ZooError(f"{source}: no images found; expected {info.split_file} or images to rebuild a split from")
    return _fallback_split(groups, source, dataset, base_dir, f"{info.split_file} not found under {base_dir}",
                           "class(es)")


def _fallback_split(groups, source: str, dataset: str, base_dir: str, why: str, what: str) -> FullSplit:
    """The 50/20/30 per-class split of ``groups`` when no split JSON exists, flagged not comparable."""
    empty = [c for c, paths in groups if not paths]
    if empty:
        raise ZooError(f"{source}: {len(empty)} {what} have no images: {empty[:5]}; "
                       f"expected at least one image per class")
    note = f"{why}: rebuilt a 50/20/30 per-class split; not comparable to published numbers"
    warnings.warn(note, stacklevel=4)
    train, val, test = _split_per_class(groups)
    return _finish(train, val, test, source, dataset, base_dir, comparable=False, note=note)


def _flowers_groups(base_dir: str, image_dir: str, split_path: str) -> tuple[list[tuple[str, list[str]]], str]:
    labels_path = os.path.join(base_dir, "imagelabels.mat")
    names_path = os.path.join(base_dir, "cat_to_name.json")
    for p in (labels_path, names_path):
        _require_file(p, f"CoOp's {os.path.basename(split_path)} at {split_path}, or imagelabels.mat and "
                         f"cat_to_name.json to rebuild a split")
    from scipy.io import loadmat

    try:
        labels = [int(v) for v in loadmat(labels_path)["labels"].reshape(-1)]
    except Exception as e:  # scipy raises ValueError/KeyError/MatReadError
        raise ZooError(f"{labels_path}: cannot read ({e}); expected a .mat with a 'labels' array (1-based)") from e
    try:
        with open(names_path, encoding="utf-8") as f:
            cat_to_name = json.load(f)
    except (OSError, ValueError) as e:
        raise ZooError(f"{names_path}: cannot read JSON ({e}); expected {{\"1\": name, ...}}") from e
    if not labels or min(labels) < 1:
        raise ZooError(f"{labels_path}: labels must be 1-based class ids; got min {min(labels, default=None)}")
    n_cls = max(max(labels), len(cat_to_name))
    missing = [str(k) for k in range(1, n_cls + 1) if str(k) not in cat_to_name]
    if missing:
        raise ZooError(f"{names_path}: no name for class ids {missing[:5]}; expected keys \"1\"..\"{n_cls}\"")
    tracker: dict[int, list[str]] = defaultdict(list)
    for i, y in enumerate(labels):
        tracker[y].append(os.path.join(image_dir, f"image_{i + 1:05d}.jpg"))
    _check_paths(labels_path, (p for ps in tracker.values() for p in ps), image_dir)
    return [(cat_to_name[str(k)], tracker.get(k, [])) for k in range(1, n_cls + 1)], labels_path


# --------------------------------------------------------------------------------------------
# few-shot sampling
# --------------------------------------------------------------------------------------------


def _sample(data: Sequence[Datum], num_shots: int, rng: random.Random) -> list[Datum]:
    if num_shots <= 0:
        return list(data)
    groups: dict[int, list[Datum]] = {}
    for d in data:
        groups.setdefault(d.label, []).append(d)
    out: list[Datum] = []
    for items in groups.values():
        out += rng.sample(items, num_shots) if len(items) >= num_shots else items
    return out


def sample_few_shot(data: list[Datum], num_shots: int, seed: int) -> list[Datum]:
    """Dassl's ``generate_fewshot_dataset`` with an explicit RNG.

    Groups ``data`` by label in order of first appearance and draws ``num_shots`` items per label
    without replacement (all items of a label with fewer).

    Args:
        data: the items to sample from.
        num_shots: items per label; ``<= 0`` (e.g. -1) keeps all data.
        seed: seeds ``random.Random``.

    Returns:
        The sampled items, grouped by label.
    """
    return _sample(data, num_shots, random.Random(seed))


def _cache_path(cache_dir: str, dataset: str, num_shots: int, seed: int) -> str:
    return os.path.join(cache_dir, "fewshot", dataset, f"shot_{num_shots}-seed_{seed}.json")


def _rel(path: str, base_dir: str) -> str:
    if not base_dir:
        return path
    prefix = base_dir.rstrip(os.sep) + os.sep
    rel = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, base_dir)
    return rel.replace(os.sep, "/")


def _valid_sample(picked: list[Datum], pool: Sequence[Datum], k: int) -> bool:
    """True when ``picked`` is a possible K-shot draw from ``pool`` (distinct, K per label or all)."""
    if len(set(picked)) != len(picked):
        return False
    have = Counter(d.label for d in pool)
    got = Counter(d.label for d in picked)
    return all(got[y] == (min(k, n) if k > 0 else n) for y, n in have.items())


def _load_cache(path: str, full: FullSplit, num_shots: int, seed: int,
                val_k: int | None) -> tuple[list[Datum], list[Datum] | None] | None:
    """The cached draw, or None when the file is unreadable or does not fit ``full`` (stale)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        if (raw.get("dataset"), raw.get("num_shots"), raw.get("seed")) != (full.dataset, num_shots, seed):
            return None
        out: list[list[Datum] | None] = []
        for key, pool, k in (("train", full.train, num_shots), ("val", full.val, val_k)):
            if k is None:
                out.append(None)
                continue
            index = {_rel(d.path, full.base_dir): d for d in pool}
            picked = [index[p] for p in raw[key]]  # KeyError: a path not in this split
            if not _valid_sample(picked, pool, k):
                return None
            out.append(picked)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return out[0], out[1]  # type: ignore[return-value]


def _write_cache(path: str, full: FullSplit, num_shots: int, seed: int, train: list[Datum],
                 val: list[Datum] | None) -> None:
    payload: dict[str, Any] = {
        "dataset": full.dataset, "num_shots": num_shots, "seed": seed,
        "paths_relative_to": "dataset folder" if full.base_dir else "absolute",
        "train": [_rel(d.path, full.base_dir) for d in train],
        "val": None if val is None else [_rel(d.path, full.base_dir) for d in val],
    }
    try:
        atomic_write_text(path, json.dumps(payload))
    except OSError as e:  # a read-only cache must not stop training: the draw itself is deterministic
        warnings.warn(f"{path}: cannot write the few-shot cache ({e}); continuing without it", stacklevel=3)


def fewshot(full: FullSplit, num_shots: int, seed: int, cache_dir: str | None = None) -> FullSplit:
    """Few-shot sample a full split over all classes (before any base/new split).

    One ``random.Random(seed)`` stream draws ``num_shots`` per class from train, then
    ``min(num_shots, 4)`` per class from val (ImageNet's val is its test set and stays whole).
    Test is untouched.

    Args:
        full: the split from :func:`read_split`.
        num_shots: shots per class; ``<= 0`` keeps all data (nothing cached).
        seed: sampling seed (CoOp's runs use 1, 2, 3).
        cache_dir: when given, the draw is cached at
            ``<cache_dir>/fewshot/<dataset>/shot_{K}-seed_{s}.json`` (paths relative to the
            dataset folder) and reused while it still fits the split; else it is redrawn.

    Returns:
        A new :class:`FullSplit` with the sampled train/val.
    """
    if num_shots <= 0:
        return full._with(list(full.train), list(full.val), list(full.test), list(full.classnames))
    val_k = None if full.dataset == "imagenet" else min(num_shots, 4)
    path = _cache_path(cache_dir, full.dataset, num_shots, seed) if cache_dir else None
    cached = _load_cache(path, full, num_shots, seed, val_k) if path and os.path.isfile(path) else None
    if cached is not None:
        train, val = cached
    else:
        rng = random.Random(seed)
        train = _sample(full.train, num_shots, rng)
        val = None if val_k is None else _sample(full.val, val_k, rng)
        if path:
            _write_cache(path, full, num_shots, seed, train, val)
    return full._with(train, list(full.val) if val is None else val, list(full.test), list(full.classnames))


# --------------------------------------------------------------------------------------------
# base/new classes
# --------------------------------------------------------------------------------------------


def subsample_classes(split: FullSplit, which: Literal["all", "base", "new"]) -> FullSplit:
    """CoOp's base-to-new rule: base = the first ``ceil(C/2)`` labels, new = the rest.

    Each half is relabelled from 0 and its class names sliced accordingly; train, val and test
    are all filtered.

    Args:
        split: a (few-shot) split over all ``C`` classes.
        which: ``"all"`` (a copy), ``"base"`` or ``"new"``.

    Returns:
        The filtered, relabelled split.
    """
    if which == "all":
        return split._with(list(split.train), list(split.val), list(split.test), list(split.classnames))
    if which not in ("base", "new"):
        raise ZooError(f"subsample_classes: which={which!r}; expected 'all', 'base' or 'new'")
    labels = list(range(len(split.classnames)))
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if which == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}

    def keep(data: list[Datum]) -> list[Datum]:
        return [Datum(d.path, relabel[d.label], d.classname) for d in data if d.label in relabel]

    return split._with(keep(split.train), keep(split.val), keep(split.test), [split.classnames[y] for y in selected])


def class_names_from_arg(text: str) -> list[str]:
    """Parse ``--classes "a,b,c"``: comma-separated names, stripped, ``"_"`` -> space.

    Args:
        text: the argument value.

    Returns:
        The class names in the given order.

    Raises:
        ZooError: an empty name or duplicate names.
    """
    names = [_clean(part) for part in (text or "").split(",")]
    if not names or any(not n for n in names):
        raise ZooError(f"--classes: {text!r} has an empty class name; expected comma-separated names like 'cat,dog'")
    dups = sorted(n for n, k in Counter(names).items() if k > 1)
    if dups:
        raise ZooError(f"--classes: duplicate class names {dups}; expected each class once")
    return names
