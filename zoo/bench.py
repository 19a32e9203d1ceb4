"""``python -m zoo.bench <model> [--seeds 0 1 2] [--config FILE] [--out DIR] [model options]``.

Trains the method and its baseline on the same data, splits and seeds through the bench harness
(:mod:`zoo.common.harness`), scores every row on the final weights, and writes
``<out>/report.md``, ``report.json`` and PNG plots: mean ± std over seeds, paired per-seed deltas
to the baseline, the paper's claims as pass/fail lines and the environment. The report is written
only once everything has succeeded (an earlier report is never replaced by a partial one).
``python -m zoo.bench <model> --help`` lists the model's own options.
"""

from __future__ import annotations

import argparse
import sys

from zoo.core import registry
from zoo.core.errors import run_cli


def _parser() -> argparse.ArgumentParser:
    from zoo.common.harness.bench import main_parser

    common = main_parser(registry.list_models())
    p = argparse.ArgumentParser(
        prog="python -m zoo.bench",
        description="Train a zoo method and its baseline on identical data and seeds; write a report "
                    "(markdown + json + plots) with mean ± std over seeds and paired deltas to the baseline.")
    sub = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    for e in registry.entries():
        if not e.bench:
            continue
        sp = sub.add_parser(e.name, parents=[common], help=e.summary, description=f"{e.name}: {e.summary}")
        registry.import_string(e.bench).add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    from zoo.common.harness.bench import run_bench

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and not argv[0].startswith("-"):
        rc = run_cli(registry.get, argv[0])  # an unknown model is a one-line error naming the known ones
        if rc:
            return rc
    args = _parser().parse_args(argv)
    args.argv = argv
    return run_cli(lambda: run_bench(registry.get(args.model), args))


if __name__ == "__main__":
    sys.exit(main())
