"""Prompt/target encoding with label masks, the prefix check, and a padding collate.

Conventions (STYLE 1b): labels are -100 on the prompt and on padding, so a loss or score sees
the target tokens only. Targets and causal prompts are encoded without the tokenizer's own
special-token template (``add_special_tokens=False``); BOS and EOS are added here, explicitly:

- causal: ``input_ids = [BOS] + enc(prompt) + enc(target) + [EOS]``, prompt and target encoded
  separately and concatenated (as MCC-KD's code does), ``labels`` = -100 on ``[BOS] +
  enc(prompt)`` and the target ids after it. ``labels`` are aligned with ``input_ids`` (HF
  convention: the model shifts them); see :func:`zoo.common.lm.scoring.shift_for_causal`.
- seq2seq: ``input_ids = tokenizer(prompt)["input_ids"]``, the encoder's source with the
  tokenizer's own template, as the checkpoint was trained (T5: ``prompt </s>``; BART:
  ``<s> prompt </s>``; a tokenizer from :func:`zoo.common.lm.tiny.train_tokenizer` with its
  defaults: the bare prompt), and ``labels = enc(target) + [EOS]`` (the decoder's targets; the
  model builds the decoder inputs). ``add_bos`` does not apply to seq2seq sources.

With ``joint=True`` the causal target ids are instead taken from ``enc(prompt + target)`` after
:func:`check_prefix` has made sure that ``enc(prompt)`` is a prefix of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from zoo.core.errors import ZooError

IGNORE = -100


def encode(tokenizer: Any, text: str) -> list[int]:
    """``tokenizer(text, add_special_tokens=False)["input_ids"]`` as a list of ints."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def check_prefix(tokenizer: Any, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Check that ``enc(prompt)`` is a prefix of ``enc(prompt + target)``.

    Joint encoding is only safe when the prompt's tokens survive it: a BPE or SentencePiece
    tokenizer can merge the prompt's last characters with the target's first ones, and then the
    label mask would cover the wrong tokens. The caller includes any separator (a space) in
    ``prompt`` or ``target``.

    Returns:
        ``(prompt_ids, target_ids)`` with ``prompt_ids + target_ids == enc(prompt + target)``.

    Raises:
        ZooError: naming the prompt and the first token where the two encodings differ.
    """
    prompt_ids = encode(tokenizer, prompt)
    joint = encode(tokenizer, prompt + target)
    if joint[: len(prompt_ids)] != prompt_ids:
        at = next((i for i, (a, b) in enumerate(zip(prompt_ids, joint)) if a != b),
                  min(len(prompt_ids), len(joint)))
        raise ZooError(f"prompt {_short(prompt)}: its tokens are not a prefix of the tokens of "
                       f"prompt + target (they differ at token {at}); encode prompt and target "
                       "separately (joint=False) or end the prompt at a token boundary")
    return prompt_ids, joint[len(prompt_ids):]


def prompt_ids(tokenizer: Any, prompt: str, *, kind: Literal["causal", "seq2seq"] = "causal",
               add_bos: bool = True) -> list[int]:
    """The model input for ``prompt`` alone, exactly as :func:`encode_pair` builds it.

    Causal: ``[BOS] + enc(prompt)`` (BOS when ``add_bos`` and the tokenizer has one); seq2seq:
    ``tokenizer(prompt)["input_ids"]`` (the tokenizer's own template; ``add_bos`` is ignored).
    Generation uses this so that a model sees at inference the input it was trained on.
    """
    if kind == "seq2seq":
        return list(tokenizer(prompt)["input_ids"])
    ids = encode(tokenizer, prompt)
    if add_bos and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def encode_pair(tokenizer: Any, prompt: str, target: str, *, max_length: int = 512,
                add_bos: bool = True, add_eos: bool = True,
                kind: Literal["causal", "seq2seq"] = "causal",
                truncate: Literal["target_tail", "error"] = "target_tail", joint: bool = False,
                max_target_length: int | None = None) -> dict[str, Any]:
    """Token ids and labels for one (prompt, target) pair; see the module docstring for layout.

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompt: the conditioning text (a question).
        target: the text to learn (a rationale + answer).
        max_length: causal: the most tokens in ``input_ids``; seq2seq: the most source tokens.
        add_bos: causal: prepend BOS (when the tokenizer has one).
        add_eos: append EOS to the target (causal and seq2seq).
        kind: ``"causal"`` or ``"seq2seq"`` (see :func:`zoo.common.lm.loading.lm_kind`).
        truncate: ``"target_tail"`` drops the target's last tokens (the EOS first) so that the
            pair fits, keeping the prompt whole; ``"error"`` raises instead.
        joint: causal only: take the target ids from ``enc(prompt + target)`` (see
            :func:`check_prefix`).
        max_target_length: seq2seq: the most label tokens (default ``max_length``).

    Returns:
        ``{"input_ids": list[int], "labels": list[int], "prompt_len": int, "truncated": bool}``.
        Causal: ``len(labels) == len(input_ids)``, ``labels[:prompt_len]`` are -100 and
        ``prompt_len`` counts BOS. Seq2seq: ``prompt_len == len(input_ids)`` and ``labels`` hold
        the decoder targets.

    Raises:
        ZooError: the prompt alone does not fit ``max_length`` (naming the prompt), the pair
            does not fit and ``truncate="error"``, a failed prefix check, or a bad option.
    """
    if kind not in ("causal", "seq2seq"):
        raise ZooError(f"encode_pair kind={kind!r}: expected 'causal' or 'seq2seq'")
    if truncate not in ("target_tail", "error"):
        raise ZooError(f"encode_pair truncate={truncate!r}: expected 'target_tail' or 'error'")
    eos = tokenizer.eos_token_id
    if add_eos and eos is None:
        raise ZooError("encode_pair add_eos=True: the tokenizer has no eos_token")
    if kind == "seq2seq":
        if joint:
            raise ZooError("encode_pair joint=True: only for kind='causal'")
        source = prompt_ids(tokenizer, prompt, kind="seq2seq", add_bos=add_bos)
        labels = encode(tokenizer, target) + ([eos] if add_eos else [])
        limit = max_length if max_target_length is None else max_target_length
        if len(source) > max_length:
            raise ZooError(f"prompt {_short(prompt)}: {len(source)} tokens, more than "
                           f"max_length={max_length}")
        truncated = len(labels) > limit
        if truncated and truncate == "error":
            raise ZooError(f"prompt {_short(prompt)}: target has {len(labels)} tokens, more "
                           f"than max_target_length={limit}")
        return {"input_ids": source, "labels": labels[:limit], "prompt_len": len(source),
                "truncated": truncated}

    if joint:
        head, tail = check_prefix(tokenizer, prompt, target)
    else:
        head, tail = encode(tokenizer, prompt), encode(tokenizer, target)
    if add_bos and tokenizer.bos_token_id is not None:
        head = [tokenizer.bos_token_id] + head
    tail = tail + ([eos] if add_eos else [])
    if len(head) >= max_length:
        raise ZooError(f"prompt {_short(prompt)}: {len(head)} tokens leave no room for the "
                       f"target within max_length={max_length}")
    truncated = len(head) + len(tail) > max_length
    if truncated and truncate == "error":
        raise ZooError(f"prompt {_short(prompt)}: prompt + target are {len(head) + len(tail)} "
                       f"tokens, more than max_length={max_length}")
    tail = tail[: max_length - len(head)]
    return {"input_ids": head + tail, "labels": [IGNORE] * len(head) + tail,
            "prompt_len": len(head), "truncated": truncated}


def _pad_value(key: str, pad_id: int, label_pad: int) -> int:
    if key == "labels" or key.endswith("_labels"):
        return label_pad
    if key == "attention_mask" or key.endswith("_mask"):
        return 0
    return pad_id


def pad_collate(features: Sequence[dict[str, Any]], pad_id: int, *,
                side: Literal["right", "left"] = "right",
                keys: Sequence[str] = ("input_ids", "labels", "attention_mask"),
                label_pad: int = IGNORE) -> dict[str, Any]:
    """Pad a batch of encoded features into ``LongTensor``\\ s.

    Each key of ``keys`` present in the features (lists of ints, or 1-D tensors) is padded to
    its own batch maximum, so causal ``input_ids``/``labels`` (equal lengths) and seq2seq ones
    (different lengths) both work. The pad value is ``label_pad`` for ``labels`` /
    ``*_labels``, 0 for ``attention_mask`` / ``*_mask`` and ``pad_id`` otherwise. An
    ``attention_mask`` (1 on real tokens) is built from ``input_ids`` when the features have none.
    Every other key is passed through: stacked into a tensor when all values are numbers or
    same-shape tensors, else kept as a list.

    Args:
        features: one dict per example, e.g. from :func:`encode_pair`.
        pad_id: the tokenizer's ``pad_token_id``.
        side: ``"right"`` (training) or ``"left"`` (decoder-only generation).
        keys: the keys to pad.
        label_pad: the pad value of label keys.

    Returns:
        A dict of (B, T_key) int64 tensors for the padded keys, plus the passed-through keys.

    Raises:
        ZooError: an empty batch, a missing key in some features, or a bad ``side``.
    """
    if not features:
        raise ZooError("pad_collate: empty batch")
    if side not in ("right", "left"):
        raise ZooError(f"pad_collate side={side!r}: expected 'right' or 'left'")
    if pad_id is None:
        raise ZooError("pad_collate: pad_id is None (the tokenizer has no pad_token)")
    present = [k for k in keys if k in features[0]]
    if "input_ids" in keys and "attention_mask" in keys and "attention_mask" not in features[0] \
            and "input_ids" in features[0]:
        features = [{**f, "attention_mask": [1] * len(f["input_ids"])} for f in features]
        present.append("attention_mask")
    out: dict[str, Any] = {}
    for key in present:
        rows = []
        for i, f in enumerate(features):
            if key not in f:
                raise ZooError(f"pad_collate: feature {i} has no {key!r}")
            value = f[key]
            rows.append(value.tolist() if torch.is_tensor(value) else list(value))
        width = max(len(r) for r in rows)
        fill = _pad_value(key, pad_id, label_pad)
        padded = [([fill] * (width - len(r)) + r) if side == "left" else (r + [fill] * (width - len(r)))
                  for r in rows]
        out[key] = torch.tensor(padded, dtype=torch.long)
    for key in features[0]:
        if key in out:
            continue
        values = [f.get(key) for f in features]
        if all(isinstance(v, (bool, int, float)) for v in values):
            out[key] = torch.tensor(values)
        elif all(torch.is_tensor(v) for v in values) and len({tuple(v.shape) for v in values}) == 1:
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out
