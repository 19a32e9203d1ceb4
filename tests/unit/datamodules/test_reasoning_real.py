"""Zoo records (JSONL) and the loaders of the distributed reasoning formats, on fixture files in
exactly those formats (tests/helpers/reasoning_fixtures.py)."""

from __future__ import annotations

import json
import logging

import pytest

from datamodules.reasoning import real
from datamodules.reasoning.records import read_jsonl, validate_record, write_jsonl
from tests.helpers import reasoning_fixtures as fx
from zoo.common.lm.answers import extract_number
from zoo.core.errors import ZooError


def _rec(**kw):
    rec = {"id": "q1", "question": "How many?", "answer": "3", "rationales": ["So 3 ."], "kind": "number"}
    rec.update(kw)
    return rec


# ------------------------------------------------------------------------------------- records


def test_jsonl_round_trip_keeps_extra_keys(tmp_path):
    recs = [_rec(), _rec(id="q2", rationales=[], kind="choice", answer="B", meta={"n": 1})]
    path = write_jsonl(tmp_path / "sub" / "r.jsonl", recs)
    assert read_jsonl(path) == recs
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_read_jsonl_names_file_and_line_of_malformed_json(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_rec()) + "\n\n" + '{"id": "q2", "question": \n', encoding="utf-8")
    with pytest.raises(ZooError, match=r"bad\.jsonl line 3: malformed JSON"):
        read_jsonl(path)


def test_read_jsonl_names_file_line_and_missing_key(tmp_path):
    rec = _rec()
    del rec["answer"]
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_rec()) + "\n" + json.dumps(rec) + "\n", encoding="utf-8")
    with pytest.raises(ZooError, match=r"r\.jsonl line 2: record has no key 'answer'"):
        read_jsonl(path)


def test_read_jsonl_missing_file(tmp_path):
    with pytest.raises(ZooError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    "bad, match",
    [
        ([1, 2], "expected a JSON object"),
        (_rec(rationales="one"), "'rationales' must be a list of strings"),
        (_rec(rationales=["a", 3]), "'rationales' must be a list of strings"),
        (_rec(answer=3), "'answer' must be a string"),
        (_rec(kind="span"), "'kind' must be one of"),
        (_rec(question="  "), "'question' is empty"),
    ],
)
def test_validate_record_rejects(bad, match):
    with pytest.raises(ZooError, match=match):
        validate_record(bad, "here")


def test_write_jsonl_refuses_an_invalid_record_and_leaves_the_old_file(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [_rec()])
    with pytest.raises(ZooError, match="record 1"):
        write_jsonl(path, [_rec(), _rec(kind="?")])
    assert read_jsonl(path) == [_rec()]


# --------------------------------------------------------------------------------------- GSM8K


def test_gsm8k(tmp_path):
    recs = real.load_gsm8k(fx.write_gsm8k(tmp_path, "train.jsonl"))
    assert [r["answer"] for r in recs] == ["16", "1851", "3.25"]
    assert [r["id"] for r in recs] == ["gsm8k/train/0", "gsm8k/train/1", "gsm8k/train/2"]
    assert all(r["kind"] == "number" and len(r["rationales"]) == 1 for r in recs)
    rat = recs[1]["rationales"][0]
    assert rat == ("On Tuesday it sells 617*2 = 1234 pens.\nIt sells 617+1234 = 1,851 pens in both days.\n"
                   "Therefore, the answer is 1851.")
    assert "<<" not in rat and "####" not in rat
    assert all(extract_number(r["rationales"][0]) == r["answer"] for r in recs)
    assert recs[0]["question"].startswith("Maya bakes 12 muffins")


def test_gsm8k_without_final_line_is_an_error(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "It is 4."}) + "\n", encoding="utf-8")
    with pytest.raises(ZooError, match=r"train\.jsonl line 1: .*####"):
        real.load_gsm8k(path)


def test_split_gsm8k_test():
    recs = [{"id": str(i)} for i in range(1319)]
    dev, test = real.split_gsm8k_test(recs)
    assert (len(dev), len(test)) == (660, 659)
    assert dev[0]["id"] == "0" and dev[-1]["id"] == "659" and test[0]["id"] == "660"
    dev, test = real.split_gsm8k_test(recs[:5], n_dev=2)
    assert [r["id"] for r in test] == ["2", "3", "4"]
    with pytest.raises(ZooError, match="n_dev=660"):
        real.split_gsm8k_test(recs[:660])


# --------------------------------------------------------------------------------------- SVAMP


def test_svamp(tmp_path):
    recs = real.load_svamp(fx.write_svamp(tmp_path))
    assert [r["answer"] for r in recs] == ["5", "18", "2.5", "16"]
    assert recs[0]["id"] == "chal-1"
    assert recs[0]["question"] == ("Jack had 8 pens and Mary had 5 pens. Jack gave 3 pens to Mary. "
                                   "How many pens does Jack have now?")
    assert all(r["rationales"] == [] and r["kind"] == "number" for r in recs)


def test_split_svamp():
    recs = [{"id": str(i)} for i in range(1000)]
    train, dev, test = real.split_svamp(recs)
    assert (len(train), len(dev), len(test)) == (700, 150, 150)
    assert train[-1]["id"] == "699" and dev[0]["id"] == "700" and test[0]["id"] == "850"
    train, dev, test = real.split_svamp(recs[:4], n_train=2, n_dev=1)
    assert [len(train), len(dev), len(test)] == [2, 1, 1]


# --------------------------------------------------------------------------------------- ASDiv


