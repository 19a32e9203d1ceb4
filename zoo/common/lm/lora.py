"""LoRA through ``peft`` by config; adapter-only state dicts; a fingerprint of the frozen base.

A LoRA checkpoint keeps only what training changed (the adapters and any ``modules_to_save``
head) plus :func:`base_fingerprint` of the base weights it was trained on, so that loading it onto
a different base is a clear error rather than silently wrong outputs (STYLE 1b).

LoRA (Hu et al., arXiv:2106.09685v2, Eq. (3)): a targeted weight W0 computes
``h = W0 x + (alpha / r) B A x`` with A (r x in) random and B (out x r) zero at init, so the
adapted model starts equal to the base. :func:`merged_copy` folds ``(alpha / r) B A`` into W0.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zoo.common.lm.loading import lm_kind
from zoo.core.errors import ZooError
from zoo.core.weights import listed

_BIASES = ("none", "all", "lora_only")


@dataclass
class LoraSpec:
    """Which modules get adapters and how big they are.

    Attributes:
        targets: module-name suffixes to adapt (``["q_proj", "v_proj"]`` for LLaMA,
            ``["c_attn"]`` for GPT-2, ``["q", "v"]`` for T5), or ``["all-linear"]``.
        r: the rank (> 0).
        alpha: the scale numerator (> 0); the update is scaled by ``alpha / r``.
        dropout: dropout on the adapter input, in [0, 1).
        modules_to_save: module-name suffixes trained in full and saved (e.g. a new head).
        bias: ``"none"``, ``"all"`` or ``"lora_only"`` (which biases train).

    Raises:
        ZooError: naming the field, when a value is out of range.
    """

    targets: list[str]
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    modules_to_save: list[str] = field(default_factory=list)
    bias: str = "none"

    def __post_init__(self) -> None:
        if isinstance(self.targets, str) or not self.targets or not all(
                isinstance(t, str) and t for t in self.targets):
            raise ZooError(f"LoraSpec.targets={self.targets!r}: expected a non-empty list of "
                           "module names")
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ZooError(f"LoraSpec.r={self.r!r}: expected a positive integer")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ZooError(f"LoraSpec.alpha={self.alpha!r}: expected a positive number")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0 <= self.dropout < 1:
            raise ZooError(f"LoraSpec.dropout={self.dropout!r}: expected a number in [0, 1)")
        if isinstance(self.modules_to_save, str) or not all(
                isinstance(m, str) and m for m in self.modules_to_save):
            raise ZooError(f"LoraSpec.modules_to_save={self.modules_to_save!r}: expected a list "
                           "of module names")
        if self.bias not in _BIASES:
            raise ZooError(f"LoraSpec.bias={self.bias!r}: expected one of {', '.join(_BIASES)}")


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def apply_lora(model: nn.Module, spec: LoraSpec):
    """``peft.get_peft_model(model, LoraConfig(...))`` from a :class:`LoraSpec`.

    The task type follows :func:`~zoo.common.lm.loading.lm_kind`. GPT-2's fused ``Conv1D``
    projections get ``fan_in_fan_out=True``. Afterwards only the adapters (and the
    ``modules_to_save`` copies, and biases per ``spec.bias``) require grad.

    Args:
        model: a ``PreTrainedModel`` (it is modified in place by ``peft`` and wrapped).
        spec: the adapter spec.

    Returns:
        A ``peft.PeftModel``.

    Raises:
        ZooError: a target or a module to save that matches no module of the model.
    """
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    names = {name: mod for name, mod in model.named_modules() if name}
    all_linear = spec.targets == ["all-linear"]
    hits: list[nn.Module] = []
    if not all_linear:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in names.items()
                         if isinstance(m, (nn.Linear, Conv1D))})
        for target in spec.targets:
            found = [m for n, m in names.items() if _matches(n, target)]
            if not found:
                raise ZooError(f"LoraSpec.targets: {target!r} matches no module of "
                               f"{type(model).__name__} (its linear layers: {listed(leaves)})")
            hits += found
    for target in spec.modules_to_save:
        if not any(_matches(n, target) for n in names):
            raise ZooError(f"LoraSpec.modules_to_save: {target!r} matches no module of "
                           f"{type(model).__name__}")
    fan_in_fan_out = bool(hits) and all(isinstance(m, Conv1D) for m in hits)
    config = LoraConfig(
        r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
        target_modules="all-linear" if all_linear else list(spec.targets),
        modules_to_save=list(spec.modules_to_save) or None, bias=spec.bias,
        fan_in_fan_out=fan_in_fan_out,
        task_type="SEQ_2_SEQ_LM" if lm_kind(model) == "seq2seq" else "CAUSAL_LM")
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _is_saved_copy(key: str) -> bool:
    return ".modules_to_save." in key


def trainable_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The entries of ``module.state_dict()`` that training changes.

    Those are the parameters with ``requires_grad`` (LoRA adapters; everything in a full
    fine-tune) and every tensor (buffers too) of a ``modules_to_save`` copy. Keys are the
    ``state_dict`` keys of ``module`` (so a LightningModule holding the PEFT model works too).

    Returns:
        ``{key: detached tensor}`` (shares storage with the module; ``torch.save`` copies it).
    """
    out = {}
    for key, value in module.state_dict(keep_vars=True).items():
        if (isinstance(value, nn.Parameter) and value.requires_grad) or _is_saved_copy(key):
            out[key] = value.detach()
    return out


