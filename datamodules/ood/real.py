"""Readers for the real OOD-benchmark datasets, in the formats they are distributed in.

Every dataset here is a :class:`torch.utils.data.Dataset` whose ``__getitem__(i)`` returns a dict:

- ``image``: ``transform(img)``, or the PIL RGB image itself when ``transform`` is None.
- ``label``: ``int``; the class index for labelled sets, ``-1`` for OOD / unlabelled sets.

Nothing is ever downloaded. All paths are local; a missing or malformed file raises a one-line
:class:`~zoo.core.errors.ZooError` that names the path and what was expected.

On-disk layouts (relative to a data root; see ``OOD_LAYOUTS`` and ``build_id_set``):

======================  =============================================================  =========
set                     layout                                                         loader
======================  =============================================================  =========
CIFAR-10                ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``  pickles
CIFAR-100               ``cifar-100-python/{train,test,meta}``                         pickles
ImageNet-1k             ``<root>/{train,val}/<wnid>/*.JPEG``                           folders
SVHN (``svhn``)         ``svhn/test_32x32.mat`` or ``test_32x32.mat``                  .mat
LSUN-C (``lsun_c``)     ``LSUN/test/*.jpg``                                            flat
LSUN-R (``lsun_r``)     ``LSUN_resize/LSUN_resize/*``                                  flat
iSUN (``isun``)         ``iSUN/iSUN_patches/*.jpeg``                                   flat
Textures (``textures``) ``dtd/images/<47 classes>/*.jpg``                              flat
Places365 (CIFAR)       ``Places/test_256/*`` or ``places365/test_256/*``, 10k subset   flat
iNaturalist (ImageNet)  ``iNaturalist/images/*``                                       flat
SUN (ImageNet)          ``SUN/images/*``                                               flat
Places (ImageNet)       ``Places/images/*``                                            flat
======================  =============================================================  =========

A user's own data needs no benchmark layout: :class:`OODFolders` reads an ID class-folder tree
(``<root>/{train,test[,val]}/<class>/...``, :class:`ClassFolders`) and any number of OOD folders
given as ``{name: path}``.

"flat" means a recursive, case-insensitive image glob (jpg, jpeg, png, bmp, webp), sorted by
relative path, with label -1; class sub-folders are neither needed nor used. Hidden files
(names starting with ``.``, e.g. macOS ``._x.jpg`` resource forks) are skipped.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from datamodules.common.images import IMAGE_EXTENSIONS, list_images, load_rgb
from datamodules.ood.base import Augment, OODDataModule, arg, check_int, check_names, is_number
from zoo.core.errors import ZooError

__all__ = [
    "IMAGE_EXTENSIONS",
    "OOD_LAYOUTS",
    "CIFARPickles",
    "ClassFolders",
    "ImageFolderFlat",
    "ImageNetFolder",
    "OODBenchmark",
    "OODFolders",
    "OODLayout",
    "SVHNMat",
    "build_id_set",
    "build_ood_set",
    "list_images",
    "load_rgb",
]

Transform = Callable[[Image.Image], Any]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _item(img: Image.Image, label: int, transform: Transform | None) -> dict[str, Any]:
    return {"image": transform(img) if transform is not None else img, "label": int(label)}


def _require_dir(path: Path, expected: str) -> None:
    if not path.is_dir():
        what = "not a directory" if path.exists() else "not found"
        raise ZooError(f"{path}: {what}; expected {expected}")


def _hash_subset(relpaths: Sequence[str], k: int, seed: int) -> list[str]:
    """The ``k`` paths with the smallest ``sha1(f"{seed}/{relpath}")``, in sorted path order.

    Unlike an RNG draw, this depends only on the file names and the seed: it is identical across
    numpy/torch versions and platforms, and adding or removing one file changes at most one
    member of the subset.
    """

    def key(p: str) -> str:
        return hashlib.sha1(f"{seed}/{p}".encode()).hexdigest()

    return sorted(sorted(relpaths, key=key)[:k])


# --------------------------------------------------------------------------------------------
# CIFAR pickles
# --------------------------------------------------------------------------------------------

_CIFAR_SPEC: dict[str, dict[str, Any]] = {
    "cifar10": {
        "dir": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
        "num_classes": 10,
        "layout": "data_batch_1..5, test_batch and batches.meta (the python version of CIFAR-10)",
    },
    "cifar100": {
        "dir": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
        "num_classes": 100,
        "layout": "train, test and meta (the python version of CIFAR-100)",
    },
}


def _load_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ZooError(f"{path}: not found; expected a CIFAR python pickle")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except Exception as e:
        raise ZooError(f"{path}: cannot unpickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ZooError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _require_key(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        keys = ", ".join(sorted(map(str, d))) or "none"
        raise ZooError(f"{path}: missing key '{key}' (found: {keys})")
    return d[key]


class CIFARPickles(Dataset):
    """CIFAR-10 / CIFAR-100 from the python pickles (the torchvision ``download=False`` layout).

    Reads ``<root>/cifar-10-batches-py/`` or ``<root>/cifar-100-python/`` directly, without
    torchvision's md5 check. Every pickle is validated: ``data`` must be a uint8 ``(N, 3072)``
    array (R, G, B planes of 32x32, row-major), the label list must have N entries in range.
    CIFAR-100 yields the fine labels (100 classes).

    Args:
        root: folder that contains ``cifar-10-batches-py`` / ``cifar-100-python``.
        which: ``"cifar10"`` or ``"cifar100"``.
        train: the 50k training split if True, else the 10k test split.
        transform: applied to the PIL RGB 32x32 image.

    Attributes:
        classes: class names from the meta pickle.
        data: ``(N, 32, 32, 3)`` uint8 array (HWC).
        targets: list of N ints.
    """

    def __init__(
        self,
        root: str,
        which: Literal["cifar10", "cifar100"] = "cifar10",
        train: bool = True,
        transform: Transform | None = None,
    ) -> None:
        if which not in _CIFAR_SPEC:
            raise ZooError(f"which={which!r}: expected one of {', '.join(_CIFAR_SPEC)}")
        spec = _CIFAR_SPEC[which]
        base = Path(root) / spec["dir"]
        _require_dir(base, spec["layout"])
        self.root = str(root)
        self.which = which
        self.train = train
        self.transform = transform
        n_cls: int = spec["num_classes"]

        meta_path = base / spec["meta"]
        names = _require_key(_load_pickle(meta_path), spec["names_key"], meta_path)
        if not isinstance(names, (list, tuple)) or len(names) != n_cls:
            raise ZooError(f"{meta_path}: '{spec['names_key']}' should list {n_cls} class names")
        self.classes: list[str] = [str(n) for n in names]

        chunks: list[np.ndarray] = []
        targets: list[int] = []
        for fname in spec["train" if train else "test"]:
            path = base / fname
            d = _load_pickle(path)
            data = _require_key(d, "data", path)
            labels = _require_key(d, spec["label_key"], path)
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
                raise ZooError(f"{path}: 'data' should be a uint8 array of shape (N, 3072), got {got}")
            labels = [int(x) for x in labels]
            if len(labels) != data.shape[0]:
                raise ZooError(
                    f"{path}: '{spec['label_key']}' has {len(labels)} entries but 'data' has {data.shape[0]} rows"
                )
            if labels and not (0 <= min(labels) and max(labels) < n_cls):
                raise ZooError(f"{path}: '{spec['label_key']}' should be in [0, {n_cls - 1}]")
            chunks.append(data)
            targets.extend(labels)
        # (N, 3072) channel-major planes -> (N, 32, 32, 3) HWC, contiguous for Image.fromarray
        self.data: np.ndarray = np.ascontiguousarray(
            np.concatenate(chunks).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        )
        self.targets: list[int] = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return _item(Image.fromarray(self.data[i]), self.targets[i], self.transform)


# --------------------------------------------------------------------------------------------
# SVHN .mat
# --------------------------------------------------------------------------------------------

SVHN_CANDIDATES: tuple[str, ...] = ("svhn/test_32x32.mat", "test_32x32.mat")


class SVHNMat(Dataset):
    """SVHN cropped digits from ``test_32x32.mat`` (format 2), read with ``scipy.io.loadmat``.

    The file holds ``X``: uint8 ``(32, 32, 3, N)`` and ``y``: ``(N, 1)`` with labels 1..10, where
    10 means digit 0; labels are mapped to 0..9.

    Args:
        root: a ``.mat`` file, or a folder holding ``svhn/test_32x32.mat`` or ``test_32x32.mat``.
        transform: applied to the PIL RGB 32x32 image.
        balanced_per_class: keep only the first ``k`` images of each digit, in file order
            (KNN's protocol uses 1,000 -> a 10k subset). A digit with fewer than ``k`` images
            keeps all of them, with a warning. ``None`` keeps all 26,032 test images.
        as_ood: yield ``label=-1`` (the set is used as OOD); the digits stay in ``targets``.

    Attributes:
        classes: ``["0", ..., "9"]``.
        data: ``(N, 32, 32, 3)`` uint8. targets: list of N digits. path: the file read.
    """

    classes: list[str] = [str(d) for d in range(10)]

    def __init__(
        self,
        root: str,
        transform: Transform | None = None,
        balanced_per_class: int | None = None,
        as_ood: bool = False,
    ) -> None:
        from scipy.io import loadmat  # scipy is heavy; only needed here

        r = Path(root)
        if r.is_file():
            path = r
        else:
            found = [r / c for c in SVHN_CANDIDATES if (r / c).is_file()]
            if not found:
                alt = " or ".join(str(r / c) for c in SVHN_CANDIDATES[1:])
                raise ZooError(
                    f"{r / SVHN_CANDIDATES[0]}: not found (nor {alt}); expected the SVHN test set "
                    "test_32x32.mat (format 2, cropped digits)"
                )
            path = found[0]
        self.path = str(path)
        self.transform = transform
        self.as_ood = as_ood
        try:
            mat = loadmat(path)
        except Exception as e:
            raise ZooError(f"{path}: cannot read .mat file ({type(e).__name__}: {e})") from e
        X = _require_key(mat, "X", path)
        y = _require_key(mat, "y", path)
        if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 4 or X.shape[:3] != (32, 32, 3):
            got = f"{X.dtype} {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
            raise ZooError(f"{path}: 'X' should be a uint8 array of shape (32, 32, 3, N), got {got}")
        y = np.asarray(y)
        n = X.shape[3]
        if y.size != n or not (y.ndim == 1 or (y.ndim == 2 and 1 in y.shape)):
            raise ZooError(f"{path}: 'y' should have shape ({n}, 1), got {y.shape}")
        y = y.reshape(-1).astype(np.int64)
        if n and (y.min() < 1 or y.max() > 10):
            raise ZooError(f"{path}: 'y' should hold labels 1..10 (10 = digit 0), got {y.min()}..{y.max()}")
        y[y == 10] = 0

        idx = np.arange(n)
        if balanced_per_class is not None:
            k = int(balanced_per_class)
            if k < 1:
                raise ZooError(f"balanced_per_class={balanced_per_class}: expected a positive int or None")
            keep = []
            short = []
            for d in range(10):
                sel = np.flatnonzero(y == d)[:k]
                if len(sel) < k:
                    short.append(f"{d}:{len(sel)}")
                keep.append(sel)
            if short:
                warnings.warn(
                    f"{path}: fewer than {k} images for digits {', '.join(short)}; keeping all of them",
                    stacklevel=2,
                )
            idx = np.sort(np.concatenate(keep))
        self.data: np.ndarray = np.ascontiguousarray(X.transpose(3, 0, 1, 2)[idx])
        self.targets: list[int] = [int(v) for v in y[idx]]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        label = -1 if self.as_ood else self.targets[i]
        return _item(Image.fromarray(self.data[i]), label, self.transform)


# --------------------------------------------------------------------------------------------
# flat folders
# --------------------------------------------------------------------------------------------


class ImageFolderFlat(Dataset):
    """Every image under ``root`` (recursive glob), label ``-1``, in sorted relative-path order.

    Args:
        root: folder to glob (see :func:`list_images`).
        transform: applied to the PIL RGB image.
        max_items: if set and smaller than the number of files, keep a deterministic subset of
            this size: the files with the smallest ``sha1(f"{seed}/{relpath}")``, returned in
            sorted order. It depends only on the file names and ``seed`` (not on numpy's RNG),
            so it is reproducible across machines and library versions.
        seed: selects the subset when ``max_items`` applies.
        list_file: a text file of paths relative to ``root``, one per line (blank lines and
            ``#`` comments ignored); used instead of the glob. All must exist. ``max_items``
            still applies to it. Use :meth:`save_list` to ship a chosen subset.

    Attributes:
        root: the folder. relpaths: the chosen files, relative to ``root``.
    """

    def __init__(
        self,
        root: str,
        transform: Transform | None = None,
        max_items: int | None = None,
        seed: int = 0,
        list_file: str | None = None,
        expected: str = "a folder of images (jpg, jpeg, png, bmp, webp), searched recursively",
    ) -> None:
        r = Path(root)
        _require_dir(r, expected)
        self.root = str(r)
        self.transform = transform
        if list_file is not None:
            relpaths = self._read_list(Path(list_file), r)
        else:
            relpaths = list_images(r)
            if not relpaths:
                raise ZooError(
                    f"{r}: no images found (looked recursively for {', '.join(IMAGE_EXTENSIONS)}); expected {expected}"
                )
        if max_items is not None:
            if max_items < 1:
                raise ZooError(f"max_items={max_items}: expected a positive int or None")
            if max_items < len(relpaths):
                relpaths = _hash_subset(relpaths, max_items, seed)
        self.relpaths: list[str] = relpaths

    @staticmethod
    def _read_list(list_file: Path, root: Path) -> list[str]:
        if not list_file.is_file():
            raise ZooError(f"{list_file}: not found; expected a list of image paths relative to {root}")
        lines = list_file.read_text().splitlines()
        rel = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not rel:
            raise ZooError(f"{list_file}: empty; expected image paths relative to {root}, one per line")
        missing = [p for p in rel if not (root / p).is_file()]
        if missing:
            raise ZooError(
                f"{list_file}: {len(missing)} of {len(rel)} listed files are missing under {root}, "
                f"e.g. {root / missing[0]}"
            )
        return rel

    def save_list(self, path: str) -> None:
        """Write ``relpaths`` to ``path``, one per line, for reuse as ``list_file``."""
        Path(path).write_text("\n".join(self.relpaths) + "\n")

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return _item(load_rgb(os.path.join(self.root, self.relpaths[i])), -1, self.transform)


# --------------------------------------------------------------------------------------------
# ImageNet folders
# --------------------------------------------------------------------------------------------


class ImageNetFolder(Dataset):
    """ImageNet-style ``<root>/<split>/<wnid>/*.JPEG`` via torchvision's ``ImageFolder`` index.

    Classes are the sorted sub-folder names (wnids), so labels match the standard
    ImageNet-1k class order when all 1,000 folders are present.

    Args:
        root: folder holding ``train/`` and/or ``val/``.
        split: ``"train"`` or ``"val"`` (any sub-folder name is accepted).
        transform: applied to the PIL RGB image.

    Attributes:
        classes, class_to_idx, samples (list of (path, label)), targets.
    """

    def __init__(self, root: str, split: str = "val", transform: Transform | None = None) -> None:
        from torchvision.datasets import ImageFolder

        d = Path(root) / split
        expected = f"ImageNet layout {split}/<wnid>/*.JPEG (one sub-folder per class)"
        _require_dir(d, expected)
        try:
            idx = ImageFolder(str(d), allow_empty=False)
        except FileNotFoundError as e:
            raise ZooError(f"{d}: no class folders with images ({e}); expected {expected}") from e
        self.root = str(root)
        self.split = split
        self.transform = transform
        self.classes: list[str] = list(idx.classes)
        self.class_to_idx: dict[str, int] = dict(idx.class_to_idx)
        self.samples: list[tuple[str, int]] = list(idx.samples)
        self.targets: list[int] = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label = self.samples[i]
        return _item(load_rgb(path), label, self.transform)


# --------------------------------------------------------------------------------------------
# registry of standard OOD sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OODLayout:
    """Where a standard OOD set lives under a data root and how it is read.

    Attributes:
        name: registry key.
        paths: candidate paths relative to the data root; the first that exists is used.
        loader: ``"flat"`` (:class:`ImageFolderFlat`) or ``"svhn"`` (:class:`SVHNMat`).
        benchmark: ``"cifar"`` or ``"imagenet"`` (which OOD suite the set belongs to).
        description: what is expected there, used in error messages.
        kwargs: default loader arguments (overridable in :func:`build_ood_set`).
    """

    name: str
    paths: tuple[str, ...]
    loader: Literal["flat", "svhn"]
    benchmark: Literal["cifar", "imagenet"]
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def resolve(self, root: str | os.PathLike[str]) -> Path | None:
        """The first candidate path that exists under ``root``, or None."""
        for p in self.paths:
            full = Path(root) / p
            if (full.is_file() if self.loader == "svhn" else full.is_dir()):
                return full
        return None

    def expected(self, root: str | os.PathLike[str]) -> str:
        """``"<root>/<first candidate>"`` plus the alternatives, for messages."""
        first = str(Path(root) / self.paths[0])
        alts = [str(Path(root) / p) for p in self.paths[1:]]
        return first + (f" (or {', '.join(alts)})" if alts else "")


OOD_LAYOUTS: dict[str, OODLayout] = {
    layout.name: layout
    for layout in [
        OODLayout(
            "svhn", SVHN_CANDIDATES, "svhn", "cifar",
            "the SVHN test set test_32x32.mat (format 2); KNN protocol: first 1,000 per digit",
            {"balanced_per_class": 1000},
        ),
        OODLayout("lsun_c", ("LSUN/test",), "flat", "cifar", "LSUN-C crops as LSUN/test/*.jpg"),
        OODLayout(
            "lsun_r", ("LSUN_resize/LSUN_resize",), "flat", "cifar",
            "LSUN-R images as LSUN_resize/LSUN_resize/*",
        ),
        OODLayout("isun", ("iSUN/iSUN_patches",), "flat", "cifar", "iSUN patches as iSUN/iSUN_patches/*.jpeg"),
        OODLayout(
            "textures", ("dtd/images",), "flat", "cifar",
            "Describable Textures as dtd/images/<47 classes>/*.jpg (used by both benchmarks)",
        ),
        OODLayout(
            "places365", ("Places/test_256", "places365/test_256"), "flat", "cifar",
            "Places365 test_256 images (a fixed 10k subset is drawn, see build_ood_set)",
            {"max_items": 10_000, "seed": 0},
        ),
        OODLayout(
            "inaturalist", ("iNaturalist/images",), "flat", "imagenet",
            "the Huang & Li iNaturalist OOD subset as iNaturalist/images/*",
        ),
        OODLayout("sun", ("SUN/images",), "flat", "imagenet", "the Huang & Li SUN OOD subset as SUN/images/*"),
        OODLayout(
            "places", ("Places/images",), "flat", "imagenet", "the Huang & Li Places OOD subset as Places/images/*",
        ),
    ]
}
"""Standard OOD sets: ``svhn, lsun_c, lsun_r, isun, textures, places365`` (CIFAR benchmark) and
``inaturalist, sun, places, textures`` (ImageNet benchmark)."""


def build_ood_set(
    name: str,
    root: str,
    transform: Transform | None = None,
    strict: bool = False,
    **overrides: Any,
) -> Dataset | None:
    """Build a standard OOD set from its distributed layout under ``root``; labels are ``-1``.

    ``places365`` (CIFAR benchmark) uses a 10k subset of ``test_256``. The subset is a zoo
    choice: the 10k files with the smallest ``sha1("0/<relpath>")`` (see :class:`ImageFolderFlat`),
    deterministic for a given file set. The papers each drew their own random 10k, and Places
    results vary with the subset (knn-ood issue #7); pass ``list_file=...`` to use a fixed list
    of relative paths instead, or ``max_items=None`` for all images.

    Args:
        name: a key of :data:`OOD_LAYOUTS`.
        root: data root holding the layouts.
        transform: applied to each PIL RGB image.
        strict: if the set's folder is missing, raise instead of warning and returning None.
        **overrides: loader arguments replacing the layout defaults, e.g. ``max_items``,
            ``seed``, ``list_file`` (flat) or ``balanced_per_class`` (svhn).

    Returns:
        The dataset, or None when the folder is missing and ``strict`` is False.

    Raises:
        ZooError: unknown name; missing folder with ``strict``; empty folder; bad file.
    """
    if name not in OOD_LAYOUTS:
        raise ZooError(f"unknown OOD set {name!r}; known: {', '.join(OOD_LAYOUTS)}")
    layout = OOD_LAYOUTS[name]
    path = layout.resolve(root)
    if path is None:
        msg = f"{layout.expected(root)}: not found; expected {layout.description}"
        if strict:
            raise ZooError(msg)
        warnings.warn(f"skipping OOD set {name!r}: {msg}", stacklevel=2)
        return None
    kwargs = {**layout.kwargs, **overrides}
    if layout.loader == "svhn":
        return SVHNMat(str(path), transform=transform, as_ood=True, **kwargs)
    return ImageFolderFlat(str(path), transform=transform, expected=layout.description, **kwargs)


def build_id_set(
    name: Literal["cifar10", "cifar100", "imagenet"],
    root: str,
    train: bool,
    transform: Transform | None = None,
) -> Dataset:
    """Build an in-distribution set: CIFAR pickles under ``root``, or ``root/{train,val}``."""
    if name in _CIFAR_SPEC:
        return CIFARPickles(root, which=name, train=train, transform=transform)  # type: ignore[arg-type]
    if name == "imagenet":
        return ImageNetFolder(root, split="train" if train else "val", transform=transform)
    raise ZooError(f"unknown ID set {name!r}; known: cifar10, cifar100, imagenet")


# ------------------------------------------------------------------------------------ datamodule
_STATS = {
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}
_DEFAULT_OOD = {
    "cifar10": ["svhn", "lsun_c", "isun", "textures", "places365"],
    "cifar100": ["svhn", "lsun_c", "isun", "textures", "places365"],
    "imagenet": ["inaturalist", "sun", "places", "textures"],
}


class OODBenchmark(OODDataModule):
    """A real OOD benchmark from local files in their distributed formats (nothing is downloaded).

    ID train minus ``val_size`` held-out images (seeded) trains the model and fills the kNN bank;
    the held-out images are the ID validation set that fixes the 95%-TPR threshold (a zoo choice:
    the papers use no validation split). ID test is the official test split (ImageNet: ``val/``).
    For a user's own classes and OOD folders, use :class:`OODFolders` instead.

    Args:
        root: data root holding ``cifar-10-batches-py/`` / ``cifar-100-python/`` or ImageNet's
            ``train/`` and ``val/``.
        id_dataset: ``cifar10``, ``cifar100`` or ``imagenet``.
        ood_root: root of the OOD layouts (default: ``root``); see :data:`OOD_LAYOUTS`.
        ood_sets: OOD set names (default: the paper's sets for ``id_dataset``); a missing folder
            is skipped with a warning unless ``strict``.
        val_size: ID train images held out for validation (0 = none: the threshold is then fixed
            on ID test).
        average: OOD sets averaged into the headline metrics (default: all found).
        mean, std: normalisation (default: the ID dataset's own statistics; the official MODE
            code used CIFAR-10's for CIFAR-100 too).
        **kwargs: see :class:`datamodules.ood.base.OODDataModule`.

    Raises:
        ZooError: unknown ``id_dataset`` or OOD set names, an argument out of range (before any
            file is read); missing or malformed files (in :meth:`setup`).
    """

    def __init__(self, root: str, id_dataset: Literal["cifar10", "cifar100", "imagenet"] = "cifar10",
                 ood_root: str | None = None, ood_sets: list[str] | None = None, strict: bool = False,
                 val_size: int = 1000, val_seed: int = 0, average: list[str] | None = None,
                 batch_size: int = 128, eval_batch_size: int = 512, num_workers: int = 4, n_views: int = 1,
                 augment: Literal["none", "ce", "contrastive"] = "ce", image_size: int | None = None,
                 resize: int | None = None, mean: list[float] | None = None, std: list[float] | None = None,
                 crop_scale_min: float = 0.2, hflip: bool = True) -> None:
        if id_dataset not in _STATS:
            raise ZooError(f"{arg('id_dataset')} {id_dataset!r}: expected one of {', '.join(_STATS)}")
        big = id_dataset == "imagenet"
        m, s = _STATS[id_dataset]
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         n_views=n_views, augment=augment,
                         image_size=image_size if image_size is not None else (224 if big else 32),
                         resize=resize if resize is not None else (256 if big else 32),
                         mean=mean if mean is not None else m, std=std if std is not None else s,
                         crop_scale_min=crop_scale_min, hflip=hflip)
        self.save_hyperparameters()
        ood_sets = list(_DEFAULT_OOD[id_dataset] if ood_sets is None else ood_sets)
        if not ood_sets:
            raise ZooError(f"{arg('ood_sets')} is empty; expected names among {list(OOD_LAYOUTS)}")
        check_names("ood_sets", ood_sets, OOD_LAYOUTS, "OOD set(s)")
        if average is not None:
            check_names("average", average, ood_sets, "OOD set(s) to average (not in --data.init_args.ood_sets)")
        check_int("val_size", val_size, 0)
        check_int("val_seed", val_seed, 0)
        if not isinstance(strict, bool):
            raise ZooError(f"{arg('strict')} must be true or false, got {strict!r}")
        self.root, self.id_dataset = root, id_dataset
        self.ood_root = ood_root or root
        self.ood_sets = ood_sets
        self.strict, self.val_size, self.val_seed = strict, val_size, val_seed
        self.average = average

    def _build(self) -> dict[str, Any]:
        from torch.utils.data import Subset

        if not Path(self.root).exists():
            raise ZooError(f"{arg('root')} {self.root}: not found; expected the {self.id_dataset} files there")
        train_full = build_id_set(self.id_dataset, self.root, train=True)
        test = build_id_set(self.id_dataset, self.root, train=False)
        n = len(train_full)
        if self.val_size >= n:
            raise ZooError(f"{arg('val_size')} {self.val_size}: must be smaller than the {n} ID train images")
        perm = np.random.default_rng(self.val_seed).permutation(n)
        val_idx, train_idx = sorted(perm[: self.val_size].tolist()), sorted(perm[self.val_size:].tolist())
        val = Subset(train_full, val_idx) if self.val_size else test
        ood = {}
        for name in self.ood_sets:
            ds = build_ood_set(name, self.ood_root, strict=self.strict)
            if ds is not None:
                ood[name] = ds
        if not ood:
            raise ZooError(f"{arg('ood_root')} {self.ood_root}: none of the OOD sets {self.ood_sets} was found")
        classes = list(getattr(train_full, "classes", []) or [str(i) for i in range(len(set(train_full.targets)))])
        return {"train": Subset(train_full, train_idx), "val": val, "test": test, "val_ood": {},
                "test_ood": ood, "average": self.average or list(ood), "classes": classes}


# ---------------------------------------------------------------------------- a user's own data


class ClassFolders(Dataset):
    """One split of a class-folder tree: ``<split_dir>/<class>/**/<image>``, labelled by class.

    Classes are the sorted names of the non-hidden sub-folders of ``split_dir`` (label = index in
    that order, as in torchvision's ``ImageFolder``). Inside a class folder, images are found
    recursively (:func:`list_images`: jpg, jpeg, png, bmp, webp, case-insensitive; hidden files
    and folders skipped), in sorted relative-path order.

    Args:
        split_dir: the split folder, e.g. ``<root>/train``.
        transform: applied to the PIL RGB image.
        arg_name: the argument that names the tree, for messages (``--data.init_args.root``).
        samples: ``(path, label)`` pairs to use instead of listing ``split_dir`` (with ``classes``).
        classes: class names of ``samples``.

    Attributes:
        classes, samples (list of (path, label)), targets.

    Raises:
        ZooError: ``split_dir`` missing; no class folders; a class folder without images; image
            files directly in ``split_dir`` (outside any class folder).
    """

    def __init__(self, split_dir: str, transform: Transform | None = None, arg_name: str = "root",
                 samples: list[tuple[str, int]] | None = None, classes: list[str] | None = None) -> None:
        d = Path(split_dir)
        self.root, self.transform = str(d), transform
        if samples is not None:
            self.classes, self.samples = list(classes or []), list(samples)
        else:
            self.classes, self.samples = self._scan(d, arg_name)
        self.targets: list[int] = [t for _, t in self.samples]

    @staticmethod
    def _scan(d: Path, arg_name: str) -> tuple[list[str], list[tuple[str, int]]]:
        expected = f"a class-folder split {d}/<class>/<image> (one sub-folder per class)"
        if not d.is_dir():
            what = "not a directory" if d.exists() else "not found"
            raise ZooError(f"{arg(arg_name)}: {d}: {what}; expected {expected}")
        classes = sorted(e.name for e in d.iterdir() if e.is_dir() and not e.name.startswith("."))
        loose = [e.name for e in sorted(d.iterdir())
                 if e.is_file() and not e.name.startswith(".") and e.suffix.lower() in IMAGE_EXTENSIONS]
        if loose:
            raise ZooError(f"{arg(arg_name)}: {d}: {len(loose)} image(s) directly in the split folder "
                           f"(e.g. {loose[0]}); expected {expected}")
        if not classes:
            raise ZooError(f"{arg(arg_name)}: {d}: no class folders; expected {expected}")
        samples: list[tuple[str, int]] = []
        for label, c in enumerate(classes):
            files = list_images(d / c)
            if not files:
                raise ZooError(f"{arg(arg_name)}: {d / c}: class folder without images (looked recursively for "
                               f"{', '.join(IMAGE_EXTENSIONS)}); remove it or add images")
            samples += [(str(d / c / f), label) for f in files]
        return classes, samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label = self.samples[i]
        return _item(load_rgb(path), label, self.transform)


def _split_per_class(ds: ClassFolders, fraction: float, seed: int) -> tuple[ClassFolders, ClassFolders]:
    """Hold out ``floor(fraction * n_c + 0.5)`` images of each class (at most ``n_c - 1``): those whose
    ``sha1(f"{seed}/{relpath}")`` is smallest (:func:`_hash_subset`). Returns ``(train, val)``."""
    by_class: dict[int, list[str]] = {}
    for path, label in ds.samples:
        by_class.setdefault(label, []).append(os.path.relpath(path, ds.root))
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for label in sorted(by_class):
        rel = by_class[label]
        k = min(int(math.floor(fraction * len(rel) + 0.5)), len(rel) - 1)
        held = set(_hash_subset(rel, k, seed)) if k > 0 else set()
        for r in rel:
            (val if r in held else train).append((os.path.join(ds.root, r), label))
    return (ClassFolders(ds.root, samples=train, classes=ds.classes),
            ClassFolders(ds.root, samples=val, classes=ds.classes))


_OOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _ood_folders(arg_name: str, folders: dict[str, str]) -> dict[str, ImageFolderFlat]:
    out = {}
    for name, path in folders.items():
        d = Path(path)
        if not d.is_dir():
            what = "not a directory" if d.exists() else "not found"
            raise ZooError(f"{arg(arg_name)}: {name!r} -> {d}: {what}; expected a folder of images "
                           f"(searched recursively)")
        out[name] = ImageFolderFlat(str(d), expected=f"OOD set {name!r} of {arg(arg_name)} as a folder of images")
    return out


class OODFolders(OODDataModule):
    """A user's own data: an ID class-folder tree and any number of OOD image folders.

    Layout (class names = the sorted sub-folder names of ``train/``; ``test/`` and ``val/`` must
    hold the same class folders; images are found recursively inside each class folder)::

        <root>/train/<class>/**/<image>     ID training images (also the kNN bank)
        <root>/test/<class>/**/<image>      ID test images
        <root>/val/<class>/**/<image>       optional: ID validation images (the 95%-TPR threshold)
        <ood[name]>/**/<image>              one folder per OOD set, flat or nested, labels -1

    Without ``val/``, a seeded per-class split of ``train/`` is the validation set (a zoo choice):
    of each class's ``n`` training images, ``val_fraction * n`` rounded half up (at most ``n - 1``) are
    held out, namely those with the smallest ``sha1(f"{val_seed}/<path relative to train/>")``. The
    held-out images are used neither for training nor in the bank; the split depends only on the
    file names and the seed. With ``val_fraction=0`` (and no ``val/``) the threshold is fixed on
    ID test.

    Test metrics are reported per OOD set under its given name (``test/<name>/auroc``, ...), and
    the sets in ``average`` (default: all) are averaged into ``test/auroc`` / ``test/fpr95``.
    Validation OOD sets (``val_ood``) are optional; without them validation logs ID accuracy only,
    so a checkpoint should monitor ``val/acc`` (``configs/mode/folders.yaml`` does).

    Args:
        root: the ID tree holding ``train/``, ``test/`` and optionally ``val/``.
        ood: OOD test sets as ``{name: folder}``; names may use letters, digits, ``_ . -``.
        val_ood: optional OOD validation sets as ``{name: folder}`` (monitoring only).
        average: OOD test sets averaged into the headline metrics (default: all of ``ood``).
        val_fraction: per-class share of ``train/`` held out for validation when there is no
            ``val/``, in [0, 1).
        val_seed: seed of that split.
        image_size: training crop and eval centre-crop size.
        resize: eval resize of the shorter side (default: ``image_size``).
        mean, std: normalisation (default: ImageNet's statistics, a zoo choice for photos).
        **kwargs: see :class:`datamodules.ood.base.OODDataModule`.

    Raises:
        ZooError: an argument out of range or a bad OOD name (when built); a missing root or
            split, no class folders, a class folder without images, different class sets in
            train/test/val, a missing or empty OOD folder (in :meth:`setup`, before training).
    """

    def __init__(self, root: str, ood: dict[str, str] | None = None, val_ood: dict[str, str] | None = None,
                 average: list[str] | None = None, val_fraction: float = 0.1, val_seed: int = 0,
                 batch_size: int = 64, eval_batch_size: int = 256, num_workers: int = 4, n_views: int = 1,
                 augment: Augment = "ce", image_size: int = 32, resize: int | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None, crop_scale_min: float = 0.2,
                 crop_ratio: list[float] | None = None, hflip: bool = True) -> None:
        m, s = _STATS["imagenet"]
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         n_views=n_views, augment=augment, image_size=image_size, resize=resize,
                         mean=mean if mean is not None else m, std=std if std is not None else s,
                         crop_scale_min=crop_scale_min, crop_ratio=crop_ratio, hflip=hflip)
        self.save_hyperparameters()
        if not isinstance(root, str) or not root:
            raise ZooError(f"{arg('root')} must be the folder holding train/ and test/, got {root!r}")
        for key, folders in (("ood", ood), ("val_ood", val_ood)):
            if folders is None:
                continue
            if not isinstance(folders, dict):
                raise ZooError(f"{arg(key)} must map names to folders, e.g. '{{\"textures\": \"/data/dtd/images\"}}', "
                               f"got {folders!r}")
            for name, path in folders.items():
                if not isinstance(name, str) or not _OOD_NAME.match(name):
                    raise ZooError(f"{arg(key)}: OOD set name {name!r}; expected letters, digits, '_', '.' or '-' "
                                   f"(it becomes the metric key test/<name>/auroc)")
                if not isinstance(path, str) or not path:
                    raise ZooError(f"{arg(key)}: {name!r} -> {path!r}; expected a folder path")
        self.ood, self.val_ood = dict(ood or {}), dict(val_ood or {})
        if average is not None:
            if not average:
                raise ZooError(f"{arg('average')} is empty; expected names among {list(self.ood)} (or leave it unset)")
            check_names("average", average, self.ood, "OOD set(s) to average (not in --data.init_args.ood)")
        if not is_number(val_fraction) or not 0 <= val_fraction < 1:
            raise ZooError(f"{arg('val_fraction')} must be in [0, 1), got {val_fraction!r}")
        check_int("val_seed", val_seed, 0)
        self.root, self.average = root, (list(average) if average is not None else None)
        self.val_fraction, self.val_seed = float(val_fraction), val_seed

    def _build(self) -> dict[str, Any]:
        r = Path(self.root)
        if not r.is_dir():
            what = "not a directory" if r.exists() else "not found"
            raise ZooError(f"{arg('root')} {r}: {what}; expected a class-folder tree {r}/train/<class>/<image> "
                           f"and {r}/test/<class>/<image> (optional {r}/val/<class>/<image>)")
        train = ClassFolders(str(r / "train"))
        test = ClassFolders(str(r / "test"))
        splits = {"test": test}
        if (r / "val").exists():
            val = ClassFolders(str(r / "val"))
            splits["val"] = val
        for name, ds in splits.items():
            if ds.classes != train.classes:
                only_train = sorted(set(train.classes) - set(ds.classes))
                only_here = sorted(set(ds.classes) - set(train.classes))
                raise ZooError(f"{arg('root')} {r}: {name}/ and train/ hold different class folders (only in train/: "
                               f"{only_train[:5]}, only in {name}/: {only_here[:5]}); expected the same classes")
        if "val" in splits:
            val = splits["val"]
        elif self.val_fraction > 0:
            train, val = _split_per_class(train, self.val_fraction, self.val_seed)
            if len(val) == 0:
                warnings.warn(f"{arg('val_fraction')}={self.val_fraction} holds out no image (every class of {r}/train "
                              "has too few); the 95%-TPR threshold is fixed on ID test", stacklevel=2)
                val = test
        else:
            val = test
        if not self.ood:
            warnings.warn(f"{arg('ood')} is empty: the test stage reports ID accuracy only (no OOD metrics)",
                          stacklevel=2)
        test_ood = _ood_folders("ood", self.ood)
        val_ood = _ood_folders("val_ood", self.val_ood)
        return {"train": train, "val": val, "test": test, "val_ood": val_ood, "test_ood": test_ood,
                "average": self.average or list(test_ood), "classes": list(train.classes)}
