"""``python -m zoo.fit <model> [--config FILE] [--model.* / --data.* / --trainer.* overrides]``.

Stock LightningCLI driven by the registry (``zoo.core.registry``). Each run gets its own folder
``runs/<model>/<timestamp>/`` holding ``config.yaml``, ``checkpoints/`` (best by the config's
monitor, and ``last.ckpt``), ``plots/`` and the logger's files (W&B offline by default; sync later
with ``wandb sync runs/<model>/<timestamp>/wandb/offline-run-*``). ``--ckpt_path last`` resumes the
newest run of that model.
"""

from __future__ import annotations

import sys

from zoo.core import registry
from zoo.core.errors import run_cli

USAGE = """usage: python -m zoo.fit MODEL [--config FILE] [--print_config] [--ckpt_path PATH|last]
                        [--model.ARG=V] [--data.ARG=V] [--trainer.ARG=V] ...

Train a zoo model with LightningCLI. `python -m zoo.fit MODEL --help` lists every argument.
With no --config, configs/MODEL/default.yaml is used (the embedded procedural world, CPU-sized).

models:
{models}

examples:
  python -m zoo.fit mode                                  # MODE on the embedded world
  python -m zoo.fit mode --config configs/mode/cifar10_r18.yaml --data.root /data
  python -m zoo.fit mode --trainer.max_epochs=2 --trainer.logger=false
  python -m zoo.fit mode --ckpt_path last                 # resume the newest run
  python -m zoo.fit dept                                  # DePT on the ShapesB2N world (tiny CLIP built once)
  python -m zoo.fit dept --config configs/dept/vitb16.yaml --model.clip_weights ViT-B-16.pt \
      --data.init_args.root /data --data.init_args.dataset dtd
"""


def usage() -> str:
    lines = []
    for e in registry.entries():
        lines.append(f"  {e.name:<8} {e.summary}")
        lines.append(f"  {'':<8} configs: {', '.join(e.configs())}")
    return USAGE.format(models="\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    from zoo.core.training import run

    return run_cli(lambda: run(registry.get(argv[0]), argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
