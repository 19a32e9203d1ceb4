"""zoo.common.lm.loading and zoo.common.lm.tiny: local-only loading, tiny models, tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from zoo.common.lm.loading import (FAMILIES, check_model_dir, load_causal_lm, load_seq2seq_lm,
                                   load_tokenizer, lm_kind)
from zoo.common.lm.tiny import save_model, tiny_config, tiny_model, train_tokenizer
from zoo.core.contract import fingerprint_folder
from zoo.core.errors import ZooError

CORPUS = [
    "Tom has 12 apples .", "He buys 305 more apples .", "So 12 + 305 = 317 .",
    "Mary had 7 cats and 3 dogs .", "The cat sat on the mat .", "Ann reads 24 pages a day .",
    "How many pages does she read in 5 days ?", "Therefore , the answer is 120 .",
    "A train moves 60 miles in 2 hours .", "Its speed is 30 miles per hour .",
    "Bob gives 4 of his 10 pens to Sue .", "Now Bob has 6 pens .", "The dog ran after the cat .",
    "There are 9 birds on a tree .", "Then 2 birds fly away .", "Therefore , the answer is 7 .",
    "Each box holds 8 eggs .", "There are 3 boxes , so 24 eggs .", "She pays $15 for 3kg of rice .",
    "The answer is 42 .",
]
SIZES = dict(hidden=32, layers=2, heads=4, intermediate=64, max_positions=64)


@pytest.fixture(scope="module")
def word_dir(tmp_path_factory) -> Path:
    return train_tokenizer(CORPUS, tmp_path_factory.mktemp("tok") / "word")


def config_for(family: str, tok, **kw):
    return tiny_config(family, len(tok), pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **SIZES, **kw)


# ---------------------------------------------------------------- tokenizers


def test_word_tokenizer_specials_digits_and_decode(word_dir) -> None:
    tok = load_tokenizer(word_dir)
    assert type(tok).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    ids = tok("Tom has 317 apples .", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["\u2581Tom", "\u2581has", "\u25813", "1", "7",
                                              "\u2581apples", "\u2581."]
    # digits are single tokens, yet decode gives the number back (not "3 1 7")
    assert tok.decode(ids) == "Tom has 317 apples ."
    assert tok.decode(tok("She pays $15 for 3kg")["input_ids"]) == "She pays $15 for 3kg"
    # whitespace runs collapse; an unseen word is <unk>, dropped by skip_special_tokens
    unk = tok("Tom   has\n zebras", add_special_tokens=False)["input_ids"]
    assert unk[-1] == tok.unk_token_id
    assert tok.decode(unk, skip_special_tokens=True) == "Tom has"
    # add_bos / add_eos default False: tokenizer(text) adds nothing
    assert tok("Tom")["input_ids"] == tok("Tom", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_train_tokenizer_is_deterministic(tmp_path, kind) -> None:
    a = train_tokenizer(CORPUS, tmp_path / "a", kind=kind, vocab_size=300 if kind == "bpe" else None)
    b = train_tokenizer(list(CORPUS), tmp_path / "b", kind=kind,
                        vocab_size=300 if kind == "bpe" else None)
    names = sorted(p.name for p in a.iterdir())
    assert names == ["tokenizer.json", "tokenizer_config.json"]
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert fingerprint_folder(a) == fingerprint_folder(b)
    # retraining into an existing folder replaces it atomically (no leftover temp folder)
    train_tokenizer(CORPUS[:5], a, kind=kind)
    assert sorted(p.name for p in a.iterdir()) == names
    assert fingerprint_folder(a) != fingerprint_folder(b)


def test_bpe_tokenizer_round_trip_and_digits(tmp_path) -> None:
    tok = load_tokenizer(train_tokenizer(CORPUS, tmp_path / "bpe", kind="bpe", vocab_size=300))
    text = "Tom has 317 apples.\nThe cat  sat"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: exact, newlines and double spaces too
    pieces = tok.convert_ids_to_tokens(tok("317", add_special_tokens=False)["input_ids"])
    assert pieces == ["3", "1", "7"]
    assert len(tok) <= 300


def test_word_tokenizer_options(tmp_path) -> None:
    tok = load_tokenizer(train_tokenizer(CORPUS, tmp_path / "w", lowercase=True, add_bos=True,
                                         add_eos=True, vocab_size=30))
    assert len(tok) == 30
    ids = tok("THE has 12")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True).startswith("the")
    whole = load_tokenizer(train_tokenizer(CORPUS, tmp_path / "n", split_digits=False))
    assert len(whole("317", add_special_tokens=False)["input_ids"]) == 1


def test_train_tokenizer_bad_input(tmp_path) -> None:
    with pytest.raises(ZooError, match="bos='<s>': not among specials"):
        train_tokenizer(CORPUS, tmp_path / "x", bos="<s>")
    with pytest.raises(ZooError, match="kind='char'"):
        train_tokenizer(CORPUS, tmp_path / "x", kind="char")  # type: ignore[arg-type]
    with pytest.raises(ZooError, match="no non-empty text"):
        train_tokenizer(["", "  "], tmp_path / "x")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- configs and models


@pytest.mark.parametrize("family,names", [
    ("llama", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                   intermediate_size=64, max_position_embeddings=64)),
    ("gpt2", dict(n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64)),
    ("bart", dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                  max_position_embeddings=64, decoder_start_token_id=2, forced_eos_token_id=2)),
    ("t5", dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                decoder_start_token_id=0)),
])
def test_tiny_config_maps_generic_names(word_dir, family, names) -> None:
    tok = load_tokenizer(word_dir)
    config = config_for(family, tok)
    assert config.model_type == family
    assert config.vocab_size == len(tok)
    assert (config.pad_token_id, config.eos_token_id) == (0, 2)
    for key, value in names.items():
        assert getattr(config, key) == value, key
    assert config.is_encoder_decoder == (family in ("bart", "t5"))
    assert config_for(family, tok, tie_embeddings=True).tie_word_embeddings


def test_tiny_config_errors_and_extra(word_dir) -> None:
    tok = load_tokenizer(word_dir)
    with pytest.raises(ZooError, match="family 'mamba'"):
        config_for("mamba", tok)
    with pytest.raises(ZooError, match="hidden=30: expected a multiple of heads=4"):
        tiny_config("llama", 50, hidden=30, heads=4, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    assert config_for("gpt2", tok, resid_pdrop=0.0).resid_pdrop == 0.0
    assert not config_for("llama", tok, tie_embeddings=False).tie_word_embeddings


def test_tiny_model_is_seeded_and_leaves_rng_alone(word_dir) -> None:
    config = config_for("llama", load_tokenizer(word_dir))
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = tiny_model(config, seed=0), tiny_model(config, seed=0), tiny_model(config, seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.layers.0.self_attn.q_proj.weight"],
                           sc["model.layers.0.self_attn.q_proj.weight"])
    assert a.lm_head.weight is a.model.embed_tokens.weight  # tie_embeddings=True
    assert a.generation_config.pad_token_id == 0 and a.generation_config.eos_token_id == 2
    assert lm_kind(a) == "causal"


@pytest.mark.parametrize("family", FAMILIES)
def test_save_model_round_trip_gives_equal_logits(tmp_path, word_dir, family) -> None:
    tok = load_tokenizer(word_dir)
    model = tiny_model(config_for(family, tok), seed=3).eval()
    out = save_model(model, word_dir, tmp_path / "m")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    for f in word_dir.iterdir():  # the tokenizer folder is copied byte for byte
        assert (out / f.name).read_bytes() == f.read_bytes()
    seq2seq = family in ("bart", "t5")
    loaded = (load_seq2seq_lm if seq2seq else load_causal_lm)(out)
    assert type(loaded) is type(model) and not loaded.training
    assert lm_kind(loaded) == ("seq2seq" if seq2seq else "causal")
    x = torch.tensor([[1, 5, 6, 7, 8, 2]])
    kwargs = dict(input_ids=x, decoder_input_ids=x[:, :4]) if seq2seq else dict(input_ids=x)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**kwargs).logits, model(**kwargs).logits, atol=0, rtol=0)
    assert load_tokenizer(out).get_vocab() == tok.get_vocab()
    assert json.loads((out / "generation_config.json").read_text())["pad_token_id"] == 0


def test_save_model_with_a_tokenizer_object_and_dtype(tmp_path, word_dir) -> None:
    tok = load_tokenizer(word_dir)
    out = save_model(tiny_model(config_for("gpt2", tok)), tok, tmp_path / "g")
    assert load_causal_lm(out, dtype=torch.bfloat16).lm_head.weight.dtype == torch.bfloat16
    assert load_tokenizer(out).decode([5, 6]) == tok.decode([5, 6])


# ---------------------------------------------------------------- errors


def test_check_model_dir_errors(tmp_path) -> None:
    with pytest.raises(ZooError, match=f"^{tmp_path / 'nope'}: model folder not found$"):
        check_model_dir(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    with pytest.raises(ZooError, match=r"m: missing config.json \(expected a local Hugging Face"):
        load_causal_lm(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(ZooError, match=r"m: missing weights, one of model.safetensors"):
        check_model_dir(tmp_path / "m")
    assert check_model_dir(tmp_path / "m", weights=False) == tmp_path / "m"


def test_load_tokenizer_errors(tmp_path) -> None:
    with pytest.raises(ZooError, match="tokenizer folder not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match=r"empty: missing tokenizer files \(expected tokenizer.json"):
        load_tokenizer(tmp_path / "empty")


def test_wrong_kind_of_model_is_one_line_error(tmp_path, word_dir) -> None:
    tok = load_tokenizer(word_dir)
    t5 = save_model(tiny_model(config_for("t5", tok)), word_dir, tmp_path / "t5")
    with pytest.raises(ZooError, match="t5: cannot load as AutoModelForCausalLM") as err:
        load_causal_lm(t5)
    assert "\n" not in str(err.value)
    llama = save_model(tiny_model(config_for("llama", tok)), word_dir, tmp_path / "llama")
    with pytest.raises(ZooError, match="llama: cannot load as AutoModelForSeq2SeqLM"):
        load_seq2seq_lm(llama)


def test_broken_weights_are_refused(tmp_path, word_dir) -> None:
    from safetensors.torch import load_file, save_file

    tok = load_tokenizer(word_dir)
    out = save_model(tiny_model(config_for("llama", tok)), word_dir, tmp_path / "m")
    weights = out / "model.safetensors"
    state = load_file(str(weights))
    state.pop("model.norm.weight")
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(ZooError, match=r"m: weights do not match config.json, missing keys: "
                                       r"model.norm.weight \(they would be randomly initialised"):
        load_causal_lm(out)
    assert load_causal_lm(out, strict=False).config.model_type == "llama"
    weights.write_bytes(weights.read_bytes()[:500])  # a truncated download
    with pytest.raises(ZooError, match="m: cannot load as AutoModelForCausalLM"):
        load_causal_lm(out)
