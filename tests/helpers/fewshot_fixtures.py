"""Tiny few-shot dataset trees in CoOp's on-disk layouts (``DATASETS.md``).

Each writer takes the data root and returns the main file or folder it wrote, so tests can point
:func:`datamodules.fewshot.real.read_split` at them. Images are 8x8 JPEGs whose colour encodes
(class, index); contents are deterministic.

- ``write_split_zhou(root, key, classes, per_class)`` -> ``root/<folder>/<image_dir>/...`` and
  ``root/<folder>/split_zhou_X.json`` (Stanford Cars: ``cars_train/NNNNN.jpg`` and
  ``cars_test/NNNNN.jpg`` relative to the folder itself).
- ``write_imagenet(root, wnids_and_names)`` -> ``root/imagenet/{classnames.txt,images/{train,val}/<wnid>/*.JPEG}``
- ``write_fgvc_aircraft(root, variants)`` -> ``root/fgvc_aircraft/{variants.txt,images_variant_*.txt,images/<id>.jpg}``
- ``write_flowers_fallback(root, names)`` -> ``root/oxford_flowers/{imagelabels.mat,cat_to_name.json,jpg/image_NNNNN.jpg}``
- ``write_class_folders(root, key, folders)`` -> ``root/<folder>/<image_dir>/<class>/*.jpg`` (no JSON)
- ``write_user_tree(root, classes, per_class)`` -> a user's own tree, ``root/<class>/*.png`` (one pool)
  or ``root/{train,val,test}/<class>/*.png`` (``dataset=folder``)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.fewshot.real import DATASETS

JSON_DATASETS = [k for k, v in DATASETS.items() if v.split_file is not None]


def write_image(path: Path, cls: int, i: int, fmt: str | None = None) -> None:
    """An 8x8 RGB image: red encodes the class, green the index, blue a gradient."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((8, 8, 3), dtype=np.uint8)
    arr[..., 0] = (cls * 37) % 256
    arr[..., 1] = (i * 23) % 256
    arr[..., 2] = np.arange(8, dtype=np.uint8)[None, :] * 30
    Image.fromarray(arr).save(path, format=fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG"))


def _rel_path(key: str, cls: int, cname: str, i: int, n: int, split: str) -> str:
    """A path in the style of the dataset's real split JSON (relative to its image_dir)."""
    folder = cname.replace(" ", "_")
    if key == "stanford_cars":
        return f"{'cars_test' if split == 'test' else 'cars_train'}/{n:05d}.jpg"
    if key == "oxford_pets":
        return f"{folder}_{i + 1}.jpg"
    if key == "oxford_flowers":
        return f"image_{n:05d}.jpg"
    if key == "sun397":
        return f"{folder[0].lower()}/{folder}/sun_{cls:03d}{i:04d}.jpg"
    return f"{folder}/{folder}_{i:04d}.jpg"


def write_split_zhou(root: str | Path, dataset_key: str, classes: Sequence[str],
                     per_class: tuple[int, int, int] = (4, 2, 2), interleave: bool = True) -> Path:
    """Images of ``classes`` plus CoOp's split JSON for ``dataset_key``.

    Args:
        root: the data root.
        dataset_key: a key of ``DATASETS`` with a split file.
        classes: class names; label = position.
        per_class: (train, val, test) images per class.
        interleave: list items class-interleaved (as shuffled real JSONs), else grouped by class.

    Returns:
        The JSON path.
    """
    info = DATASETS[dataset_key]
    folder = Path(root) / info.folder
    image_dir = folder / info.image_dir
    split: dict[str, list[list]] = {"train": [], "val": [], "test": []}
    n = 0
    offsets = {"train": 0, "val": per_class[0], "test": per_class[0] + per_class[1]}
    for s, count in zip(("train", "val", "test"), per_class):
        rows = []
        for i in range(count):
            for y, c in enumerate(classes):
                n += 1
                idx = offsets[s] + i
                rel = _rel_path(dataset_key, y, c, idx, n, s)
                write_image(image_dir / rel, y, idx)
                rows.append((y, i, [rel, y, c]))
        if not interleave:
            rows.sort(key=lambda r: (r[0], r[1]))
        split[s] = [r[2] for r in rows]
    path = folder / info.split_file
    path.write_text(json.dumps(split))
    return path


def write_imagenet(root: str | Path, wnids_and_names: Sequence[tuple[str, str]], train_per_class: int = 6,
                   val_per_class: int = 3) -> Path:
    """``root/imagenet/classnames.txt`` (given order) and ``images/{train,val}/<wnid>/*.JPEG``.

    Returns:
        The ``imagenet`` folder.
    """
    d = Path(root) / "imagenet"
    d.mkdir(parents=True, exist_ok=True)
    (d / "classnames.txt").write_text("".join(f"{w} {name}\n" for w, name in wnids_and_names))
    for y, (w, _) in enumerate(wnids_and_names):
        for i in range(train_per_class):
            write_image(d / "images" / "train" / w / f"{w}_{i}.JPEG", y, i)
        for i in range(val_per_class):
            write_image(d / "images" / "val" / w / f"ILSVRC2012_val_{y:04d}{i:04d}.JPEG", y, 100 + i)
    return d


def write_fgvc_aircraft(root: str | Path, variants: Sequence[str],
                        per_class: tuple[int, int, int] = (4, 2, 2)) -> Path:
    """FGVC Aircraft's ``variants.txt``, ``images_variant_{train,val,test}.txt`` and ``images/<id>.jpg``.

    Returns:
        The ``fgvc_aircraft`` folder.
    """
    d = Path(root) / "fgvc_aircraft"
    (d / "images").mkdir(parents=True, exist_ok=True)
    (d / "variants.txt").write_text("".join(f"{v}\n" for v in variants))
    n = 1000000
    for s, count in zip(("train", "val", "test"), per_class):
        lines = []
        for i in range(count):
            for y, v in enumerate(variants):
                n += 1
                write_image(d / "images" / f"{n:07d}.jpg", y, i)
                lines.append(f"{n:07d} {v}\n")
        (d / f"images_variant_{s}.txt").write_text("".join(lines))
    return d


def write_flowers_fallback(root: str | Path, names: Sequence[str], per_class: int = 10) -> Path:
    """Oxford Flowers' originals without the split JSON: ``imagelabels.mat`` ("labels", 1-based,
    shape (1, N)), ``cat_to_name.json`` ({"1": name, ...}) and ``jpg/image_NNNNN.jpg``.

    Returns:
        The ``oxford_flowers`` folder.
    """
    from scipy.io import savemat

    d = Path(root) / "oxford_flowers"
    (d / "jpg").mkdir(parents=True, exist_ok=True)
    labels = [y + 1 for i in range(per_class) for y in range(len(names))]  # interleaved, 1-based
    for k, lab in enumerate(labels, 1):
        write_image(d / "jpg" / f"image_{k:05d}.jpg", lab - 1, k)
    savemat(d / "imagelabels.mat", {"labels": np.asarray(labels, dtype=np.uint8)[None, :]})
    (d / "cat_to_name.json").write_text(json.dumps({str(y + 1): n for y, n in enumerate(names)}))
    return d


def write_class_folders(root: str | Path, dataset_key: str, folders: Sequence[str], per_class: int = 10,
                        ext: str = "jpg") -> Path:
    """``root/<folder>/<image_dir>/<class folder>/NNNN.<ext>`` without a split JSON (fallback).

    Returns:
        The image folder.
    """
    info = DATASETS[dataset_key]
    image_dir = Path(root) / info.folder / info.image_dir
    for y, f in enumerate(folders):
        for i in range(per_class):
            write_image(image_dir / f / f"{i:04d}.{ext}", y, i)
    return image_dir


def write_user_tree(root: str | Path, classes: Sequence[str], per_class: int | dict[str, int] = 6,
                    splits: Sequence[str] | None = None, ext: str = "png") -> Path:
    """A user's own class-folder tree (``--data.init_args.dataset folder``), PNG files by default.

    Args:
        root: the tree's root (created).
        classes: class folder names; the folder order on disk does not matter (labels follow the
            sorted names).
        per_class: images per class folder; with ``splits`` a dict ``{split: n}`` per split.
        splits: None for one pool ``root/<class>/``; else e.g. ``("train", "test")`` or
            ``("train", "val", "test")`` for ``root/<split>/<class>/``.
        ext: file suffix (``png`` or ``jpg``).

    Returns:
        ``root``.
    """
    root = Path(root)
    for y, c in enumerate(classes):
        if splits is None:
            n = per_class if isinstance(per_class, int) else sum(per_class.values())
            for i in range(n):
                write_image(root / c / f"{c}_{i:03d}.{ext}", y, i)
            continue
        for k, s in enumerate(splits):
            n = per_class if isinstance(per_class, int) else per_class[s]
            for i in range(n):
                write_image(root / s / c / f"{c}_{i:03d}.{ext}", y, 100 * k + i)
    root.mkdir(parents=True, exist_ok=True)
    return root
