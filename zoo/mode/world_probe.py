"""``python -m zoo.mode.world_probe [--world KNOB=V ...]``: how hard is a ClutterGlyphs world?

A calibration aid for the embedded world (spec: "calibrate clutter so that baseline KNN FPR95 on
OOD-near is 30-70%"). It trains CE for ``--ce-epochs``, scores that model with KNN and CSD, then
fine-tunes it with ALPA alone (MODE-F, ``init_from``) for ``--alpa-epochs`` and scores again.
One line per model and score: per-set FPR95/AUROC and the near+far average. The CE model here is
a proxy for the bench's baseline (which trains CE for the full compute-matched epochs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def _parse_value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def main(argv: list[str] | None = None) -> int:
    from zoo.core import registry
    from zoo.core.training import fit_quietly
    from zoo.mode.bench import evaluate_scores

    def train(overrides: list[str], run_dir: Path):
        cli, _, _ = fit_quietly(entry, cfg, args.seed, run_dir, [*overrides, *common])
        return cli.model, cli.datamodule

    p = argparse.ArgumentParser(prog="python -m zoo.mode.world_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--world", action="append", default=[], metavar="KNOB=V", help="WorldConfig override")
    p.add_argument("--ce-epochs", type=int, default=8)
    p.add_argument("--alpa-epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--override", action="append", default=[], help="extra CLI override for both runs")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    world = {k: _parse_value(v) for k, v in (w.split("=", 1) for w in args.world)}
    entry = registry.get("mode")
    cfg = str(entry.config("default"))
    common = [f"--data.init_args.world={json.dumps(world)}", *args.override]
    tmp = Path(tempfile.mkdtemp(prefix="world_probe-"))
    t0 = time.perf_counter()
    ce, dm = train(["--model.objective=ce", "--model.pretrain_epochs=0", "--model.lr=0.1",
                    "--data.init_args.n_views=1", f"--trainer.max_epochs={args.ce_epochs}"], tmp / "ce")
    ce_ckpt = tmp / "ce" / "checkpoints" / "last.ckpt"
    scores = {"knn": ("knn", 10), "csd": ("csd", 10)}
    rows = [("ce", evaluate_scores(ce, dm, torch.device("cpu"), scores))]
    if args.alpa_epochs:
        mf, dm = train(["--model.objective=alpa", "--model.pretrain_epochs=0", f"--model.init_from={ce_ckpt}",
                        f"--trainer.max_epochs={args.alpa_epochs}"], tmp / "modef")
        rows.append(("mode-f", evaluate_scores(mf, dm, torch.device("cpu"), scores)))
    print(f"world {json.dumps(world)} seed {args.seed} ({time.perf_counter() - t0:.0f} s)")
    for model, ev in rows:
        for sc, res in ev["scores"].items():
            per = res["per_set"]
            avg_f = (per["ood_near"]["fpr95"] + per["ood_far"]["fpr95"]) / 2
            avg_a = (per["ood_near"]["auroc"] + per["ood_far"]["auroc"]) / 2
            sets = "  ".join(f"{n} {v['fpr95']:5.1f}/{v['auroc']:5.1f}" for n, v in per.items())
            print(f"  {model:<6} {sc:<3}  avg FPR95 {avg_f:5.1f} AUROC {avg_a:5.1f} | {sets} | acc {ev['id_acc']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
