"""Tiny language models and tokenizers that the zoo builds itself, offline and deterministically.

- :func:`tiny_config` maps one set of generic sizes (hidden, layers, heads, ...) onto the names of
  a ``transformers`` family (LLaMA, GPT-2, BART, T5); :func:`tiny_model` builds it from a seed.
- :func:`train_tokenizer` trains a ``tokenizers`` word-level or byte-level BPE model and saves it
  as a ``PreTrainedTokenizerFast`` folder (``tokenizer.json`` + ``tokenizer_config.json``).
- :func:`save_model` writes model + tokenizer as a local Hugging Face folder, so a tiny model is
  read back by the same :func:`~zoo.common.lm.loading.load_causal_lm` /
  :func:`~zoo.common.lm.loading.load_tokenizer` as a real one.

**Word-level tokens.** The text is normalised (whitespace runs become one space, trimmed, and
optionally lower-cased) and split on spaces in the SentencePiece style: a word that follows a
space carries the marker ``▁`` (``"▁apples"``). With ``split_digits`` every digit is its own token,
as ``Digits(individual_digits=True)`` does, and the marker stays on the first digit of a number:
``"has 12 apples"`` is ``["▁has", "▁1", "2", "▁apples"]``. The token count is the same as with
``WhitespaceSplit + Digits(individual_digits=True)``; what the marker buys is that the
``Metaspace`` decoder gives the text back (``"has 12 apples"``, not ``"has 1 2 apples"``),
through ``tokenizer.decode`` itself, so every caller decodes numbers right. The vocabulary therefore
holds a word-initial and a continuation form of each digit (``"▁2"`` and ``"2"``). A literal
``▁`` in the input is read as ``_``.

**BPE tokens.** Byte-level BPE (GPT-2 style: no unknown tokens, exact round trip including
newlines); with ``split_digits`` digits are split individually the same way (``"Ġ1", "2"``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from zoo.common.lm.loading import FAMILIES
from zoo.core.errors import ZooError
from zoo.core.io import build_folder_atomically, write_folder_atomically

_SPACE = "\u2581"  # "▁", SentencePiece's word-start marker


def tiny_config(family: str, vocab_size: int, *, hidden: int = 128, layers: int = 3, heads: int = 4,
                intermediate: int = 384, max_positions: int = 320, pad_token_id: int,
                bos_token_id: int | None, eos_token_id: int, decoder_start_token_id: int | None = None,
                tie_embeddings: bool = True, **extra: Any):
    """A ``transformers`` config of ``family`` with the generic sizes mapped onto its names.

    ======================  =====================  ==========  ====================  =========
    generic                 llama                  gpt2        bart                  t5
    ======================  =====================  ==========  ====================  =========
    hidden                  hidden_size            n_embd      d_model               d_model
    layers                  num_hidden_layers      n_layer     encoder/decoder_      num_layers,
                                                               layers                num_decoder_layers
    heads                   num_attention_heads    n_head      encoder/decoder_      num_heads
                            (= num_key_value_heads)            attention_heads       (d_kv = hidden/heads)
    intermediate            intermediate_size      n_inner     encoder/decoder_      d_ff
                                                               ffn_dim
    max_positions           max_position_          n_positions max_position_         (relative
                            embeddings                         embeddings            positions; unused)
    ======================  =====================  ==========  ====================  =========

    ``decoder_start_token_id`` (encoder-decoders only) defaults to the family's convention: EOS
    for BART, PAD for T5. BART's ``forced_eos_token_id`` is set to ``eos_token_id``. Note that T5
    always ties its embeddings in ``transformers`` 5 (``tie_embeddings=False`` there only turns
    off the decoder-output rescaling).

    Args:
        family: one of :data:`~zoo.common.lm.loading.FAMILIES`.
        vocab_size: the tokenizer's vocabulary size (``len(tokenizer)``).
        pad_token_id, bos_token_id, eos_token_id: the tokenizer's special ids.
        tie_embeddings: ``tie_word_embeddings`` (input embedding = output projection).
        **extra: more config fields in the family's own names (e.g. ``dropout=0.0``), applied last.

    Raises:
        ZooError: an unknown family or sizes that do not fit (hidden not divisible by heads).
    """
    import transformers as tf

    if family not in FAMILIES:
        raise ZooError(f"family {family!r}: expected one of {', '.join(FAMILIES)}")
    for name, value in (("vocab_size", vocab_size), ("hidden", hidden), ("layers", layers),
                        ("heads", heads), ("intermediate", intermediate),
                        ("max_positions", max_positions)):
        if not isinstance(value, int) or value <= 0:
            raise ZooError(f"tiny_config {name}={value!r}: expected a positive integer")
    if hidden % heads:
        raise ZooError(f"tiny_config hidden={hidden}: expected a multiple of heads={heads}")
    ids = dict(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    if family == "llama":
        kw = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=heads, intermediate_size=intermediate,
                  max_position_embeddings=max_positions)
        cls = tf.LlamaConfig
    elif family == "gpt2":
        kw = dict(n_embd=hidden, n_layer=layers, n_head=heads, n_inner=intermediate,
                  n_positions=max_positions)
        cls = tf.GPT2Config
    elif family == "bart":
        kw = dict(d_model=hidden, encoder_layers=layers, decoder_layers=layers,
                  encoder_attention_heads=heads, decoder_attention_heads=heads,
                  encoder_ffn_dim=intermediate, decoder_ffn_dim=intermediate,
                  max_position_embeddings=max_positions, forced_eos_token_id=eos_token_id,
                  decoder_start_token_id=(eos_token_id if decoder_start_token_id is None
                                          else decoder_start_token_id))
        cls = tf.BartConfig
    else:
        kw = dict(d_model=hidden, d_kv=hidden // heads, d_ff=intermediate, num_layers=layers,
                  num_decoder_layers=layers, num_heads=heads,
                  decoder_start_token_id=(pad_token_id if decoder_start_token_id is None
                                          else decoder_start_token_id))
        cls = tf.T5Config
    kw.update(vocab_size=vocab_size, tie_word_embeddings=tie_embeddings, **ids)
    kw.update(extra)
    return cls(**kw)


def tiny_model(config: Any, seed: int = 0):
    """``AutoModelForCausalLM`` / ``AutoModelForSeq2SeqLM.from_config(config)``, seeded.

    The initialisation runs under ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so
    the same config and seed give the same weights and the caller's RNG state is left as it was.
    The generation config takes the model config's pad/bos/eos (and decoder start) ids.

    Returns:
        A ``PreTrainedModel`` (fp32, CPU, train mode).
    """
    import transformers as tf

    auto = tf.AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else tf.AutoModelForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config)
    gen = model.generation_config
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
        value = getattr(config, name, None)
        if value is not None:
            setattr(gen, name, value)
    return model


def _tokenizer_complete(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()


def _save_folder(out_dir: str | os.PathLike, write, complete) -> Path:
    """Fill ``out_dir`` through ``write(tmp)`` without leaving it half-written.

    A new folder is built in a temporary sibling and renamed into place
    (:func:`~zoo.core.io.build_folder_atomically`); an existing one has its files replaced one by
    one from a finished temporary folder (:func:`~zoo.core.io.write_folder_atomically`), and files
    the new contents do not have are left as they were.
    """
    out = Path(out_dir)
    if out.exists():
        write_folder_atomically(out, write)
    else:
        build_folder_atomically(out, write, complete)
    return out


def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, *,
                    kind: Literal["word", "bpe"] = "word", vocab_size: int | None = None,
                    specials: Sequence[str] = ("<pad>", "<bos>", "<eos>", "<unk>"),
                    lowercase: bool = False, split_digits: bool = True, pad: str = "<pad>",
                    bos: str | None = "<bos>", eos: str = "<eos>", unk: str = "<unk>",
                    add_bos: bool = False, add_eos: bool = False, min_frequency: int = 0) -> Path:
    """Train a word-level or byte-level BPE tokenizer and save it as a fast-tokenizer folder.

    The special tokens get the first ids, in the order of ``specials`` (so the defaults give
    pad=0, bos=1, eos=2, unk=3). The same texts and options give the same files byte for byte.
    See the module docstring for how words and digits are split and decoded.

    Args:
        texts: the training corpus (any iterable of strings; read once).
        out_dir: the folder to write (``tokenizer.json``, ``tokenizer_config.json``); written
            atomically, existing files of the same names are replaced.
        kind: ``"word"`` (``WordLevel``; unknown words map to ``unk``) or ``"bpe"``.
        vocab_size: at most this many tokens including specials (default: every word for
            ``"word"``, 30000 for ``"bpe"``).
        specials: special tokens; ``pad``, ``bos``, ``eos`` and ``unk`` must be among them.
        lowercase: lower-case the text before splitting.
        split_digits: one token per digit.
        add_bos, add_eos: whether ``tokenizer(text)`` (``add_special_tokens=True``) adds BOS/EOS.
            :mod:`zoo.common.lm.text` always encodes without them and adds its own.
        min_frequency: drop words / merges seen fewer times.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ZooError: a bad ``kind``, a special token not in ``specials``, or an empty corpus.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in ("word", "bpe"):
        raise ZooError(f"train_tokenizer kind={kind!r}: expected 'word' or 'bpe'")
    specials = list(dict.fromkeys(specials))
    for role, token in (("pad", pad), ("bos", bos), ("eos", eos), ("unk", unk)):
        if token is not None and token not in specials:
            raise ZooError(f"train_tokenizer {role}={token!r}: not among specials {specials}")
    if vocab_size is not None and vocab_size <= len(specials):
        raise ZooError(f"train_tokenizer vocab_size={vocab_size}: expected more than the "
                       f"{len(specials)} special tokens")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ZooError("train_tokenizer: the corpus has no non-empty text")

    norm = [normalizers.Lowercase()] if lowercase else []
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=unk))
        tok.normalizer = normalizers.Sequence(
            [normalizers.Replace(_SPACE, "_"), normalizers.Replace(Regex(r"\s+"), " "),
             normalizers.Strip(), *norm])
        split = [pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)]
        if split_digits:
            split.append(pre_tokenizers.Split(Regex(_SPACE + r"?\d"), behavior="isolated"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(split)
        tok.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size or 10**9, special_tokens=specials,
                                            min_frequency=min_frequency, show_progress=False)
    else:
        tok = Tokenizer(models.BPE())
        if norm:
            tok.normalizer = normalizers.Sequence(norm)
        split = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        if split_digits:
            split.append(pre_tokenizers.Split(Regex("\u0120?\\d"), behavior="isolated"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(split)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size or 30000, special_tokens=specials,
                                      min_frequency=min_frequency, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    template = " ".join(([bos] if add_bos and bos else []) + ["$A"] + ([eos] if add_eos else []))
    used = [t for t in (bos if add_bos else None, eos if add_eos else None) if t]
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tok.token_to_id(t)) for t in used])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, bos_token=bos,
                                   eos_token=eos, unk_token=unk, clean_up_tokenization_spaces=False)
    return _save_folder(out_dir, lambda tmp: fast.save_pretrained(str(tmp)), _tokenizer_complete)


