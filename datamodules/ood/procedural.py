"""ClutterGlyphs-32: the embedded OOD world of MODE as a LightningDataModule.

The world itself (rendering, splits, caching) lives in :mod:`datamodules.ood.world`. ID: six
striped glyph classes among clutter and occluders; OOD test sets ``ood_near`` (held-out glyphs,
dot/checker fills) and ``ood_far`` (full-frame textures) are averaged into the headline numbers;
``ood_bg`` (clutter, no object: the adversarial case for CSD) is a diagnostic only. Validation OOD
sets ``ood_val_near``/``ood_val_far`` come from other seeds and are for monitoring only.
"""

from __future__ import annotations

from typing import Any

from datamodules.common.world import worlds_root
from datamodules.ood.base import ArrayDataset, Augment, OODDataModule, arg, check_int, check_names
from zoo.core.errors import ZooError


class ClutterGlyphs(OODDataModule):
    """The procedural ClutterGlyphs-32 world (the MODE spec's embedded world; MODE is
    arXiv:2308.10239v1).

    Args:
        root: cache folder for the generated splits (default ``$ZOO_CACHE/worlds``, or
            ``~/.cache/zoo/worlds`` when ``ZOO_CACHE`` is unset or empty); regenerated on demand,
            keyed by seed, sizes and knobs.
        seed: world seed (the bench varies the training seed, not the world).
        sizes: per-split image counts overriding the spec's (e.g. tiny worlds for tests).
        world: overrides of :class:`datamodules.ood.world.WorldConfig` knobs.
        test_sets: OOD test sets to evaluate; ``average`` those averaged in the headline.
        val_sets: OOD validation sets (monitoring only).
        **kwargs: see :class:`OODDataModule`.

    Raises:
        ZooError: when built, before any image is rendered: a negative ``seed``, unknown split
            names or sizes below 1, ``average`` outside ``test_sets``, unknown or invalid
            ``world`` knobs, or any argument of :class:`OODDataModule` out of range.
    """

    def __init__(self, root: str | None = None, seed: int = 0, sizes: dict[str, int] | None = None,
                 world: dict[str, Any] | None = None, test_sets: list[str] | None = None,
                 average: list[str] | None = None, val_sets: list[str] | None = None,
                 batch_size: int = 64, eval_batch_size: int = 500, num_workers: int = 0, n_views: int = 1,
                 augment: Augment = "ce", image_size: int = 32, crop_scale_min: float = 0.5,
                 crop_ratio: list[float] | None = None, hflip: bool = False,
                 mean: list[float] | None = None, std: list[float] | None = None) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         n_views=n_views, augment=augment, image_size=image_size, resize=image_size,
                         mean=mean or [0.5, 0.5, 0.5], std=std or [0.25, 0.25, 0.25],
                         crop_scale_min=crop_scale_min, crop_ratio=crop_ratio or [0.9, 1.1], hflip=hflip)
        self.save_hyperparameters()
        from datamodules.ood.world.config import ID_SPLITS, SPLITS, WorldConfig

        check_int("seed", seed, 0)
        check_names("sizes", list(sizes or {}), SPLITS, "world split(s)")
        for name, n in (sizes or {}).items():
            check_int(f"sizes.{name}", n, 1)
        ood_splits = [n for n in SPLITS if n not in ID_SPLITS]
        self.test_sets = list(test_sets or ["ood_near", "ood_far", "ood_bg"])
        self.average = list(average or ["ood_near", "ood_far"])
        self.val_sets = list(val_sets if val_sets is not None else ["ood_val_near", "ood_val_far"])
        check_names("test_sets", self.test_sets, ood_splits, "OOD split(s)")
        check_names("val_sets", self.val_sets, ood_splits, "OOD split(s)")
        check_names("average", self.average, self.test_sets,
                    "OOD set(s) to average (not in --data.init_args.test_sets)")
        try:
            self._cfg = WorldConfig(**dict(world or {}))
        except (TypeError, ValueError) as e:
            raise ZooError(f"{arg('world')}: {e}") from None
        self.root = root or str(worlds_root())
        self.seed, self.sizes, self.world = seed, dict(sizes or {}), dict(world or {})

    def _build(self) -> dict[str, Any]:
        from datamodules.ood import world as W

        cfg = self._cfg
        names = ["id_train", "id_val", "id_test", *self.val_sets, *self.test_sets]
        data = W.load_world(self.root, seed=self.seed, cfg=cfg, splits=names, sizes=self.sizes or None)
        ds = {n: ArrayDataset(*data[n]) for n in names}
        return {
            "train": ds["id_train"], "val": ds["id_val"], "test": ds["id_test"],
            "val_ood": {n: ds[n] for n in self.val_sets},
            "test_ood": {n: ds[n] for n in self.test_sets},
            "average": self.average,
            "classes": list(W.CLASS_NAMES[: cfg.n_classes]),
        }
