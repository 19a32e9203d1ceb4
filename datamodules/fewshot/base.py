"""The few-shot base-to-new datamodule of CoOp/CoCoOp/DePT (CLIP prompt tuning).

Protocol (CoCoOp's base-to-new generalisation): the split of :func:`~datamodules.fewshot.real.read_split`
is few-shot sampled over all classes (K per class in train, ``min(K, 4)`` in val), then cut
into base classes (first half of the labels) and new classes (the rest). Training and validation
use the base classes; testing reports base and new accuracy separately.

Loaders:

- ``train_dataloader()``: few-shot train of ``train_classes`` (``base`` by default), augmented.
- ``val_dataloader()``: few-shot val of the base classes.
- ``test_dataloader()``: ``[base test, new test]`` (names in ``test_set_names``).

Batches are ``{"image": float [B, 3, S, S], "label": long [B], "index": long [B]}``; labels index
``classnames["base"]`` / ``classnames["new"]`` (each relabelled from 0) or ``classnames["all"]``,
and ``index`` is the item's position in its loader's dataset (under DDP, Lightning's
``DistributedSampler`` pads the eval sets with repeated items; the model de-duplicates by it).

Your own data: ``dataset="folder"`` with ``root`` = a class-folder tree (``root/<class>/*.jpg``,
or ``root/{train,test}/<class>/`` with optional ``val/``; a ``split_zhou_*.json`` in ``root`` is
used when present, else the fallback 50/20/30 split flagged "not comparable"); see
:func:`datamodules.fewshot.real.read_class_folders`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from datamodules.fewshot.real import (DATASETS, FOLDER, FOLDER_TEMPLATE, Datum, FullSplit, fewshot, read_split,
                                     subsample_classes)
from datamodules.common.images import load_rgb
from datamodules.common.sampling import SeededShuffle
from datamodules.common.transforms import CLIP_MEAN, CLIP_STD, eval_transform, fewshot_eval_spec, fewshot_train_transform
from zoo.core.errors import ZooError
from zoo.core.io import cache_root

class ImageFileDataset(Dataset):
    """Image files on disk -> ``{"image": transform(RGB image), "label": int, "index": int}``.

    Args:
        data: the items.
        transform: applied to the PIL RGB image; its output is returned as a plain tensor.

    Raises:
        ZooError: (from ``__getitem__``) an unreadable image, naming the file.
    """

    def __init__(self, data: Sequence[Datum], transform: Callable) -> None:
        self.data, self.transform = list(data), transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        d = self.data[i]
        image = self.transform(load_rgb(d.path))
        if isinstance(image, torch.Tensor):
            image = image.as_subclass(torch.Tensor)
        return {"image": image, "label": int(d.label), "index": i}


class FewShotDataModule(SeededShuffle, LightningDataModule):
    """Few-shot base-to-new data for CLIP prompt tuning: CoOp's datasets or your own class folders.

    Your own data: ``--data.init_args.dataset folder --data.init_args.root /data/mypets`` with
    ``/data/mypets/<class>/*.jpg`` (split by ``/data/mypets/split_zhou_*.json`` if present, else a
    fallback 50/20/30 per-class split flagged "not comparable"), or ``/data/mypets/train/<class>/``
    + ``test/<class>/`` (+ optional ``val/<class>/``). Classes are the sorted folder names; base =
    the first half, new = the rest.

    Args:
        root: the class-folder tree (``dataset=folder``), or the data root holding CoOp's datasets
            in their DATASETS.md layout (see :mod:`datamodules.fewshot.real`).
        dataset: ``folder`` (your own class folders, the default) or a CoOp dataset: imagenet,
            caltech101, oxford_pets, stanford_cars, oxford_flowers, food101, fgvc_aircraft, sun397,
            dtd, eurosat, ucf101 (or shapes_b2n).
        num_shots: training images per class (>= 1, or -1 for all); val gets ``min(num_shots, 4)``.
        seed: few-shot sampling seed (CoOp: 1, 2, 3).
        image_size: training crop and eval resize/crop side (224 for ViT-B/16; 32 for the tiny CLIP).
        batch_size: training batch size (per process under DDP).
        eval_batch_size: val/test batch size (per process under DDP).
        num_workers: DataLoader workers (persistent when > 0).
        crop_scale_min: RandomResizedCrop lower area bound, in (0, 1].
        hflip: random horizontal flips in training.
        cache_dir: where the few-shot draws are cached (default ``$ZOO_CACHE`` or ``~/.cache/zoo``).
        train_classes: train on the ``base`` classes (the protocol) or on ``all`` classes.
        template: the zero-shot hand prompt with ``{}`` for the class name (default: the dataset's,
            CoOp's zero-shot CLIP ``CUSTOM_TEMPLATES``; ``"a photo of a {}."`` for class folders).
        mean: normalisation mean, 3 values (default CLIP's).
        std: normalisation std, 3 positive values (default CLIP's).
        split_file: ``dataset=folder`` only: the split JSON (default ``root/split_zhou_*.json``);
            its paths are relative to ``root``.
    """

    def __init__(self, root: str, dataset: str = FOLDER, num_shots: int = 16, seed: int = 1, image_size: int = 224,
                 batch_size: int = 4, eval_batch_size: int = 100, num_workers: int = 4,
                 crop_scale_min: float = 0.08, hflip: bool = True, cache_dir: str | None = None,
                 train_classes: Literal["base", "all"] = "base", template: str | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 split_file: str | None = None) -> None:
        super().__init__()
        arg = "--data.init_args."
        if dataset != FOLDER and dataset not in DATASETS:
            raise ZooError(f"{arg}dataset: unknown dataset {dataset!r}; expected {FOLDER!r} (your own class "
                           f"folders) or one of {', '.join(DATASETS)}")
        if train_classes not in ("base", "all"):
            raise ZooError(f"{arg}train_classes must be 'base' or 'all', got {train_classes!r}")
        if isinstance(num_shots, bool) or not (num_shots >= 1 or num_shots == -1):
            raise ZooError(f"{arg}num_shots must be >= 1 (or -1 for all images), got {num_shots}")
        for name, value in (("image_size", image_size), ("batch_size", batch_size),
                            ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ZooError(f"{arg}{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ZooError(f"{arg}num_workers must be >= 0, got {num_workers}")
        if not 0 < crop_scale_min <= 1:
            raise ZooError(f"{arg}crop_scale_min must be in (0, 1], got {crop_scale_min}")
        if template is not None and template.count("{}") != 1:
            raise ZooError(f"{arg}template must hold '{{}}' once (the class name), got {template!r}")
        mean_, std_ = list(CLIP_MEAN if mean is None else mean), list(CLIP_STD if std is None else std)
        if len(mean_) != 3:
            raise ZooError(f"{arg}mean must be 3 values (R, G, B), got {mean}")
        if len(std_) != 3 or min(std_) <= 0:
            raise ZooError(f"{arg}std must be 3 values > 0 (R, G, B), got {std}")
        if split_file is not None and dataset != FOLDER:
            raise ZooError(f"{arg}split_file is for dataset={FOLDER!r} only; {dataset} reads CoOp's split file "
                           f"from its folder")
        if type(self)._root is FewShotDataModule._root:  # (a generated world overrides _root)
            _require_tree(root, dataset)
        self.save_hyperparameters()
        self.root, self.dataset = root, dataset
        self.num_shots, self.seed, self.image_size = num_shots, seed, image_size
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.crop_scale_min, self.hflip = crop_scale_min, hflip
        self.cache_dir, self.train_classes = cache_dir, train_classes
        self.mean, self.std, self.split_file = mean_, std_, split_file
        #: the zero-shot hand prompt (``template.format(class name)``).
        self.template: str = template or (DATASETS[dataset].template if dataset in DATASETS else FOLDER_TEMPLATE)
        self.comparable: bool = True
        self.note: str = ""
        self.classnames: dict[str, list[str]] = {}
        self.test_set_names: list[str] = ["base", "new"]
        self.val_set_names: list[str] = ["base"]
        self._splits: dict[str, FullSplit] | None = None

    # -- hooks ---------------------------------------------------------------------------------
    def _root(self) -> str:
        """The data root (subclasses generating their data override this to generate first)."""
        return self.root

    def _read(self) -> FullSplit:
        """The full split over all classes (default: :func:`read_split` of ``_root()``)."""
        return read_split(self._root(), self.dataset, self.split_file)

    def _cache_dir(self) -> str:
        return self.cache_dir or str(cache_root())

    # -- lightning -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read, few-shot sample (all classes) and split base/new; idempotent."""
        if self._splits is not None:
            return
        full = self._read()
        if self.train_classes == "base" and len(full.classnames) < 2:
            raise ZooError(f"{self._root() or self.dataset}: {len(full.classnames)} class; the base-to-new protocol "
                           "needs at least 2 (base = the first half of the sorted classes, new = the rest)")
        few = fewshot(full, self.num_shots, self.seed, self._cache_dir())
        self._splits = {w: subsample_classes(few, w) for w in ("base", "new", "all")}  # type: ignore[arg-type]
        self.classnames = {w: list(s.classnames) for w, s in self._splits.items()}
        self.comparable, self.note = full.comparable, full.note

    def split(self, which: Literal["base", "new", "all"]) -> FullSplit:
        """The few-shot split of the ``base``, ``new`` or ``all`` classes (after setup)."""
        self.setup()
        assert self._splits is not None
        return self._splits[which]

    @property
    def num_classes(self) -> int:
        """Number of training classes (``len(classnames[train_classes])``)."""
        return len(self.split(self.train_classes).classnames)

    def eval_transform_spec(self) -> dict[str, Any]:
        """The eval preprocessing and the class names of the trained head (stored in checkpoints)."""
        self.setup()
        return {**self._eval_spec(), "classes": list(self.classnames[self.train_classes])}

    def _eval_spec(self) -> dict[str, Any]:
        return fewshot_eval_spec(self.image_size, self.mean, self.std)

    def _loader(self, data: Sequence[Datum], transform: Callable, train: bool) -> DataLoader:
        ds = ImageFileDataset(data, transform)
        return DataLoader(ds, batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train,
                          generator=self.train_generator() if train else None,
                          drop_last=train and len(ds) >= self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        tf = fewshot_train_transform(self.image_size, (self.crop_scale_min, 1.0), self.hflip, self.mean, self.std)
        return self._loader(self.split(self.train_classes).train, tf, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split("base").val, eval_transform(self._eval_spec()), train=False)

    def test_dataloader(self) -> list[DataLoader]:
        tf = eval_transform(self._eval_spec())
        return [self._loader(self.split(w).test, tf, train=False) for w in self.test_set_names]

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()[0]


def _require_tree(root: str, dataset: str) -> None:
    """Fail at construction (before any model is built or trained) when the data folder is not there."""
    if not root:
        raise ZooError("--data.init_args.root is required: your class-folder tree (with dataset=folder) or "
                       "the folder holding CoOp's datasets")
    path = os.path.abspath(os.path.expanduser(root))
    if dataset == FOLDER:
        expected = ("your class-folder tree (--data.init_args.root): <root>/<class>/*.jpg, or "
                    "<root>/train/<class>/ and <root>/test/<class>/ (optional val/)")
    else:
        path = os.path.join(path, DATASETS[dataset].folder)
        expected = f"the {dataset} folder of CoOp's DATASETS.md layout under --data.init_args.root {root}"
    if not os.path.isdir(path):
        state = "not a directory" if os.path.exists(path) else "not found"
        raise ZooError(f"{path}: {state}; expected {expected}")
