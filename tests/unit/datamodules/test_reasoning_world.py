"""The arithmetic world (datamodules.reasoning.world): styles worked out by hand, determinism,
answer correctness, value ranges, OOD step counts, the teacher's slip rate, the implicit style, no
question overlap, the cache folder and config validation."""

from __future__ import annotations

import json
import random
import re

import pytest

from datamodules.reasoning import world as W
from datamodules.reasoning.rationales import prepare_rationales
from datamodules.reasoning.records import read_jsonl
from zoo.common.lm.answers import extract_number
from zoo.core.errors import ZooError

SMALL = dict(n_train=120, n_dev=40, n_test=40, n_ood_steps=40, n_ood_numbers=40)

# Tom has 5 apples; buys 3 more (8); loses 2 (6); doubles (12).
P = W.Problem("Tom", "apples", 5, (W.Step("add", 3, "buys", "buying"), W.Step("sub", 2, "loses", "losing"),
                                   W.Step("mul", 2, "doubles", "doubling")))


@pytest.fixture(scope="module")
def small_world():
    return W.generate_world(W.ArithWorldConfig(seed=3, **SMALL))


# ------------------------------------------------------------------------------- by hand


def test_question_and_trace_by_hand():
    assert W.render_question(P) == ("Tom has 5 apples . Then Tom buys 3 more apples . Then Tom loses 2 apples . "
                                    "Then Tom doubles the apples . How many apples does Tom have now ?")
    assert P.values == [5, 8, 6, 12] and P.answer == 12
    assert W.trace(P, (0, 1)) == [5, 9, 7, 14]  # +1 after step 0, doubled at the end
    assert W.trace(P, (2, -2)) == [5, 8, 6, 10]


def test_styles_by_hand():
    end = " Therefore , the answer is 12 ."
    assert W.render_rationale(P, "verbose") == (
        "Tom starts with 5 apples . After buying 3 more , Tom has 5 + 3 = 8 . After losing 2 , Tom has 8 - 2 = 6 . "
        "After doubling , Tom has 6 x 2 = 12 ." + end)
    assert W.render_rationale(P, "equations") == "5 + 3 = 8 . 8 - 2 = 6 . 6 x 2 = 12 ." + end
    assert W.render_rationale(P, "commuted") == "3 + 5 = 8 . 8 - 2 = 6 . 2 x 6 = 12 ." + end
    assert W.render_rationale(P, "grouped") == "In all , Tom gains 3 and loses 2 . 5 + 3 - 2 = 6 . 6 x 2 = 12 ." + end
    assert W.render_rationale(P, "implicit") == "5 + 3 = 8 . 8 - 2 = 6 . Last , apply x 2 to 6 ." + end
    assert W.available_styles(P) == list(W.STYLES)
    slipped = W.render_rationale(P, "implicit", W.trace(P, (0, 1)))
    assert slipped == "5 + 3 = 9 . 9 - 2 = 7 . Last , apply x 2 to 7 . Therefore , the answer is 14 ."


def test_style_availability_by_hand():
    # two subtractions: nothing to commute; a +/- run; the final 3 appears as an operand -> no implicit
    p = W.Problem("Mia", "coins", 9, (W.Step("sub", 3, "loses", "losing"), W.Step("sub", 3, "sells", "selling")))
    assert p.answer == 3
    assert W.available_styles(p) == ["verbose", "equations", "grouped"]
    assert W.render_rationale(p, "grouped") == ("In all , Mia loses 3 + 3 = 6 . 9 - 6 = 3 . "
                                                "Therefore , the answer is 3 .")
    # x then +: commuted applies, no +/- run
    q = W.Problem("Ben", "cards", 4, (W.Step("mul", 3, "triples", "tripling"), W.Step("add", 5, "gets", "getting")))
    assert W.available_styles(q) == ["verbose", "equations", "commuted", "implicit"]
    assert W.render_rationale(q, "implicit") == "4 x 3 = 12 . Last , apply + 5 to 12 . Therefore , the answer is 17 ."


# ----------------------------------------------------------------------------- generated


def test_determinism():
    cfg = W.ArithWorldConfig(seed=5, n_train=30, n_dev=10, n_test=10, n_ood_steps=10, n_ood_numbers=10)
    a, b = W.generate_world(cfg), W.generate_world(W.ArithWorldConfig(**{**cfg.__dict__}))
    assert a == b
    c = W.generate_world(W.ArithWorldConfig(**{**cfg.__dict__, "seed": 6}))
    assert [r["question"] for r in c["train"]] != [r["question"] for r in a["train"]]


