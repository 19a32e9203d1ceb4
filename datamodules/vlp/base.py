"""Datasets and the LightningDataModule base of the vision-language (PTA / COPA) family.

Batch schema.

Training (one image-text pair per item; :func:`collate_pairs`):
    ``image`` (B, 3, S, S) float, normalised; ``caption`` list[str]; ``image_id`` (B,) int64;
    ``has_boxes`` (B,) bool; ``patch_labels`` (B, N) float 0/1 (the mentioned objects' patches,
    zero without boxes); ``distractor_labels`` (B, N) (patches of the image's *unmentioned*
    objects, for the distractor-exclusion metric).
Evaluation (one image with all its captions; :func:`collate_images`):
    ``image`` (B, 3, S, S); ``image_id`` (B,); ``captions`` list[str] (all captions of the batch,
    flat); ``caption_image`` (C,) int64 row in the batch of each caption; ``has_boxes`` (B,);
    ``patch_labels`` / ``distractor_labels`` (C, N), one row per caption.

Images come from a ``reader(record) -> (H, W, 3) uint8`` callable; boxes are transformed with every
geometric augmentation before the patch labels are drawn (spec rule 1), and a horizontal flip swaps
"left" and "right" in the caption.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.common.transforms import CLIP_MEAN, CLIP_STD
from datamodules.vlp.labels import crop_boxes, hflip_boxes, patch_labels, resize_boxes, swap_left_right
from datamodules.vlp.records import ImageRecord
from zoo.core.errors import ZooError

Reader = Callable[[ImageRecord], np.ndarray]


def _boxes(rec: ImageRecord, which: Sequence[int]) -> np.ndarray:
    return np.array([rec.objects[i].box for i in which], dtype=np.float64).reshape(-1, 4)


class _Geometry:
    """Resize to ``size`` (square), optionally after a random crop and with a random flip."""

    def __init__(self, size: int, patch: int, tau: float, mean: Sequence[float], std: Sequence[float],
                 crop_scale: tuple[float, float] | None = None, hflip: bool = False) -> None:
        self.size, self.patch, self.tau = int(size), int(patch), float(tau)
        self.mean = np.array(mean, dtype=np.float32)[:, None, None]
        self.std = np.array(std, dtype=np.float32)[:, None, None]
        self.crop_scale, self.hflip = crop_scale, hflip

    def __call__(self, img: np.ndarray, box_sets: list[np.ndarray], rng: np.random.Generator | None
                 ) -> tuple[Tensor, list[np.ndarray], bool]:
        H, W = img.shape[:2]
        top, left, h, w = 0, 0, H, W
        if rng is not None and self.crop_scale is not None:
            s = rng.uniform(*self.crop_scale)
            h, w = max(1, round(H * np.sqrt(s))), max(1, round(W * np.sqrt(s)))
            top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        flip = bool(rng is not None and self.hflip and rng.random() < 0.5)
        crop = img[top:top + h, left:left + w]
        if crop.shape[:2] != (self.size, self.size):
            crop = np.asarray(Image.fromarray(crop).resize((self.size, self.size), Image.BICUBIC))
        if flip:
            crop = crop[:, ::-1]
        out = []
        for b in box_sets:
            b = resize_boxes(crop_boxes(b, top, left, h, w), (h, w), (self.size, self.size))
            out.append(hflip_boxes(b, self.size) if flip else b)
        x = (np.ascontiguousarray(crop.transpose(2, 0, 1)).astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(x), out, flip

    def labels(self, boxes: np.ndarray) -> Tensor:
        return torch.from_numpy(patch_labels(boxes, (self.size, self.size), self.patch, self.tau))


def _distractors(rec: ImageRecord, mentioned: Sequence[int]) -> list[int]:
    return [i for i in range(len(rec.objects)) if i not in set(mentioned)
            and not rec.objects[i].name.startswith("region:")]


class PairDataset(Dataset):
    """Training pairs: item ``i`` is caption ``c`` of record ``r`` (all captions of all records).

    Args:
        records: the images. reader: image loader. geometry: resize / augmentation.
        seed: base of the per-item augmentation RNG (epoch mixed in via :meth:`set_epoch`).
        train: augment (random crop / flip) or not.
    """

    def __init__(self, records: Sequence[ImageRecord], reader: Reader, geometry: _Geometry, seed: int = 0,
                 train: bool = True) -> None:
        self.records, self.reader, self.geo, self.seed, self.train = list(records), reader, geometry, seed, train
        self.index = [(r, c) for r, rec in enumerate(self.records) for c in range(len(rec.captions))]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r, c = self.index[i]
        rec = self.records[r]
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        mentioned = rec.mentions[c] if rec.has_boxes else []
        img, (pos, neg), flip = self.geo(self.reader(rec), [_boxes(rec, mentioned),
                                                            _boxes(rec, _distractors(rec, mentioned))], rng)
        caption = swap_left_right(rec.captions[c]) if flip else rec.captions[c]
        return {"image": img, "caption": caption, "image_id": rec.image_id, "has_boxes": rec.has_boxes,
                "patch_labels": self.geo.labels(pos), "distractor_labels": self.geo.labels(neg)}


class ImageDataset(Dataset):
    """Evaluation images, each with all its captions (no augmentation)."""

    def __init__(self, records: Sequence[ImageRecord], reader: Reader, geometry: _Geometry) -> None:
        self.records, self.reader, self.geo = list(records), reader, geometry

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_texts(self) -> int:
        return sum(len(r.captions) for r in self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        sets = []
        for c in range(len(rec.captions)):
            m = rec.mentions[c] if rec.has_boxes else []
            sets += [_boxes(rec, m), _boxes(rec, _distractors(rec, m))]
        img, boxes, _ = self.geo(self.reader(rec), sets, None)
        n = len(rec.captions)
        pos = torch.stack([self.geo.labels(boxes[2 * c]) for c in range(n)])
        neg = torch.stack([self.geo.labels(boxes[2 * c + 1]) for c in range(n)])
        return {"image": img, "image_id": rec.image_id, "index": i, "captions": list(rec.captions),
                "has_boxes": rec.has_boxes, "patch_labels": pos, "distractor_labels": neg}


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([x["image"] for x in items]), "caption": [x["caption"] for x in items],
            "image_id": torch.tensor([x["image_id"] for x in items], dtype=torch.long),
            "has_boxes": torch.tensor([x["has_boxes"] for x in items], dtype=torch.bool),
            "patch_labels": torch.stack([x["patch_labels"] for x in items]),
            "distractor_labels": torch.stack([x["distractor_labels"] for x in items])}


def collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    caps, rows = [], []
    for b, x in enumerate(items):
        caps += x["captions"]
        rows += [b] * len(x["captions"])
    return {"image": torch.stack([x["image"] for x in items]),
            "image_id": torch.tensor([x["image_id"] for x in items], dtype=torch.long),
            "index": torch.tensor([x["index"] for x in items], dtype=torch.long),
            "captions": caps, "caption_image": torch.tensor(rows, dtype=torch.long),
            "has_boxes": torch.tensor([x["has_boxes"] for x in items], dtype=torch.bool),
            "patch_labels": torch.cat([x["patch_labels"] for x in items]),
            "distractor_labels": torch.cat([x["distractor_labels"] for x in items])}


class VLPDataModule(LightningDataModule):
    """Base of the PTA datamodules: subclasses implement :meth:`_records` (``{"train", "val",
    "test"}`` -> records) and :meth:`reader`.

    Args:
        image_size: S (square). patch: the ViT patch size P. tau: patch-label coverage threshold.
        batch_size, eval_batch_size, num_workers: loaders. seed: augmentation seed.
        crop_scale: random-crop area range for training (None = no crop). hflip: random flips
            (with the left/right word swap).
        mean, std: normalisation.
    """

    def __init__(self, image_size: int = 224, patch: int = 16, tau: float = 0.5, batch_size: int = 64,
                 eval_batch_size: int = 128, num_workers: int = 0, seed: int = 0,
                 crop_scale: tuple[float, float] | None = None, hflip: bool = False,
                 mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        super().__init__()
        if image_size % patch:
            raise ZooError(f"--data.init_args.image_size={image_size} must be a multiple of the patch size {patch}")
        self.image_size, self.patch, self.tau = int(image_size), int(patch), float(tau)
        self.batch_size, self.eval_batch_size, self.num_workers, self.seed = batch_size, eval_batch_size, num_workers, seed
        self.crop_scale = tuple(crop_scale) if crop_scale else None
        self.hflip, self.mean, self.std = hflip, tuple(mean), tuple(std)
        self._sets: dict[str, Dataset] | None = None

    def _records(self) -> dict[str, list[ImageRecord]]:
        raise NotImplementedError

    def reader(self, rec: ImageRecord) -> np.ndarray:
        raise NotImplementedError

    @property
    def transform_spec(self) -> dict[str, Any]:
        """The eval transform of :func:`datamodules.common.transforms.eval_transform` (``zoo.predict``)."""
        size = [self.image_size, self.image_size]
        return {"resize": size, "crop": size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": "bicubic"}

    def setup(self, stage: str | None = None) -> None:
        if self._sets is not None:
            return
        recs = self._records()
        train_geo = _Geometry(self.image_size, self.patch, self.tau, self.mean, self.std, self.crop_scale, self.hflip)
        eval_geo = _Geometry(self.image_size, self.patch, self.tau, self.mean, self.std)
        self._sets = {"train": PairDataset(recs["train"], self.reader, train_geo, self.seed),
                      "val": ImageDataset(recs["val"], self.reader, eval_geo),
                      "test": ImageDataset(recs["test"], self.reader, eval_geo)}

    def dataset(self, split: str) -> Dataset:
        self.setup()
        return self._sets[split]

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            ds.set_epoch(trainer.current_epoch)
        g = torch.Generator().manual_seed(self.seed + (trainer.current_epoch if trainer is not None else 0))
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=g,
                          num_workers=self.num_workers, collate_fn=collate_pairs,
                          persistent_workers=False)

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers, collate_fn=collate_images)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
