"""One registry of zoo models: name -> :class:`ZooEntry`.

Entries hold import strings, not classes, so that ``python -m zoo.fit --help`` lists the models
without importing torch-heavy modules.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from zoo.common.errors import ZooError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_ROOT = REPO_ROOT / "configs"


@dataclass(frozen=True)
class ZooEntry:
    """A registered model.

    Attributes:
        name: the command-line name (``python -m zoo.fit <name>``).
        module: ``"package.module:Class"`` of the LightningModule.
        datamodule: ``"package.module:Class"`` of the default (embedded-world) LightningDataModule.
        summary: one line shown in ``--help``.
        paper: citation with arXiv version.
        baselines: names of the baselines that ``zoo.bench`` compares against.
    """

    name: str
    module: str
    datamodule: str
    summary: str
    paper: str = ""
    baselines: tuple[str, ...] = field(default_factory=tuple)

    def config(self, which: str = "default") -> Path:
        """Path of ``configs/<name>/<which>.yaml``."""
        return CONFIG_ROOT / self.name / f"{which}.yaml"

    def configs(self) -> list[str]:
        """Names of the shipped configs of this model."""
        return sorted(p.stem for p in (CONFIG_ROOT / self.name).glob("*.yaml"))


_REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Add an entry; a second entry with the same name is a programming error."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> ZooEntry:
    """The entry called ``name``; an unknown name is a :class:`ZooError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ZooError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def entries() -> list[ZooEntry]:
    return [_REGISTRY[n] for n in list_models()]


def import_string(path: str):
    """Import ``"package.module:Attr"`` (or ``"package.module.Attr"``)."""
    if ":" in path:
        mod, _, attr = path.partition(":")
    else:
        mod, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(mod), attr)


register(
    ZooEntry(
        name="mode",
        module="zoo.mode.lightning_model:MODE",
        datamodule="datamodules.ood.procedural:ClutterGlyphs",
        summary="Multi-scale OOD detection: ALPA training + CSD region-level kNN score (KNN baseline)",
        paper="Zhang et al., From Global to Local: Multi-scale OOD Detection, arXiv:2308.10239v1",
        baselines=("knn",),
    )
)

register(
    ZooEntry(
        name="dept",
        module="zoo.dept.lightning_model:DePT",
        datamodule="datamodules.fewshot.procedural:ShapesFewShot",
        summary="Decoupled prompt tuning: CoOp + CAT head on a frozen CLIP, base-to-new (CoOp, zero-shot baselines)",
        paper="Zhang et al., DePT: Decoupled Prompt Tuning, arXiv:2309.07439v2 (CVPR 2024)",
        baselines=("coop", "zeroshot"),
    )
)

register(
    ZooEntry(
        name="coop",
        module="zoo.dept.lightning_model:CoOp",
        datamodule="datamodules.fewshot.procedural:ShapesFewShot",
        summary="CoOp prompt learning on a frozen CLIP (DePT's baseline and host)",
        paper="Zhou et al., Learning to Prompt for Vision-Language Models, arXiv:2109.01134 (IJCV 2022)",
    )
)

register(
    ZooEntry(
        name="clip",
        module="zoo.clip.lightning_model:TinyCLIP",
        datamodule="datamodules.fewshot.shapes:ShapesCaptions",
        summary="Contrastive pretraining of the zoo's tiny CLIP on the ShapesB2N captions (DePT's frozen CLIP)",
        paper="Radford et al., Learning Transferable Visual Models From Natural Language Supervision, arXiv:2103.00020",
    )
)
