"""MODE end to end on a tiny world: CLI fit, checkpoints, zoo.load round trip, resume, predict."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import zoo
from zoo.core import registry
from zoo.core.errors import ZooError
from zoo.core.training import build_cli
from zoo.fit import main
from tests.helpers.fit import fit_tiny

TINY = str(registry.get("mode").config("tiny"))


def _fit(run_dir: Path, *extra: str):
    return fit_tiny("mode", run_dir, *extra)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, world_cache):
    run_dir = tmp_path_factory.mktemp("runs") / "fit"
    return _fit(run_dir), run_dir


def test_fit_writes_checkpoints_plots_and_a_consistent_bank(fitted):
    cli, run_dir = fitted
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and len(ckpts) == 2  # best (by val/acc) + last
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "plots" / "val_e001_roc.png").is_file()  # plots of the last validation only
    assert not (run_dir / "plots" / "val_e000_roc.png").exists()
    m = cli.model
    assert m.bank.shape == (64, 6, m.net.num_features)  # 64 ID train images x 6 regions
    assert torch.allclose(m.bank.float().norm(dim=-1), torch.ones(64, 6), atol=1e-3)
    assert torch.isfinite(m.threshold)
    assert cli.trainer.current_epoch == 2


def test_test_stage_logs_metrics_per_set(fitted):
    cli, _ = fitted
    out = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    for key in ("test/acc", "test/auroc", "test/fpr95", "test/ood_near/auroc", "test/ood_bg/fpr95"):
        assert key in out and 0.0 <= out[key] <= 1.0
    avg = (out["test/ood_near/auroc"] + out["test/ood_far/auroc"]) / 2  # ood_bg is a diagnostic only
    assert out["test/auroc"] == pytest.approx(avg, abs=1e-6)


def test_resume_from_last(tmp_path, monkeypatch, world_cache):
    monkeypatch.chdir(tmp_path)
    first = _fit(Path("runs/mode/a"), "--trainer.max_epochs=1")
    steps_first = first.trainer.global_step
    last = Path("runs/mode/a/checkpoints/last.ckpt")
    cli = build_cli(registry.get("mode"), ["--config", TINY, "--ckpt_path", "last", "--trainer.max_epochs=2"])
    assert cli.config["ckpt_path"] == str(last) and cli.config["run_dir"] == "runs/mode/a"
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config["ckpt_path"])
    assert cli.trainer.current_epoch == 2 and cli.trainer.global_step == 2 * steps_first


def test_nan_loss_is_a_clear_error_and_keeps_the_checkpoint(tmp_path, capsys, world_cache):
    run_dir = tmp_path / "r"
    _fit(run_dir, "--trainer.max_epochs=1")
    last = run_dir / "checkpoints" / "last.ckpt"
    digest = hashlib.sha256(last.read_bytes()).hexdigest()
    rc = main(["mode", "--config", TINY, f"--run_dir={run_dir}", f"--ckpt_path={last}", "--trainer.max_epochs=2",
               "--model.lr=1e38"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: train/loss is ")
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digest


def test_cli_fit_main_runs_test_and_prints_summary(tmp_path, capsys, world_cache):
    rc = main(["mode", "--config", TINY, f"--run_dir={tmp_path / 'r'}", "--trainer.max_epochs=1"])
    out = capsys.readouterr().out
    assert rc == 0 and "test/fpr95" in out and "last checkpoint:" in out


def test_predict_cli(fitted, tmp_path, capsys):
    from PIL import Image

    from zoo.predict import main as predict_main

    cli, run_dir = fitted
    ds = cli.datamodule._sets["test"]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(ds.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    rc = predict_main([str(run_dir / "checkpoints" / "last.ckpt"), str(folder), "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(lines) == 3
    import json

    row = json.loads(lines[0])
    assert row["class"] in ("disk", "square", "triangle", "plus", "ring", "diamond")
    assert -4.0 <= row["score"] <= 0.0 and row["decision"] in ("ID", "OOD")


def test_predict_bad_inputs(fitted, tmp_path, capsys):
    from zoo.predict import main as predict_main

    _, run_dir = fitted
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    assert predict_main([ckpt, str(tmp_path / "missing.png")]) == 2
    assert "missing.png: no such file or folder" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert predict_main([ckpt, str(bad)]) == 2
    assert "bad.jpg: cannot read image" in capsys.readouterr().err
    assert predict_main([str(bad), str(bad)]) == 2
    assert "not a readable torch checkpoint" in capsys.readouterr().err


def test_load_rejects_foreign_checkpoints(fitted, tmp_path):
    from zoo.core.module import load_checkpoint

    _, run_dir = fitted
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(ZooError, match="not a zoo checkpoint"):
        zoo.load(plain)
    with pytest.raises(ZooError, match="checkpoint not found"):
        zoo.load(tmp_path / "nope.ckpt")
    with pytest.raises(ZooError, match="belongs to model 'mode', expected 'dept'"):
        load_checkpoint(run_dir / "checkpoints" / "last.ckpt", expect="dept")
    # a state dict with a missing key is an error, never a silent partial load
    ck = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    ck["state_dict"].pop("net.fc.bias")
    broken = tmp_path / "broken.ckpt"
    torch.save(ck, broken)
    with pytest.raises(ZooError, match="state dict does not match"):
        zoo.load(broken)


def test_init_from_loads_backbone_and_keeps_alpa_fresh(fitted, tmp_path):
    from zoo.mode.lightning_model import MODE

    cli, run_dir = fitted
    torch.manual_seed(123)
    m = MODE(backbone="test_resnet", num_classes=6, alpa_dim=8, init_from=str(run_dir / "checkpoints" / "last.ckpt"))
    src = cli.model.net.state_dict()
    for k, v in m.net.state_dict().items():
        if k.startswith("alpa."):
            assert not torch.equal(v, src[k])
        else:
            assert torch.equal(v, src[k]), k
    with pytest.raises(ZooError, match="keys do not match"):
        MODE(backbone="world_resnet", num_classes=6, init_from=str(run_dir / "checkpoints" / "last.ckpt"))