def test_split_sizes_ids_and_schema(small_world):
    for split in W.SPLITS:
        recs = small_world[split]
        assert len(recs) == SMALL[f"n_{split}"]
        assert [r["id"] for r in recs] == [f"{split}-{i:05d}" for i in range(len(recs))]
        assert all(r["kind"] == "number" and r["meta"]["split"] == split for r in recs)


def test_questions_follow_the_template(small_world):
    pat = re.compile(r"(\w+) has (\d+) (\w+) \.( Then \1 (buys \d+ more|finds \d+ more|gets \d+ more|gives away \d+|"
                     r"loses \d+|sells \d+|doubles the|triples the) \3 \.)+ How many \3 does \1 have now \?")
    for split in W.SPLITS:
        for r in small_world[split]:
            assert pat.fullmatch(r["question"]), r["question"]
            assert r["question"].count(" Then ") == r["meta"]["n_ops"]


def test_answers_of_correct_rationales_match_the_gold(small_world):
    for r in small_world["train"]:
        assert len(r["rationales"]) == 6
        for text, slipped in zip(r["rationales"], r["meta"]["slipped"]):
            assert text.endswith(" Therefore , the answer is " + extract_number(text) + " .")
            assert (extract_number(text) == r["answer"]) is (not slipped), text
    for split in W.EVAL_SPLITS:
        for r in small_world[split]:
            assert all(extract_number(t) == r["answer"] for t in r["rationales"])
            assert r["answer"] == str(r["meta"]["values"][-1])


def test_eval_splits_have_two_distinct_gold_rationales(small_world):
    for split in W.EVAL_SPLITS:
        for r in small_world[split]:
            styles = r["meta"]["styles"]
            assert len(r["rationales"]) == 2 and len(set(r["rationales"])) == 2
            assert styles[0] == "verbose" and styles[1] != "verbose"
            assert not any(r["meta"]["slipped"])


def test_values_stay_in_range_and_ood_step_counts(small_world):
    for split in ("train", "dev", "test", "ood_steps"):
        for r in small_world[split]:
            assert all(1 <= v <= 30 for v in r["meta"]["values"]), r["meta"]["values"]
            assert 1 <= r["meta"]["values"][0] <= 15
    assert {r["meta"]["n_ops"] for s in ("train", "dev", "test") for r in small_world[s]} == {2, 3}
    assert {r["meta"]["n_ops"] for r in small_world["ood_steps"]} == {4, 5}
    for r in small_world["ood_numbers"]:
        vals = r["meta"]["values"]
        assert max(vals) > 30 and max(vals) <= 99 and min(vals) >= 1
        assert r["meta"]["n_ops"] in (2, 3)
    for r in small_world["train"]:
        for op in r["meta"]["ops"]:
            assert re.fullmatch(r"[+-][1-9]|x[23]", op)


def test_implicit_style_hides_the_final_number(small_world):
    n = 0
    for split in W.SPLITS:
        for r in small_world[split]:
            for text, style in zip(r["rationales"], r["meta"]["styles"]):
                if style != "implicit":
                    continue
                n += 1
                body, final = text.rsplit(" Therefore , the answer is ", 1)
                assert final.endswith(" .")
                assert final[:-2] not in body.split(), text
                assert body.split(" . ")[-1].startswith("Last , apply ")
    assert n > 50


def test_no_question_repeats_within_or_across_splits(small_world):
    questions = [r["question"] for s in W.SPLITS for r in small_world[s]]
    assert len(questions) == len(set(questions))


def test_slip_rate_about_0_15_on_2000_questions():
    cfg = W.ArithWorldConfig(seed=0, n_train=2000, n_dev=0, n_test=0, n_ood_steps=0, n_ood_numbers=0)
    train = W.generate_split(cfg, "train")
    flags = [f for r in train for f in r["meta"]["slipped"]]
    assert len(flags) == 12000
    assert 0.12 < sum(flags) / len(flags) < 0.18
    styles = {s for r in train for s in r["meta"]["styles"]}
    assert styles == set(W.STYLES)


def test_teacher_slips_off_and_on():
    rng = random.Random(0)
    never = W.teacher_candidates(P, rng, W.ArithWorldConfig(slip_prob=0.0))
    always = W.teacher_candidates(P, rng, W.ArithWorldConfig(slip_prob=1.0))
    assert all(extract_number(t) == "12" and not s for t, _, s in never)
    assert all(extract_number(t) != "12" and s for t, _, s in always)


