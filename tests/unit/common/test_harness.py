"""The bench harness's bookkeeping on hand-made per-seed results (no training)."""

from __future__ import annotations

import argparse

import pytest

from zoo.common.harness import Bench, Comparison, Setting
from zoo.common.harness.report import mean_std, rel, summarise
from zoo.core import registry


def test_summarise_means_stds_and_nested_dicts():
    per = [{"acc": 1.0, "k": 10, "score": "knn", "per_set": {"a": {"fpr": 2.0}}},
           {"acc": 3.0, "k": 10, "score": "knn", "per_set": {"a": {"fpr": 4.0}}}]
    s = summarise(per)
    assert s["acc"] == 2.0 and s["acc_std"] == pytest.approx(2 ** 0.5) and s["k"] == 10.0 and s["k_std"] == 0.0
    assert s["score"] == "knn" and s["per_set"]["a"]["fpr"] == 3.0
    assert mean_std([1.0, float("nan"), None]) == (1.0, 0.0)


class _Toy(Bench):
    title = "toy"
    metrics = {"acc": "accuracy", "loss": "loss"}
    comparisons = (Comparison("method", "base", ("acc",)),)

    def derive(self, row):
        row["twice"] = 2 * row["acc"]

    def claims(self, setting, block):
        return {"method beats base": block["deltas"]["method - base"]["acc"] > 0}


def test_block_pairs_seeds_and_checks_claims(tmp_path):
    args = argparse.Namespace(config=str(registry.get("mode").config("tiny")), out=str(tmp_path), device="cpu",
                              seeds=[0, 1], override=[], baseline_config=None)
    bench = _Toy(registry.get("mode"), args)
    per_row = {"base": [{"acc": 50.0, "seed": 0}, {"acc": 60.0, "seed": 1}],
               "method": [{"acc": 55.0, "seed": 0}, {"acc": 58.0, "seed": 1}]}
    meta = {r: {"variant": r, "training": r} for r in per_row}
    block = bench._block(Setting("default"), per_row, meta, {})
    d = block["deltas"]["method - base"]
    assert d["acc"] == pytest.approx(1.5) and d["acc_per_seed"] == [5.0, -2.0]
    assert block["methods"]["method"]["twice"] == 113.0 and block["claims"] == {"method beats base": True}
    assert rel(registry.REPO_ROOT / "configs" / "mode" / "tiny.yaml") == "configs/mode/tiny.yaml"
