"""The contract shared by the anomaly-segmentation datamodules (the road world and the real setting).

Batches (all int tensors int64):

- train: ``{"image": (B, 3, H, W) normalised, "label": (B, H, W), "domain": (B,), "index": (B,)}``;
  labels hold the classes ``0..n-1``, 254 on pasted outlier-exposure (OE) pixels and 255 on void.
  Every batch holds ``batch_per_domain[d]`` images of every training domain ``d``
  (:class:`~datamodules.anomaly.sampling.DomainBalancedSampler`), grouped by domain.
- val / test: ``{"image", "label", "anomaly", "domain", "index"}``; ``label`` is 255 wherever the
  class is unknown (void, anomalies, sets without semantic labels); ``anomaly`` is 0 normal,
  1 anomaly, 255 void. ``domain`` is the training-domain id of an in-style source set and
  :data:`UNSEEN_DOMAIN` (-1) for the held-out target and the real test sets.

Building blocks: scene sources and OE pools (``len`` + ``get(i)`` returning uint8 tensors), the
training-set parts (:class:`ScenePart`, :class:`OEImagePart`) joined by :class:`AnomalyTrainSet`
(OE pasting, then the joint augmentation of :mod:`datamodules.anomaly.pasting`, then
normalisation), :class:`AnomalyEvalSet`, and :class:`AnomalyDataModule` (loaders, the seeded
sampler saved in ``state_dict``, attributes ``num_classes``, ``num_domains``, ``class_names``,
``domain_names``, ``val_set_names``, ``test_set_names`` and ``eval_transform_spec()``).

Argument errors are one-line :class:`~zoo.core.errors.ZooError` naming the argument as the command
line spells it (``--data.init_args.<name>``), raised when the datamodule is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from datamodules.anomaly.pasting import OE_LABEL, VOID, joint_augment, paste_objects
from datamodules.anomaly.sampling import DomainBalancedSampler
from datamodules.common.sampling import SeededShuffle
from zoo.core.errors import ZooError
from zoo.core.gather import rank_shard

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OE_LABEL",
    "UNSEEN_DOMAIN",
    "VOID",
    "AnomalyDataModule",
    "AnomalyEvalSet",
    "AnomalyTrainSet",
    "ArrayEvalScenes",
    "ArrayOEPool",
    "ArrayScenes",
    "ConcatEvalSet",
    "OEImagePart",
    "ScenePart",
    "arg",
    "check_bool",
    "check_int",
    "check_per_domain",
    "check_prob",
    "check_range",
    "check_size",
    "check_stats",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: ``domain`` of the held-out target and the real test sets (not a training domain).
UNSEEN_DOMAIN = -1


# ------------------------------------------------------------------------------ argument checks
def arg(name: str) -> str:
    """A datamodule argument as the command line spells it: ``--data.init_args.<name>``."""
    return f"--data.init_args.{name}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_int(name: str, value: Any, minimum: int) -> None:
    """ZooError unless ``value`` is an int >= ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise ZooError(f"{arg(name)} must be an integer >= {minimum}, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ZooError(f"{arg(name)} must be true or false, got {value!r}")


def check_prob(name: str, value: Any) -> None:
    if not _is_num(value) or not 0 <= value <= 1:
        raise ZooError(f"{arg(name)} must be a probability in [0, 1], got {value!r}")


def check_range(name: str, value: Any, lo: float = 0.0) -> None:
    """``[a, b]`` numbers with ``lo < a <= b``."""
    ok = (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_num(v) for v in value)
          and lo < value[0] <= value[1])
    if not ok:
        raise ZooError(f"{arg(name)} must be [min, max] with {lo} < min <= max, got {value!r}")


def check_size(name: str, value: Any) -> None:
    """``[height, width]`` positive ints (or None)."""
    if value is None:
        return
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) and v >= 1 for v in value)):
        raise ZooError(f"{arg(name)} must be [height, width] in pixels (ints >= 1), got {value!r}")


def check_stats(mean: Any, std: Any) -> None:
    for key, v in (("mean", mean), ("std", std)):
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_num(x) for x in v)):
            raise ZooError(f"{arg(key)} must be 3 numbers (R, G, B), got {v!r}")
    if min(std) <= 0:
        raise ZooError(f"{arg('std')} must be 3 positive numbers (R, G, B), got {list(std)!r}")


