"""The few-shot base-to-new datamodule of CoOp/CoCoOp/DePT (CLIP prompt tuning).

Protocol (CoCoOp's base-to-new generalisation): the split of :func:`~datamodules.fewshot.real.read_split`
is few-shot sampled over all classes (K per class in train, ``min(K, 4)`` in val), then cut
into base classes (first half of the labels) and new classes (the rest). Training and validation
use the base classes; testing reports base and new accuracy separately.

Loaders:

- ``train_dataloader()``: few-shot train of ``train_classes`` (``base`` by default), augmented.
- ``val_dataloader()``: few-shot val of the base classes.
- ``test_dataloader()``: ``[base test, new test]`` (names in ``test_set_names``).

Batches are ``{"image": float [B, 3, S, S], "label": long [B]}``; labels index
``classnames["base"]`` / ``classnames["new"]`` (each relabelled from 0) or ``classnames["all"]``.
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

from datamodules.fewshot.real import DATASETS, Datum, FullSplit, fewshot, read_split, subsample_classes
from datamodules.common.images import load_rgb
from datamodules.common.transforms import CLIP_MEAN, CLIP_STD, eval_transform, fewshot_eval_spec, fewshot_train_transform
from zoo.core.errors import ZooError
from zoo.core.io import cache_root

class ImageFileDataset(Dataset):
    """Image files on disk -> ``{"image": transform(RGB image), "label": int}``.

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
        return {"image": image, "label": int(d.label)}


class FewShotDataModule(LightningDataModule):
    """Few-shot base-to-new data for CLIP prompt tuning on CoOp's datasets.

    Args:
        root: data root holding the datasets in CoOp's layout (see :mod:`datamodules.fewshot.real`).
        dataset: registry key, e.g. ``oxford_pets`` (see :data:`~datamodules.fewshot.real.DATASETS`).
        num_shots: training images per class (``-1``: all); val gets ``min(num_shots, 4)``.
        seed: few-shot sampling seed (CoOp: 1, 2, 3).
        image_size: training crop and eval resize/crop side.
        batch_size: training batch size.
        eval_batch_size: val/test batch size.
        num_workers: DataLoader workers (persistent when > 0).
        crop_scale_min: RandomResizedCrop lower area bound.
        hflip: random horizontal flips in training.
        cache_dir: where the few-shot draws are cached (default ``$ZOO_CACHE`` or ``~/.cache/zoo``).
        train_classes: train on the ``base`` classes (the protocol) or on ``all`` classes.
    """

    def __init__(self, root: str, dataset: str, num_shots: int = 16, seed: int = 1, image_size: int = 224,
                 batch_size: int = 4, eval_batch_size: int = 100, num_workers: int = 4,
                 crop_scale_min: float = 0.08, hflip: bool = True, cache_dir: str | None = None,
                 train_classes: Literal["base", "all"] = "base") -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ZooError(f"--data.dataset: unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
        if train_classes not in ("base", "all"):
            raise ZooError(f"--data.train_classes: {train_classes!r}; expected 'base' or 'all'")
        if not 0 < crop_scale_min <= 1:
            raise ZooError(f"--data.crop_scale_min: {crop_scale_min}; expected a value in (0, 1]")
        self.save_hyperparameters()
        self.root, self.dataset = root, dataset
        self.num_shots, self.seed, self.image_size = num_shots, seed, image_size
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.crop_scale_min, self.hflip = crop_scale_min, hflip
        self.cache_dir, self.train_classes = cache_dir, train_classes
        self.template: str = DATASETS[dataset].template
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
        return read_split(self._root(), self.dataset)

    def _cache_dir(self) -> str:
        return self.cache_dir or str(cache_root())

    # -- lightning -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read, few-shot sample (all classes) and split base/new; idempotent."""
        if self._splits is not None:
            return
        full = self._read()
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
        return {**fewshot_eval_spec(self.image_size), "classes": list(self.classnames[self.train_classes])}

    def _loader(self, data: Sequence[Datum], transform: Callable, train: bool) -> DataLoader:
        ds = ImageFileDataset(data, transform)
        return DataLoader(ds, batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train,
                          drop_last=train and len(ds) >= self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        tf = fewshot_train_transform(self.image_size, (self.crop_scale_min, 1.0), self.hflip)
        return self._loader(self.split(self.train_classes).train, tf, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split("base").val, eval_transform(fewshot_eval_spec(self.image_size)), train=False)

    def test_dataloader(self) -> list[DataLoader]:
        tf = eval_transform(fewshot_eval_spec(self.image_size))
        return [self._loader(self.split(w).test, tf, train=False) for w in self.test_set_names]

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()[0]
