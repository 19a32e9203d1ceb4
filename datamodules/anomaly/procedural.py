"""RoadWorld-64 as a LightningDataModule: the MGCDA spec's embedded default (CPU, minutes).

Training domains are the source styles (default S1 clear, S2 overcast/hazy, S3 dusk/noisy; domain
``d`` = position in ``domains``); every training batch holds ``batch_per_domain`` images of each.
Training images get 1-2 OE proxies pasted with probability ``oe_prob`` (label 254, drawn anew
every epoch), then the joint flip / scale / crop. Validation is the source styles' val splits
with in-style test anomalies; test is ``[target T, source val]`` (``test_set_names``). The world
itself (:mod:`datamodules.anomaly.world`) is generated once and cached.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from datamodules.anomaly.base import (
    UNSEEN_DOMAIN,
    AnomalyDataModule,
    AnomalyEvalSet,
    AnomalyTrainSet,
    ArrayEvalScenes,
    ArrayOEPool,
    ArrayScenes,
    ScenePart,
    ConcatEvalSet,
    arg,
    check_int,
    check_prob,
)
from datamodules.common.world import worlds_root
from zoo.core.errors import ZooError

__all__ = ["RoadWorld"]


class RoadWorld(AnomalyDataModule):
    """Anomaly segmentation on RoadWorld-64: source styles as domains, a held-out target style.

    Args:
        world: overrides of :class:`~datamodules.anomaly.world.WorldConfig` knobs, e.g.
            ``{"n_train": 200, "styles": {"T": {"blur": 1.5}}}``.
        oe_prob: probability that a training image gets OE proxies (spec: 0.5).
        batch_per_domain: training images per domain and batch (one int or one per domain;
            spec: 4, so batch 12 with three domains).
        eval_batch_size: val/test batch size.
        num_workers: DataLoader workers.
        hflip: random horizontal flips in training.
        scale: training rescale range ``[min, max]`` (then cropped back to ``crop``).
        crop: training crop ``[height, width]``; default the world's image size.
        domains: the source styles used for training and validation, in domain-id order; the
            target style T is test-only and refused here.
        seed: world seed (the world's pixels; training randomness comes from the global seed).
        root: cache root (default ``$ZOO_CACHE/worlds`` or ``~/.cache/zoo/worlds``).
        steps_per_epoch: training batches per epoch; default ``n_train // batch_per_domain``.
        mean, std: normalisation statistics (default ImageNet's, as for the real setting).

    Raises:
        ZooError: an argument out of range or a bad world override, naming
            ``--data.init_args.<arg>``.
    """

    def __init__(self, world: dict[str, Any] | None = None, oe_prob: float = 0.5,
                 batch_per_domain: int | list[int] = 4, eval_batch_size: int = 32, num_workers: int = 0,
                 hflip: bool = True, scale: list[float] | None = None, crop: list[int] | None = None,
                 domains: list[str] | None = None, seed: int = 0, root: str | None = None,
                 steps_per_epoch: int | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None) -> None:
        from datamodules.anomaly.world.config import CLASS_NAMES, SOURCE_STYLES, TARGET_STYLE, WorldConfig

        domains = list(SOURCE_STYLES) if domains is None else list(domains)
        if not domains:
            raise ZooError(f"{arg('domains')} must name at least one source style among {list(SOURCE_STYLES)}")
        if TARGET_STYLE in domains:
            raise ZooError(f"{arg('domains')}: the target style {TARGET_STYLE!r} is test-only; "
                           f"train on source styles among {list(SOURCE_STYLES)}")
        bad = [d for d in domains if d not in SOURCE_STYLES]
        if bad or len(set(domains)) != len(domains):
            raise ZooError(f"{arg('domains')} must be distinct source styles among {list(SOURCE_STYLES)}, "
                           f"got {domains!r}")
        world = dict(world or {})
        known = {f.name for f in fields(WorldConfig)}
        unknown = sorted(set(world) - known)
        if unknown:
            raise ZooError(f"{arg('world')}: unknown knob(s) {unknown}; expected names among {sorted(known)}")
        try:
            cfg = WorldConfig(**world)
        except (TypeError, ValueError) as e:
            raise ZooError(f"{arg('world')}: {e}") from None
        check_prob("oe_prob", oe_prob)
        check_int("seed", seed, 0)
        scale = [1.0, 1.5] if scale is None else scale
        crop = [cfg.height, cfg.width] if crop is None else crop
        super().__init__(batch_per_domain, eval_batch_size, num_workers, hflip, scale, crop, mean, std,
                         steps_per_epoch, num_domains=len(domains))
        self.save_hyperparameters()
        self.cfg, self.world, self.oe_prob, self.seed = cfg, world, float(oe_prob), int(seed)
        self.root = str(root) if root else str(worlds_root())
        self.class_names = list(CLASS_NAMES)
        self.domain_names = list(domains)
        self.val_set_names = ["source"]
        self.test_set_names = ["target", "source"]
        for name, n in zip(self.domain_names, self.per_domain):
            if cfg.n_train < n:
                raise ZooError(f"{arg('batch_per_domain')}={n} is larger than the {cfg.n_train} training images of "
                               f"style {name} (--data.init_args.world.n_train)")

    def _splits(self) -> list[str]:
        return ([f"train_{s}" for s in self.domain_names] + [f"val_{s}" for s in self.domain_names]
                + ["test_T", "oe"])

    def _load(self, progress: bool) -> dict[str, Any]:
        from datamodules.anomaly.world import load_world

        return load_world(self.root, seed=self.seed, cfg=self.cfg, splits=self._splits(), progress=progress)

    def prepare_data(self) -> None:
        """Generate (or find) the cached world once, before ``setup`` on every process."""
        self._load(progress=True)

    def _eval_size(self) -> tuple[int, int]:
        return self.cfg.height, self.cfg.width

    def _build(self) -> dict[str, Any]:
        data = self._load(progress=True)
        bank = data["oe"]
        pool = ArrayOEPool(bank["patches"], bank["masks"])
        objects = (self.cfg.oe_objects_min, self.cfg.oe_objects_max)
        parts = [ScenePart(ArrayScenes(data[f"train_{s}"]["images"], data[f"train_{s}"]["labels"]), d, oe=pool,
                           oe_prob=self.oe_prob, oe_objects=objects)
                 for d, s in enumerate(self.domain_names)]
        train = AnomalyTrainSet(parts, hflip=self.hflip, scale=self.scale, crop=self.crop, mean=self.mean,
                                std=self.std)

        def eval_set(split: str, domain: int) -> AnomalyEvalSet:
            a = data[split]
            return AnomalyEvalSet(ArrayEvalScenes(a["images"], a["labels"], a["anomaly"]), domain, self.mean,
                                  self.std)

        val = ConcatEvalSet([eval_set(f"val_{s}", d) for d, s in enumerate(self.domain_names)])
        return {"train": train, "val": val, "test": {"target": eval_set("test_T", UNSEEN_DOMAIN), "source": val}}
