"""MODE refuses bad arguments and incompatible config x datamodule pairs before any training step,
with one ``error: ...`` line and exit status 2 (through ``python -m zoo.fit``'s ``main``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import fixtures as fx
from zoo.core import registry
from zoo.fit import main

TINY = str(registry.get("mode").config("tiny"))


def _error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    return err[-1] if err else ""


def _trained_nothing(run_dir: Path) -> bool:
    return not list(run_dir.rglob("*.ckpt"))


@pytest.mark.parametrize(("arg", "line"), [
    ("--model.k=-3", "error: --model.k must be >= 1, got -3"),
    ("--model.lr=0", "error: --model.lr must be > 0, got 0.0"),
    ("--model.tpr=1.5", "error: --model.tpr must be in (0, 1], got 1.5"),
    ("--model.k=1000", "error: --model.k must be <= the 384 rows of the CSD bank (6 regions x 64 ID train images), "
                       "got 1000"),
])
def test_bad_model_argument_exits_2_before_training(arg, line, tmp_path, capsys, world_cache):
    run_dir = tmp_path / "r"
    rc = main(["mode", "--config", TINY, arg, f"--run_dir={run_dir}"])
    assert rc == 2
    assert _error_line(capsys) == line
    assert _trained_nothing(run_dir)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """CIFAR-10 pickles (20 train, 6 test images) and two OOD layouts, in their distributed formats."""
    root = tmp_path_factory.mktemp("cifar")
    fx.write_cifar10(root, n_train_per_batch=4, n_test=6)
    fx.write_lsun_c(root, n=5)
    fx.write_dtd(root, classes=2, per_class=2)
    return root


def _real(root: Path) -> list[str]:
    return ["--data.class_path=datamodules.ood.real.OODBenchmark", f"--data.init_args.root={root}",
            "--data.init_args.val_size=4", "--data.init_args.num_workers=0", "--data.init_args.batch_size=8",
            "--data.init_args.eval_batch_size=8", "--model.backbone=test_resnet", "--model.num_classes=10",
            "--model.k=3", "--trainer.accelerator=cpu", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_world_config_with_real_benchmark_fails_before_training(cifar_root, tmp_path, capsys):
    """default.yaml (the world) monitors val/auroc; OODBenchmark has no validation OOD sets, so that
    metric is never logged. Before: one epoch, then Lightning's MisconfigurationException traceback."""
    run_dir = tmp_path / "r"
    rc = main(["mode", *_real(cifar_root), f"--run_dir={run_dir}"])
    line = _error_line(capsys)
    assert rc == 2
    assert line.startswith("error: ModelCheckpoint monitors 'val/auroc', which is never logged: OODBenchmark has no "
                           "validation OOD sets")
    assert "monitor val/acc (mode: max)" in line
    assert _trained_nothing(run_dir)


def test_real_benchmark_config_monitoring_val_acc_trains(cifar_root, tmp_path, capsys):
    """The same datamodule with a config whose checkpoint monitors val/acc trains and tests."""
    run_dir = tmp_path / "r"
    rc = main(["mode", "--config", "configs/mode/cifar10_r18.yaml", *_real(cifar_root), "--trainer.max_epochs=1",
               "--model.objective=ce+alpa", "--model.alpa_dim=8", f"--run_dir={run_dir}"])
    out = capsys.readouterr().out
    assert rc == 0 and "test/fpr95" in out and "best checkpoint:" in out
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