def check_per_domain(name: str, value: Any, k: int) -> list[int]:
    """One int >= 1 for every domain, or ``k`` of them; returns the ``k`` counts."""
    if _is_int(value) and value >= 1:
        return [int(value)] * k
    if isinstance(value, (list, tuple)) and len(value) == k and all(_is_int(v) and v >= 1 for v in value):
        return [int(v) for v in value]
    raise ZooError(f"{arg(name)} must be an integer >= 1 or a list of {k} of them (one per domain), got {value!r}")


# ------------------------------------------------------------------------------ sources
class SceneSource(Protocol):
    """Labelled scenes: ``get(i) -> (image uint8 (3, H, W), label int64 (H, W))``."""

    def __len__(self) -> int: ...

    def get(self, i: int) -> tuple[Tensor, Tensor]: ...


class OEPool(Protocol):
    """OE objects: ``get(i) -> (image uint8 (3, h, w), mask bool (h, w))`` (the object may be a
    small part of the image; pasting crops its bounding box)."""

    def __len__(self) -> int: ...

    def get(self, i: int) -> tuple[Tensor, Tensor]: ...


class ArrayScenes:
    """In-memory scenes: images (N, H, W, 3) uint8 and labels (N, H, W) (uint8 or int)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(np.ascontiguousarray(labels))

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.labels[i].long()


class ArrayEvalScenes(ArrayScenes):
    """In-memory eval scenes: :class:`ArrayScenes` plus an anomaly map (N, H, W) 0/1/255."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, anomaly: np.ndarray) -> None:
        super().__init__(images, labels)
        self.anomaly = torch.from_numpy(np.ascontiguousarray(anomaly))

    def get_eval(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.images[i], self.labels[i].long(), self.anomaly[i].long()


class ArrayOEPool:
    """In-memory OE objects: patches (N, S, S, 3) uint8 and masks (N, S, S) bool."""

    def __init__(self, patches: np.ndarray, masks: np.ndarray) -> None:
        self.patches = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2)
        self.masks = torch.from_numpy(np.ascontiguousarray(masks)).bool()

    def __len__(self) -> int:
        return len(self.masks)

    def get(self, i: int) -> tuple[Tensor, Tensor]:
        return self.patches[i], self.masks[i]


# ------------------------------------------------------------------------------ training parts
def _randint(high: int) -> int:
    return int(torch.randint(0, high, (1,)))


class ScenePart:
    """Scenes of one domain, each pasted with OE objects with probability ``oe_prob``.

    Args:
        scenes: the scene source.
        domain: the domain id of every item.
        oe: the OE pool (None: no pasting).
        oe_prob: probability that an item gets OE objects.
        oe_objects: ``(min, max)`` objects pasted into an item that gets any.
        length: with ``random_background``, the number of items; else ``len(scenes)``.
        random_background: each item is a uniformly drawn scene (composites: the background is
            drawn only among the scenes, never from the OE pool).
    """

    def __init__(self, scenes: SceneSource, domain: int, oe: OEPool | None = None, oe_prob: float = 0.0,
                 oe_objects: tuple[int, int] = (1, 1), length: int | None = None,
                 random_background: bool = False) -> None:
        self.scenes, self.domain, self.oe, self.oe_prob = scenes, int(domain), oe, float(oe_prob)
        self.oe_objects = (int(oe_objects[0]), int(oe_objects[1]))
        self.random_background = random_background
        self.length = int(length) if random_background and length is not None else len(scenes)

    def __len__(self) -> int:
        return self.length

    def get(self, i: int) -> tuple[Tensor, Tensor]:
        """(image float (3, H, W) in [0, 1], label int64 (H, W)), OE pasted (label 254)."""
        j = _randint(len(self.scenes)) if self.random_background else i
        image, label = self.scenes.get(j)
        image = image.float() / 255.0
        if self.oe is not None and len(self.oe) and self.oe_prob > 0 and float(torch.rand(())) < self.oe_prob:
            lo, hi = self.oe_objects
            k = lo + _randint(hi - lo + 1)
            objs = []
            for _ in range(k):
                obj, mask = self.oe.get(_randint(len(self.oe)))
                objs.append((obj.float() / 255.0, mask))
            image, label = paste_objects(image, label, objs)
        return image, label