def test_style_weights_are_followed():
    cfg = W.ArithWorldConfig(style_weights={"verbose": 0.0, "equations": 0.0, "commuted": 0.0, "grouped": 0.0,
                                            "implicit": 1.0}, slip_prob=0.0)
    cands = W.teacher_candidates(P, random.Random(1), cfg)
    assert {s for _, s, _ in cands} == {"implicit"}


def test_correctness_filter_removes_exactly_the_slips(small_world):
    mcc, base, stats = prepare_rationales(small_world["train"], k=3)
    n_slipped = sum(sum(r["meta"]["slipped"]) for r in small_world["train"])
    assert stats["wrong_answer"] == n_slipped and stats["no_answer"] == 0
    assert stats["answer_sentences_appended"] == 0
    assert stats["questions_mcc"] + stats["questions_baseline_only"] + stats["questions_dropped"] == 120
    assert all(2 <= len(r["rationales"]) <= 3 for r in mcc)
    assert all(extract_number(t) == r["answer"] for r in mcc + base for t in r["rationales"])


# ------------------------------------------------------------------------------------- cache


def test_build_world_writes_reuses_and_is_deterministic(tmp_path):
    cfg = W.ArithWorldConfig(seed=1, n_train=20, n_dev=5, n_test=5, n_ood_steps=5, n_ood_numbers=5)
    root = W.build_world(cfg, cache_dir=tmp_path / "a")
    assert root == W.world_dir(cfg, tmp_path / "a") and root.parent.name == "worlds"
    assert root.name.startswith("arith_world-")
    names = {"raw_train.jsonl", "dev.jsonl", "test.jsonl", "ood_steps.jsonl", "ood_numbers.jsonl", "corpus.txt",
             "world.json"}
    assert {p.name for p in root.iterdir()} == names
    meta = json.loads((root / "world.json").read_text())
    assert meta["config"]["seed"] == 1 and meta["counts"]["questions"]["train"] == 20
    assert meta["counts"]["raw_train_rationales"] == 120
    assert len(read_jsonl(root / "raw_train.jsonl")) == 20 and len(W.load_split(root, "ood_steps")) == 5
    corpus = (root / "corpus.txt").read_text().splitlines()
    assert len(corpus) == 20 * 7 + 4 * 5 * 3  # train: question + 6; held-out: question + 2
    # reuse: a complete folder is not rebuilt
    stamp = (root / "world.json").stat().st_mtime_ns
    assert W.build_world(cfg, cache_dir=tmp_path / "a") == root
    assert (root / "world.json").stat().st_mtime_ns == stamp
    # the same config elsewhere gives byte-identical files; another config another folder
    other = W.build_world(cfg, cache_dir=tmp_path / "b")
    for name in names:
        assert (other / name).read_bytes() == (root / name).read_bytes(), name
    assert W.world_dir(W.ArithWorldConfig(seed=2), tmp_path / "a") != W.world_dir(W.ArithWorldConfig(), tmp_path / "a")
    # an incomplete folder (a killed run) is rebuilt
    (root / "world.json").unlink()
    assert W.build_world(cfg, cache_dir=tmp_path / "a") == root
    assert (root / "world.json").is_file()
    with pytest.raises(ZooError, match="unknown arith-world split"):
        W.load_split(root, "val")


# ------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"n_train": -1}, "n_train"),
        ({"seed": 1.5}, "seed"),
        ({"ops_min": 4, "ops_max": 3}, "ops_min"),
        ({"start_max": 40}, "start_min..start_max"),
        ({"ood_value_max": 30}, "ood_value_max"),
        ({"slip_prob": 1.5}, "slip_prob"),
        ({"teacher_candidates": 0}, "teacher_candidates"),
        ({"style_weights": {"fancy": 1.0}}, "style_weights"),
        ({"style_weights": {"verbose": -1.0}}, "style_weights"),
        ({"style_weights": {"verbose": 0.0}}, "style_weights"),
        ({"eval_rationales": 6}, "eval_rationales"),
    ],
)
def test_config_validation_names_the_field(kw, field):
    with pytest.raises(ZooError, match=re.escape(f"ArithWorldConfig.{field}")):
        W.ArithWorldConfig(**kw)


def test_impossible_sizes_fail_clearly():
    # from a start of 1 with b = 1, three ops reach at most 1 x 3 x 3 x 3 = 27: never above value_max = 30,
    # so every OOD-numbers draw is rejected
    cfg = W.ArithWorldConfig(n_train=0, n_dev=0, n_test=0, n_ood_steps=0, n_ood_numbers=1, ood_start_max=1,
                             ood_b_max=1, ood_value_max=31, max_attempts=50)
    with pytest.raises(ZooError, match="only 0 of 1 distinct 'ood_numbers' questions"):
        W.generate_world(cfg)
