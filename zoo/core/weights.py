"""Reading local weight files and loading them strictly, shared by every backbone builder.

A loose load (``strict=False``) that silently leaves random weights is the failure every spec
warns about; here any missing, unexpected or mis-shaped key is a one-line :class:`ZooError`
naming the file and the first few offending keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.core.errors import ZooError

_MAX_LISTED_KEYS = 3


def read_weights(path: Path) -> Any:
    """``safetensors`` or ``torch.load(weights_only=True)``; any read failure is a ZooError."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any read failure is a bad user file
        raise ZooError(f"cannot read weights file {path}: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from err


def listed(keys: Sequence[str]) -> str:
    """The first few keys, comma-separated, with a ``(+N more)`` tail."""
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return shown + (f" (+{more} more)" if more > 0 else "")


def mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between a model's state dict and a loaded one (empty if none)."""
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in state if k in own and state[k].shape != own[k].shape]
    parts = []
    if missing:
        parts.append(f"missing keys: {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {listed(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {listed(shapes)}")
    return parts


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str, hint: str = "") -> None:
    """``model.load_state_dict(state, strict=True)`` with a one-line error naming the mismatch.

    Args:
        model: the module to load into.
        state: the state dict read from ``path``.
        path: the file (named in the error).
        what: what the file should have matched, e.g. ``"backbone 'cifar_resnet18'"``.
        hint: appended to the error in parentheses (how to fix it).
    """
    parts = mismatch(model.state_dict(), state)
    if not parts:
        try:
            model.load_state_dict(state, strict=True)
            return
        except RuntimeError as err:
            parts = [str(err).strip().splitlines()[0]]
    raise ZooError(f"weights file {path} does not match {what} (strict load); " + "; ".join(parts)
                   + (f" ({hint})" if hint else ""))
