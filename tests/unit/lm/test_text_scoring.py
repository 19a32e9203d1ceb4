"""zoo.common.lm.text, .scoring and .generation: label masks, collate, fp32 scores by hand, generate."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from zoo.common.lm.generation import generate, generate_ids
from zoo.common.lm.loading import load_tokenizer
from zoo.common.lm.scoring import lm_loss, sequence_logprob, shift_for_causal, token_logprobs
from zoo.common.lm.text import IGNORE, check_prefix, encode, encode_pair, pad_collate, prompt_ids
from zoo.common.lm.tiny import tiny_config, tiny_model, train_tokenizer
from zoo.core.errors import ZooError

CORPUS = [
    "Tom has 12 apples .", "He buys 305 more apples .", "So 12 + 305 = 317 .",
    "Mary had 7 cats and 3 dogs .", "The cat sat on the mat .", "Ann reads 24 pages a day .",
    "How many pages does she read in 5 days ?", "Therefore , the answer is 120 .",
    "A train moves 60 miles in 2 hours .", "Its speed is 30 miles per hour .",
    "Bob gives 4 of his 10 pens to Sue .", "Now Bob has 6 pens .", "The cat ran after the cat .",
    "There are 9 birds on a tree .", "Then 2 birds fly away .", "Therefore , the answer is 7 .",
    "Each box holds 8 eggs .", "There are 3 boxes , so 24 eggs .", "the cat , the cat , the cat",
    "The answer is 42 .",
]
SIZES = dict(hidden=32, layers=2, heads=4, intermediate=64, max_positions=64)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tok")
    return {"word": train_tokenizer(CORPUS, root / "word"),
            "bpe": train_tokenizer(CORPUS, root / "bpe", kind="bpe", vocab_size=320)}


@pytest.fixture(scope="module")
def tok(dirs):
    return load_tokenizer(dirs["word"])


def model_for(family: str, tok, seed: int = 0, **kw):
    config = tiny_config(family, len(tok), pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **SIZES, **kw)
    return tiny_model(config, seed=seed).eval()


# ---------------------------------------------------------------- encode_pair / check_prefix


def test_encode_pair_causal_layout(tok) -> None:
    q, r = encode(tok, "How many pages ?"), encode(tok, "Therefore , the answer is 7 .")
    out = encode_pair(tok, "How many pages ?", "Therefore , the answer is 7 .")
    assert out["input_ids"] == [tok.bos_token_id] + q + r + [tok.eos_token_id]
    assert out["labels"] == [IGNORE] * (1 + len(q)) + r + [tok.eos_token_id]
    assert out["prompt_len"] == 1 + len(q) and out["truncated"] is False
    bare = encode_pair(tok, "How many pages ?", "So 7 .", add_bos=False, add_eos=False)
    assert bare["input_ids"] == q + encode(tok, "So 7 .") and bare["prompt_len"] == len(q)
    # joint encoding equals separate encoding for the word-level tokenizer (space in the target)
    joint = encode_pair(tok, "How many pages ?", " Therefore , the answer is 7 .", joint=True)
    assert joint == out


def test_encode_pair_truncates_the_target_tail(tok) -> None:
    full = encode_pair(tok, "Tom has 12 apples .", "So 12 + 305 = 317 .")
    n = full["prompt_len"]
    cut = encode_pair(tok, "Tom has 12 apples .", "So 12 + 305 = 317 .", max_length=n + 3)
    assert cut["truncated"] and len(cut["input_ids"]) == n + 3
    assert cut["input_ids"] == full["input_ids"][: n + 3]  # prompt kept whole, EOS dropped first
    assert cut["labels"][:n] == [IGNORE] * n and cut["labels"][n:] == full["labels"][n: n + 3]
    assert n == 7  # BOS, Tom, has, 1, 2, apples, .
    with pytest.raises(ZooError, match="prompt \\+ target are 20 tokens, more than max_length=10"):
        encode_pair(tok, "Tom has 12 apples .", "So 12 + 305 = 317 .", max_length=n + 3,
                    truncate="error")
    with pytest.raises(ZooError, match=r"prompt 'Tom has 12 apples \.': 7 tokens leave no room"):
        encode_pair(tok, "Tom has 12 apples .", "So 7 .", max_length=n)


def test_encode_pair_seq2seq_layout(tok) -> None:
    out = encode_pair(tok, "How many pages ?", "So 7 .", kind="seq2seq")
    q = encode(tok, "How many pages ?")
    assert out["input_ids"] == q  # the tokenizer's own template: none for train_tokenizer's default
    assert out["labels"] == encode(tok, "So 7 .") + [tok.eos_token_id]
    assert out["prompt_len"] == len(out["input_ids"]) and not out["truncated"]
    assert prompt_ids(tok, "How many pages ?", kind="seq2seq", add_bos=False) == out["input_ids"]
    assert encode_pair(tok, "How many pages ?", "So 7 .", kind="seq2seq", add_bos=False) == out
    short = encode_pair(tok, "How many pages ?", "So 7 .", kind="seq2seq", max_target_length=2)
    assert short["labels"] == out["labels"][:2] and short["truncated"]
    with pytest.raises(ZooError, match="only for kind='causal'"):
        encode_pair(tok, "a", "b", kind="seq2seq", joint=True)


def test_seq2seq_source_follows_the_tokenizer_template(tmp_path) -> None:
    t5_like = load_tokenizer(train_tokenizer(CORPUS, tmp_path / "t5", add_eos=True))
    out = encode_pair(t5_like, "How many pages ?", "So 7 .", kind="seq2seq")
    assert out["input_ids"] == encode(t5_like, "How many pages ?") + [t5_like.eos_token_id]
    causal = encode_pair(t5_like, "How many pages ?", "So 7 .")  # causal never uses the template
    assert causal["input_ids"][0] == t5_like.bos_token_id
    assert causal["input_ids"].count(t5_like.eos_token_id) == 1


def test_check_prefix_catches_a_merged_boundary(dirs) -> None:
    bpe = load_tokenizer(dirs["bpe"])
    p, t = check_prefix(bpe, "The cat", " sat on the mat .")
    assert p + t == encode(bpe, "The cat sat on the mat .")
    # "ca" + "t" re-tokenises as one "cat" piece: the prompt's tokens are no prefix any more
    assert encode(bpe, "The ca") != encode(bpe, "The cat")[: len(encode(bpe, "The ca"))]
    with pytest.raises(ZooError, match=r"prompt 'The ca': its tokens are not a prefix"):
        check_prefix(bpe, "The ca", "t sat on the mat .")
    with pytest.raises(ZooError, match="not a prefix"):
        encode_pair(bpe, "The ca", "t sat on the mat .", joint=True)
    sep = encode_pair(bpe, "The ca", "t sat", joint=False)  # separate encoding never fails
    assert sep["input_ids"][sep["prompt_len"]:] == encode(bpe, "t sat") + [bpe.eos_token_id]


# ---------------------------------------------------------------- pad_collate


def test_pad_collate_right_left_and_passthrough() -> None:
    feats = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7], "id": 3, "text": "a",
              "vec": torch.tensor([1.0, 2.0])},
             {"input_ids": [8], "labels": [8], "id": 4, "text": "b", "vec": torch.tensor([3.0, 4.0])}]
    right = pad_collate(feats, pad_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["input_ids"].dtype == torch.long
    assert right["id"].tolist() == [3, 4] and right["text"] == ["a", "b"]
    assert right["vec"].shape == (2, 2)
    left = pad_collate(feats, pad_id=9, side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [9, 9, 8]]
    assert left["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, IGNORE, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_pad_collate_seq2seq_lengths_differ_and_errors() -> None:
    out = pad_collate([{"input_ids": [1, 2], "labels": [3, 4, 5]}, {"input_ids": [1], "labels": [3]}], 0)
    assert out["input_ids"].shape == (2, 2) and out["labels"].shape == (2, 3)
    assert out["labels"].tolist() == [[3, 4, 5], [3, IGNORE, IGNORE]]
    with pytest.raises(ZooError, match="empty batch"):
        pad_collate([], 0)
    with pytest.raises(ZooError, match="feature 1 has no 'labels'"):
        pad_collate([{"input_ids": [1], "labels": [1]}, {"input_ids": [2]}], 0)


# ---------------------------------------------------------------- scoring, by hand


def test_shift_for_causal() -> None:
    labels = torch.tensor([[IGNORE, IGNORE, 5, 6]])
    assert shift_for_causal(labels).tolist() == [[IGNORE, 5, 6, IGNORE]]
    ids, mask = torch.tensor([[4, 5, 0]]), torch.tensor([[1, 1, 0]])
    assert shift_for_causal(ids, mask).tolist() == [[5, IGNORE, IGNORE]]


def test_token_and_sequence_logprobs_by_hand() -> None:
    # vocabulary of 2: logits (0, ln 3) give p = (1/4, 3/4); (ln 3, 0) give (3/4, 1/4)
    ln3 = math.log(3.0)
    logits = torch.tensor([[[0.0, ln3], [ln3, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, 1, IGNORE]])
    lp = token_logprobs(logits, labels)
    expected = torch.tensor([[math.log(0.75), math.log(0.25), 0.0]])
    torch.testing.assert_close(lp, expected)
    torch.testing.assert_close(sequence_logprob(logits, labels), torch.tensor([math.log(0.75 * 0.25)]))
    torch.testing.assert_close(sequence_logprob(logits, labels, normalize=True),
                               torch.tensor([math.log(0.75 * 0.25) / 2]))
    none = torch.full((1, 3), IGNORE)
    assert sequence_logprob(logits, none, normalize=True).item() == 0.0


def test_lm_loss_token_vs_sequence_by_hand() -> None:
    # 3-token vocabulary (token 2 has ~zero mass where its logit is -big):
    # sequence 0 has one target, p = 2/3; sequence 1 has two, p = 1/4 and ~1
    big = 1e4
    logits = torch.tensor([[[math.log(2.0), 0.0, -big], [0.0, 0.0, 0.0]],
                           [[0.0, math.log(3.0), -big], [0.0, big, 0.0]]])
    labels = torch.tensor([[0, IGNORE], [0, 1]])
    a, b, c = math.log(3.0 / 2.0), math.log(4.0), 0.0  # the CE values -log p
    torch.testing.assert_close(lm_loss(logits, labels), torch.tensor((a + b + c) / 3))
    torch.testing.assert_close(lm_loss(logits, labels, reduction="sequence"),
                               torch.tensor((a + (b + c) / 2) / 2))
    # a sequence without targets is left out of the "sequence" mean
    labels2 = torch.tensor([[0, IGNORE], [IGNORE, IGNORE]])
    torch.testing.assert_close(lm_loss(logits, labels2, reduction="sequence"), torch.tensor(a))
    with pytest.raises(ZooError, match="reduction='mean'"):
        lm_loss(logits, labels, reduction="mean")  # type: ignore[arg-type]


def test_lm_loss_label_smoothing_by_hand() -> None:
    # V = 2, p = (1/4, 3/4), target 1, eps = 0.2: -(1 - eps/2) log(3/4) - (eps/2) log(1/4)
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    labels = torch.tensor([[1]])
    want = -0.9 * math.log(0.75) - 0.1 * math.log(0.25)
    torch.testing.assert_close(lm_loss(logits, labels, label_smoothing=0.2), torch.tensor(want))


def test_scores_are_fp32_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g).to(torch.bfloat16)
    labels = torch.randint(0, 7, (2, 5), generator=g)
    labels[0, :2] = IGNORE
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp, loss = token_logprobs(logits, labels), lm_loss(logits, labels, reduction="sequence")
    assert lp.dtype == torch.float32 and loss.dtype == torch.float32
    ref = torch.log_softmax(logits.double(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    ref = ref.masked_fill(labels == IGNORE, 0)
    torch.testing.assert_close(lp.double(), ref, atol=1e-6, rtol=0)


def test_scores_match_the_model_loss_on_encoded_pairs(tok) -> None:
    model = model_for("llama", tok)
    batch = pad_collate([encode_pair(tok, "Tom has 12 apples .", "So 12 + 305 = 317 ."),
                         encode_pair(tok, "How many pages ?", "The answer is 42 .")], tok.pad_token_id)
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    labels=batch["labels"])
    mine = lm_loss(out.logits, shift_for_causal(batch["labels"]))
    torch.testing.assert_close(mine, out.loss, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- generation


def greedy_by_hand(model, tok, prompt: str, n: int, seq2seq: bool) -> list[int]:
    ids = torch.tensor([prompt_ids(tok, prompt, kind="seq2seq" if seq2seq else "causal")])
    dec = torch.tensor([[model.config.decoder_start_token_id]]) if seq2seq else ids
    new = []
    with torch.no_grad():
        for _ in range(n):
            logits = (model(input_ids=ids, decoder_input_ids=dec) if seq2seq else model(input_ids=dec)).logits
            nxt = int(logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
            dec = torch.cat([dec, torch.tensor([[nxt]])], dim=1)
    return new


@pytest.mark.parametrize("family", ["llama", "gpt2", "t5"])
def test_generate_is_greedy_in_input_order_and_padding_free(tok, family) -> None:
    # untied, widely initialised weights, so that the continuation depends on the whole prompt
    # (a tiny tied model at the default init mostly repeats the last token)
    wide = dict(initializer_factor=5.0) if family == "t5" else dict(initializer_range=0.5)
    model = model_for(family, tok, seed=3, tie_embeddings=False, **wide)  # a non-degenerate seed
    seq2seq = family == "t5"
    prompts = ["Tom has 12 apples .", "How many pages does she read in 5 days ?", "So"]
    model.train()
    got = generate_ids(model, tok, prompts, max_new_tokens=6, batch_size=2)
    assert [len(g) for g in got] == [6, 6, 6] and len({tuple(g) for g in got}) == 3
    assert all(len(set(g)) > 1 for g in got)
    assert model.training  # mode restored
    assert got == [greedy_by_hand(model.eval(), tok, p, 6, seq2seq) for p in prompts]
    assert generate_ids(model, tok, prompts[::-1], max_new_tokens=6, batch_size=3) == got[::-1]
    texts = generate(model, tok, prompts, max_new_tokens=6)
    assert texts == [tok.decode(ids, skip_special_tokens=True) for ids in got]
    beams = generate_ids(model, tok, prompts[:1], max_new_tokens=6, num_beams=3)
    assert len(beams) == 1 and len(beams[0]) <= 6


def test_generate_errors(tok) -> None:
    model = model_for("llama", tok)
    with pytest.raises(ZooError, match="list of strings"):
        generate(model, tok, "Tom has")  # type: ignore[arg-type]
    with pytest.raises(ZooError, match="must be positive"):
        generate(model, tok, ["Tom"], max_new_tokens=0)
    with pytest.raises(ZooError, match="num_return_sequences must be 1"):
        generate(model, tok, ["Tom"], num_beams=2, num_return_sequences=2)
