"""DePT / CoOp / tiny CLIP end to end on a tiny ShapesB2N world: fit, reload, predict, strict weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.core import registry
from zoo.common.vision.clip import build_clip
from zoo.core.errors import ZooError
from tests.helpers.fit import fit_tiny
from zoo.core.training import build_cli

TINY = {n: str(registry.get(n).config("tiny")) for n in ("dept", "coop", "clip")}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, world_cache):
    run_dir = tmp_path_factory.mktemp("runs") / "dept"
    return fit_tiny("dept", run_dir), run_dir


def test_fit_tests_base_and_new_and_checkpoint_holds_only_trainables(fitted):
    cli, run_dir = fitted
    res = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    for k in ("test/base_acc", "test/new_acc", "test/h", "test/base_acc_itm", "test/base_acc_cat"):
        assert 0.0 <= res[k] <= 1.0, k
    b, n = res["test/base_acc"], res["test/new_acc"]
    assert res["test/h"] == pytest.approx(2 * b * n / (b + n) if b + n else 0.0)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert set(ckpt["state_dict"]) == {"net.prompt.ctx", "net.head.gamma_img", "net.head.beta_img",
                                       "net.head.gamma_txt", "net.head.beta_txt", "net.head.linear.weight",
                                       "net.head.linear.bias"}
    assert ckpt["state_dict"]["net.head.linear.weight"].shape == (24, 32)
    assert ckpt["dept"]["classnames"][:2] == ["red circle", "green circle"] and len(ckpt["dept"]["classnames"]) == 24
    assert ckpt["zoo"]["inputs"]["transform"]["interpolation"] == "bicubic"


def test_reload_predicts_given_classes_identically(fitted, tmp_path):
    """Beyond the registry-wide reload test: free-form classes (ITM only) after zoo.load."""
    cli, _ = fitted
    m = cli.model.eval()
    path = tmp_path / "m.ckpt"
    cli.trainer.save_checkpoint(path)
    m2 = zoo.load(path)
    assert m2.classnames == m.classnames
    x = next(iter(cli.datamodule.test_dataloader()[0]))["image"][:8]
    new = cli.datamodule.classnames["new"][:5]
    a, b = m.predict_images(x, new), m2.predict_images(x, new)
    assert torch.equal(a["pred"], b["pred"]) and torch.equal(a["prob"], b["prob"])
    assert m.predict_images(x)["fused"] and not m.predict_images(x, new)["fused"]


def test_reload_against_another_clip_is_an_error(fitted, tmp_path):
    cli, _ = fitted
    path = tmp_path / "m.ckpt"
    cli.trainer.save_checkpoint(path)
    torch.manual_seed(5)
    other = tmp_path / "other_clip.pt"
    torch.save(build_clip("zoo-test-clip").state_dict(), other)
    with pytest.raises(ZooError, match="differs from the one this checkpoint was trained with"):
        zoo.load(path, clip_weights=str(other))


def test_clip_weights_for_the_wrong_architecture_name_the_mismatch(tmp_path):
    bad = tmp_path / "tiny.pt"
    torch.save(build_clip("zoo-tiny-clip").state_dict(), bad)
    with pytest.raises(ZooError, match=r"does not match CLIP architecture 'zoo-test-clip'.*shape mismatches"):
        build_clip("zoo-test-clip", str(bad))
    with pytest.raises(ZooError, match="CLIP weights file not found"):
        build_clip("zoo-test-clip", str(tmp_path / "missing.pt"))


def test_openai_style_torchscript_archive_loads_strictly(tmp_path):
    torch.manual_seed(3)
    ref = build_clip("zoo-test-clip")
    archive = tmp_path / "ViT-test.pt"
    torch.jit.trace_module(ref, {"encode_image": (torch.ones(1, 3, 32, 32),)}, check_trace=False).save(str(archive))
    m = build_clip("zoo-test-clip", str(archive))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(m.encode_image(x), ref.encode_image(x))


def test_coop_is_dept_without_head(tmp_path, world_cache):
    cli = fit_tiny("coop", tmp_path / "coop", "--trainer.max_epochs=1")
    assert cli.model.net.head is None and cli.model.zoo_name == "coop"
    res = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    assert "test/base_acc_cat" not in res and 0 <= res["test/new_acc"] <= 1


def test_tiny_clip_pretraining_feeds_dept(tmp_path, world_cache):
    cli = fit_tiny("clip", tmp_path / "clip")
    ckpt = tmp_path / "clip" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and cli.trainer.global_step == 4
    assert cli.model.clip.logit_scale.exp().item() <= 100.0 + 1e-4
    # a zoo clip checkpoint is accepted as DePT's frozen CLIP (prefix 'clip.' stripped, strict)
    dept = fit_tiny("dept", tmp_path / "dept", f"--model.clip_weights={ckpt}", "--trainer.max_epochs=1")
    for k, v in cli.model.clip.state_dict().items():
        assert torch.equal(dept.model.net.clip.state_dict()[k], v), k


def test_predict_cli_with_training_and_given_classes(fitted, tmp_path, capsys):
    from PIL import Image

    from zoo.predict import main as predict_main

    cli, run_dir = fitted
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(img)
    assert predict_main([ckpt, str(img), "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert row["class"] in cli.model.classnames and 0 < row["prob"] <= 1
    assert predict_main([ckpt, str(img), "--classes", "red star, blue_heart", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert row["class"] in ("red star", "blue heart")
    assert predict_main([ckpt, str(img), "--classes", "red star,red star"]) == 2
    assert "duplicate" in capsys.readouterr().err
    assert predict_main([ckpt, str(img), "--classes", "red zebra"]) == 2
    assert "'zebra' not in the tiny CLIP's vocabulary" in capsys.readouterr().err


def test_bad_dataset_inputs_exit_2_with_one_line(tmp_path, capsys, world_cache):
    from tests.helpers.fewshot_fixtures import write_split_zhou
    from zoo.fit import main

    root = tmp_path / "data"
    js = write_split_zhou(root, "caltech101", ["red circle", "blue star", "green ring"], per_class=(2, 1, 1))
    split = json.loads(js.read_text())
    split["test"][0][0] = "nowhere/missing_0.jpg"
    js.write_text(json.dumps(split))
    args = ["dept", "--config", TINY["dept"], "--data.class_path=datamodules.fewshot.base.FewShotDataModule",
            f"--data.init_args.root={root}", "--data.init_args.dataset=caltech101", "--data.init_args.num_workers=0",
            f"--run_dir={tmp_path / 'run'}"]
    assert main(args) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("INFO:")]
    assert len(err) == 1 and err[0].startswith("error:") and "missing_0.jpg" in err[0]
    assert main([*args[:-1], f"--data.init_args.root={tmp_path / 'nope'}", f"--run_dir={tmp_path / 'run2'}"]) == 2
    assert "caltech-101" in capsys.readouterr().err


def test_resume_from_last_continues_the_same_run(tmp_path, world_cache):
    run = tmp_path / "resume"
    first = fit_tiny("dept", run, "--trainer.max_epochs=1")
    ctx1 = first.model.net.prompt.ctx.detach().clone()
    cli = build_cli(registry.get("dept"), ["--config", TINY["dept"], f"--run_dir={run}", "--trainer.max_epochs=2",
                                           f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config["ckpt_path"])
    assert cli.trainer.current_epoch == 2 and cli.trainer.global_step == 2 * first.trainer.global_step
    assert not torch.equal(cli.model.net.prompt.ctx, ctx1)  # it trained on from the restored context
