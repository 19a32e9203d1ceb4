"""One registry of zoo models: name -> :class:`ZooEntry`.

Each paper registers its own entries in its package's ``__init__.py`` (``zoo/<paper>/__init__.py``),
so a paper's folder is the one place that names its models. Entries hold import strings, not
classes, so listing the models (``python -m zoo.fit --help``) imports no torch-heavy module: the
paper packages are discovered on first use and only their light ``__init__`` files are run.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

from zoo.core.errors import ZooError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ROOT = REPO_ROOT / "configs"
#: the zoo package folder; its sub-packages other than these are paper packages.
_ZOO_DIR = Path(__file__).resolve().parents[1]
_SHARED = frozenset({"core", "common"})


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
        bench: ``"package.module:Class"`` of the model's bench (a :class:`zoo.common.harness.Bench`
            subclass), or ``""`` when the model has none.
        prepare: ``"package.module:function"`` of the model's data-preparation command
            (``python -m zoo.prepare <name> ...``; the function takes ``argv``), or ``""``.
    """

    name: str
    module: str
    datamodule: str
    summary: str
    paper: str = ""
    baselines: tuple[str, ...] = field(default_factory=tuple)
    bench: str = ""
    prepare: str = ""

    def config(self, which: str = "default") -> Path:
        """Path of ``configs/<name>/<which>.yaml``."""
        return CONFIG_ROOT / self.name / f"{which}.yaml"

    def configs(self) -> list[str]:
        """Names of the shipped configs of this model."""
        return sorted(p.stem for p in (CONFIG_ROOT / self.name).glob("*.yaml"))


_REGISTRY: dict[str, ZooEntry] = {}
_discovered = False


def register(entry: ZooEntry) -> ZooEntry:
    """Add an entry; a second entry with the same name is a programming error."""
    if entry.name in _REGISTRY and _REGISTRY[entry.name] != entry:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def _discover() -> None:
    """Import every paper package once (its ``__init__`` registers its entries)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in sorted(pkgutil.iter_modules([str(_ZOO_DIR)]), key=lambda i: i.name):
        if info.ispkg and info.name not in _SHARED and not info.name.startswith("_"):
            importlib.import_module(f"zoo.{info.name}")


def get(name: str) -> ZooEntry:
    """The entry called ``name``; an unknown name is a :class:`ZooError` listing the known ones."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ZooError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _discover()
    return sorted(_REGISTRY)


def entries() -> list[ZooEntry]:
    """All entries, sorted by name."""
    return [_REGISTRY[n] for n in list_models()]


def import_string(path: str):
    """Import ``"package.module:Attr"`` (or ``"package.module.Attr"``)."""
    if ":" in path:
        mod, _, attr = path.partition(":")
    else:
        mod, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(mod), attr)
