"""World-level check (slow: ~2.5 min on 2 cores with the tiny CLIP cached, +5-10 min to build it).

Golden bands (+-5 around the shipped config's bench means) from the
committed `bench/dept/report.json` (3 seeds, CPU): they catch a world, CLIP or recipe that silently
changes. Run with `pytest -m slow`. Uses the normal cache ($ZOO_CACHE or ~/.cache/zoo).
"""

from __future__ import annotations

import json

import pytest

from zoo.bench import main

pytestmark = pytest.mark.slow

# 3-seed means of the committed report (top-1 %, seeds 0 1 2)
GOLDEN = {"zeroshot": {"base": 33.50, "new": 33.58}, "coop": {"base": 34.03, "new": 31.61},
          "dept": {"base": 37.86, "new": 31.89}}
TOL = 5.0


def test_default_world_bench_inside_golden_bands(tmp_path):
    assert main(["dept", "--seeds", "0", "1", "2", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "report.json").read_text())["settings"]["shapes_b2n"]
    for method, metrics in GOLDEN.items():
        for m, gold in metrics.items():
            got = s["methods"][method][m]
            assert abs(got - gold) <= TOL, f"{method} {m}: {got:.2f} outside {gold} +- {TOL}"
    assert s["methods"]["zeroshot"]["new"] >= 3 * s["chance"]["new"]
