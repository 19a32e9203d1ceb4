"""CLIP backbones through open_clip, built offline and loaded strictly from local files.

Two families:

* **Real use**: any open_clip architecture, e.g. ``ViT-B-16-quickgelu`` (OpenAI weights need the
  ``-quickgelu`` config). The weights are a local file: the OpenAI TorchScript archive
  (``ViT-B-16.pt``), an open_clip state dict (``.pt``/``.bin``/``.safetensors``) or a zoo ``clip``
  checkpoint. Nothing is downloaded; the BPE tokenizer ships inside open_clip.
* **Embedded worlds**: the zoo's tiny architectures in ``zoo/common/vision/clip_configs/*.json``, added to
  open_clip's registry with ``open_clip.add_model_config`` (``zoo-tiny-clip``: the ShapesB2N CLIP
  of the DePT spec, ~0.4M parameters; ``zoo-test-clip``: unit tests). They use a word-level
  tokenizer over a vocabulary file that the caller passes (an embedded world ships its own;
  pad = 0, the end-of-text id is the highest id, so open_clip's argmax pooling finds it).
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from zoo.core.errors import ZooError
from zoo.core.io import resolve_repo_path
from zoo.core.weights import load_strict, read_weights

CONFIG_DIR = Path(__file__).with_name("clip_configs")
#: the zoo's own CLIP architectures (word-level tokenizer), added to open_clip on first use.
ZOO_CLIPS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
_registered = False


def register_configs() -> None:
    """Add the zoo's tiny CLIP configs to open_clip's model registry (idempotent)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def model_config(name: str) -> dict[str, Any]:
    """open_clip's config dict of architecture ``name``; unknown names are a ZooError."""
    import open_clip

    register_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        known = [m for m in open_clip.list_models() if "ViT-B" in m or m in ZOO_CLIPS]
        raise ZooError(f"unknown CLIP architecture {name!r}; e.g. {', '.join(sorted(known)[:8])}")
    return cfg


# ------------------------------------------------------------------------------------- tokenizers


class WordTokenizer:
    """Word-level tokenizer of the zoo's tiny CLIPs.

    ``"a red circle."`` -> ``[SOT, a, red, circle, ., EOT, PAD, ...]`` with ids pad = 0, SOT = 1,
    word i of ``vocab`` = i + 2 and EOT = len(vocab) + 2 (the highest id, as in CLIP's BPE
    tokenizer, so argmax pooling takes the EOT position). Case is folded; ``.`` and ``,`` are
    tokens of their own; an unknown word or a text longer than the context is a ZooError (never a
    silent truncation of a prompt).
    """

    def __init__(self, vocab: list[str], context_length: int) -> None:
        self.vocab = list(vocab)
        self.context_length = context_length
        self.ids = {w: i + 2 for i, w in enumerate(self.vocab)}
        self.pad_id, self.sot_id, self.eot_id = 0, 1, len(self.vocab) + 2
        self.vocab_size = len(self.vocab) + 3

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z]+|[.,]", text.lower().replace("_", " "))

    def encode(self, text: str) -> list[int]:
        words = self.words(text)
        unknown = [w for w in words if w not in self.ids]
        if unknown:
            raise ZooError(f"text {text!r}: word(s) {', '.join(map(repr, unknown))} not in the tiny CLIP's vocabulary "
                           f"({' '.join(self.vocab)})")
        ids = [self.sot_id] + [self.ids[w] for w in words] + [self.eot_id]
        if len(ids) > self.context_length:
            raise ZooError(f"text {text!r}: {len(ids)} tokens exceed the context length {self.context_length}")
        return ids

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = self.encode(t)
            out[i, : len(ids)] = torch.tensor(ids)
        return out


def read_vocab(path: str | Path) -> list[str]:
    """A word-level vocabulary file: one word per line (blank lines ignored, order kept)."""
    p = resolve_repo_path(path)
    if not p.is_file():
        raise ZooError(f"vocabulary file {path}: not found; expected a text file with one word per line")
    words = [w.strip() for w in p.read_text(encoding="utf-8").splitlines() if w.strip()]
    if not words or len(set(words)) != len(words):
        raise ZooError(f"vocabulary file {p}: expected one distinct word per line, got {len(words)} words "
                       f"({len(words) - len(set(words))} repeated)")
    return words


