"""MODE under Lightning's DDP (2 CPU processes, gloo) evaluates every image exactly once.

The tiny world's sizes are odd (63 bank images, 33 ID test, 25/23/17 OOD test, 31/15/13 for
validation), so ``DistributedSampler`` pads each rank's shard by repeating samples; with 8-image
eval batches every shard also ends in a partial batch.

What is compared. Training itself cannot match a single process (each rank sees its own half of
the batches), so the DDP run trains one epoch with ``strategy=ddp``, validates and tests under DDP
(bank extracted in shards and all-gathered, scores gathered and de-duplicated), and logs its test
metrics. A single process then evaluates *the same weights* (``--model.init_from`` the DDP run's
``last.ckpt``, ``--trainer.max_epochs=0``: it builds its own bank from scratch and tests). The test
metrics of the two runs, every key (per-set AUROC / FPR95 / AUPR-In, averages, accuracies), must
be equal to 1e-6; a duplicated or dropped image would move the ID accuracy by 1/33 and AUROC by
about 1/(33 x 25).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.core import registry

ROOT = Path(__file__).resolve().parents[2]
TINY = str(registry.get("mode").config("tiny"))
SIZES = "{id_train: 63, id_val: 31, id_test: 33, ood_near: 25, ood_far: 23, ood_bg: 17, ood_val_near: 15, ood_val_far: 13}"


def _run(run_dir: Path, *extra: str) -> dict[str, float]:
    """``python -m zoo.fit mode`` on the tiny config in a subprocess; the test metrics it logged
    (CSVLogger, full float precision, written by rank 0)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "WANDB_MODE": "disabled",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "zoo.fit", "mode", "--config", TINY, f"--data.init_args.sizes={SIZES}",
           "--data.init_args.eval_batch_size=8", "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
           f"--trainer.logger.init_args.save_dir={run_dir}", f"--run_dir={run_dir}", *extra]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader((run_dir / "lightning_logs" / "version_0" / "metrics.csv").open()))
    test = [r for r in rows if r.get("test/auroc")]
    assert len(test) == 1, rows
    return {k: float(v) for k, v in test[0].items() if k.startswith("test/") and v != ""}


def test_ddp_test_metrics_equal_single_process_on_the_same_weights(tmp_path, world_cache):
    ddp = _run(tmp_path / "ddp", "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
               "--trainer.max_epochs=1")
    ckpt = tmp_path / "ddp" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    single = _run(tmp_path / "single", f"--model.init_from={ckpt}", "--trainer.max_epochs=0",
                  "--model.pretrain_epochs=0")
    keys = sorted(k for k in single if k != "test/score_qps")  # throughput differs, by nature
    assert keys == sorted(k for k in ddp if k != "test/score_qps")
    for set_name in ("ood_near", "ood_far", "ood_bg"):
        assert f"test/{set_name}/auroc" in keys and f"test/{set_name}/fpr95" in keys
    for k in keys:
        assert ddp[k] == pytest.approx(single[k], abs=1e-6), (k, ddp[k], single[k])
    assert single["test/acc_fc"] * 33 == pytest.approx(round(single["test/acc_fc"] * 33), abs=1e-4)  # n = 33 images
