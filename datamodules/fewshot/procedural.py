"""The embedded ShapesB2N world as LightningDataModules: the few-shot task and the caption corpus.

:class:`ShapesFewShot`: the world (:mod:`datamodules.fewshot.shapes`) is written once as PNG files
plus a ``split_zhou_ShapesB2N.json``, so every run on the embedded default goes through exactly the
code path of a real dataset (:class:`~datamodules.fewshot.base.FewShotDataModule`): split JSON,
seeded K-shot sampling over all 48 classes, then the base/new rule (24 base classes: circle,
square, triangle, diamond x 6 colours; 24 new: cross, ring, star, heart x 6 colours).

:class:`ShapesCaptions`: the world's caption corpus, to pretrain the tiny CLIP, with zero-shot
base/new monitoring on the task's test images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.common.images import load_rgb
from datamodules.common.transforms import CLIP_MEAN, CLIP_STD, TransformedArrays
from datamodules.fewshot.base import FewShotDataModule
from datamodules.fewshot.real import read_split
from datamodules.fewshot.shapes import BASE, CLASSNAMES, IMAGE_SIZE, NEW, ensure_world
from zoo.core.checks import check


class ShapesFewShot(FewShotDataModule):
    """Few-shot base-to-new classification on the ShapesB2N world (the DePT spec's embedded default;
    DePT is arXiv:2309.07439v2).

    Args:
        seed: few-shot sampling seed (the world itself is fixed by ``world_seed``).
        num_shots, image_size, batch_size, eval_batch_size, num_workers, crop_scale_min, hflip,
            cache_dir, train_classes: see :class:`FewShotDataModule`.
        world_seed, shift, n_captions, world_train_per_class, world_val_per_class,
            world_test_per_class: world parameters (keep them equal to the CLIP pretraining's
            ``ShapesCaptions`` so both share one cached world).
    """

    def __init__(self, seed: int = 1, num_shots: int = 16, image_size: int = 32, batch_size: int = 4,
                 eval_batch_size: int = 256, num_workers: int = 0, crop_scale_min: float = 0.08, hflip: bool = True,
                 cache_dir: str | None = None, train_classes: Literal["base", "all"] = "base", world_seed: int = 0,
                 shift: float = 1.0, n_captions: int = 20000, world_train_per_class: int = 32,
                 world_val_per_class: int = 8, world_test_per_class: int = 50) -> None:
        for name, v in (("world_seed", world_seed), ("shift", shift), ("n_captions", n_captions),
                        ("world_train_per_class", world_train_per_class), ("world_val_per_class", world_val_per_class)):
            check(f"--data.init_args.{name}", v, ge=0)
        check("--data.init_args.world_test_per_class", world_test_per_class, ge=1)
        super().__init__(root="", dataset="shapes_b2n", num_shots=num_shots, seed=seed, image_size=image_size,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         crop_scale_min=crop_scale_min, hflip=hflip, cache_dir=cache_dir, train_classes=train_classes)
        self.world_args = {"seed": world_seed, "shift": shift, "n_captions": n_captions,
                           "train_per_class": world_train_per_class, "val_per_class": world_val_per_class,
                           "test_per_class": world_test_per_class, "cache_dir": cache_dir}

    def prepare_data(self) -> None:
        ensure_world(**self.world_args)

    def _root(self) -> str:
        return str(ensure_world(**self.world_args))


# --------------------------------------------------------------------------- caption datamodule


class _Pairs(Dataset):
    """Normalised float images (N,3,H,W) + captions -> ``{"image", "text"}``."""

    def __init__(self, images: torch.Tensor, captions: list[str], hflip: bool = False) -> None:
        self.images, self.captions, self.hflip = images, captions, hflip

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = self.images[i]
        if self.hflip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        return {"image": img, "text": self.captions[i]}


def _collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([it["image"] for it in items]), "text": [it["text"] for it in items]}


class ShapesCaptions(LightningDataModule):
    """The ShapesB2N caption corpus for tiny-CLIP pretraining, with zero-shot base/new monitoring.

    Its training loader shuffles from torch's global generator (not ``SeededShuffle``) on purpose:
    the cached tiny CLIP is keyed by its config file, so its training must stay bit-identical to the
    one already cached; a resumed tiny-CLIP run is therefore not bit-exact.

    ``train_dataloader()`` yields ``{"image": float [B,3,S,S], "text": list[str]}`` (shuffled,
    ``drop_last``). ``val_dataloader()`` returns ``[base, new]`` loaders over the first
    ``val_per_class`` *test* task images of each class (labels relabelled 0..23 within each half),
    yielding ``{"image", "label"}``; ``test_dataloader()`` is the same over all test images. Images
    are normalised with the CLIP mean/std once, in memory.

    Args:
        seed, shift, n_captions: world parameters (see :func:`datamodules.fewshot.shapes.ensure_world`).
        world_train_per_class, world_val_per_class, world_test_per_class: task split sizes of the
            world (keep them equal to those of the few-shot datamodule so both share one cache).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: DataLoader workers (0 is best for in-memory tensors on 2 cores).
        val_per_class: test images per class used by the validation loaders.
        cache_dir: cache root (default ``$ZOO_CACHE`` or ``~/.cache/zoo``).
        hflip: random horizontal flips of training images.
        image_size: model input side; images are bicubically resized once if it is not 32.
    """

    def __init__(self, seed: int = 0, shift: float = 1.0, n_captions: int = 20000, batch_size: int = 256,
                 eval_batch_size: int = 256, num_workers: int = 0, val_per_class: int = 10,
                 cache_dir: str | None = None, hflip: bool = False, image_size: int = 32,
                 world_train_per_class: int = 32, world_val_per_class: int = 8,
                 world_test_per_class: int = 50) -> None:
        super().__init__()
        self.save_hyperparameters()
        for name, v in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                        ("val_per_class", val_per_class), ("image_size", image_size),
                        ("world_test_per_class", world_test_per_class)):
            check(f"--data.init_args.{name}", v, ge=1)
        for name, v in (("seed", seed), ("shift", shift), ("n_captions", n_captions), ("num_workers", num_workers),
                        ("world_train_per_class", world_train_per_class), ("world_val_per_class", world_val_per_class)):
            check(f"--data.init_args.{name}", v, ge=0)
        self.world_args = {"seed": seed, "shift": shift, "n_captions": n_captions,
                           "train_per_class": world_train_per_class, "val_per_class": world_val_per_class,
                           "test_per_class": world_test_per_class, "cache_dir": cache_dir}
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.val_per_class, self.hflip, self.image_size = val_per_class, hflip, image_size
        self.mean, self.std = list(CLIP_MEAN), list(CLIP_STD)
        self.classnames = {"base": [CLASSNAMES[i] for i in BASE], "new": [CLASSNAMES[i] for i in NEW]}
        self.template = "a photo of a {}."
        self.val_set_names = ["base", "new"]
        self.test_set_names = ["base", "new"]
        self.root: Path | None = None
        self._train: _Pairs | None = None
        self._eval: dict[str, dict[str, TransformedArrays]] = {}

    # -- helpers -------------------------------------------------------------------------------
    def _to_float(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N,H,W,3) -> normalised float (N,3,S,S), resized once if needed."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        if self.image_size != x.shape[-1] and len(x):
            x = torch.nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic",
                                                align_corners=False, antialias=True).clamp_(0.0, 1.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def _task_sets(self, per_class: int | None) -> dict[str, TransformedArrays]:
        # the task's test split through the real CoOp-layout reader (the world is written in it)
        by_label: dict[int, list[str]] = {}
        for d in sorted(read_split(str(self.root), "shapes_b2n").test, key=lambda d: (d.label, d.path)):
            by_label.setdefault(d.label, []).append(d.path)
        out = {}
        for name, labels in (("base", BASE), ("new", NEW)):
            imgs, ys = [], []
            for j, label in enumerate(labels):
                for path in by_label.get(label, [])[:per_class]:
                    imgs.append(np.asarray(load_rgb(path)))
                    ys.append(j)
            arr = np.stack(imgs) if imgs else np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
            out[name] = TransformedArrays(self._to_float(arr), torch.tensor(ys, dtype=torch.long))
        return out

    # -- lightning -----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        ensure_world(**self.world_args)

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        self.root = ensure_world(**self.world_args)
        with np.load(self.root / "captions" / "captions.npz", allow_pickle=False) as z:
            images, captions = z["images"], z["captions"]
        self._train = _Pairs(self._to_float(images), [str(c) for c in captions], hflip=self.hflip)
        self._eval = {"val": self._task_sets(self.val_per_class), "test": self._task_sets(None)}

    def eval_transform_spec(self) -> dict[str, Any]:
        return {"resize": self.image_size, "crop": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": "bicubic"}

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self._train, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=_collate_pairs)

    def _eval_loaders(self, which: str) -> list[DataLoader]:
        self.setup()
        return [DataLoader(self._eval[which][name], batch_size=self.eval_batch_size, shuffle=False)
                for name in ("base", "new")]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