def get_tokenizer(name: str, vocab: str | None = None) -> Callable[[list[str]], torch.Tensor]:
    """The tokenizer of architecture ``name``: ``texts -> LongTensor (N, context_length)``.

    Args:
        name: open_clip architecture.
        vocab: for the zoo's word-level architectures, the vocabulary file (one word per line, see
            :func:`read_vocab`), e.g. an embedded world's ``vocab.txt``; ignored otherwise.

    Zoo architectures get :class:`WordTokenizer` over ``vocab``; everything else open_clip's
    tokenizer (for OpenAI CLIPs the BPE ``SimpleTokenizer``, whose vocabulary file ships with
    open_clip, so no download).
    """
    cfg = model_config(name)
    ctx = int(cfg["text_cfg"]["context_length"])
    if name in ZOO_CLIPS:
        if vocab is None:
            raise ZooError(f"{name}: a word-level CLIP needs its vocabulary file (--model.clip_vocab PATH, "
                           "one word per line)")
        tok = WordTokenizer(read_vocab(vocab), ctx)
        want = int(cfg["text_cfg"]["vocab_size"])
        if tok.vocab_size != want:
            raise ZooError(f"{name}: the vocabulary {vocab} gives {tok.vocab_size} ids but the config's "
                           f"vocab_size is {want}")
        return tok
    import open_clip

    return open_clip.get_tokenizer(name, context_length=ctx)


# ------------------------------------------------------------------------------------- models


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist()[:64])


def read_clip_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict in open_clip's key names from a local file.

    Accepts the OpenAI TorchScript archive (read with ``torch.jit.load`` on CPU; its
    ``input_resolution``/``context_length``/``vocab_size`` entries are dropped, as open_clip does),
    open_clip state dicts (``.pt``/``.bin``/``.safetensors``; a ``state_dict`` wrapper and a
    ``module.`` prefix are removed) and zoo ``clip`` checkpoints (prefix ``clip.``). Tensors are
    returned in float32.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ZooError(f"CLIP weights file not found: {p}")
    if _is_torchscript(p):
        try:
            state = dict(torch.jit.load(str(p), map_location="cpu").state_dict())
        except Exception as err:  # noqa: BLE001
            raise ZooError(f"cannot read TorchScript CLIP archive {p}: {type(err).__name__}") from err
        # OpenAI's archive carries three config scalars (open_clip drops them too); a traced open_clip
        # model also carries its non-persistent causal mask. Neither is a weight.
        for k in ("input_resolution", "context_length", "vocab_size", "attn_mask"):
            state.pop(k, None)
    else:
        obj = read_weights(p)
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ZooError(f"CLIP weights file {p} holds a {type(obj).__name__}, not a state dict")
        state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        for prefix in ("module.", "clip."):
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def build_clip(name: str, weights: str | None = None) -> nn.Module:
    """open_clip model ``name`` with random init or a local weight file loaded strictly.

    Args:
        name: open_clip architecture, e.g. ``ViT-B-16-quickgelu`` or ``zoo-tiny-clip``.
        weights: local file (see :func:`read_clip_state`), or None for a random skeleton.

    Returns:
        The ``open_clip.model.CLIP`` in float32 and eval mode.

    Raises:
        ZooError: unknown architecture, unreadable file, or any key/shape mismatch (strict).
    """
    import open_clip

    model_config(name)  # registers zoo configs, validates the name
    quiet = _Quiet()  # open_clip warns "No pretrained weights loaded" on the root logger; we load next
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(name, pretrained=None, pretrained_text=False, device="cpu")
    finally:
        logging.getLogger().removeFilter(quiet)
    if weights:
        state = read_clip_state(weights)
        if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
            state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
        load_strict(model, state, Path(weights), f"CLIP architecture {name!r}",
                    hint="pick the matching --model.clip_model, e.g. ViT-B-16-quickgelu for OpenAI ViT-B/16")
    return model.float().eval()


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def fingerprint(model: nn.Module) -> str:
    """A short, cheap digest of a model's weights (per-tensor shape, sum and abs-sum).

    Stored in prompt-tuning checkpoints, which hold only the learned context and head, so that a
    reload against a different frozen CLIP is caught instead of giving silently wrong outputs.
    """
    h = hashlib.sha1()
    with torch.no_grad():
        for k, v in sorted(model.state_dict().items()):
            v64 = v.detach().double()
            h.update(f"{k}:{tuple(v.shape)}:{v64.sum().item():.6e}:{v64.abs().sum().item():.6e};".encode())
    return h.hexdigest()[:16]
