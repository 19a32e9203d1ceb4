"""Rationale preparation (MCC-KD spec Data steps 1-4): Jaccard, greedy max-min selection worked out
by hand, the correctness filter, de-duplication, routing, stats and the command line."""

from __future__ import annotations

import json

import pytest

from datamodules.reasoning.rationales import (
    ensure_answer_sentence,
    has_answer_sentence,
    jaccard,
    main,
    prepare_rationales,
    select_diverse,
    select_diverse_indices,
    word_ngrams,
)
from datamodules.reasoning.records import read_jsonl, write_jsonl
from zoo.core.errors import ZooError

# Hand-made candidates (word 3-grams):
#   R0 "a b c d e" {abc, bcd, cde}      R1 "a b c d f" {abc, bcd, cdf}
#   R2 "x y z a b" {xyz, yza, zab}      R3 "a b c x y" {abc, bcx, cxy}
# J(R0,R1) = 2/4, J(R0,R3) = 1/5, J(R1,R3) = 1/5, every J with R2 = 0.
R = ["a b c d e", "a b c d f", "x y z a b", "a b c x y"]


def test_word_ngrams():
    assert word_ngrams("a b c d") == {("a", "b", "c"), ("b", "c", "d")}
    assert word_ngrams("a b", n=3) == {("a", "b")}  # shorter than n: one gram of all words
    assert word_ngrams("  ") == set()
    assert word_ngrams("a b c", n=1) == {("a",), ("b",), ("c",)}
    with pytest.raises(ZooError, match="ngram"):
        word_ngrams("a", n=0)


@pytest.mark.parametrize(
    "a, b, n, expected",
    [
        ("a b c d", "a b c e", 3, 1 / 3),
        (R[0], R[1], 3, 0.5),
        (R[0], R[3], 3, 0.2),
        (R[1], R[3], 3, 0.2),
        (R[0], R[2], 3, 0.0),
        (R[0], R[0], 3, 1.0),
        ("a b c d", "d c b a", 1, 1.0),
        ("a b", "a c", 3, 0.0),
        ("", "", 3, 1.0),
        ("a b c", "", 3, 0.0),
    ],
)
def test_jaccard_by_hand(a, b, n, expected):
    assert jaccard(a, b, n) == pytest.approx(expected)
    assert jaccard(b, a, n) == pytest.approx(expected)


def test_greedy_max_min_order_by_hand():
    # chosen {R0}: max-J R1 .5, R2 0, R3 .2 -> R2; then R1 max(.5, 0) = .5, R3 max(.2, 0) = .2 -> R3; then R1
    assert select_diverse_indices(R, 2) == [0, 2]
    assert select_diverse_indices(R, 3) == [0, 2, 3]
    assert select_diverse_indices(R, 4) == [0, 2, 3, 1]
    assert select_diverse_indices(R, 10) == [0, 2, 3, 1]
    assert select_diverse(R, 3) == [R[0], R[2], R[3]]
    assert select_diverse_indices(R[:1], 3) == [0]
    assert select_diverse_indices([], 3) == []


def test_greedy_ties_take_the_earliest():
    cands = [R[0], "p q r s t", R[2]]  # both candidates have J = 0 to R0
    assert select_diverse_indices(cands, 2) == [0, 1]
    assert select_diverse_indices([R[0], R[2], "p q r s t"], 2) == [0, 1]


def test_tau_drops_too_similar_candidates():
    assert select_diverse_indices(R, 4, tau=0.3) == [0, 2, 3]  # R1 (J = .5 to R0) dropped
    assert select_diverse_indices(R, 4, tau=0.1) == [0, 2]  # R1 and R3 (.2) dropped
    assert select_diverse_indices(R, 4, tau=1.0) == [0, 2, 3, 1]
    with pytest.raises(ZooError, match="tau"):
        select_diverse_indices(R, 2, tau=1.5)
    with pytest.raises(ZooError, match="k must"):
        select_diverse_indices(R, 0)


