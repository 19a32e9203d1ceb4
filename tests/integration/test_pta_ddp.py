"""PTA under Lightning's DDP (2 CPU processes, gloo) retrieves over every test image exactly once.

The tiny world keeps 11 validation and 11 test scenes (22 captions each), so ``DistributedSampler``
pads each split with a repeated scene and every rank ends in a partial batch. The ranks' cached
image tokens, embeddings, captions and patch labels are gathered and the padding dropped by
dataset index before the ITC ranking, the ITM re-ranking and the detector metrics.

What is compared: the DDP run's ``last.ckpt`` is evaluated again in this process; every val and test
metric must agree to 1e-3 points (a duplicated image adds a candidate to every ranking and moves
R@K of 11 images by 9 points; a dropped one removes two queries).
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


def _metrics_csv(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in csv.DictReader(path.open()):
        out.update({k: float(v) for k, v in row.items() if k.startswith(("val/", "test/")) and v != ""})
    return out


def test_ddp_retrieval_equals_single_process_on_the_same_weights(tmp_path, world_cache):
    from lightning.pytorch import Trainer

    import zoo
    from datamodules.vlp.procedural import ShapesClutter

    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "WANDB_MODE": "disabled",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "zoo.fit", "pta", "--config", str(registry.get("pta").config("tiny")),
           "--data.init_args.n_val=11", "--data.init_args.n_test=11", "--data.init_args.eval_batch_size=4",
           "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
           "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run_dir}",
           f"--run_dir={run_dir}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ddp = _metrics_csv(run_dir / "lightning_logs" / "version_0" / "metrics.csv")

    model = zoo.load(str(run_dir / "checkpoints" / "last.ckpt"))
    dm = ShapesClutter(n_train=64, n_val=11, n_test=11, box_fraction=0.5, batch_size=16, eval_batch_size=4)
    trainer = Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    single = {k: float(v) for k, v in trainer.validate(model, datamodule=dm, verbose=False)[0].items()}
    single.update({k: float(v) for k, v in trainer.test(model, datamodule=dm, verbose=False)[0].items()})
    keys = {k for k in single if not k.endswith("rerank_s")}
    assert {"val/r_mean", "test/tr@1", "test/ir@5", "test/tpd_recall", "test/itm_acc"} <= keys
    for k in sorted(keys):
        assert ddp[k] == pytest.approx(single[k], abs=1e-3), (k, ddp[k], single[k])