class OEImagePart:
    """The OE source images themselves as a domain (the spec's d2 = COCO images): label 254 on
    the object mask, 255 elsewhere (their other content has no class)."""

    def __init__(self, pool: OEPool, domain: int) -> None:
        self.pool, self.domain = pool, int(domain)

    def __len__(self) -> int:
        return len(self.pool)

    def get(self, i: int) -> tuple[Tensor, Tensor]:
        image, mask = self.pool.get(i)
        label = torch.full(mask.shape, VOID, dtype=torch.long)
        label[mask] = OE_LABEL
        return image.float() / 255.0, label


class AnomalyTrainSet(Dataset):
    """The training items of several parts, augmented jointly and normalised.

    Args:
        parts: :class:`ScenePart` / :class:`OEImagePart` objects (their items are concatenated).
        hflip, scale, crop: :func:`~datamodules.anomaly.pasting.joint_augment` options.
        mean, std: normalisation statistics.

    Items: ``{"image": (3, h, w) float, "label": (h, w) int64, "domain": int64, "index": int64}``.
    """

    def __init__(self, parts: Sequence[ScenePart | OEImagePart], hflip: bool = True,
                 scale: Sequence[float] = (1.0, 1.0), crop: Sequence[int] | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.hflip, self.scale, self.crop = hflip, tuple(scale), None if crop is None else tuple(crop)
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def domains(self) -> Tensor:
        """(N,) int64 domain of every item (for the sampler)."""
        return torch.cat([torch.full((len(p),), p.domain, dtype=torch.long) for p in self.parts])

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return k, i - int(self.offsets[k])

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, j = self._locate(int(i))
        part = self.parts[k]
        image, label = part.get(j)
        image, label = joint_augment(image, label, hflip=self.hflip, scale=self.scale, crop=self.crop)
        return {"image": (image - self.mean) / self.std, "label": label,
                "domain": torch.tensor(part.domain, dtype=torch.long), "index": torch.tensor(int(i))}


class AnomalyEvalSet(Dataset):
    """Eval items from a source with ``get_eval(i) -> (image uint8 (3, H, W), label, anomaly)``.

    Items: ``{"image": (3, H, W) normalised, "label": (H, W), "anomaly": (H, W), "domain", "index"}``.
    """

    def __init__(self, source: Any, domain: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.source, self.domain = source, int(domain)
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, label, anomaly = self.source.get_eval(int(i))
        return {"image": (image.float() / 255.0 - self.mean) / self.std, "label": label, "anomaly": anomaly,
                "domain": torch.tensor(self.domain, dtype=torch.long), "index": torch.tensor(int(i))}


class ConcatEvalSet(Dataset):
    """Eval sets one after the other, ``index`` running over the whole."""

    def __init__(self, sets: Sequence[Dataset]) -> None:
        self.sets = list(sets)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sets])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        item = dict(self.sets[k][int(i) - int(self.offsets[k])])
        item["index"] = torch.tensor(int(i))
        return item


