"""Running ``python -m zoo.fit`` under 2-process gloo DDP in tests, and reading its logged metrics."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def metrics_csv(path: Path) -> dict[str, float]:
    """The last value of every val/ and test/ column that a CSVLogger wrote."""
    out: dict[str, float] = {}
    for row in csv.DictReader(path.open()):
        out.update({k: float(v) for k, v in row.items() if k.startswith(("val/", "test/")) and v != ""})
    return out


def ddp_fit(name: str, config: str, run_dir: Path, *args: str, strategy: str = "ddp") -> dict[str, float]:
    """``python -m zoo.fit <name> --config <config> <args>`` on 2 gloo CPU processes with a CSVLogger
    in ``run_dir``; asserts success and returns the logged val/test metrics."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "WANDB_MODE": "disabled",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "zoo.fit", name, "--config", config, *args,
           f"--trainer.strategy={strategy}", "--trainer.devices=2", "--trainer.accelerator=cpu",
           "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run_dir}",
           f"--run_dir={run_dir}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return metrics_csv(run_dir / "lightning_logs" / "version_0" / "metrics.csv")
