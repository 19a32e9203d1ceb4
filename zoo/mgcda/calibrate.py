"""Calibrating the road world's target style on the PEBAL-style baseline only (never MDAT or CACL).

    python -m zoo.mgcda.calibrate --seeds 0 1 2 --hue 0.07 0.075 0.08 0.085 0.09 0.1

Per seed it trains what the bench's base row trains (stage A: CE on the sources, then PEBAL-style OE
from it, the same overrides as :mod:`zoo.mgcda.bench`), then scores the same PEBAL weights on the
target split rendered with every candidate hue rotation (the training data do not depend on the
target style, so no retraining is needed). The spec's rule, applied to the 3-seed means: source AP
- target AP >= 15 points and target AP above chance (anomaly pixel share + 1 point). The zoo's
pre-registered choice among the candidates: the smallest hue shift that meets the rule.
Writes ``<out>/calibration.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from zoo.core.errors import ZooError, run_cli

GAP = 15.0


def _target_metrics(model, dm, hue: float) -> dict[str, float]:
    """Pooled exact AP / AUROC / FPR95 of ``model`` on ``dm``'s target split rendered with ``hue``."""
    from torch.utils.data import DataLoader

    from datamodules.anomaly.base import UNSEEN_DOMAIN, AnomalyEvalSet, ArrayEvalScenes
    from datamodules.anomaly.world import load_world
    from zoo.common.metrics.segmentation import PixelAnomalyMetrics

    styles = {k: dict(v) for k, v in dm.cfg.styles.items()}
    styles["T"] = {**styles.get("T", {}), "hue_shift": float(hue)}
    cfg = dataclasses.replace(dm.cfg, styles=styles)
    a = load_world(dm.root, seed=dm.seed, cfg=cfg, splits=["test_T"], progress=False)["test_T"]
    ds = AnomalyEvalSet(ArrayEvalScenes(a["images"], a["labels"], a["anomaly"]), UNSEEN_DOMAIN, dm.mean, dm.std)
    metric = PixelAnomalyMetrics(mode="exact")
    model.eval()
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=64):
            sc, _ = model.score_map(batch["image"])
            metric.update(sc.float(), batch["anomaly"])
    anom = a["anomaly"]
    share = float((anom == 1).sum() / max(1, (anom != 255).sum()))
    return {**{k: 100 * float(v) for k, v in metric.compute().items()}, "anomaly_share": 100 * share}


def main(argv: list[str] | None = None) -> None:
    from zoo.core import registry
    from zoo.core.io import atomic_write_text
    from zoo.core.training import fit_quietly
    from zoo.mgcda.bench import MGCDABench

    p = argparse.ArgumentParser(prog="python -m zoo.mgcda.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hue", type=float, nargs="+", required=True, help="candidate target hue shifts (turns)")
    p.add_argument("--out", default="bench/mgcda", help="output folder (default bench/mgcda)")
    p.add_argument("--override", action="append", default=[], metavar="ARG=V", help="extra CLI override per run")
    a = p.parse_args(argv)
    if any(not 0 <= h < 1 for h in a.hue):
        raise ZooError(f"--hue: hue shifts are turns in [0, 1), got {a.hue}")
    entry = registry.get("mgcda")
    config = str(entry.config("default"))
    bench = MGCDABench.__new__(MGCDABench)
    bench.config = config
    n_a, n_b = bench._epochs()
    out = Path(a.out)
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in a.seeds:
        run_a, run_b = out / "calibration_runs" / f"stage_a-s{seed}", out / "calibration_runs" / f"pebal-s{seed}"
        fit_quietly(entry, config, seed, run_a, ["--model.base=ce", "--model.mdat=false", "--model.cacl=false",
                                                 "--model.pretrain_epochs=0", f"--model.lr={bench._stage_a_lr()}",
                                                 "--data.init_args.oe_prob=0", f"--trainer.max_epochs={n_a}",
                                                 *a.override])
        cli, _, _ = fit_quietly(entry, config, seed, run_b, [
            f"--model.init_from={run_a / 'checkpoints' / 'last.ckpt'}", "--model.pretrain_epochs=0",
            f"--trainer.max_epochs={n_b}", "--model.base=pebal", "--model.mdat=false", "--model.cacl=false",
            *a.override])
        src = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
        row = {"source_ap": float(src["test/source/ap"]), "default_target_ap": float(src["test/target/ap"])}
        for h in a.hue:
            row[f"hue={h}"] = _target_metrics(cli.model, cli.datamodule, h)
        per_seed[seed] = row
        print(json.dumps({seed: row}), flush=True)
    table = []
    chosen = None
    src = statistics.mean(r["source_ap"] for r in per_seed.values())
    for h in sorted(a.hue):
        t = [r[f"hue={h}"] for r in per_seed.values()]
        ap, au = statistics.mean(x["ap"] for x in t), statistics.mean(x["auroc"] for x in t)
        share = statistics.mean(x["anomaly_share"] for x in t)
        ok = src - ap >= GAP and ap > share + 1
        table.append({"hue": h, "target_ap": ap, "target_ap_std": statistics.pstdev(x["ap"] for x in t),
                      "target_auroc": au, "target_fpr95": statistics.mean(x["fpr95"] for x in t),
                      "gap": src - ap, "anomaly_share": share, "meets_rule": ok})
        if ok and chosen is None:
            chosen = h
    report = {"seeds": a.seeds, "source_ap": src, "rule": f"source AP - target AP >= {GAP} and target AP > share + 1",
              "choice": "smallest hue shift meeting the rule", "chosen_hue": chosen, "table": table,
              "per_seed": per_seed}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "calibration.json", json.dumps(report, indent=2))
    lines = ["# MGCDA world calibration (PEBAL-style baseline only)", "",
             f"`python -m zoo.mgcda.calibrate --seeds {' '.join(map(str, a.seeds))} --hue "
             f"{' '.join(map(str, a.hue))}`; source AP {src:.2f} (mean of {len(a.seeds)} seeds). Rule: "
             f"{report['rule']}; choice: {report['choice']} -> **{chosen}**.", "",
             "| target hue | target AP | target AUROC | target FPR95 | gap | anomaly share | meets rule |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['hue']} | {r['target_ap']:.2f} ± {r['target_ap_std']:.2f} | {r['target_auroc']:.1f} | "
                     f"{r['target_fpr95']:.1f} | {r['gap']:.2f} | {r['anomaly_share']:.2f} | "
                     f"{'yes' if r['meets_rule'] else 'no'} |")
    atomic_write_text(out / "calibration.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
