"""World-level check (slow, ~10 min on 2 cores): one bench seed on the default world.

Golden bands from `bench/mode/report.json` (seed 0, CPU): they catch a world or a training
recipe that silently changes, not whether MODE wins. Run with `pytest -m slow`.
"""

from __future__ import annotations

import json

import pytest

from zoo.bench import main

pytestmark = pytest.mark.slow

# seed-0 values of the committed report, +- a tolerance of run-to-run noise on other CPUs
GOLDEN = {"knn": {"fpr95": 37.25, "auroc": 91.61}, "mode": {"fpr95": 50.35, "auroc": 86.45}}
TOL = {"fpr95": 6.0, "auroc": 3.0}


def test_default_world_bench_seed0_inside_golden_bands(tmp_path):
    assert main(["mode", "--seeds", "0", "--out", str(tmp_path), "--throughput-steps", "0"]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    knn_near = rep["settings"]["default"]["methods"]["knn"]["per_set"]["ood_near"]["fpr95"]
    assert 30.0 <= knn_near <= 70.0, f"world calibration drifted: baseline KNN OOD-near FPR95 {knn_near:.1f}"
    for method, metrics in GOLDEN.items():
        for m, gold in metrics.items():
            got = rep["settings"]["default"]["methods"][method][m]
            assert abs(got - gold) <= TOL[m], f"{method} {m}: {got:.2f} outside {gold} +- {TOL[m]}"
