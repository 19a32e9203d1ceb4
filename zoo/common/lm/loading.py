"""Language models and tokenizers from local Hugging Face folders, never from a hub.

Every loader passes ``local_files_only=True`` and checks the folder first, so a missing folder or
file is a one-line :class:`~zoo.core.errors.ZooError` naming the folder and what was expected,
not a hub lookup or a long ``transformers`` traceback. Model loading is strict by default:
weights that leave some parameters of the architecture uninitialised (which ``transformers`` only
logs) are an error, as everywhere in the zoo. The zoo's own tiny models
(:mod:`zoo.common.lm.tiny`) are saved in the same layout, so one loader serves tiny and real
models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from zoo.core.errors import ZooError
from zoo.core.weights import listed

#: the model families :mod:`zoo.common.lm.tiny` builds (every family ``transformers`` knows loads).
FAMILIES = ("llama", "gpt2", "bart", "t5")

#: a model folder needs one of these weight files.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")

#: a tokenizer folder needs one of these (a fast ``tokenizer.json``, or the files of a slow one).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                   "vocab.json", "vocab.txt")

_HINT = "expected a local Hugging Face model folder, as written by save_pretrained"


def check_model_dir(path: str | os.PathLike, need: Sequence[str] = ("config.json",),
                    weights: bool = True) -> Path:
    """Check that ``path`` is a local model folder holding ``need`` (and weights).

    Args:
        path: the folder.
        need: file names that must all be present.
        weights: also require one of :data:`WEIGHT_FILES`.

    Returns:
        The folder as a ``Path``.

    Raises:
        ZooError: ``<dir>: model folder not found`` or ``<dir>: missing <file> (...)``.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ZooError(f"{folder}: model folder not found")
    for name in need:
        if not (folder / name).is_file():
            raise ZooError(f"{folder}: missing {name} ({_HINT})")
    if weights and not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ZooError(f"{folder}: missing weights, one of {', '.join(WEIGHT_FILES)} ({_HINT})")
    return folder


def check_tokenizer_dir(path: str | os.PathLike) -> Path:
    """Check that ``path`` is a local folder with tokenizer files (see :data:`TOKENIZER_FILES`).

    Raises:
        ZooError: the folder is missing or holds none of the expected files.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ZooError(f"{folder}: tokenizer folder not found")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ZooError(f"{folder}: missing tokenizer files (expected tokenizer.json, or "
                       "tokenizer.model / spiece.model / vocab.json+merges.txt / vocab.txt)")
    return folder


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]


def load_tokenizer(path: str | os.PathLike, **kwargs: Any):
    """``AutoTokenizer.from_pretrained(path, local_files_only=True, **kwargs)``.

    Args:
        path: a local tokenizer folder (often the model folder itself).
        **kwargs: passed to ``from_pretrained`` (e.g. ``padding_side``).

    Returns:
        A ``PreTrainedTokenizerBase`` (a fast tokenizer whenever ``tokenizer.json`` is present).

    Raises:
        ZooError: the folder or its tokenizer files are missing, or ``transformers`` cannot
            read them.
    """
    from transformers import AutoTokenizer

    folder = check_tokenizer_dir(path)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ZooError(f"{folder}: cannot load the tokenizer: {_first_line(err)}") from err


def _load(path: str | os.PathLike, auto_name: str, dtype: str | torch.dtype | None, strict: bool,
          kwargs: dict[str, Any]):
    import transformers
    from safetensors import SafetensorError

    folder = check_model_dir(path)
    auto = getattr(transformers, auto_name)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model, info = auto.from_pretrained(str(folder), local_files_only=True,
                                           output_loading_info=True, **kwargs)
    except torch.OutOfMemoryError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise ZooError(f"{folder}: cannot load as {auto_name}: {_first_line(err)}") from err
    missing = sorted(info.get("missing_keys") or ())
    if strict and missing:
        raise ZooError(f"{folder}: weights do not match config.json, missing keys: {listed(missing)} "
                       "(they would be randomly initialised; pass strict=False to allow it)")
    return model


def load_causal_lm(path: str | os.PathLike, dtype: str | torch.dtype | None = None, *,
                   strict: bool = True, **kwargs: Any):
    """``AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)``.

    Args:
        path: a local model folder (config.json + weights).
        dtype: ``torch.bfloat16``, ``"bfloat16"``, ``"auto"``, ... (default: the library's, fp32).
        strict: refuse weights that miss some of the model's parameters (``transformers`` would
            initialise them randomly and only log a report).
        **kwargs: passed to ``from_pretrained`` (e.g. ``attn_implementation``).

    Returns:
        A ``PreTrainedModel`` in eval mode.

    Raises:
        ZooError: missing folder or file, unreadable or mis-shaped weights, missing keys (when
            ``strict``), or a folder ``transformers`` cannot load as a causal LM (e.g. an
            encoder-decoder model), in one line naming the folder.
    """
    return _load(path, "AutoModelForCausalLM", dtype, strict, kwargs)


def load_seq2seq_lm(path: str | os.PathLike, dtype: str | torch.dtype | None = None, *,
                    strict: bool = True, **kwargs: Any):
    """``AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True, dtype=dtype)``.

    Same arguments and errors as :func:`load_causal_lm`, for encoder-decoder models (T5, BART).
    """
    return _load(path, "AutoModelForSeq2SeqLM", dtype, strict, kwargs)


def lm_kind(model: Any) -> Literal["causal", "seq2seq"]:
    """``"seq2seq"`` when ``model.config.is_encoder_decoder`` else ``"causal"`` (PEFT-wrapped too)."""
    config = getattr(model, "config", None)
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
