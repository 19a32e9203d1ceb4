"""zoo.common.lm.lora: spec validation, adapter-only training and state, base fingerprint, merging."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from zoo.common.lm.lora import (LoraSpec, apply_lora, base_fingerprint, load_trainable_state_dict,
                                merged_copy, trainable_state_dict)
from zoo.common.lm.scoring import lm_loss, shift_for_causal
from zoo.common.lm.tiny import tiny_config, tiny_model
from zoo.core.errors import ZooError

VOCAB = 40
TARGETS = {"llama": ["q_proj", "v_proj"], "gpt2": ["c_attn"], "t5": ["q", "v"]}


def base(family: str, seed: int = 0, **kw):
    config = tiny_config(family, VOCAB, hidden=32, layers=2, heads=4, intermediate=64,
                         max_positions=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, **kw)
    return tiny_model(config, seed=seed)


def perturb_lora_b(model: nn.Module, seed: int = 0) -> None:
    """B is zero at init (the adapted model equals the base); give it values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[1, 5, 6, 7, 8, 9], [1, 10, 11, 12, 2, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 1, 1, 0]])
    return {"input_ids": ids, "attention_mask": mask}


def test_lora_spec_validation_names_the_field() -> None:
    assert LoraSpec(["q_proj"]).alpha == 16
    for kwargs, field in [(dict(targets=[]), "targets"), (dict(targets="q_proj"), "targets"),
                          (dict(targets=["q"], r=0), "r"), (dict(targets=["q"], r=2.5), "r"),
                          (dict(targets=["q"], alpha=0), "alpha"),
                          (dict(targets=["q"], dropout=1.0), "dropout"),
                          (dict(targets=["q"], dropout=-0.1), "dropout"),
                          (dict(targets=["q"], modules_to_save="lm_head"), "modules_to_save"),
                          (dict(targets=["q"], bias="some"), "bias")]:
        with pytest.raises(ZooError, match=f"^LoraSpec.{field}="):
            LoraSpec(**kwargs)


def test_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(ZooError, match="LoraSpec.targets: 'query' matches no module of LlamaForCausalLM"):
        apply_lora(base("llama"), LoraSpec(["query"]))
    with pytest.raises(ZooError, match="modules_to_save: 'head' matches no module"):
        apply_lora(base("llama"), LoraSpec(["q_proj"], modules_to_save=["head"]))