def test_answer_sentence_detection_and_append():
    assert has_answer_sentence("5 + 3 = 8 . Therefore , the answer is 8 .", "8")
    assert not has_answer_sentence("Therefore , the answer is 8 . 5 + 3 = 8 .", "8")
    assert not has_answer_sentence("Therefore , the answer is 9 .", "8")
    assert ensure_answer_sentence("Tom has 5 + 3 = 8 .", "8") == (
        "Tom has 5 + 3 = 8 . Therefore , the answer is 8 .", True)
    assert ensure_answer_sentence("Adding 3 to 5 gives 8.", "8") == (
        "Adding 3 to 5 gives 8. Therefore, the answer is 8.", True)
    assert ensure_answer_sentence("First 5.\nThen 8.", "8") == ("First 5.\nThen 8.\nTherefore, the answer is 8.", True)
    assert ensure_answer_sentence("So 8.", "8", template="The answer is {answer} !") == ("So 8. The answer is 8 !", True)
    done = "It is 8. Therefore, the answer is 8."
    assert ensure_answer_sentence(done, "8") == (done, False)
    with pytest.raises(ZooError, match="answer"):
        ensure_answer_sentence("So 8.", "8", template="no placeholder")


def _records():
    return [
        {"id": "q1", "question": "Tom has 5 , gets 3 ?", "answer": "8", "kind": "number", "rationales": [
            "5 + 3 = 8 . Therefore , the answer is 8 .",
            "5 + 3 = 9 . Therefore , the answer is 9 .",  # wrong
            "5 + 3 = 8 . Therefore , the answer is 8 .",  # duplicate
            "Tom has 5 + 3 = 8 .",  # correct, answer sentence appended (world template)
            "no idea",  # nothing extractable
            "Adding 3 to 5 gives 8.",  # correct, answer sentence appended (real template)
        ]},
        {"id": "q2", "question": "2 + 2 ?", "answer": "4", "kind": "number", "rationales": [
            "2 + 2 = 4 . Therefore , the answer is 4 .", "2 + 2 = 5 . Therefore , the answer is 5 ."]},
        {"id": "q3", "question": "1 + 1 ?", "answer": "2", "kind": "number", "rationales": [
            "1 + 1 = 3 . Therefore , the answer is 3 ."]},
        {"id": "q4", "question": "Where do fish live? Answer Choices:\nA. sky\nB. water\n", "answer": "B",
         "kind": "choice", "extra": 1, "rationales": [
             "Fish need water. Therefore, the answer is B.", "Water is where fish live, so B."]},
    ]


def test_prepare_rationales_filters_dedupes_selects_and_routes():
    mcc, base, stats = prepare_rationales(_records(), k=3)
    assert [r["id"] for r in mcc] == ["q1", "q4"]
    assert mcc[0]["rationales"] == [
        "5 + 3 = 8 . Therefore , the answer is 8 .",
        "Adding 3 to 5 gives 8. Therefore, the answer is 8.",  # J = 1/19 to the first (vs 11/13)
        "Tom has 5 + 3 = 8 . Therefore , the answer is 8 .",
    ]
    s0, s2, s1 = mcc[0]["rationales"]
    # S0 has 13 words, 11 word 3-grams; S1 = "Tom has " + S0 has 13 (a superset): J = 11/13;
    # S2 has 9, sharing only "the answer is" with S0: J = 1/(11 + 9 - 1) = 1/19
    assert jaccard(s0, s1) == pytest.approx(11 / 13) and jaccard(s0, s2) == pytest.approx(1 / 19)
    assert mcc[1]["rationales"] == ["Fish need water. Therefore, the answer is B.",
                                    "Water is where fish live, so B. Therefore, the answer is B."]
    assert mcc[1]["extra"] == 1  # other keys are kept
    assert base == [{**_records()[1], "rationales": ["2 + 2 = 4 . Therefore , the answer is 4 ."]}]
    assert stats == {
        "questions_in": 4, "rationales_in": 11, "no_answer": 1, "wrong_answer": 3, "kept_correct": 7,
        "answer_sentences_appended": 3, "duplicates_removed": 1, "kept_after_dedupe": 6, "dropped_by_tau": 0,
        "selected": 5, "questions_mcc": 2, "questions_baseline_only": 1, "questions_dropped": 1,
        "keep_rate": pytest.approx(7 / 11),
    }


