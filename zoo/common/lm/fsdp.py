"""FSDP helpers for Hugging Face students (used from configs, e.g. ``configs/mcc_kd/fsdp.yaml``).

Lightning's ``FSDPStrategy(auto_wrap_policy=...)`` accepts a callable ``(module, recurse,
nonwrapped_numel) -> bool``; :func:`transformer_block_policy` wraps every transformer block
(LLaMA/Qwen ``*DecoderLayer``, GPT-2 ``GPT2Block``, T5 ``T5Block``, BART ``*EncoderLayer`` /
``*DecoderLayer``) in its own FSDP unit, so only one block's full weights are gathered at a time.
It is named by import path in YAML, which a set of classes cannot be without importing them.
"""

from __future__ import annotations

from torch import nn

#: class-name suffixes of the transformer blocks of the supported families.
BLOCK_SUFFIXES = ("DecoderLayer", "EncoderLayer", "Block")


def is_transformer_block(module: nn.Module) -> bool:
    """True for a transformer block of a Hugging Face model (by class-name suffix)."""
    name = type(module).__name__
    return name.endswith(BLOCK_SUFFIXES) and not name.endswith(("LayerNorm", "Stack"))


def transformer_block_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: descend everywhere, wrap each transformer block."""
    return True if recurse else is_transformer_block(module)
