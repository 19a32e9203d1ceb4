"""``python -m zoo.bench <model> [--seeds 0 1 2] [--config FILE] [--out DIR] [model options]``.

Trains the method and its baseline on the same data, splits and seeds, scores both with every
test-time score of the ablation, and writes ``<out>/report.md``, ``report.json`` and PNG plots.
``report.json`` has one entry per method under plain metric names (``fpr95``, ``auroc``,
``id_acc``, ...). The report is written only once everything has succeeded (an earlier report is
never replaced by a partial one).
"""

from __future__ import annotations

import argparse
import sys

from zoo import registry
from zoo.common.errors import ZooError, run_cli

BENCHES = {"mode": "zoo.mode.bench:run_bench", "dept": "zoo.dept.bench:run_bench"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(
        prog="python -m zoo.bench",
        description="Train a zoo method and its baseline on identical data and seeds; write a report "
                    "(markdown + json + plots) with mean +- std over seeds and deltas to the baseline.")
    p.add_argument("model", help=f"registered model: {', '.join(registry.list_models())}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--config", default=None, help="method config (default: configs/<model>/default.yaml)")
    p.add_argument("--baseline-config", default=None, help="baseline config (default: the method config without the method, e.g. MODE without ALPA)")
    p.add_argument("--out", default=None, help="output folder (default: bench/<model>)")
    p.add_argument("--grid", action="store_true", help="also train the ablation grid (mode: the spec's objectives x scores; dept: the lambda sweep and probability fusion)")
    p.add_argument("--override", action="append", default=[], metavar="ARG=V",
                   help="extra CLI override applied to every run, e.g. --override=--trainer.max_epochs=2")
    p.add_argument("--throughput-steps", type=int, default=30,
                   help="mode: training steps timed for the Lightning-vs-bare-PyTorch throughput row (0 = skip)")
    p.add_argument("--knn-bench", default=None, metavar="QxMxC",
                   help="mode: also time CSD-style kNN scoring on random unit data, e.g. 60000x300000x512")
    p.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                   help="dept: run the protocol over real datasets in CoOp's layout (e.g. dtd eurosat oxford_pets) "
                        "instead of the embedded world; needs --data-root")
    p.add_argument("--data-root", default=None, help="dept: folder holding the datasets (CoOp's DATASETS.md layout)")
    p.add_argument("--device", default=None, help="device for scoring (default: cuda if available else cpu)")
    args = p.parse_args(argv)
    return run_cli(_run, args)


def _run(args) -> None:
    entry = registry.get(args.model)
    if args.model not in BENCHES:
        raise ZooError(f"no bench for model {args.model!r} yet; benches: {', '.join(BENCHES)}")
    registry.import_string(BENCHES[args.model])(entry, args)


if __name__ == "__main__":
    sys.exit(main())
