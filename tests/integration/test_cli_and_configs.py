"""The command-line surface: help, unknown names, config parsing, bad data roots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zoo.core import registry
from zoo.core.training import build_cli
from zoo.fit import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_models_without_importing_torch():
    code = "import sys, zoo.fit; zoo.fit.main(['--help']); assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "mode" in out.stdout and "configs:" in out.stdout and "default" in out.stdout


def test_unknown_model_lists_known_ones(capsys):
    assert main(["nope"]) == 2
    assert capsys.readouterr().err.strip() == f"error: unknown model 'nope'; known models: {', '.join(registry.list_models())}"


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")))
def test_every_config_parses(config, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    name = Path(config).parent.name
    with pytest.raises(SystemExit) as e:
        build_cli(registry.get(name), ["--config", config, "--print_config"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: datamodules." in out and "model:" in out


def test_print_config_shows_the_resolved_default(capsys):
    with pytest.raises(SystemExit):
        main(["mode", "--print_config"])
    out = capsys.readouterr().out
    assert "objective: alpa" in out and "pretrain_epochs: 8" in out and "ClutterGlyphs" in out


def test_missing_data_root_is_one_clear_line(tmp_path, capsys):
    rc = main(["mode", "--config", "configs/mode/cifar10_r18.yaml", f"--data.init_args.root={tmp_path / 'nodata'}",
               "--trainer.accelerator=cpu", "--trainer.logger=false", f"--run_dir={tmp_path / 'r'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) >= 1
    assert err[-1].startswith("error: ") and "nodata" in err[-1]
