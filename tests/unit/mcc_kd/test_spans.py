"""Answer-span location and pairing, checked on decoded tokens (causal and seq2seq coordinates)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from datamodules.reasoning.spans import align_pair, answer_char_span, label_positions, target_spans

WORDS = "<pad> <bos> <eos> <unk> Therefore , the answer is . Tom has 5 + 3 = 8 Last apply - 6 to 21 So 0 1 2 4 7 9".split()


@pytest.fixture(scope="module")
def tok():
    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(dict.fromkeys(WORDS))}, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                               pre_tokenizers.Digits(individual_digits=True)])
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")


def _enc(tok, text):
    e = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return e["input_ids"], [tuple(o) for o in e["offset_mapping"]]


def test_char_span_is_value_and_closing_period_of_the_last_answer_sentence():
    text = "Tom has 5 + 3 = 8 . So the answer is 8 . Therefore , the answer is 15 ."
    cs = answer_char_span(text)
    assert text[cs.start:cs.end] == "15 ." and text[cs.sentence_start:cs.end] == "Therefore , the answer is 15 ."
    assert answer_char_span("Tom has 5 .") is None
    real = "She has 3 apples.\nTherefore, the answer is 1,234."
    cs = answer_char_span(real)
    assert real[cs.start:cs.end] == "1,234." and real[cs.sentence_start:cs.end].startswith("Therefore")


def test_span_tokens_decode_to_the_answer_digits_and_period(tok):
    text = "Last , apply - 6 to 21 . Therefore , the answer is 15 ."
    ids, offsets = _enc(tok, text)
    sp = target_spans(text, offsets)
    assert tok.convert_ids_to_tokens([ids[j] for j in sp.span]) == ["1", "5", "."]
    assert tok.convert_ids_to_tokens([ids[j] for j in sp.sentence])[0] == "Therefore"


def test_causal_label_positions_point_at_the_logits_that_predict_the_span(tok):
    question, text = "Tom has 5 + 3 = 8", "5 + 3 = 8 . Therefore , the answer is 8 ."
    prompt = [tok.bos_token_id] + tok(question, add_special_tokens=False)["input_ids"]
    ids, offsets = _enc(tok, text)
    full = prompt + ids + [tok.eos_token_id]
    sp = target_spans(text, offsets)
    pos = label_positions(list(sp.span), len(prompt), "causal")
    # logits[:, p] predicts full[p + 1]: those must be the span tokens
    assert tok.convert_ids_to_tokens([full[p + 1] for p in pos]) == ["8", "."]
    official = label_positions(list(sp.span), len(prompt), "causal", coords="official")
    assert official == [p + 1 for p in pos]  # the official slice compares one past the answer
    assert tok.convert_ids_to_tokens([full[p] for p in official]) == ["8", "."]
    # seq2seq: decoder position j predicts label j
    assert label_positions(list(sp.span), len(prompt), "seq2seq") == list(sp.span)


def test_pairs_with_equal_span_ids_align_position_by_position(tok):
    ta, tb = "5 + 3 = 8 . Therefore , the answer is 8 .", "Last , apply + 3 to 5 . Therefore , the answer is 8 ."
    (ia, oa), (ib, ob) = _enc(tok, ta), _enc(tok, tb)
    sa, sb = target_spans(ta, oa), target_spans(tb, ob)
    pa, pb = align_pair(ia, sa, len(ia), ib, sb, len(ib))
    assert [ia[j] for j in pa] == [ib[j] for j in pb] and len(pa) == 2


def test_different_span_ids_fall_back_to_the_common_suffix_or_are_masked(tok):
    ta, tb = "So the answer is 8 .", "Therefore , the answer is 9 ."
    (ia, oa), (ib, ob) = _enc(tok, ta), _enc(tok, tb)
    pa, pb = align_pair(ia, target_spans(ta, oa), len(ia), ib, target_spans(tb, ob), len(ib))
    assert tok.convert_ids_to_tokens([ia[j] for j in pa]) == ["."]  # longest common suffix: the period
    tc = "Therefore , the answer is 8"                                 # no closing period, other value
    ic, oc = _enc(tok, tc)
    assert align_pair(ib, target_spans(tb, ob), len(ib), ic, target_spans(tc, oc), len(ic)) is None


def test_truncated_span_masks_the_pair(tok):
    t = "5 + 3 = 8 . Therefore , the answer is 8 ."
    ids, off = _enc(tok, t)
    sp = target_spans(t, off)
    assert align_pair(ids, sp, len(ids), ids, sp, len(ids)) is not None
    assert align_pair(ids, sp, len(ids) - 1, ids, sp, len(ids)) is None  # the closing period was cut
