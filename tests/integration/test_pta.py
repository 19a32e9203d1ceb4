"""PTA on its tiny config: r = 1 is the unpruned model exactly, the ITC image embedding ignores the
paired text, per-pair selections differ by text, ``zoo.predict`` writes the kept-patch pictures,
and bad input fails in one line."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from tests.helpers.fit import fit_tiny
from zoo.core.errors import ZooError


@pytest.fixture(scope="module")
def run(tmp_path_factory, world_cache):
    d = tmp_path_factory.mktemp("pta")
    cli = fit_tiny("pta", d / "run")
    path = d / "m.ckpt"
    cli.trainer.save_checkpoint(path)
    return cli, path


def _batch(cli):
    return next(iter(cli.datamodule.test_dataloader()))


def test_keep_ratio_one_reduces_exactly_to_the_unpruned_forward(run):
    cli, _ = run
    m = cli.model.eval()
    b = _batch(cli)
    with torch.no_grad():
        x = m.net.prefix(b["image"])
        ids, mask = m.tokenize(b["captions"][:len(x)])
        hidden = m.net.encode_text(ids, mask)
        pruned, logits, idx = m.net.fuse(x, hidden, mask, keep_ratio=1.0)
        full = m.net.fuse_full(m.net.tail(x), hidden, mask)
    assert logits is not None and idx.shape == (len(x), m.net.num_patches)
    torch.testing.assert_close(pruned, full, rtol=0, atol=0)
    with torch.no_grad():
        half = m.net.fuse(x, hidden, mask, keep_ratio=0.5)[0]
    assert not torch.equal(half, full)


def test_itc_image_embedding_does_not_depend_on_the_paired_text(run):
    cli, _ = run
    m = cli.model.eval()
    b = _batch(cli)
    with torch.no_grad():
        x = m.net.prefix(b["image"])
        emb = m.net.image_embed(x)
        for caps in (b["captions"][:len(x)], ["a red circle"] * len(x)):
            ids, mask = m.tokenize(caps)
            m.net.encode_text(ids, mask)
            torch.testing.assert_close(m.net.image_embed(x), emb, rtol=0, atol=0)
        # the text-aware path does depend on the text: two captions of one image keep different patches
        ids, mask = m.tokenize(["a red circle", "a blue square and a white ring"])
        t = m.net.encode_text(ids, mask)[:, 0]
        z = m.net.detect(x[:1].expand(2, -1, -1), t)
    assert not torch.equal(z[0], z[1])


def test_null_text_itc_path_is_text_free_too(run):
    cli, _ = run
    from zoo.pta.lightning_model import PTA

    m = PTA(vocab=cli.model.hparams.vocab, vision=cli.model.hparams.vision, text=cli.model.hparams.text,
            tpd_after=1, itc_path="null_text").eval()
    x = m.net.prefix(torch.randn(3, 3, 64, 64))
    with torch.no_grad():
        a = m.net.image_embed(x)
        m.net.encode_text(*m.tokenize(["a red circle"] * 3))
        torch.testing.assert_close(m.net.image_embed(x), a, rtol=0, atol=0)


def test_predict_prints_itm_scores_and_writes_the_kept_patches(run, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from zoo.predict import main

    _, path = run
    img = tmp_path / "scene.png"
    from datamodules.vlp.shapes import render

    Image.fromarray(render("test", 3)[0]).save(img)
    out = tmp_path / "pics"
    assert main([str(path), str(img), "--text", "a red circle", "--out-dir", str(out), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and 0 <= rows[0]["itm_prob"] <= 1 and rows[0]["kept_patches"] == 32
    pic = np.asarray(Image.open(rows[0]["picture"]))
    assert pic.ndim == 3 and pic.shape[1] > pic.shape[0]


def test_predict_without_text_fails_in_one_line(run, tmp_path, capsys):
    from zoo.predict import main

    _, path = run
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(img)
    assert main([str(path), str(img), "--text", " "]) == 2
    assert "--text" in capsys.readouterr().err


@pytest.mark.parametrize("kw,msg", [({"keep_ratio": 0.0}, "keep_ratio"), ({"keep_ratio": 1.5}, "keep_ratio"),
                                    ({"tpd_after": 4}, "tpd_after"), ({"vocab": []}, "vocab"),
                                    ({"tpd": False, "selection": "random"}, "selection")])
def test_bad_arguments_fail_at_construction(kw, msg):
    from zoo.pta.lightning_model import PTA

    args = {"vocab": ["a", "red", "circle"], **kw}
    with pytest.raises(ZooError, match=msg):
        PTA(**args)


def test_an_empty_caption_is_refused(run):
    cli, _ = run
    with pytest.raises(ZooError, match="empty caption"):
        cli.model.tokenize(["a red circle", ""])


def test_loaded_model_keeps_the_keep_ratio_override(run):
    _, path = run
    m = zoo.load(path, keep_ratio=0.25)
    assert m.hparams.keep_ratio == 0.25 and m.net.keep_ratio == 0.25
