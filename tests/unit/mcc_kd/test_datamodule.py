"""MCC-KD's data path: pair draws, label-space spans on decoded tokens, modes, truncation."""

from __future__ import annotations

import pytest
import torch

from datamodules.reasoning.base import EpochSampler, _draw_pair
from datamodules.reasoning.procedural import ArithWorld

WORLD = {"n_train": 24, "n_dev": 6, "n_test": 6, "n_ood_steps": 6, "n_ood_numbers": 6}


def _dm(world_cache, **kw):
    dm = ArithWorld(world=WORLD, batch_size=4, eval_batch_size=6, **kw)
    dm.setup("fit")
    return dm


def test_pair_draws_are_distinct_uniform_and_a_function_of_seed_epoch_question():
    draws = [_draw_pair(3, 7, e, "q1") for e in range(300)]
    assert all(i != j for i, j in draws)
    assert _draw_pair(3, 7, 5, "q1") == draws[5] and len(set(draws)) == 6  # every ordered pair occurs
    counts = torch.bincount(torch.tensor([i for i, _ in draws]), minlength=3)
    assert counts.min() > 60  # about 100 each


def test_epoch_sampler_tags_items_with_the_epoch():
    s = EpochSampler(5, torch.Generator().manual_seed(0))
    first = list(s)
    assert {e for _, e in first} == {0} and sorted(i for i, _ in first) == list(range(5))
    s.set_epoch(3)
    assert {e for _, e in s} == {3}
    assert {e for _, e in s} == {4}  # not set: the pass count (a wrapper that does not forward set_epoch)


def test_span_positions_decode_to_the_answer_in_label_space(world_cache):
    dm = _dm(world_cache)
    batch = next(iter(dm.train_dataloader()))
    tok = dm.tokenizer
    b = batch["span_a"].shape[0]
    assert batch["input_ids"].shape[0] == 2 * b and bool(batch["pair_valid"].all())
    for side, key in ((0, "span_a"), (b, "span_b")):
        for i in range(b):
            row, pos = side + i, batch[key][i][batch["span_mask"][i]]
            labels, ids = batch["labels"][row], batch["input_ids"][row]
            # label space: labels[p] is the token at input position p + 1
            keep = labels != -100
            assert torch.equal(labels[keep], ids[1:][keep[:-1]])
            text = tok.decode(labels[pos].tolist())
            answer = tok.decode(labels[keep].tolist(), skip_special_tokens=True).rsplit("answer is", 1)[1].strip()
            assert text.replace(" ", "") == answer.replace(" ", "") and text.endswith(".")
    # both sides of a pair hold the same span ids, position by position
    for i in range(b):
        m = batch["span_mask"][i]
        assert torch.equal(batch["labels"][i][batch["span_a"][i][m]], batch["labels"][b + i][batch["span_b"][i][m]])


def test_single_mode_uses_the_first_rationale_and_has_no_pairs(world_cache):
    dm = _dm(world_cache, mode="single")
    batch = next(iter(dm.train_dataloader()))
    assert "span_a" not in batch and batch["input_ids"].shape[0] == 4
    assert len(dm.train_records) >= len(_dm(world_cache).train_records)  # + the baseline-only questions


def test_questions_with_one_rationale_are_skipped_and_counted_in_pairs_mode(world_cache, tmp_path):
    from datamodules.reasoning.base import ReasoningDataModule
    from datamodules.reasoning.records import write_jsonl

    ref = _dm(world_cache)
    recs = [dict(r) for r in ref.train_records[:5]]
    recs[0]["rationales"] = recs[0]["rationales"][:1]
    recs[1]["rationales"] = [recs[1]["rationales"][0]] * 2  # two copies are not two rationales
    path = tmp_path / "train.jsonl"
    write_jsonl(path, recs)
    dm = ReasoningDataModule(train=str(path), tokenizer=ref.tokenizer_dir, batch_size=2)
    with pytest.warns(UserWarning, match="2 of 5 questions"):
        dm.setup("fit")
    assert dm.skipped_single == 2 and len(dm.train_records) == 3


def test_a_span_cut_by_truncation_masks_the_pair(world_cache):
    dm = _dm(world_cache, max_length=40)
    batch = next(iter(dm.train_dataloader()))
    assert not bool(batch["pair_valid"].any()) and batch["input_ids"].shape[1] <= 40


def test_eval_batches_carry_questions_answers_and_gold_pairs(world_cache):
    dm = _dm(world_cache)
    batch = next(iter(dm.test_dataloader()[0]))
    assert len(batch["question"]) == 6 and batch["index"].tolist() == list(range(6))
    assert len(batch["pair_rows"]) == 6 and batch["span_a"].shape[0] == 6
    assert dm.test_set_names == ["test", "ood_steps", "ood_numbers"]


def test_bad_arguments_fail_at_construction():
    from zoo.core.errors import ZooError

    with pytest.raises(ZooError, match="--data.init_args.k"):
        ArithWorld(k=1)
    with pytest.raises(ZooError, match="--data.init_args.batch_size"):
        ArithWorld(batch_size=0)
    with pytest.raises(ZooError, match="--data.init_args.test_sets"):
        ArithWorld(test_sets=["nope"])