# ------------------------------------------------------------------------------ datamodule
class AnomalyDataModule(SeededShuffle, LightningDataModule):
    """Base class: subclasses set the names in ``__init__`` and implement :meth:`_build`.

    Args:
        batch_per_domain: training images per domain and batch (one int, or one per domain).
        eval_batch_size: batch size of the val/test loaders.
        num_workers: DataLoader workers (0 = the main process).
        hflip, scale, crop: the joint training augmentation (:func:`~datamodules.anomaly.pasting.joint_augment`).
        mean, std: normalisation statistics.
        steps_per_epoch: training batches per epoch (over all ranks); default: the fewest any
            domain fills without repeating an image.

    Attributes set by subclasses: ``class_names``, ``domain_names`` (the training domains, so
    ``num_domains = len(domain_names)``), ``val_set_names``, ``test_set_names``.
    """

    def __init__(self, batch_per_domain: int | list[int], eval_batch_size: int, num_workers: int, hflip: bool,
                 scale: list[float], crop: list[int] | None, mean: list[float] | None, std: list[float] | None,
                 steps_per_epoch: int | None, num_domains: int) -> None:
        super().__init__()
        self.per_domain = check_per_domain("batch_per_domain", batch_per_domain, num_domains)
        check_int("eval_batch_size", eval_batch_size, 1)
        check_int("num_workers", num_workers, 0)
        check_bool("hflip", hflip)
        check_range("scale", scale)
        check_size("crop", crop)
        mean = list(IMAGENET_MEAN) if mean is None else list(mean)
        std = list(IMAGENET_STD) if std is None else list(std)
        check_stats(mean, std)
        if steps_per_epoch is not None:
            check_int("steps_per_epoch", steps_per_epoch, 1)
        self.eval_batch_size, self.num_workers = eval_batch_size, num_workers
        self.hflip, self.scale, self.crop = hflip, list(scale), None if crop is None else list(crop)
        self.mean, self.std = mean, std
        self.steps_per_epoch = steps_per_epoch
        self.class_names: list[str] = []
        self.domain_names: list[str] = []
        self.val_set_names: list[str] = []
        self.test_set_names: list[str] = []
        self._sets: dict[str, Any] | None = None

    # -- subclass hook -------------------------------------------------------------------------
    def _build(self) -> dict[str, Any]:
        """Return ``{"train": AnomalyTrainSet, "val": Dataset, "test": {name: Dataset}}``."""
        raise NotImplementedError

    # -- attributes ----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)

    @property
    def batch_size(self) -> int:
        """Training images per batch (all domains)."""
        return sum(self.per_domain)

    def eval_transform_spec(self) -> dict[str, Any]:
        """The eval preprocessing (stored in checkpoints for ``zoo.predict``) and the class names."""
        size = list(self._eval_size())
        return {"resize": size, "crop": size, "mean": list(self.mean), "std": list(self.std),
                "classes": list(self.class_names)}

    def _eval_size(self) -> tuple[int, int]:
        raise NotImplementedError

    # -- lightning -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._sets is None:
            self._sets = self._build()

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(getattr(trainer, "global_rank", 0)), int(getattr(trainer, "world_size", 1))

    def train_sampler(self) -> DomainBalancedSampler:
        """The domain-balanced batch sampler of the training loader (this rank's share)."""
        self.setup()
        rank, world = self._rank()
        train = self._sets["train"]
        try:
            return DomainBalancedSampler(train.domains, self.per_domain, generator=self.train_generator(),
                                         num_batches=self.steps_per_epoch, rank=rank, num_replicas=world)
        except ZooError as e:
            raise ZooError(f"{arg('batch_per_domain')}={self.per_domain}: {e}") from None

    def train_dataloader(self) -> DataLoader:
        """Domain-balanced training batches.

        Raises:
            ZooError: a multi-process run whose trainer would replace the sampler (set
                ``--trainer.use_distributed_sampler=false``; the sampler shards by rank itself).
        """
        trainer = getattr(self, "trainer", None)
        connector = getattr(trainer, "_accelerator_connector", None)
        if trainer is not None and self._rank()[1] > 1 and getattr(connector, "use_distributed_sampler", False):
            raise ZooError("--trainer.use_distributed_sampler must be false with domain-balanced batches (the "
                           "sampler shards the batches by rank itself)")
        sampler = self.train_sampler()
        # generator: the iterator's base seed comes from the datamodule's own (saved) generator, not from
        # the global RNG, whose state differs at that moment between a run and its resumed copy
        return DataLoader(self._sets["train"], batch_sampler=sampler, num_workers=self.num_workers,
                          generator=self.train_generator(), persistent_workers=self.num_workers > 0)

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        """An evaluation loader; under DDP over this rank's disjoint, unpadded share of ``ds``
        (:func:`zoo.core.gather.rank_shard`): the pooled pixel metrics then gather every pixel
        exactly once (``use_distributed_sampler`` is off for the domain-balanced training batches)."""
        rank, world = self._rank()
        if world > 1:
            ds = Subset(ds, list(rank_shard(len(ds), rank, world)))
        return DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._eval_loader(self._sets["val"])

    def test_dataloader(self) -> list[DataLoader]:
        self.setup()
        return [self._eval_loader(self._sets["test"][n]) for n in self.test_set_names]

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()[0]