@pytest.mark.parametrize("family", ["llama", "gpt2", "t5"])
def test_only_adapters_train(family) -> None:
    model = apply_lora(base(family), LoraSpec(TARGETS[family], r=4, alpha=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    # A and B x 2 layers x targets (x 3 attention blocks per T5 layer: encoder self-attention,
    # decoder self- and cross-attention)
    blocks = 3 if family == "t5" else 1
    assert len(trainable) == 2 * 2 * len(TARGETS[family]) * blocks
    if family == "gpt2":
        assert model.peft_config["default"].fan_in_fan_out  # Conv1D
    perturb_lora_b(model)
    b = batch()
    if family == "t5":
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["input_ids"])
        loss = out.loss
    else:
        logits = model(**b).logits
        loss = lm_loss(logits, shift_for_causal(b["input_ids"], b["attention_mask"]))
    loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_A" in n)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_trainable_state_dict_round_trip(family) -> None:
    a = apply_lora(base(family), LoraSpec(TARGETS[family], r=4))
    perturb_lora_b(a, seed=1)
    state = trainable_state_dict(a)
    assert state and all(".lora_" in k for k in state)
    b = apply_lora(base(family), LoraSpec(TARGETS[family], r=4))
    load_trainable_state_dict(b, state)
    a.eval(), b.eval()  # GPT-2 has dropout
    with torch.no_grad():
        torch.testing.assert_close(b(**batch()).logits, a(**batch()).logits, atol=0, rtol=0)
    with pytest.raises(ZooError, match="missing keys: .*lora_"):
        load_trainable_state_dict(b, dict(list(state.items())[1:]))
    with pytest.raises(ZooError, match="unexpected keys: extra"):
        load_trainable_state_dict(b, {**state, "extra": torch.zeros(1)})
    other = apply_lora(base(family), LoraSpec(TARGETS[family], r=2))
    with pytest.raises(ZooError, match="shape mismatches"):
        load_trainable_state_dict(other, state)


def test_modules_to_save_are_trained_and_saved() -> None:
    model = apply_lora(base("llama", tie_embeddings=False), LoraSpec(["q_proj"], modules_to_save=["lm_head"]))
    state = trainable_state_dict(model)
    saved = [k for k in state if ".modules_to_save." in k]
    assert saved == ["base_model.model.lm_head.modules_to_save.default.weight"]
    assert all(".lora_" in k for k in state if k not in saved)
    assert base_fingerprint(model) == base_fingerprint(base("llama", tie_embeddings=False))
    merged = merged_copy(model)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert torch.equal(merged.lm_head.weight, state[saved[0]])


def test_base_fingerprint_format_is_process_independent() -> None:
    """The documented byte format, recomputed by hand on a two-tensor module."""
    m = nn.Module()
    m.w = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
    m.register_buffer("b", torch.tensor([1, 2], dtype=torch.int64))
    h = hashlib.sha256()
    for name in ("b", "w"):
        t = getattr(m, name).detach()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.contiguous().numpy().tobytes())
    assert base_fingerprint(m) == h.hexdigest()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_base_fingerprint_sees_the_base_only(family) -> None:
    plain = base(family)
    fp = base_fingerprint(plain)
    assert len(fp) == 64 and fp == base_fingerprint(base(family))
    assert fp != base_fingerprint(base(family, seed=1))
    wrapped = apply_lora(base(family), LoraSpec(TARGETS[family]))
    assert base_fingerprint(wrapped) == fp  # PEFT's renaming undone, adapters excluded
    perturb_lora_b(wrapped)
    assert base_fingerprint(wrapped) == fp  # training adapters does not change it
    with torch.no_grad():
        next(p for n, p in wrapped.named_parameters() if "base_layer" in n).view(-1)[0] += 1e-3
    assert base_fingerprint(wrapped) != fp  # a changed base weight does


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_merged_copy_gives_equal_logits(family) -> None:
    model = apply_lora(base(family, seed=4), LoraSpec(TARGETS[family], r=4, alpha=8)).eval()
    perturb_lora_b(model, seed=2)
    merged = merged_copy(model).eval()
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert any("lora_" in n for n, _ in model.named_parameters())  # the original is untouched
    with torch.no_grad():
        ref = base(family, seed=4).eval()(**batch()).logits
        got, want = merged(**batch()).logits, model(**batch()).logits
    assert (got - ref).abs().max() > 1e-3  # the perturbed adapters matter
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with pytest.raises(ZooError, match="expected a PEFT model"):
        merged_copy(ref)


def test_generation_through_a_peft_model_equals_the_merged_model(tmp_path) -> None:
    from zoo.common.lm.generation import generate_ids
    from zoo.common.lm.loading import load_tokenizer
    from zoo.common.lm.tiny import train_tokenizer

    words = [f"w{i} w{i + 1} w{i + 2} ." for i in range(VOCAB - 8)]
    tok = load_tokenizer(train_tokenizer(words, tmp_path / "tok"))
    model = apply_lora(base("llama", seed=5, tie_embeddings=False, initializer_range=0.5),
                       LoraSpec(["q_proj", "v_proj"], r=4))
    perturb_lora_b(model, seed=3)
    prompts = ["w1 w2", "w7 w8 w9 w10", "w3"]
    got = generate_ids(model, tok, prompts, max_new_tokens=5)
    assert any(got) and got == generate_ids(merged_copy(model), tok, prompts, max_new_tokens=5)