def test_asdiv_skips_and_counts_non_numeric(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        recs, skipped = real.load_asdiv(fx.write_asdiv(tmp_path))
    assert skipped == 1
    assert "skipped 1 problem" in caplog.text
    assert [r["id"] for r in recs] == ["nluds-0001", "nluds-0002", "nluds-0004"]
    assert [r["answer"] for r in recs] == ["9", "15", "2.5"]
    assert recs[0]["question"] == ("Seven red apples and two green apples are in the basket. "
                                   "How many apples are in the basket?")


def test_asdiv_malformed_xml(tmp_path):
    path = tmp_path / "ASDiv.xml"
    path.write_text("<Machine-Reading-Corpus-File><ProblemSet>", encoding="utf-8")
    with pytest.raises(ZooError, match="malformed XML"):
        real.load_asdiv(path)


def test_split_asdiv():
    recs = [{"id": str(i)} for i in range(700)]
    train, dev, test = real.split_asdiv(recs)
    assert (len(dev), len(test), len(train)) == (313, 314, 73)
    assert dev[0]["id"] == "0" and test[0]["id"] == "313" and train[0]["id"] == "627"
    assert real.split_asdiv(recs[:627])[0] == []
    with pytest.raises(ZooError, match="at least"):
        real.split_asdiv(recs[:626])


# ---------------------------------------------------------------------------------------- CSQA


def test_csqa_prompt_format(tmp_path):
    recs = real.load_csqa(fx.write_csqa(tmp_path))
    assert recs[0]["question"] == (
        "Where would you keep a pen you use every day? Answer Choices:\n"
        "A. zoo\nB. desk drawer\nC. ocean\nD. cloud\nE. volcano\n"
    )
    assert [(r["id"], r["answer"], r["kind"]) for r in recs] == [("q-0001", "B", "choice"), ("q-0002", "E", "choice")]


def test_csqa_unlabelled_test_file_is_refused(tmp_path):
    path = fx.write_csqa(tmp_path, "test_rand_split_no_answers.jsonl", labelled=False)
    with pytest.raises(ZooError, match=r"line 1: no key 'answerKey'.*unlabelled"):
        real.load_csqa(path)


# ---------------------------------------------------------------------------------- StrategyQA


def test_strategyqa(tmp_path):
    recs = real.load_strategyqa(fx.write_strategyqa(tmp_path))
    assert [(r["id"], r["answer"], r["kind"]) for r in recs] == [("abc123", "no", "yesno"), ("def456", "yes", "yesno")]
    assert recs[1]["question"] == "Does ice float on water?"


def test_strategyqa_without_labels_is_refused(tmp_path):
    path = tmp_path / "strategyqa_test.json"
    path.write_text(json.dumps([{"qid": "x", "question": "Is it?"}]), encoding="utf-8")
    with pytest.raises(ZooError, match="no key 'answer'.*unlabelled"):
        real.load_strategyqa(path)


# ------------------------------------------------------------------------------ repo JSON format


def test_mcckd_repo_format(tmp_path):
    recs = real.load_mcckd_json(fx.write_mcckd_repo(tmp_path))
    assert [r["answer"] for r in recs] == ["7", "750", "B"]
    assert [r["kind"] for r in recs] == ["number", "number", "choice"]
    assert recs[0]["rationales"] == ["Tom has 3 + 4 = 7 apples. Therefore, the answer is 7 ."]
    assert len(recs[1]["rationales"]) == 2
    assert all("indices" not in r for r in recs)  # spans are recomputed after tokenisation
    assert recs[0]["question"].startswith("Tom has 3 apples")


def test_mcckd_repo_format_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"instruction": "q", "output": 5, "label": "1"}]), encoding="utf-8")
    with pytest.raises(ZooError, match="item 0: 'output' must be a string or a list"):
        real.load_mcckd_json(path)
    path.write_text(json.dumps([{"instruction": "q", "output": "x", "label": "maybe"}]), encoding="utf-8")
    with pytest.raises(ZooError, match="cannot tell the answer kind"):
        real.load_mcckd_json(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ZooError, match="malformed JSON"):
        real.load_mcckd_json(path)


# -------------------------------------------------------------------------------------- dispatch


def test_load_dataset_file_dispatches_by_name(tmp_path):
    paths = {
        "gsm8k": fx.write_gsm8k(tmp_path, "test.jsonl"),
        "svamp": fx.write_svamp(tmp_path),
        "asdiv": fx.write_asdiv(tmp_path),
        "csqa": fx.write_csqa(tmp_path, "dev_rand_split.jsonl"),
        "strategyqa": fx.write_strategyqa(tmp_path),
        "mcckd": fx.write_mcckd_repo(tmp_path, "train.json"),
        "zoo": write_jsonl(tmp_path / "zoo" / "train.jsonl", [_rec()]),
    }
    sizes = {"gsm8k": 3, "svamp": 4, "asdiv": 3, "csqa": 2, "strategyqa": 2, "mcckd": 3, "zoo": 1}
    for fmt, path in paths.items():
        assert real.detect_format(path) == fmt, path
        assert len(real.load_dataset_file(path)) == sizes[fmt]
    # an explicit format wins
    assert real.load_dataset_file(paths["gsm8k"], fmt="gsm8k")[0]["answer"] == "16"


def test_load_dataset_file_unknown(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ZooError, match="cannot tell the dataset format"):
        real.load_dataset_file(path)
    with pytest.raises(ZooError, match="unknown dataset format 'parquet'"):
        real.load_dataset_file(path, fmt="parquet")
