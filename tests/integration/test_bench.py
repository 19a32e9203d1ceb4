"""zoo.bench on a tiny config writes a well-formed report (numbers are not judged here)."""

from __future__ import annotations

import json

from zoo.core import registry
from zoo.bench import main

TINY = str(registry.get("mode").config("tiny"))


def test_bench_tiny_writes_report(tmp_path, world_cache, capsys):
    out = tmp_path / "bench"
    rc = main(["mode", "--seeds", "0", "1", "--config", TINY, "--out", str(out), "--throughput-steps", "2",
               "--override=--trainer.max_epochs=2"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    block = rep["settings"]["default"]
    assert rep["seeds"] == [0, 1] and block["average_over"] == ["ood_near", "ood_far"]
    assert "ID is the positive class" in rep["conventions"]
    assert rep["config"] == "configs/mode/tiny.yaml"  # repo-relative paths in reports
    env = rep["environment"]
    assert env["git_commit"] and env["precision"] == "32-true" and env["cpu_threads"] >= 1 and "torch" in env["packages"]
    for name in ("knn", "mode", "csd_on_base", "knn_on_mode", "mode_from_base"):
        m = block["methods"][name]
        for key in ("fpr95", "auroc", "id_acc", "fpr95_std", "train_seconds", "queries_per_s"):
            assert isinstance(m[key], float), (name, key)
        assert 0 <= m["fpr95"] <= 100 and 0 <= m["auroc"] <= 100
        assert len(m["per_seed"]) == 2 and set(m["per_set"]) == {"ood_near", "ood_far", "ood_bg"}
        avg = sum(m["per_seed"][0]["per_set"][n]["fpr95"] for n in ("ood_near", "ood_far")) / 2
        assert abs(m["per_seed"][0]["fpr95"] - avg) < 1e-9
    d = block["deltas"]["mode - knn"]
    assert abs(d["fpr95"] - (block["methods"]["mode"]["fpr95"] - block["methods"]["knn"]["fpr95"])) < 1e-9
    per = [a["fpr95"] - b["fpr95"] for a, b in zip(block["methods"]["mode"]["per_seed"], block["methods"]["knn"]["per_seed"])]
    assert d["fpr95_per_seed"] == per
    assert set(block["claims"]) and all(isinstance(v, bool) for v in block["claims"].values())
    assert rep["throughput"]["ratio"] > 0
    md = (out / "report.md").read_text()
    assert "| **mode** |" in md and "MODE − KNN" in md and "FPR95" in md
    for png in ("fpr95.png", "auroc.png", "roc_mode.png", "roc_knn.png", "scores_mode.png", "roc_mode_vs_knn.png",
                "paired_mode_vs_knn.png"):
        assert (out / png).stat().st_size > 1000


def test_bench_bad_config_keeps_earlier_report(tmp_path, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "report.md").write_text("earlier")
    assert main(["mode", "--config", str(tmp_path / "nope.yaml"), "--out", str(out)]) == 2
    assert "nope.yaml: file not found" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "earlier"


def test_dept_bench_tiny_writes_base_new_h_report(tmp_path, world_cache):
    out = tmp_path / "bench_dept"
    rc = main(["dept", "--seeds", "0", "1", "--config", str(registry.get("dept").config("tiny")), "--out", str(out),
               "--override=--trainer.max_epochs=1"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    s = rep["settings"]["shapes_b2n"]
    assert s["classes"] == {"base": 24, "new": 24} and s["comparable"]
    for m in ("zeroshot", "coop", "dept"):
        x = s["methods"][m]
        assert len(x["per_seed"]) == 2 and 0 <= x["base"] <= 100 and 0 <= x["new"] <= 100
        b, n = x["base"], x["new"]
        assert abs(x["h"] - (2 * b * n / (b + n) if b + n else 0.0)) < 1e-9  # H of the seed-averaged B and N
    d = s["deltas"]["dept - coop"]
    assert abs(d["base"] - (s["methods"]["dept"]["base"] - s["methods"]["coop"]["base"])) < 1e-9
    assert set(s["claims"]) and all(isinstance(v, bool) for v in s["claims"].values())
    md = (out / "report.md").read_text()
    assert "| CoOp+DePT |" in md and "DePT − CoOp" in md and "Spec pass criteria" in md
    assert (out / "accuracy.png").stat().st_size > 1000
    assert "lam" not in (out / "runs" / "coop_from_dept.yaml").read_text()


def test_dept_bench_over_a_real_format_dataset(tmp_path, world_cache):
    from tests.helpers.fewshot_fixtures import write_split_zhou

    root = tmp_path / "data"
    names = ["red circle", "green square", "blue star", "purple ring", "orange heart"]
    write_split_zhou(root, "caltech101", names, per_class=(3, 2, 2))
    out = tmp_path / "bench_real"
    rc = main(["dept", "--seeds", "1", "--config", str(registry.get("dept").config("tiny")), "--out", str(out),
               "--datasets", "caltech101", "--data-root", str(root), "--grid", "--override=--trainer.max_epochs=1",
               "--override=--data.init_args.num_workers=0", "--override=--data.init_args.image_size=32"])
    assert rc == 0
    s = json.loads((out / "report.json").read_text())["settings"]["caltech101"]
    assert s["classes"] == {"base": 3, "new": 2} and s["template"] == "a photo of a {}." and s["comparable"]
    assert {"lam=0.3", "lam=0.5", "lam=0.9", "lam=1.0", "fusion=probs"} <= set(s["methods"])
    assert s["claims"] == {}  # the spec's pass criteria belong to the embedded world
    assert (out / "lambda.png").is_file() and "Ablation (`--grid`)" in (out / "report.md").read_text()


def test_mgcda_bench_tiny_writes_the_ablation_with_the_domain_probe(tmp_path, world_cache):
    out = tmp_path / "bench_mgcda"
    rc = main(["mgcda", "--seeds", "0", "--config", str(registry.get("mgcda").config("tiny")), "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "report.json").read_text())["settings"]["road_world"]
    for m in ("b0_energy", "pebal", "mdat", "cacl", "mgcda"):
        x = s["methods"][m]
        assert 0 <= x["target_ap"] <= 100 and 0 <= x["domain_probe"] <= 100
    assert "mgcda - pebal" in s["deltas"] and "domain probe" in (out / "report.md").read_text()


def test_pta_bench_tiny_writes_retrieval_detector_and_speed_tables(tmp_path, world_cache):
    out = tmp_path / "bench_pta"
    rc = main(["pta", "--seeds", "0", "--config", str(registry.get("pta").config("tiny")), "--out", str(out),
               "--speed-batch", "4"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    s = rep["settings"]["shapes"]
    assert set(s["methods"]) == {"pta", "full_vit", "tpd_no_pta", "pta_random", "pta_evit"}
    assert "tpd_recall" in s["methods"]["pta"] and "tpd_recall" not in s["methods"]["full_vit"]
    sp = rep["speed"]
    assert sp["r=1.0"]["kept"] == 64 and sp["r=0.5"]["kept"] == 32
    assert sp["r=0.5"]["ideal"] > 1 and sp["r=0.5"]["speedup"] > 0
    md = (out / "report.md").read_text()
    assert "measured speedup" in md and "| **full-ViT baseline** |" in md
    assert (out / "speed_vs_r.png").stat().st_size > 1000 and (out / "selections.png").stat().st_size > 1000
