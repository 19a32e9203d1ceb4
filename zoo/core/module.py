"""The :class:`ZooModule` base of every zoo LightningModule, and checkpoint loading.

Every checkpoint written by a ZooModule carries ``checkpoint["zoo"] = {"name", "class_path",
"version", "inputs"}``. ``inputs`` is the model's input contract: for a vision model the eval
image transform (``{"kind": "image", "transform": {...}}``), for a language model its tokenizer,
saved inside the checkpoint or referenced as a local folder with a fingerprint
(``{"kind": "text", "tokenizer": {...}}``, see :mod:`zoo.core.contract`). :func:`load_checkpoint`
(exposed as ``zoo.load``) reads that block, so the caller never names a class, and rebuilds the
model with the class's weight-file arguments set to ``None``: the weights come from the state dict,
so the pretrained file is not needed.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule

from zoo.core import VERSION
from zoo.core.errors import ZooError
from zoo.core.registry import import_string


class ZooModule(LightningModule):
    """Base LightningModule of the zoo.

    Class attributes a model sets:
        zoo_name: the registry name.
        weight_args: init arguments that point at external weight files whose weights end up in the
            state dict; ``zoo.load`` sets them to ``None`` (the file is not needed to reload).
        external_weight_args: weight-file arguments whose weights are *not* stored in the
            checkpoint (e.g. DePT's frozen CLIP); ``zoo.load`` keeps them.
        input_kind: what ``zoo.predict`` feeds the model: ``"image"`` (files -> tensors through
            the stored transform) or ``"text"`` (strings).
        throughput_unit: what the throughput callback counts (``"images"``, ``"tokens"``);
            :meth:`count_units` says how many a batch holds.
    """

    zoo_name: ClassVar[str] = ""
    weight_args: ClassVar[tuple[str, ...]] = ()
    external_weight_args: ClassVar[tuple[str, ...]] = ()
    input_kind: ClassVar[str] = "image"
    throughput_unit: ClassVar[str] = "images"

    def __init__(self) -> None:
        super().__init__()
        #: the eval transform spec of the data the model was trained on (see ``datamodules``).
        self.transform_spec: dict[str, Any] = {}

    # ------------------------------------------------------------------ input contract
    def input_contract(self) -> dict[str, Any]:
        """What a user must feed this model, stored in the checkpoint. Vision models: the eval
        transform spec; language models override this to return their tokenizer contract."""
        return {"kind": "image", "transform": dict(self.transform_spec)}

    def restore_input_contract(self, inputs: dict[str, Any]) -> None:
        """Inverse of :meth:`input_contract`, called on load."""
        self.transform_spec = dict(inputs.get("transform", {}))

    def count_units(self, batch: Any) -> int:
        """How many :attr:`throughput_unit` a training batch holds (default: ``batch["image"]``)."""
        return int(batch["image"].shape[0])

    # ------------------------------------------------------------------ predict hooks
    @classmethod
    def add_predict_arguments(cls, parser) -> None:
        """Add the model's own ``zoo.predict`` options to an ``argparse`` parser (default: none)."""

    def predict_inputs(self, options: dict[str, Any]) -> list[str]:
        """Text inputs given through the model's own predict options (e.g. ``--question``), which
        are removed from ``options``; appended to the positional inputs. Default: none."""
        return []

    def predict_rows(self, inputs: Any, **options: Any) -> list[dict[str, Any]]:
        """One dict per input (images: a (B, 3, H, W) batch; text: a list of strings)."""
        raise ZooError(f"model {self.zoo_name!r} has no prediction rows")

    def predict_legend(self, **options: Any) -> str:
        """One line explaining the columns of :meth:`predict_rows`."""
        return ""

    @torch.no_grad()
    def reference_outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Deterministic eval outputs on one batch of the model's test data; a reloaded checkpoint
        must reproduce them exactly (the registry-wide fit -> ``zoo.load`` test). Default: the
        prediction rows of the batch's images."""
        return {"rows": list(self.predict_rows([batch["image"]]))}

    # ------------------------------------------------------------------ checkpoint hooks
    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "eval_transform_spec"):
            self.transform_spec = dm.eval_transform_spec()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        checkpoint["zoo"] = {
            "name": self.zoo_name,
            "class_path": f"{cls.__module__}:{cls.__qualname__}",
            "version": VERSION,
            "inputs": self.input_contract(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get("zoo", {})
        self.restore_input_contract(info.get("inputs") or {"kind": "image", "transform": info.get("transform", {})})


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
    try:
        cls = import_string(info["class_path"])
    except (ImportError, AttributeError) as e:
        raise ZooError(f"{path}: model class {info.get('class_path')!r} not found in this zoo ({e})") from None
    hparams = ckpt.get("hyper_parameters", {})
    keep = set(getattr(cls, "external_weight_args", ()))
    kwargs: dict[str, Any] = {k: None for k in getattr(cls, "weight_args", ()) if k in hparams and k not in keep}
    kwargs.update(overrides)
    try:
        model = cls.load_from_checkpoint(path, map_location="cpu", strict=True, weights_only=True, **kwargs)
    except RuntimeError as e:  # strict state-dict mismatch
        first = str(e).strip().splitlines()
        raise ZooError(f"{path}: state dict does not match {cls.__name__} ({' '.join(first[:2])[:300]})") from None
    model.eval()
    return model