def test_prepare_rationales_select_modes():
    recs = [{"id": f"q{i}", "question": "q", "answer": "1", "kind": "number",
             "rationales": [f"step {j} gives {j} . Therefore , the answer is 1 ." for j in range(6)]} for i in range(8)]
    first, _, _ = prepare_rationales(recs, k=3, select="first")
    assert first[0]["rationales"] == recs[0]["rationales"][:3]
    rand, _, stats = prepare_rationales(recs, k=3, select="random", seed=0)
    again, _, _ = prepare_rationales(recs, k=3, select="random", seed=0)
    assert rand == again and stats["selected"] == 24
    for r, src in zip(rand, recs):
        idx = [src["rationales"].index(t) for t in r["rationales"]]
        assert len(idx) == 3 and idx == sorted(idx)  # a subset, in the original order
    assert len({tuple(r["rationales"]) for r in rand}) > 1  # seeded per question, not one fixed draw
    other, _, _ = prepare_rationales(recs, k=3, select="random", seed=1)
    assert other != rand


def test_prepare_rationales_tau_routes_to_baseline():
    rec = {"id": "q", "question": "q", "answer": "1", "kind": "number",
           "rationales": ["a b c d . Therefore , the answer is 1 .", "a b c e . Therefore , the answer is 1 ."]}
    mcc, base, stats = prepare_rationales([rec], k=3, tau=0.1)
    assert mcc == [] and len(base) == 1 and base[0]["rationales"] == rec["rationales"][:1]
    assert stats["dropped_by_tau"] == 1 and stats["questions_baseline_only"] == 1


@pytest.mark.parametrize("kw, match", [({"k": 1}, "k must be >= 2"), ({"select": "best"}, "select"),
                                       ({"tau": -0.1}, "tau"), ({"ngram": 0}, "ngram")])
def test_prepare_rationales_bad_arguments(kw, match):
    with pytest.raises(ZooError, match=match):
        prepare_rationales(_records(), **kw)


def test_prepare_rationales_rejects_invalid_records():
    with pytest.raises(ZooError, match="record 0 .*no key 'kind'"):
        prepare_rationales([{"id": "x", "question": "q", "answer": "1", "rationales": []}])


def test_cli_writes_both_files_and_refuses_to_overwrite(tmp_path, capsys):
    src = write_jsonl(tmp_path / "raw.jsonl", _records())
    out, base = tmp_path / "out" / "mcc.jsonl", tmp_path / "out" / "base.jsonl"
    argv = ["--input", str(src), "--output", str(out), "--baseline-output", str(base), "--k", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "questions_mcc" in printed and "keep_rate" in printed and "wrote" in printed
    mcc, baseline = read_jsonl(out), read_jsonl(base)
    assert [r["id"] for r in mcc] == ["q1", "q4"] and all(len(r["rationales"]) == 2 for r in mcc)
    assert [r["id"] for r in baseline] == ["q2"]
    before = out.read_text()
    with pytest.raises(ZooError, match="exists; pass --overwrite"):
        main(argv)
    assert out.read_text() == before
    assert main([*argv[:-1], "3", "--overwrite", "--select", "first"]) == 0
    assert len(read_jsonl(out)[0]["rationales"]) == 3
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_errors_and_help(tmp_path, capsys):
    src = write_jsonl(tmp_path / "raw.jsonl", _records())
    with pytest.raises(ZooError, match="same file"):
        main(["--input", str(src), "--output", str(tmp_path / "a.jsonl"), "--baseline-output", str(tmp_path / "a.jsonl")])
    with pytest.raises(ZooError, match="is the input file"):
        main(["--input", str(src), "--output", str(src), "--baseline-output", str(tmp_path / "b.jsonl")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_records()[0]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(ZooError, match=r"bad\.jsonl line 2: malformed JSON"):
        main(["--input", str(bad), "--output", str(tmp_path / "o.jsonl"), "--baseline-output", str(tmp_path / "b.jsonl")])
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "--baseline-output" in capsys.readouterr().out