def load_trainable_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`trainable_state_dict` back, strictly on its keys.

    The keys of ``state`` must be exactly those of ``trainable_state_dict(module)`` (the module
    built the same way: same base, same :func:`apply_lora` spec); the frozen base is untouched.

    Raises:
        ZooError: missing, unexpected or mis-shaped keys (the first few named).
    """
    own = trainable_state_dict(module)
    parts = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing:
        parts.append(f"missing keys: {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {listed(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {listed(shapes)}")
    if parts:
        raise ZooError("trainable state does not match the model (adapters built with a different "
                       "spec or base?): " + "; ".join(parts))
    result = module.load_state_dict(state, strict=False)
    if result.unexpected_keys:  # pragma: no cover - excluded by the key check above
        raise ZooError(f"unexpected keys: {listed(list(result.unexpected_keys))}")


def _base_key(key: str) -> str | None:
    """The bare model's name for a base weight, or None for adapter / saved-copy entries."""
    if _is_saved_copy(key) or any(part.startswith("lora_") for part in key.split(".")):
        return None
    if key.startswith("base_model.model."):
        key = key[len("base_model.model."):]
    return key.replace(".base_layer.", ".").replace(".original_module.", ".")


def base_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the frozen base weights, the same for a model and its PEFT-wrapped self.

    Over the ``state_dict`` entries that are not LoRA tensors (no ``lora_*`` name part) and not
    ``modules_to_save`` copies, with PEFT's renamings undone (the ``base_model.model.`` prefix,
    ``.base_layer.``, ``.original_module.``), sorted by name, the hash reads for each entry
    ``name \\0 dtype \\0 shape \\0`` (``str(tensor.dtype)``, ``str(list(shape))``) followed by the
    tensor's raw bytes in C order on the CPU. No Python ``hash`` or object identity is involved,
    so the value is the same in every process; any changed base weight changes it, training the
    adapters does not.

    Args:
        model: a ``PreTrainedModel`` or a ``PeftModel`` (not FSDP-sharded: call before wrapping).

    Returns:
        64 hex digits.
    """
    entries = {}
    for key, value in model.state_dict().items():
        base = _base_key(key)
        if base is not None:
            entries[base] = value
    h = hashlib.sha256()
    for name in sorted(entries):
        t = entries[name].detach()
        if t.is_meta:
            raise ZooError(f"base_fingerprint: {name} is on the meta device (weights not loaded)")
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def merged_copy(peft_model: Any):
    """A deep copy of ``peft_model`` with the adapters merged into the base weights.

    ``merge_and_unload`` on a copy, so the PEFT model itself keeps training; the result is a
    plain ``PreTrainedModel`` (``modules_to_save`` replaced by their trained copies) that
    :func:`zoo.common.lm.tiny.save_model` can write.

    Raises:
        ZooError: ``peft_model`` is not a PEFT model.
    """
    if not hasattr(peft_model, "merge_and_unload"):
        raise ZooError(f"merged_copy: expected a PEFT model, got {type(peft_model).__name__}")
    return copy.deepcopy(peft_model).merge_and_unload()
