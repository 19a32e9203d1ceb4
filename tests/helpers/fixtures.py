"""Tiny dataset trees written in exactly the formats the real datasets are distributed in.

Each writer takes the folder it writes under and returns the path it created, so tests can
point the real loaders (``datamodules/ood/real.py``) at them. Contents are deterministic.

Layouts written:

- ``write_cifar10(root)``      -> ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
- ``write_cifar100(root)``     -> ``root/cifar-100-python/{train,test,meta}``
- ``write_svhn_mat(root)``     -> ``root/svhn/test_32x32.mat`` (or ``root/test_32x32.mat``)
- ``write_flat_folder(d, n)``  -> ``d/00000.jpg ...`` (e.g. ``d = root/"LSUN"/"test"``)
- ``write_lsun_c(root)``       -> ``root/LSUN/test/*.jpg``
- ``write_isun(root)``         -> ``root/iSUN/iSUN_patches/*.jpeg``
- ``write_lsun_resize(root)``  -> ``root/LSUN_resize/LSUN_resize/*.jpg``
- ``write_dtd(root)``          -> ``root/dtd/images/<class>/<class>_NNNN.jpg``
- ``write_places(root, names)`` -> ``root/Places/test_256/<name>``
- ``write_imagenet_ood(root)`` -> ``root/{iNaturalist,SUN,Places}/images/*.jpg``
- ``write_imagefolder(d, wnids, per_class)`` -> ``d/<wnid>/<wnid>_<i>.JPEG`` (``d = root/"train"``)
- ``write_class_tree(root, classes, per_split)`` -> ``root/{train,test[,val]}/<class>/<class>_<i>.png``
  (a user's own ID data for ``OODFolders``; every image one uniform colour, :func:`class_color`)
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

DTD_CLASSES = [
    "banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked",
    "crosshatched", "crystalline", "dotted", "fibrous", "flecked", "freckled", "frilly", "gauzy",
    "grid", "grooved", "honeycombed", "interlaced", "knitted", "lacelike", "lined", "marbled",
    "matted", "meshed", "paisley", "perforated", "pitted", "pleated", "polka-dotted", "porous",
    "potholed", "scaly", "smeared", "spiralled", "sprinkled", "stained", "stratified", "striped",
    "studded", "swirly", "veined", "waffled", "woven", "wrinkled", "zigzagged",
]


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------


def cifar_pixel(n: int, row: int, col: int) -> tuple[int, int, int]:
    """The (R, G, B) value the CIFAR writers put at ``(row, col)`` of image ``n`` (global index
    within a split, train batches concatenated in order). R, G and B planes differ, and R depends
    on the row while G depends on the column, so channel or axis mix-ups are caught."""
    return ((row * 8 + n) % 256, (col * 8 + 2 * n) % 256, (200 + row + 3 * col + n) % 256)


def _cifar_rows(start: int, n: int) -> np.ndarray:
    """(n, 3072) uint8, channel-major (1024 R, 1024 G, 1024 B), each plane row-major 32x32."""
    rows = np.arange(32)[:, None]
    cols = np.arange(32)[None, :]
    out = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        g = start + i
        out[i, 0] = (rows * 8 + g) % 256
        out[i, 1] = (cols * 8 + 2 * g) % 256
        out[i, 2] = (200 + rows + 3 * cols + g) % 256
    return out.reshape(n, 3072)


def _dump(obj: dict, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the originals are python-2 pickles


def write_cifar10(root: str | Path, n_train_per_batch: int = 4, n_test: int = 6) -> Path:
    """Write ``root/cifar-10-batches-py`` with 5 train batches and a test batch.

    Labels are ``global_index % 10``; pixels follow :func:`cifar_pixel`.
    """
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    for b in range(5):
        start = b * n_train_per_batch
        _dump(
            {
                "batch_label": f"training batch {b + 1} of 5",
                "labels": [(start + i) % 10 for i in range(n_train_per_batch)],
                "data": _cifar_rows(start, n_train_per_batch),
                "filenames": [f"fixture_{start + i:05d}.png" for i in range(n_train_per_batch)],
            },
            d / f"data_batch_{b + 1}",
        )
    _dump(
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [i % 10 for i in range(n_test)],
            "data": _cifar_rows(0, n_test),
            "filenames": [f"fixture_test_{i:05d}.png" for i in range(n_test)],
        },
        d / "test_batch",
    )
    _dump({"num_cases_per_batch": n_train_per_batch, "label_names": list(CIFAR10_NAMES), "num_vis": 3072},
          d / "batches.meta")
    return d


def write_cifar100(root: str | Path, n_train: int = 8, n_test: int = 6) -> Path:
    """Write ``root/cifar-100-python/{train,test,meta}``.

    Fine labels are ``(7 * global_index) % 100``, coarse labels ``fine // 5``; pixels follow
    :func:`cifar_pixel`.
    """
    d = Path(root) / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = [(7 * i) % 100 for i in range(n)]
        _dump(
            {
                "filenames": [f"fixture_{split}_{i:05d}.png" for i in range(n)],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                "data": _cifar_rows(0, n),
            },
            d / split,
        )
    _dump(
        {
            "fine_label_names": [f"fine_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)],
        },
        d / "meta",
    )
    return d


# --------------------------------------------------------------------------------------------
# SVHN
# --------------------------------------------------------------------------------------------


def write_svhn_mat(root: str | Path, n: int = 30, subdir: bool = True, labels: Sequence[int] | None = None) -> Path:
    """Write ``root/svhn/test_32x32.mat`` (``root/test_32x32.mat`` if not ``subdir``).

    ``X`` is uint8 (32, 32, 3, n) with image ``i`` filled by the constant colour
    ``(i, 2*i, 255 - i) % 256``; ``y`` is uint8 (n, 1) with labels in 1..10 (10 = digit 0),
    by default ``i % 10 + 1``.
    """
    from scipy.io import savemat

    d = Path(root) / "svhn" if subdir else Path(root)
    d.mkdir(parents=True, exist_ok=True)
    X = np.empty((32, 32, 3, n), dtype=np.uint8)
    for i in range(n):
        X[:, :, 0, i] = i % 256
        X[:, :, 1, i] = (2 * i) % 256
        X[:, :, 2, i] = (255 - i) % 256
    y = np.array(labels if labels is not None else [i % 10 + 1 for i in range(n)], dtype=np.uint8).reshape(n, 1)
    path = d / "test_32x32.mat"
    savemat(path, {"X": X, "y": y})
    return path


# --------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------


def _image(seed: int, size: int | tuple[int, int]) -> Image.Image:
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-120, 120, (3, 2))
    img = base[:, None, None] + slope[:, 0, None, None] * yy + slope[:, 1, None, None] * xx
    img = img + rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0))


def write_image(path: str | Path, seed: int = 0, size: int | tuple[int, int] = 32, mode: str = "RGB") -> Path:
    """Write one deterministic image; the format comes from the extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = _image(seed, size)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


