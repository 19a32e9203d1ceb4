"""The contract shared by the OOD datamodules (procedural world and real benchmarks).

Loaders:

- ``train_dataloader()``: ID train, augmented; ``image`` and, with ``n_views=2``, ``image_view2``.
- ``val_dataloader()``: ``[ID val, *val OOD sets]`` (names in ``val_set_names``).
- ``test_dataloader()``: ``[ID test, *OOD test sets]`` (names in ``test_set_names``).
- ``bank_dataloader()``: ID train with the eval transform, unshuffled (the kNN bank of KNN/CSD).

``average_names`` lists the OOD sets averaged into the headline ``test/auroc`` / ``test/fpr95``
(others, e.g. the world's ``ood_bg``, are reported as diagnostics only).

Arguments are checked when the datamodule is built, before any training: a bad value raises a
one-line :class:`~zoo.core.errors.ZooError` naming the argument as the command line spells it,
e.g. ``--data.init_args.batch_size must be >= 1, got 0``. :meth:`OODDataModule.setup`
then checks the data against the batch size and against the model's ``num_classes``.
"""

from __future__ import annotations

from typing import Any, Callable

import math
from collections.abc import Iterable
from typing import get_args

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.common.sampling import SeededShuffle
from datamodules.common.transforms import ArrayDataset, Augment, TransformedArrays, eval_transform, train_transform
from zoo.core.errors import ZooError

__all__ = ["ArrayDataset", "Augment", "MultiView", "OODDataModule", "TransformedArrays", "arg", "check_int",
           "check_names", "eval_transform", "is_int", "is_number", "train_transform"]


