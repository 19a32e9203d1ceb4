"""DePT and CoOp under Lightning's DDP (2 CPU processes, gloo) count every evaluation image once.

The data are the tiny ShapesB2N world read as a user's class-folder tree (``dataset=folder``)
through a split JSON that keeps odd numbers of images: 23 validation images (base classes),
45 base and 41 new test images. With 2 processes ``DistributedSampler`` pads every one of these
sets with a repeated image, and with 8-image eval batches each shard ends in a partial batch.

What is compared. Training cannot match a single process (each rank trains on its own half of
the shots), so the DDP run trains one epoch with ``strategy=ddp``, validates and tests under DDP
(per-image predictions gathered from both ranks and de-duplicated by the batch's ``index``) and
logs its metrics with a CSVLogger (rank 0). A single process then evaluates *the same weights*:
``zoo.load`` of the DDP run's ``last.ckpt`` (written after that epoch's validation), then
``trainer.validate`` and ``trainer.test`` on the same datamodule, in this process. Every val and
test metric must be equal to 1e-6; a duplicated or dropped image moves an accuracy by about 1/45.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.core import registry

ROOT = Path(__file__).resolve().parents[2]
N_VAL, N_BASE, N_NEW = 23, 45, 41  # odd: DistributedSampler pads each with one repeated image
#: the datamodule, the same in both runs (the world of configs/dept/tiny.yaml, as class folders).
DATA = {"dataset": "folder", "num_shots": 2, "seed": 1, "image_size": 32, "batch_size": 8, "eval_batch_size": 8,
        "num_workers": 0}


@pytest.fixture(scope="module")
def odd_tree(tmp_path_factory, world_cache) -> tuple[str, str]:
    """``(root, split_file)``: the tiny world's images behind a link, and a split JSON keeping
    the first 23 val, 45 base-test and 41 new-test items (every class keeps its train shots)."""
    from datamodules.fewshot.shapes import ensure_world
    from datamodules.fewshot.shapes.config import DATASET_DIR, SPLIT_FILE

    world = ensure_world(n_captions=64, train_per_class=2, val_per_class=1, test_per_class=2, progress=False)
    tree = tmp_path_factory.mktemp("odd_tree")
    (tree / "images").symlink_to(world / DATASET_DIR / "images", target_is_directory=True)
    split = json.loads((world / DATASET_DIR / SPLIT_FILE).read_text())
    n_cls = len({row[1] for row in split["train"]})
    base = [r for r in split["test"] if r[1] < (n_cls + 1) // 2]
    new = [r for r in split["test"] if r[1] >= (n_cls + 1) // 2]
    assert len(split["val"]) > N_VAL and len(base) > N_BASE and len(new) > N_NEW
    odd = {"train": split["train"], "val": split["val"][:N_VAL], "test": base[:N_BASE] + new[:N_NEW]}
    for rows in odd.values():
        for row in rows:
            row[0] = f"images/{row[0]}"
    split_file = tree / "split_odd.json"
    split_file.write_text(json.dumps(odd))
    return str(tree), str(split_file)


def _metrics_csv(path: Path) -> dict[str, float]:
    """The last value of every val/ and test/ column that the CSVLogger wrote."""
    out: dict[str, float] = {}
    for row in csv.DictReader(path.open()):
        out.update({k: float(v) for k, v in row.items() if k.startswith(("val/", "test/")) and v != ""})
    return out


def _ddp_run(name: str, run_dir: Path, root: str, split_file: str) -> dict[str, float]:
    """``python -m zoo.fit <name>`` on the tiny config, the odd tree, 2 gloo processes, one epoch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "WANDB_MODE": "disabled",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    data = [f"--data.init_args.{k}={v}" for k, v in {**DATA, "root": root, "split_file": split_file}.items()]
    cmd = [sys.executable, "-m", "zoo.fit", name, "--config", str(registry.get(name).config("tiny")),
           "--data=datamodules.fewshot.base.FewShotDataModule", *data,
           "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
           "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run_dir}",
           f"--run_dir={run_dir}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return _metrics_csv(run_dir / "lightning_logs" / "version_0" / "metrics.csv")


def _single_process(ckpt: Path, root: str, split_file: str) -> dict[str, float]:
    """Validate and test ``ckpt`` in this process (one device, no sampler padding)."""
    from lightning.pytorch import Trainer

    import zoo
    from datamodules.fewshot.base import FewShotDataModule

    model = zoo.load(str(ckpt))
    dm = FewShotDataModule(root=root, split_file=split_file, **DATA)
    trainer = Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    out = trainer.validate(model, datamodule=dm, verbose=False)[0]
    assert len(trainer.val_dataloaders.dataset) == N_VAL
    out.update(trainer.test(model, datamodule=dm, verbose=False)[0])
    assert [len(ld.dataset) for ld in trainer.test_dataloaders] == [N_BASE, N_NEW]
    return {k: float(v) for k, v in out.items()}


@pytest.mark.parametrize("name", ["dept", "coop"])
def test_ddp_eval_metrics_equal_single_process_on_the_same_weights(name, odd_tree, tmp_path):
    root, split_file = odd_tree
    ddp = _ddp_run(name, tmp_path / "ddp", root, split_file)
    ckpt = tmp_path / "ddp" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    single = _single_process(ckpt, root, split_file)
    expected = {"val/acc", "test/base_acc", "test/new_acc", "test/h"}
    if name == "dept":
        expected |= {"val/base_acc_itm", "val/base_acc_cat", "test/base_acc_itm", "test/base_acc_cat"}
    assert set(single) == expected and set(ddp) == expected, (sorted(single), sorted(ddp))
    for k in sorted(expected):
        assert ddp[k] == pytest.approx(single[k], abs=1e-6), (k, ddp[k], single[k])
    for key, n in (("val/acc", N_VAL), ("test/base_acc", N_BASE), ("test/new_acc", N_NEW)):
        assert single[key] * n == pytest.approx(round(single[key] * n), abs=1e-4), key  # a count over n images
