"""The real-data PTA datamodule: COCO / Flickr30k Karpathy splits, COCO boxes, Visual Genome regions.

Training pairs come from the Karpathy JSON's train split (COCO: with ``restval``), optionally
joined by Visual Genome region descriptions (each region phrase a caption with its own box) and any
ALBEF-style JSON lists; boxes come from COCO ``instances_*.json`` on a seeded ``box_fraction`` of the
COCO training images (spec: about 5% of the images carry boxes). Validation and test are the
Karpathy val / test images (COCO 5k, Flickr 1k) with all their captions; COCO test images keep
their instance boxes for the detector metrics when ``test_instances`` is given.

Everything is a local path in the layout the datasets are distributed in
(:mod:`datamodules.vlp.readers` reads them strictly).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datamodules.common.images import load_rgb
from datamodules.vlp.base import VLPDataModule
from datamodules.vlp.records import ImageRecord
from zoo.core.errors import ZooError


class KarpathyCaptions(VLPDataModule):
    """COCO or Flickr30k retrieval data with optional COCO boxes and VG regions.

    Args:
        karpathy_json: ``dataset_coco.json`` or ``dataset_flickr30k.json``.
        image_root: the images (COCO: the folder holding ``train2014/`` and ``val2014/``; Flickr:
            ``flickr30k-images/``).
        train_instances: COCO ``instances_train2014.json`` (boxes for the training images), or null.
        test_instances: COCO ``instances_val2014.json`` (boxes of the Karpathy val / test images,
            for the detector metrics), or null.
        box_fraction: share of the COCO training images with instances that keep their boxes.
        box_seed: seed of that choice.
        vg_root: a Visual Genome folder (``image_data.json``, ``objects.json``,
            ``region_descriptions.json``, ``VG_100K*/``) added to training, or null.
        vg_limit: at most this many VG images.
        extra_json: ALBEF-style JSON lists ``[{"image", "caption"}]`` (relative to ``extra_root``)
            added to training.
        extra_root: image root of ``extra_json``.
        Other arguments: :class:`~datamodules.vlp.base.VLPDataModule`.
    """

    def __init__(self, karpathy_json: str, image_root: str, train_instances: str | None = None,
                 test_instances: str | None = None, box_fraction: float = 0.05, box_seed: int = 0,
                 vg_root: str | None = None, vg_limit: int | None = None, extra_json: list[str] | None = None,
                 extra_root: str | None = None, image_size: int = 256, patch: int = 16, tau: float = 0.5,
                 batch_size: int = 64, eval_batch_size: int = 128, num_workers: int = 8, seed: int = 0,
                 crop_scale: tuple[float, float] | None = (0.5, 1.0), hflip: bool = True) -> None:
        super().__init__(image_size=image_size, patch=patch, tau=tau, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed,
                         crop_scale=crop_scale, hflip=hflip)
        if not 0 <= box_fraction <= 1:
            raise ZooError(f"--data.init_args.box_fraction must be in [0, 1], got {box_fraction}")
        if extra_json and not extra_root:
            raise ZooError("--data.init_args.extra_root is required with extra_json")
        self.karpathy_json, self.image_root = karpathy_json, image_root
        self.train_instances, self.test_instances = train_instances, test_instances
        self.box_fraction, self.box_seed = float(box_fraction), int(box_seed)
        self.vg_root, self.vg_limit = vg_root, vg_limit
        self.extra_json, self.extra_root = list(extra_json or []), extra_root

    def _records(self) -> dict[str, list[ImageRecord]]:
        from datamodules.vlp import readers as real

        train = real.read_karpathy(self.karpathy_json, self.image_root, "train")
        val = real.read_karpathy(self.karpathy_json, self.image_root, "val")
        test = real.read_karpathy(self.karpathy_json, self.image_root, "test")
        if self.train_instances:
            real.attach_coco_boxes(train, real.read_coco_instances(self.train_instances), self.box_fraction,
                                   self.box_seed)
        if self.test_instances:
            inst = real.read_coco_instances(self.test_instances)
            real.attach_coco_boxes(val, inst, 1.0, self.box_seed)
            real.attach_coco_boxes(test, inst, 1.0, self.box_seed)
        offset = 1 + max((r.image_id for r in train + val + test), default=0)
        extra: list[ImageRecord] = []
        if self.vg_root:
            extra += real.read_visual_genome(self.vg_root, limit=self.vg_limit)
        for path in self.extra_json:
            extra += real.read_albef_json(path, self.extra_root)
        for i, rec in enumerate(extra):  # one id space: ITC targets compare image ids across sources
            rec.image_id = offset + i
        return {"train": train + extra, "val": val, "test": test}

    def reader(self, rec: ImageRecord) -> np.ndarray:
        return np.asarray(load_rgb(rec.image))

    def eval_transform_spec(self) -> dict[str, Any]:
        return self.transform_spec