def _model_complete(folder: Path) -> bool:
    from zoo.common.lm.loading import WEIGHT_FILES

    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in WEIGHT_FILES)


def save_model(model: Any, tokenizer: Any, out_dir: str | os.PathLike) -> Path:
    """Write ``model`` and its tokenizer as one local Hugging Face folder, atomically.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors`` and the
    tokenizer files, and reads back with :func:`~zoo.common.lm.loading.load_causal_lm` /
    :func:`~zoo.common.lm.loading.load_seq2seq_lm` and
    :func:`~zoo.common.lm.loading.load_tokenizer`. Before saving, the model's generation config
    takes the tokenizer's pad/eos ids where it has none.

    Args:
        model: a ``PreTrainedModel`` (for a PEFT model, save :func:`zoo.common.lm.lora.merged_copy`).
        tokenizer: a tokenizer folder (its files are copied byte for byte, so its fingerprint is
            kept) or a tokenizer object (``save_pretrained``).
        out_dir: the folder to write.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    from zoo.common.lm.loading import check_tokenizer_dir

    if isinstance(tokenizer, (str, os.PathLike)):
        src = check_tokenizer_dir(tokenizer)
        files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))

        def write_tokenizer(tmp: Path) -> None:
            for p in files:
                shutil.copyfile(p, tmp / p.name)
        pad_id = eos_id = None
    else:
        def write_tokenizer(tmp: Path) -> None:
            tokenizer.save_pretrained(str(tmp))
        pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        pad_id = pad_id if pad_id is not None else model.config.pad_token_id
        eos_id = eos_id if eos_id is not None else model.config.eos_token_id
        if gen.pad_token_id is None and pad_id is not None:
            gen.pad_token_id = pad_id
        if gen.eos_token_id is None and eos_id is not None:
            gen.eos_token_id = eos_id

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        write_tokenizer(tmp)

    return _save_folder(out_dir, write, _model_complete)


def word_tokenizer(words: Sequence[str], specials: Sequence[str] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
                   max_length: int = 32):
    """A BERT-style word-level fast tokenizer built in memory from a fixed word list (no training,
    no files): lower-cased, split on whitespace and punctuation, ``[CLS] ... [SEP]`` added.

    The ids are the ``specials`` (pad, unk, cls, sep, mask, in that order) then ``words`` in the
    given order, so the same list always gives the same ids (a checkpoint stores the list).

    Raises:
        ZooError: an empty or duplicated word list, or fewer than five specials.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = list(words)
    if not words or len(set(words)) != len(words) or set(words) & set(specials):
        raise ZooError(f"word_tokenizer: the word list must be non-empty, unique and disjoint from {list(specials)}")
    if len(specials) < 5:
        raise ZooError(f"word_tokenizer: specials must name pad, unk, cls, sep and mask, got {list(specials)}")
    pad, unk, cls, sep, mask = specials[:5]
    vocab = {t: i for i, t in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"{cls} $A {sep}",
                                                       special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, unk_token=unk, cls_token=cls,
                                   sep_token=sep, mask_token=mask, model_max_length=max_length)
