"""The embedded few-shot task: the ShapesB2N world read through the real CoOp loader.

The world (:mod:`datamodules.fewshot.shapes`) is written once as PNG files plus a
``split_zhou_ShapesB2N.json``, so every run on the embedded default goes through exactly the
code path of a real dataset (:class:`~datamodules.fewshot.base.FewShotDataModule`): split JSON,
seeded K-shot sampling over all 48 classes, then the base/new rule (24 base classes: circle,
square, triangle, diamond x 6 colours; 24 new: cross, ring, star, heart x 6 colours).
"""

from __future__ import annotations

from typing import Literal

from datamodules.fewshot.base import FewShotDataModule
from datamodules.fewshot.shapes import ensure_world


class ShapesFewShot(FewShotDataModule):
    """Few-shot base-to-new classification on the ShapesB2N world (spec dept.md, "Embedded default").

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