def write_corrupt_image(path: str | Path) -> Path:
    """Write garbage bytes under an image name (an unreadable 'image')."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a JPEG \x00\x01\x02" * 4)
    return path


def write_flat_folder(
    folder: str | Path, n: int, ext: str = "jpg", size: int | tuple[int, int] = 32, start: int = 0
) -> list[Path]:
    """Write ``n`` images ``folder/{start:05d}.{ext}...``; returns their paths."""
    folder = Path(folder)
    return [write_image(folder / f"{start + i:05d}.{ext}", seed=start + i, size=size) for i in range(n)]


def write_lsun_c(root: str | Path, n: int = 5) -> Path:
    """``root/LSUN/test/*.jpg`` (LSUN-C)."""
    d = Path(root) / "LSUN" / "test"
    write_flat_folder(d, n, "jpg", size=36)
    return d


def write_isun(root: str | Path, n: int = 5) -> Path:
    """``root/iSUN/iSUN_patches/*.jpeg``."""
    d = Path(root) / "iSUN" / "iSUN_patches"
    write_flat_folder(d, n, "jpeg")
    return d


def write_lsun_resize(root: str | Path, n: int = 5) -> Path:
    """``root/LSUN_resize/LSUN_resize/*.jpg`` (LSUN-R)."""
    d = Path(root) / "LSUN_resize" / "LSUN_resize"
    write_flat_folder(d, n, "jpg")
    return d


def write_dtd(root: str | Path, classes: int = 3, per_class: int = 2) -> Path:
    """``root/dtd/images/<class>/<class>_NNNN.jpg`` with the first ``classes`` DTD class names."""
    d = Path(root) / "dtd" / "images"
    for c, name in enumerate(DTD_CLASSES[:classes]):
        for i in range(per_class):
            write_image(d / name / f"{name}_{i + 1:04d}.jpg", seed=1000 + c * 100 + i, size=(40, 30))
    return d


def places_names(n: int) -> list[str]:
    """Real-style Places365 test names ``Places365_test_00000001.jpg`` ..."""
    return [f"Places365_test_{i + 1:08d}.jpg" for i in range(n)]


def write_places(root: str | Path, names: Iterable[str] | int, subdir: str = "Places/test_256") -> Path:
    """``root/<subdir>/<name>`` for each name (``names`` may be a count: :func:`places_names`)."""
    d = Path(root) / subdir
    names = places_names(names) if isinstance(names, int) else list(names)
    for i, name in enumerate(names):
        write_image(d / name, seed=5000 + i, size=24)
    return d


def write_imagenet_ood(root: str | Path, n: int = 4) -> dict[str, Path]:
    """``root/{iNaturalist,SUN,Places}/images/*.jpg`` (Huang & Li's ImageNet OOD subsets)."""
    out = {}
    for k, sub in (("inaturalist", "iNaturalist"), ("sun", "SUN"), ("places", "Places")):
        d = Path(root) / sub / "images"
        write_flat_folder(d, n, "jpg", size=24)
        out[k] = d
    return out


def write_imagefolder(split_dir: str | Path, wnids: Sequence[str], per_class: int, ext: str = "JPEG") -> Path:
    """``split_dir/<wnid>/<wnid>_<i>.JPEG`` (ImageNet train/val after the usual reorganisation)."""
    d = Path(split_dir)
    for c, wnid in enumerate(wnids):
        for i in range(per_class):
            write_image(d / wnid / f"{wnid}_{i}.{ext}", seed=9000 + c * 100 + i, size=(20, 16))
    return d


def class_color(c: int) -> tuple[int, int, int]:
    """The uniform (R, G, B) colour of every image of class index ``c`` in :func:`write_class_tree`
    (``c`` = position in the ``classes`` argument, not the sorted label)."""
    return ((40 + 70 * c) % 256, (200 - 50 * c) % 256, (90 + 110 * c) % 256)


def write_class_tree(
    root: str | Path,
    classes: Sequence[str],
    per_split: dict[str, int],
    size: tuple[int, int] = (40, 28),
    nested: Sequence[str] = (),
) -> Path:
    """A user's ID class-folder tree ``root/<split>/<class>/<class>_<i>.png`` (PNG, ``size`` = (w, h)).

    Every image of ``classes[c]`` is the uniform colour :func:`class_color` ``(c)``, so labels can be
    checked against pixels. Classes listed in ``nested`` put their odd-numbered images one folder
    deeper (``<class>/more/<class>_<i>.png``), which the reader must find too.
    """
    root = Path(root)
    for split, n in per_split.items():
        for c, name in enumerate(classes):
            for i in range(n):
                sub = Path(name, "more") if name in nested and i % 2 else Path(name)
                path = root / split / sub / f"{name}_{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size, class_color(c)).save(path)
    return root
