"""The embedded PTA world as a LightningDataModule: shapes on clutter (:mod:`datamodules.vlp.shapes`).

Training images: ``n_train`` scenes of the ``train`` stream, each with its captions (two by
default: every caption is one training pair). Exactly ``round(box_fraction * n_train)`` of them,
chosen by a seeded permutation, keep their object boxes (the PTA positives); the others train
without the PTA term (spec: boxes on about 5% of the images). Validation and test scenes keep
every box (the detector metrics). Pixels are rendered once per process and kept in memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from datamodules.vlp.base import VLPDataModule
from datamodules.vlp.records import ImageRecord
from zoo.core.errors import ZooError


def _arg(name: str) -> str:
    return f"--data.init_args.{name}"


class ShapesClutter(VLPDataModule):
    """Shapes on clutter (spec "Default proposal").

    Args:
        world: :class:`~datamodules.vlp.shapes.ShapesWorldConfig` overrides (seed, sizes, ...).
        n_train: training scenes (the world's ``train`` stream is unbounded).
        n_val, n_test: evaluation scenes (default: the world config's val / test sizes).
        box_fraction: share of training scenes with boxes, in [0, 1].
        box_seed: seed of the choice of annotated scenes.
        Other arguments: :class:`~datamodules.vlp.base.VLPDataModule`.
    """

    def __init__(self, world: dict[str, Any] | None = None, n_train: int = 8000, n_val: int | None = None,
                 n_test: int | None = None, box_fraction: float = 0.05, box_seed: int = 0, image_size: int = 64,
                 patch: int = 8, tau: float = 0.5, batch_size: int = 64, eval_batch_size: int = 250,
                 num_workers: int = 0, seed: int = 0, hflip: bool = False) -> None:
        from datamodules.vlp.shapes import ShapesWorldConfig

        super().__init__(image_size=image_size, patch=patch, tau=tau, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed, hflip=hflip,
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        known = {f.name for f in dataclasses.fields(ShapesWorldConfig)}
        unknown = sorted(set(world or {}) - known)
        if unknown:
            raise ZooError(f"{_arg('world')}: unknown knob(s) {unknown}; expected names among {sorted(known)}")
        try:
            self.cfg = ShapesWorldConfig(**(world or {}))
        except (TypeError, ValueError) as e:
            raise ZooError(f"{_arg('world')}: {e}") from None
        if not 0 <= box_fraction <= 1:
            raise ZooError(f"{_arg('box_fraction')} must be in [0, 1], got {box_fraction}")
        for name, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            if v is not None and v < 1:
                raise ZooError(f"{_arg(name)} must be >= 1, got {v}")
        self.n_train, self.box_fraction, self.box_seed = int(n_train), float(box_fraction), int(box_seed)
        self.n_val = int(n_val if n_val is not None else self.cfg.val)
        self.n_test = int(n_test if n_test is not None else self.cfg.test)
        self._pixels: dict[str, np.ndarray] = {}

    @property
    def vocabulary(self) -> list[str]:
        from datamodules.vlp.shapes import vocabulary

        return vocabulary(self.cfg)

    def eval_transform_spec(self) -> dict[str, Any]:
        return self.transform_spec

    def _records(self) -> dict[str, list[ImageRecord]]:
        from datamodules.vlp.shapes import generate_split

        out = {}
        for split, n in (("train", self.n_train), ("val", self.n_val), ("test", self.n_test)):
            images, recs = generate_split(split, self.cfg, n=n)
            self._pixels[split] = images
            out[split] = recs
        keep = np.zeros(self.n_train, dtype=bool)
        keep[np.random.default_rng([self.box_seed, 7]).permutation(self.n_train)[:round(self.box_fraction * self.n_train)]] = True
        for rec, k in zip(out["train"], keep):
            if not k:
                rec.objects, rec.mentions = [], []
        return out

    def reader(self, rec: ImageRecord) -> np.ndarray:
        split, index = rec.image.removeprefix("world:").split("/")
        return self._pixels[split][int(index)]
