"""MGCDA on its tiny config: the loaded model is the bare segmenter (strict, same parameter count),
``zoo.predict`` writes heat-maps, and bad input fails in one line before training."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from tests.helpers.fit import fit_tiny
from zoo.core.errors import ZooError


@pytest.fixture(scope="module")
def run(tmp_path_factory, world_cache):
    d = tmp_path_factory.mktemp("mgcda")
    cli = fit_tiny("mgcda", d / "run")
    path = d / "m.ckpt"
    cli.trainer.save_checkpoint(path)
    return cli, path


def test_checkpoint_keeps_training_parts_but_zoo_load_gives_the_bare_segmenter(run):
    from zoo.common.vision.deeplab import MiniDeepLabV3Plus

    cli, path = run
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert any(k.startswith("net.disc_mid.") for k in ckpt["state_dict"])  # a resume needs them
    assert any(k.startswith("net.proj.") for k in ckpt["state_dict"])
    model = zoo.load(path)
    assert model.net.disc_mid is None and model.net.disc_dec is None and model.net.proj is None
    bare = MiniDeepLabV3Plus(num_classes=7)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in bare.parameters())
    bare.load_state_dict(model.net.segmenter.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 128)
    bare.eval()
    torch.testing.assert_close(bare(x), model.net(x), rtol=0, atol=0)
    assert torch.isfinite(model.threshold)  # the validation cut for zoo.predict


def test_predict_writes_heatmaps_and_the_anomalous_fraction(run, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from zoo.predict import main

    _, path = run
    img = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((64, 128, 3)) * 255).astype("uint8")).save(img)
    assert main([str(path), str(img), "--out-dir", str(tmp_path / "maps"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= row["anomalous_frac"] <= 1.0 and (tmp_path / "maps" / "00000.png").is_file()
    assert Image.open(tmp_path / "maps" / "00000.png").size == (2 * 128 + 2, 64)


def test_a_single_domain_batch_is_refused_when_mdat_or_cacl_is_on():
    from zoo.mgcda.lightning_model import MGCDA

    m = MGCDA(disc_hidden=(8, 4), proj_hidden=8, proj_dim=4)
    batch = {"image": torch.randn(4, 3, 32, 64), "label": torch.zeros(4, 32, 64, dtype=torch.long),
             "domain": torch.zeros(4, dtype=torch.long)}
    with pytest.raises(ZooError, match="single domain"):
        m.training_step(batch, 0)
    with pytest.raises(ZooError, match="num_domains >= 2"):
        MGCDA(num_domains=1, eps_mode="none")


@pytest.mark.parametrize("arg,msg", [("--model.eps_max=0.7", "eps_max"), ("--model.blur_kernel=4", "odd"),
                                     ("--model.lambda_cl=-1", "lambda_cl"), ("--model.cacl_tau=0", "cacl_tau")])
def test_bad_arguments_fail_at_construction(arg, msg, tmp_path, world_cache):
    with pytest.raises(ZooError, match=msg):
        fit_tiny("mgcda", tmp_path / "run", arg)
