"""The contract shared by the OOD datamodules (procedural world and real benchmarks).

Loaders:

- ``train_dataloader()``: ID train, augmented; ``image`` and, with ``n_views=2``, ``image_view2``.
- ``val_dataloader()``: ``[ID val, *val OOD sets]`` (names in ``val_set_names``).
- ``test_dataloader()``: ``[ID test, *OOD test sets]`` (names in ``test_set_names``).
- ``bank_dataloader()``: ID train with the eval transform, unshuffled (the kNN bank of KNN/CSD).

``average_names`` lists the OOD sets averaged into the headline ``test/auroc`` / ``test/fpr95``
(others, e.g. the world's ``ood_bg``, are reported as diagnostics only).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.common.transforms import ArrayDataset, Augment, TransformedArrays, eval_transform, train_transform

__all__ = ["ArrayDataset", "Augment", "MultiView", "OODDataModule", "TransformedArrays", "eval_transform",
           "train_transform"]

class MultiView(Dataset):
    """Wraps a dataset of ``{"image": raw, "label": int}`` and applies ``transform`` ``n_views`` times."""

    def __init__(self, base: Dataset, transform: Callable, n_views: int = 1) -> None:
        self.base, self.transform, self.n_views = base, transform, n_views

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        raw = item["image"]
        out = {"image": self.transform(raw), "label": int(item["label"])}
        if self.n_views == 2:
            out["image_view2"] = self.transform(raw)
        return out


class OODDataModule(LightningDataModule):
    """Base class: subclasses implement :meth:`_build` returning raw (untransformed) datasets.

    Args:
        batch_size: training batch size (images; with two views the model sees 2x).
        eval_batch_size: batch size for val/test/bank passes.
        num_workers: DataLoader workers (0 = main process, best for tiny data on 2 cores).
        n_views: 1, or 2 for contrastive/ALPA objectives (two augmented crops per image).
        augment: ``ce``, ``contrastive`` or ``none``.
        image_size: training crop size; eval uses ``resize`` then a ``image_size`` centre crop.
        resize: eval resize (CIFAR: 32; ImageNet: 256). Default: ``image_size``.
        mean, std: normalisation statistics.
        crop_scale_min: RandomResizedCrop lower scale bound.
        crop_ratio: RandomResizedCrop aspect-ratio range.
        hflip: random horizontal flips in training.
    """

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 256, num_workers: int = 0,
                 n_views: int = 1, augment: Augment = "ce", image_size: int = 32, resize: int | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 crop_scale_min: float = 0.2, crop_ratio: list[float] | None = None, hflip: bool = True) -> None:
        super().__init__()
        if n_views not in (1, 2):
            raise ValueError(f"--data.n_views must be 1 or 2, got {n_views}")
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.n_views, self.augment, self.image_size = n_views, augment, image_size
        self.resize = resize or image_size
        self.mean = list(mean or [0.5, 0.5, 0.5])
        self.std = list(std or [0.5, 0.5, 0.5])
        self.crop_scale = (crop_scale_min, 1.0)
        self.crop_ratio = tuple(crop_ratio or [3 / 4, 4 / 3])
        self.hflip = hflip
        self._sets: dict[str, Any] | None = None
        self._eval_cache: dict[int, Dataset] = {}
        self.test_set_names: list[str] = []
        self.val_set_names: list[str] = []
        self.average_names: list[str] = []
        self.class_names: list[str] = []

    # -- subclass hook -------------------------------------------------------------------------
    def _build(self) -> dict[str, Any]:
        """Return ``{"train", "val", "test", "val_ood": {name: ds}, "test_ood": {name: ds},
        "average": [names], "classes": [names]}`` of raw datasets yielding ``{"image", "label"}``."""
        raise NotImplementedError

    # -- lightning -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._sets is not None:
            return
        sets = self._build()
        self._sets = sets
        self.val_set_names = list(sets["val_ood"])
        self.test_set_names = list(sets["test_ood"])
        self.average_names = [n for n in sets.get("average", self.test_set_names) if n in self.test_set_names]
        self.class_names = list(sets["classes"])

    def eval_transform_spec(self) -> dict[str, Any]:
        return {"resize": self.resize, "crop": self.image_size, "mean": self.mean, "std": self.std,
                "classes": list(self.class_names)}

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.class_names)

    def _eval(self, ds: Dataset) -> DataLoader:
        tf = eval_transform(self.eval_transform_spec())
        if isinstance(ds, ArrayDataset):
            # in-memory uint8 images: the eval transform is deterministic, so apply it once, batched
            key = id(ds)
            if key not in self._eval_cache:
                self._eval_cache[key] = TransformedArrays(tf(ds.images).as_subclass(torch.Tensor), ds.labels)
            return DataLoader(self._eval_cache[key], batch_size=self.eval_batch_size, shuffle=False)
        return DataLoader(MultiView(ds, tf), batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        tf = train_transform(self.image_size, self.augment, self.mean, self.std, self.crop_scale, self.crop_ratio,
                             self.hflip)
        return DataLoader(MultiView(self._sets["train"], tf, self.n_views), batch_size=self.batch_size, shuffle=True,
                          drop_last=True, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> list[DataLoader]:
        self.setup()
        return [self._eval(self._sets["val"])] + [self._eval(d) for d in self._sets["val_ood"].values()]

    def test_dataloader(self) -> list[DataLoader]:
        self.setup()
        return [self._eval(self._sets["test"])] + [self._eval(d) for d in self._sets["test_ood"].values()]

    def bank_dataloader(self) -> DataLoader:
        """ID train images with the eval transform, in a fixed order (the kNN bank)."""
        self.setup()
        return self._eval(self._sets["train"])

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()[0]