# ------------------------------------------------------------------------------ argument checks
def arg(name: str) -> str:
    """A datamodule argument as the command line spells it: ``--data.init_args.<name>``."""
    return f"--data.init_args.{name}"


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_int(name: str, value: Any, minimum: int) -> None:
    """Raise ``ZooError("--data.init_args.<name> must be >= <minimum>, got <value>")`` (or ``must be an
    integer`` for a non-int)."""
    if not is_int(value):
        raise ZooError(f"{arg(name)} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ZooError(f"{arg(name)} must be >= {minimum}, got {value}")


def check_names(name: str, values: Iterable[str], allowed: Iterable[str], what: str) -> None:
    """Raise a one-line ZooError when ``values`` holds a name outside ``allowed``."""
    allowed = list(allowed)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ZooError(f"{arg(name)}: unknown {what} {bad}; expected names among {allowed}")


def _check_common(batch_size: Any, eval_batch_size: Any, num_workers: Any, n_views: Any, augment: Any,
                  image_size: Any, resize: Any, mean: Any, std: Any, crop_scale_min: Any, crop_ratio: Any,
                  hflip: Any) -> None:
    check_int("batch_size", batch_size, 1)
    check_int("eval_batch_size", eval_batch_size, 1)
    check_int("num_workers", num_workers, 0)
    if n_views not in (1, 2) or not is_int(n_views):
        raise ZooError(f"{arg('n_views')} must be 1 or 2, got {n_views!r}")
    if augment not in get_args(Augment):
        raise ZooError(f"{arg('augment')} must be one of {list(get_args(Augment))}, got {augment!r}")
    check_int("image_size", image_size, 1)
    if resize is not None:
        check_int("resize", resize, 1)
        if resize < image_size:
            raise ZooError(f"{arg('resize')} must be >= --data.init_args.image_size={image_size} (eval resizes "
                           f"the shorter side to resize, then centre-crops image_size), got {resize}")
    for key, v in (("mean", mean), ("std", std)):
        if v is None:
            continue
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(is_number(x) for x in v):
            raise ZooError(f"{arg(key)} must be 3 numbers (R, G, B), got {v!r}")
    if std is not None and min(std) <= 0:
        raise ZooError(f"{arg('std')} must be 3 positive numbers (R, G, B), got {list(std)!r}")
    if not is_number(crop_scale_min) or not 0 < crop_scale_min <= 1:
        raise ZooError(f"{arg('crop_scale_min')} must be in (0, 1], got {crop_scale_min!r}")
    if crop_ratio is not None:
        ok = (isinstance(crop_ratio, (list, tuple)) and len(crop_ratio) == 2 and all(is_number(x) for x in crop_ratio)
              and 0 < crop_ratio[0] <= crop_ratio[1])
        if not ok:
            raise ZooError(f"{arg('crop_ratio')} must be [min, max] aspect ratios with 0 < min <= max, "
                           f"got {crop_ratio!r}")
    if not isinstance(hflip, bool):
        raise ZooError(f"{arg('hflip')} must be true or false, got {hflip!r}")


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


class OODDataModule(SeededShuffle, LightningDataModule):
    """Base class: subclasses implement :meth:`_build` returning raw (untransformed) datasets.

    Args:
        batch_size: training batch size (images; with two views the model sees 2x).
        eval_batch_size: batch size for val/test/bank passes.
        num_workers: DataLoader workers (0 = main process, best for tiny data on 2 cores).
        n_views: 1, or 2 for contrastive/ALPA objectives (two augmented crops per image).
        augment: ``ce``, ``contrastive`` or ``none``.
        image_size: training crop size; eval uses ``resize`` then a ``image_size`` centre crop.
        resize: eval resize (CIFAR: 32; ImageNet: 256). Default: ``image_size``.
        mean, std: normalisation statistics (3 numbers each, std > 0).
        crop_scale_min: RandomResizedCrop lower scale bound, in (0, 1].
        crop_ratio: RandomResizedCrop aspect-ratio range ``[min, max]``, 0 < min <= max.
        hflip: random horizontal flips in training.

    Raises:
        ZooError: an argument out of range (batch sizes >= 1, ``num_workers`` >= 0, ``n_views``
            in {1, 2}, sizes >= 1 and ``resize`` >= ``image_size``, ...).
    """

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 256, num_workers: int = 0,
                 n_views: int = 1, augment: Augment = "ce", image_size: int = 32, resize: int | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 crop_scale_min: float = 0.2, crop_ratio: list[float] | None = None, hflip: bool = True) -> None:
        super().__init__()
        _check_common(batch_size, eval_batch_size, num_workers, n_views, augment, image_size, resize, mean, std,
                      crop_scale_min, crop_ratio, hflip)
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
        """Build the datasets once; then check them against the batch size and the attached model.

        Raises:
            ZooError: fewer training images than ``batch_size`` (``drop_last`` would leave no
                batch), or a model whose ``hparams.num_classes`` differs from the data's classes.
        """
        if self._sets is None:
            sets = self._build()
            n_train = len(sets["train"])
            if n_train < self.batch_size:
                raise ZooError(f"{arg('batch_size')}={self.batch_size} is larger than the {n_train} ID training "
                               f"images (the last incomplete batch is dropped, so no step would run); "
                               f"use at most {n_train}")
            self._sets = sets
            self.val_set_names = list(sets["val_ood"])
            self.test_set_names = list(sets["test_ood"])
            self.average_names = [n for n in sets.get("average", self.test_set_names) if n in self.test_set_names]
            self.class_names = list(sets["classes"])
        self._check_model_classes()

    def _check_model_classes(self) -> None:
        """A model attached through the trainer whose ``hparams.num_classes`` is not the number of
        ID classes here would fail (or silently waste outputs) later: refuse it before training."""
        trainer = getattr(self, "trainer", None)
        model = getattr(trainer, "lightning_module", None) if trainer is not None else None
        hparams = getattr(model, "hparams", None)
        n_model = hparams.get("num_classes") if hasattr(hparams, "get") else None
        n_data = len(self.class_names)
        if is_int(n_model) and n_data and n_model != n_data:
            shown = ", ".join(self.class_names[:8]) + (", ..." if n_data > 8 else "")
            raise ZooError(f"--model.num_classes={n_model} but the data has {n_data} ID classes ({shown}); "
                           f"pass --model.num_classes={n_data}")

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
                          generator=self.train_generator(),
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
