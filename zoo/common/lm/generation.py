"""Greedy / beam / sampled generation through ``model.generate``, in input order.

Prompts are encoded exactly as training saw them (:func:`zoo.common.lm.text.prompt_ids`: causal
``[BOS] + enc(prompt)``, seq2seq ``tokenizer(prompt)["input_ids"]``), batched by length (longest
first, to pad little), padded on the left for decoder-only models and on the right for
encoder-decoders, and generated under ``model.eval()`` and ``torch.no_grad()`` (the model's
train/eval mode is restored afterwards). The default is deterministic greedy decoding.

The generation config is the model's own (so a real checkpoint keeps, e.g., BART's forced
BOS/EOS) updated with the arguments here; pad/eos ids missing from it come from the tokenizer, so
``transformers`` does not warn about them. When ``do_sample=False`` the sampling-only fields
(temperature, top_p, top_k) are set to their neutral values, so a chat model's sampling defaults
cause no warning.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from zoo.common.lm.loading import lm_kind
from zoo.common.lm.text import pad_collate, prompt_ids
from zoo.core.errors import ZooError


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def _generation_config(model: Any, tokenizer: Any, max_new_tokens: int, num_beams: int,
                       do_sample: bool, gen_kwargs: dict[str, Any]):
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    gen = copy.deepcopy(base) if base is not None else GenerationConfig()
    gen.max_new_tokens = max_new_tokens
    gen.max_length = None
    gen.num_beams = num_beams
    gen.do_sample = do_sample
    if not do_sample:  # neutral values: None would be refilled from the model's own config
        gen.temperature, gen.top_p, gen.top_k = 1.0, 1.0, 50
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if gen.eos_token_id is None and tokenizer.eos_token_id is not None:
        gen.eos_token_id = tokenizer.eos_token_id
    for key, value in gen_kwargs.items():
        setattr(gen, key, value)
    return gen


def _stop_ids(gen: Any) -> set[int]:
    eos = gen.eos_token_id
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, (list, tuple)) else {int(eos)}


def generate_ids(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 64,
                 num_beams: int = 1, do_sample: bool = False, add_bos: bool = True,
                 batch_size: int = 32, **gen_kwargs: Any) -> list[list[int]]:
    """The generated continuation of each prompt as token ids, in input order.

    Each row is cut at the first EOS (excluded) and holds no padding; a decoder's start token is
    not included.

    Args:
        model: a causal or seq2seq ``PreTrainedModel`` (or a PEFT model around one).
        tokenizer: its tokenizer (must have a pad or an eos token).
        prompts: the prompt texts.
        max_new_tokens: the most tokens generated per prompt.
        num_beams: beam width (1 = greedy).
        do_sample: sample instead of greedy/beam search (seed the global RNG for repeatability).
        add_bos: causal: start each prompt with BOS (when the tokenizer has one), as training
            did (:func:`zoo.common.lm.text.encode_pair`); ignored for seq2seq models.
        batch_size: prompts per ``generate`` call.
        **gen_kwargs: any other ``GenerationConfig`` field (``repetition_penalty``, ...).

    Returns:
        One list of ints per prompt.

    Raises:
        ZooError: a bad argument, or a tokenizer with neither pad nor eos token.
    """
    if isinstance(prompts, str):
        raise ZooError("generate: prompts must be a list of strings, got one string")
    if max_new_tokens < 1 or num_beams < 1 or batch_size < 1:
        raise ZooError(f"generate: max_new_tokens={max_new_tokens}, num_beams={num_beams} and "
                       f"batch_size={batch_size} must be positive")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ZooError("generate: the tokenizer has neither a pad_token nor an eos_token")
    kind = lm_kind(model)
    gen = _generation_config(model, tokenizer, max_new_tokens, num_beams, do_sample, gen_kwargs)
    if (gen.num_return_sequences or 1) != 1:
        raise ZooError("generate: num_return_sequences must be 1 (call once per sample, or pass "
                       "the prompt several times)")
    stop = _stop_ids(gen)
    encoded = [prompt_ids(tokenizer, p, kind=kind, add_bos=add_bos) for p in prompts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ZooError(f"generate: prompt {i} is empty after tokenisation (and has no BOS)")
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    side = "left" if kind == "causal" else "right"
    device = _device(model)
    out: list[list[int] | None] = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                batch = pad_collate([{"input_ids": encoded[i]} for i in chunk], pad_id, side=side)
                seqs = model.generate(input_ids=batch["input_ids"].to(device),
                                      attention_mask=batch["attention_mask"].to(device),
                                      generation_config=gen)
                skip = batch["input_ids"].shape[1] if kind == "causal" else 1
                for row, i in zip(seqs[:, skip:].tolist(), chunk):
                    cut = next((j for j, tok in enumerate(row) if tok in stop), len(row))
                    out[i] = row[:cut]
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 64,
             num_beams: int = 1, do_sample: bool = False, add_bos: bool = True,
             batch_size: int = 32, **gen_kwargs: Any) -> list[str]:
    """The generated continuation of each prompt as text, in input order.

    :func:`generate_ids` decoded with ``skip_special_tokens=True``; same arguments.
    """
    ids = generate_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, num_beams=num_beams,
                       do_sample=do_sample, add_bos=add_bos, batch_size=batch_size, **gen_kwargs)
    return tokenizer.batch_decode(ids, skip_special_tokens=True)
