"""The :class:`ZooModule` base of every zoo LightningModule, and checkpoint loading.

Every checkpoint written by a ZooModule carries ``checkpoint["zoo"] = {"name", "class_path",
"version", "transform"}``. :func:`load_checkpoint` (exposed as ``zoo.load``) reads that block, so the
caller never names a class, and rebuilds the model with the pretrained-weights arguments set to
``None``: the weights come from the state dict, so the pretrained file is not needed.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

import zoo
from zoo.common.errors import ZooError
from zoo.registry import import_string

#: hyper-parameters that point at external weight files; cleared when loading a zoo checkpoint.
WEIGHT_ARGS = ("backbone_weights", "init_from", "weights", "clip_weights")


class ZooModule(LightningModule):
    """Base LightningModule: writes the ``zoo`` block and an eval-transform spec to checkpoints.

    Subclasses set ``zoo_name`` (the registry name).
    """

    zoo_name: str = ""
    #: weight-path arguments that must survive ``zoo.load`` because the weights they point at are
    #: not stored in the checkpoint (e.g. DePT's frozen CLIP); all other WEIGHT_ARGS are cleared.
    external_weight_args: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        #: the eval transform spec of the data the model was trained on (see ``datamodules``).
        self.transform_spec: dict[str, Any] = {}

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "eval_transform_spec"):
            self.transform_spec = dm.eval_transform_spec()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        checkpoint["zoo"] = {
            "name": self.zoo_name,
            "class_path": f"{cls.__module__}:{cls.__qualname__}",
            "version": zoo.__version__,
            "transform": dict(self.transform_spec),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.transform_spec = dict(checkpoint.get("zoo", {}).get("transform", {}))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors for missing or foreign files."""
    p = Path(path)
    if not p.is_file():
        raise ZooError(f"{p}: checkpoint not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"{p}: not a readable torch checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or "zoo" not in ckpt or "state_dict" not in ckpt:
        raise ZooError(f"{p}: not a zoo checkpoint (no 'zoo' block); expected a .ckpt written by python -m zoo.fit")
    return ckpt


def load_checkpoint(path: str | os.PathLike, expect: str | None = None, **overrides: Any) -> ZooModule:
    """Rebuild a zoo model from its checkpoint alone (strict, ``weights_only=True``), in eval mode.

    Args:
        path: checkpoint path.
        expect: if given, the registry name the checkpoint must belong to.
        **overrides: hyper-parameters to override.
    """
    ckpt = read_checkpoint(path)
    info = ckpt["zoo"]
    if expect is not None and info.get("name") != expect:
        raise ZooError(f"{path}: checkpoint belongs to model {info.get('name')!r}, expected {expect!r}")
    cls = import_string(info["class_path"])
    hparams = ckpt.get("hyper_parameters", {})
    kwargs = {k: None for k in WEIGHT_ARGS if k in hparams and k not in getattr(cls, "external_weight_args", ())}
    kwargs.update(overrides)
    try:
        model = cls.load_from_checkpoint(path, map_location="cpu", strict=True, weights_only=True, **kwargs)
    except RuntimeError as e:  # strict state-dict mismatch
        first = str(e).strip().splitlines()
        raise ZooError(f"{path}: state dict does not match {cls.__name__} ({' '.join(first[:2])[:300]})") from None
    model.eval()
    return model
