"""MGCDA under Lightning's DDP (2 CPU processes, gloo) counts every evaluation pixel exactly once.

The tiny road world keeps odd split sizes: 9 validation images (3 per source style) and 7 target
test images, so the two ranks' unpadded shares differ in length (5/4 and 4/3) and each ends in a
partial batch. Training runs under DDP with the domain-balanced sampler sharding whole batches by
rank (``use_distributed_sampler=false``); evaluation pools the pixel AP/AUROC/FPR95 states, the
confusion matrix and the validation threshold's anomaly scores across the ranks.

What is compared: training cannot match a single process, so the DDP run's ``last.ckpt`` (written
after its last validation) is evaluated again in this process by ``trainer.validate`` and
``trainer.test`` on the same world. Every metric must agree to 1e-4 points; a pixel counted twice
or dropped moves pooled AP by far more (an image holds 1-3% anomaly pixels).
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
WORLD = {"n_train": 8, "n_val": 3, "n_test": 7, "n_oe": 16}


def _metrics_csv(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in csv.DictReader(path.open()):
        out.update({k: float(v) for k, v in row.items() if k.startswith(("val/", "test/")) and v != ""})
    return out


def test_ddp_pixel_metrics_equal_single_process_on_the_same_weights(tmp_path, world_cache):
    from lightning.pytorch import Trainer

    import zoo
    from datamodules.anomaly.procedural import RoadWorld

    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "WANDB_MODE": "disabled",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    world = "{" + ", ".join(f"{k}: {v}" for k, v in WORLD.items()) + "}"
    cmd = [sys.executable, "-m", "zoo.fit", "mgcda", "--config", str(registry.get("mgcda").config("tiny")),
           f"--data.init_args.world={world}",
           "--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.devices=2", "--trainer.accelerator=cpu",
           "--trainer.use_distributed_sampler=false",
           "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run_dir}",
           f"--run_dir={run_dir}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ddp = _metrics_csv(run_dir / "lightning_logs" / "version_0" / "metrics.csv")

    model = zoo.load(str(run_dir / "checkpoints" / "last.ckpt"))
    dm = RoadWorld(world=WORLD, batch_per_domain=2, eval_batch_size=8)
    trainer = Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    single = {k: float(v) for k, v in trainer.validate(model, datamodule=dm, verbose=False)[0].items()}
    assert len(trainer.val_dataloaders.dataset) == 9
    single.update({k: float(v) for k, v in trainer.test(model, datamodule=dm, verbose=False)[0].items()})
    assert [len(ld.dataset) for ld in trainer.test_dataloaders] == [7, 9]  # target, then the sources

    keys = {k for k in single if k.split("/")[-1] in ("ap", "auroc", "fpr95", "miou")}
    assert {"val/ap", "val/miou", "test/target/ap", "test/target/fpr95", "test/target/miou"} <= keys
    for k in sorted(keys):
        assert ddp[k] == pytest.approx(single[k], abs=1e-4), (k, ddp[k], single[k])
