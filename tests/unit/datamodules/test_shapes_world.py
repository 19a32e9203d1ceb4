"""ShapesB2N world: determinism, captions/vocabulary, label order, on-disk layout, shift, caching,
crash safety and the caption datamodule."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.common.transforms import CLIP_MEAN, CLIP_STD
from datamodules.fewshot import shapes as S
from datamodules.fewshot.procedural import ShapesCaptions
from datamodules.fewshot.shapes import store

TINY = dict(n_captions=64, train_per_class=2, val_per_class=1, test_per_class=2, progress=False)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    cache = tmp_path_factory.mktemp("shapes_cache")
    return cache, S.ensure_world(seed=0, cache_dir=str(cache), **TINY)


def _split(root):
    return json.loads((root / S.DATASET_DIR / S.SPLIT_FILE).read_text())


# --------------------------------------------------------------------------- rendering


def test_render_dtype_shape_and_mask_inside():
    for shape in range(len(S.SHAPES)):
        for size in range(len(S.SIZES)):
            for k in range(3):
                rng = np.random.default_rng(1000 * shape + 10 * size + k)
                img, cover = S.render(shape, k % 6, size, k % 4, rng, return_mask=True)
                assert img.shape == (32, 32, 3) and img.dtype == np.uint8
                assert cover.shape == (32, 32) and cover.min() >= 0 and cover.max() <= 1
                assert cover.sum() > 10  # the shape is drawn
                border = np.concatenate([cover[0], cover[-1], cover[:, 0], cover[:, -1]])
                assert border.max() == 0, (S.SHAPES[shape], S.SIZES[size])
                assert 0 < cover[cover > 0].min() and (cover == 1).any()
    # large shapes are larger than small ones
    small = S.render(0, 0, 0, 0, np.random.default_rng(0), return_mask=True)[1].sum()
    large = S.render(0, 0, 1, 0, np.random.default_rng(0), return_mask=True)[1].sum()
    assert large > 2 * small


def test_antialiased_edges_and_colour():
    img, cover = S.render(0, 0, 1, 0, np.random.default_rng(3), return_mask=True)  # large red circle, plain
    assert ((cover > 0) & (cover < 1)).any()  # partially covered edge pixels (4x supersampling)
    inside = img[cover == 1].astype(int)
    assert (inside[:, 0] - inside[:, 1:].max(1) > 100).all()  # saturated red


def test_render_determinism():
    a = S.render_task("train", 7, 3, seed=0)
    assert a.tobytes() == S.render_task("train", 7, 3, seed=0).tobytes()
    assert a.tobytes() != S.render_task("train", 7, 3, seed=1).tobytes()
    assert a.tobytes() != S.render_task("test", 7, 3, seed=0).tobytes()
    img, cap, attrs = S.caption_pair(5, seed=0)
    img2, cap2, attrs2 = S.caption_pair(5, seed=0)
    assert img.tobytes() == img2.tobytes() and cap == cap2 and attrs == attrs2


def test_shift_changes_pixels_and_adds_noise():
    clean, cover = S.render_task("test", 30, 0, seed=0, shift=0.0, return_mask=True)
    shifted = S.render_task("test", 30, 0, seed=0, shift=1.0)
    assert np.abs(clean.astype(int) - shifted.astype(int)).mean() > 5
    # plain background, shift 0: no noise at all (flat background pixels are identical)
    rng = lambda: np.random.default_rng(11)  # noqa: E731
    flat, m = S.render(1, 2, 0, 0, rng(), shift=0.0, return_mask=True)
    bg = flat[m == 0]
    assert (bg == bg[0]).all()
    noisy, _ = S.render(1, 2, 0, 0, rng(), shift=1.0, return_mask=True)
    assert noisy[m == 0].astype(float).std(axis=0).max() > 8  # ~18 noise + stripe
    # same scene: clean task image == render of the same stream with shift 0
    assert S.render_task("test", 30, 0, seed=0, shift=0.0).tobytes() == clean.tobytes()
    with pytest.raises(ValueError):
        S.render(0, 0, 0, 0, rng(), shift=-1.0)


# --------------------------------------------------------------------------- classes and captions


def test_label_order_and_classnames():
    assert len(S.CLASSNAMES) == 48 and len(set(S.CLASSNAMES)) == 48
    assert S.CLASSNAMES[0] == "red circle" and S.CLASSNAMES[5] == "orange circle"
    assert S.CLASSNAMES[6] == "red square" and S.CLASSNAMES[24] == "red cross"
    assert S.CLASSNAMES[47] == "orange heart"
    for label, name in enumerate(S.CLASSNAMES):
        shape, colour = divmod(label, 6)
        assert name == f"{S.COLOURS[colour]} {S.SHAPES[shape]}"
    assert S.BASE == list(range(24)) and S.NEW == list(range(24, 48))
    assert {S.CLASSNAMES[i].split()[1] for i in S.BASE} == {"circle", "square", "triangle", "diamond"}
    assert {S.CLASSNAMES[i].split()[1] for i in S.NEW} == {"cross", "ring", "star", "heart"}


def test_words_and_vocab():
    assert S.words("A red circle.") == ["a", "red", "circle", "."]
    assert S.words("a, b.c") == ["a", ",", "b", ".", "c"]
    assert len(S.VOCAB) == len(set(S.VOCAB))
    for name in S.CLASSNAMES:
        assert set(S.words(f"a photo of a {name}.")) <= set(S.VOCAB)


def test_vocab_is_the_package_file():
    vocab_file = files("datamodules.fewshot.shapes").joinpath(S.VOCAB_FILE)
    assert vocab_file.is_file()
    lines = vocab_file.read_text(encoding="utf-8").splitlines()
    assert lines == S.VOCAB  # one word per line, same order, nothing else
    assert S.VOCAB[:3] == ["a", "an", "the"] and S.VOCAB[-3:] == ["x", ".", ","] and len(S.VOCAB) == 34
    # shipped as package data
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text(encoding="utf-8")
    assert 'datamodules = ["**/*.txt"]' in pyproject


def test_captions_vocab_and_templates():
    vocab, seen = set(S.VOCAB), set()
    for t in range(len(S.TEMPLATES)):
        for c, s, z, x in [(0, 0, 0, 0), (5, 7, 1, 3), (2, 4, 1, 1)]:
            assert set(S.words(S.caption(c, s, z, x, t))) <= vocab
    assert S.caption(0, 0, 0, 0, 0) == "a photo of a red circle."
    rng = np.random.default_rng(0)
    for _ in range(700):  # every combination of the caption function draws only VOCAB words
        c, s, z, x, t = (int(v) for v in rng.integers(0, [6, 8, 2, 4, 7]))
        cap = S.caption(c, s, z, x, t)
        assert set(S.words(cap)) <= vocab, cap
        seen.add(t)
    assert seen == set(range(7))
    # the corpus sampler itself draws every template (uniformly)
    pairs = [S.caption_pair(i, seed=0) for i in range(150)]
    assert {attrs["template"] for _, _, attrs in pairs} == set(range(7))
    assert all(set(S.words(cap)) <= vocab for _, cap, _ in pairs)
    assert len({(a["colour"], a["shape"]) for _, _, a in pairs}) > 40
    img, cap, attrs = S.caption_pair(3, seed=0)
    assert S.COLOURS[attrs["colour"]] in S.words(cap) and S.SHAPES[attrs["shape"]] in S.words(cap)
    assert attrs["label"] == attrs["shape"] * 6 + attrs["colour"]


# --------------------------------------------------------------------------- on disk


def test_layout_and_split_json(tiny_world):
    _, root = tiny_world
    assert root.name.startswith("shapes_b2n-") and root.parent.name == "worlds"
    split = _split(root)
    assert set(split) == {"train", "val", "test"}
    counts = {"train": 2, "val": 1, "test": 2}
    for name, rows in split.items():
        assert len(rows) == 48 * counts[name]
        assert sorted({r[1] for r in rows}) == list(range(48))
        for rel, label, classname in rows:
            assert isinstance(rel, str) and isinstance(label, int) and isinstance(classname, str)
            assert classname == S.CLASSNAMES[label]
            assert rel.startswith(f"{name}/{label:02d}_{classname.replace(' ', '_')}/") and rel.endswith(".png")
            assert (root / S.DATASET_DIR / "images" / rel).is_file()
    assert split["train"][0] == ["train/00_red_circle/00000.png", 0, "red circle"]
    # the PNGs are the rendered task images
    from PIL import Image

    rel, label, _ = split["test"][5]
    idx = int(rel.rsplit("/", 1)[1][:5])
    png = np.asarray(Image.open(root / S.DATASET_DIR / "images" / rel))
    assert png.shape == (32, 32, 3) and png.dtype == np.uint8
    assert png.tobytes() == S.render_task("test", label, idx, seed=0, shift=1.0).tobytes()
    config = json.loads((root / "config.json").read_text())
    assert config["version"] == S.WORLD_VERSION and config["n_captions"] == 64 and config["shift"] == 1.0
    with np.load(root / "captions" / "captions.npz", allow_pickle=False) as z:
        images, captions = z["images"], z["captions"]
        assert images.shape == (64, 32, 32, 3) and images.dtype == np.uint8
        assert captions.shape == (64,) and captions.dtype.kind == "U"
        assert z["label"].tolist() == (z["shape"] * 6 + z["colour"]).tolist()
    img, cap, _ = S.caption_pair(10, seed=0)
    assert images[10].tobytes() == img.tobytes() and captions[10] == cap
    meta = json.loads((root / "captions" / "meta.json").read_text())
    assert len(meta["colour"]) == 64 and meta["shapes"] == list(S.SHAPES)
    # a copy of the vocabulary in the world's root
    pkg_vocab = files("datamodules.fewshot.shapes").joinpath(S.VOCAB_FILE).read_text(encoding="utf-8")
    assert (root / S.VOCAB_FILE).read_text(encoding="utf-8") == pkg_vocab


def test_world_determinism(tiny_world, tmp_path):
    cache, root = tiny_world
    again = S.ensure_world(seed=0, cache_dir=str(tmp_path / "a"), **TINY)
    assert again.name == root.name and _split(again) == _split(root)
    rel = _split(root)["val"][17][0]
    img = lambda r: (r / S.DATASET_DIR / "images" / rel).read_bytes()  # noqa: E731
    assert img(again) == img(root)
    other = S.ensure_world(seed=1, cache_dir=str(tmp_path / "b"), **TINY)
    assert other.name != root.name and img(other) != img(root)
    with np.load(again / "captions" / "captions.npz") as a, np.load(other / "captions" / "captions.npz") as b:
        assert a["images"].tobytes() != b["images"].tobytes()


def test_cached_world_is_reused(tiny_world, capsys):
    cache, root = tiny_world
    def stamp():
        return [(root / rel).stat().st_mtime_ns for rel in ("config.json", f"{S.DATASET_DIR}/{S.SPLIT_FILE}")]

    before = stamp()
    time.sleep(0.01)
    assert S.ensure_world(seed=0, cache_dir=str(cache), **TINY) == root
    assert stamp() == before
    assert capsys.readouterr().err == ""
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    # a different parameter is a different folder
    assert S.world_dir(seed=0, shift=0.5, cache_dir=cache, **{k: v for k, v in TINY.items() if k != "progress"}) != root


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    assert S.world_dir().parent == tmp_path / "worlds"
    # an empty ZOO_CACHE means unset (the shared cache root), not the current directory
    monkeypatch.setenv("ZOO_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert S.world_dir().parent == tmp_path / "home" / ".cache" / "zoo" / "worlds"
    monkeypatch.delenv("ZOO_CACHE")
    assert S.world_dir().parent == tmp_path / "home" / ".cache" / "zoo" / "worlds"


def test_world_without_vocab_copy_gets_one(tmp_path, capsys):
    kw = dict(TINY, n_captions=2, train_per_class=1, val_per_class=0, test_per_class=0)
    root = S.ensure_world(cache_dir=str(tmp_path), **kw)
    capsys.readouterr()
    (root / S.VOCAB_FILE).unlink()  # a world cached before the vocabulary became a file
    stamp = (root / "config.json").stat().st_mtime_ns
    assert S.ensure_world(cache_dir=str(tmp_path), **kw) == root
    assert (root / S.VOCAB_FILE).read_text(encoding="utf-8").splitlines() == S.VOCAB
    assert (root / "config.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert capsys.readouterr().err == ""
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp file left


def test_crash_leaves_no_world_and_leftovers_are_ignored(tmp_path, monkeypatch, capsys):
    kw = dict(TINY, n_captions=4, train_per_class=1, val_per_class=0, test_per_class=1)
    root = S.world_dir(cache_dir=tmp_path, **{k: v for k, v in kw.items() if k != "progress"})
    # a builder killed mid-way leaves a temp folder (with partial contents) behind
    stale = root.parent / f".{root.name}.tmp-dead"
    (stale / "captions").mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    # a build that crashes cleans up and leaves no world
    calls = {"n": 0}
    real = S.render_task

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("crash")
        return real(*a, **k)

    monkeypatch.setattr(store, "render_task", boom)
    with pytest.raises(RuntimeError):
        S.ensure_world(cache_dir=str(tmp_path), **kw)
    assert not root.exists()
    assert sorted(p.name for p in root.parent.iterdir()) == [stale.name]
    monkeypatch.setattr(store, "render_task", real)
    out = S.ensure_world(cache_dir=str(tmp_path), **kw)
    assert out == root and store._complete(root)
    assert "building the ShapesB2N world once (4 captions + 96 task images)" in capsys.readouterr().err
    # an incomplete world folder (e.g. files deleted by hand) is rebuilt
    (root / "config.json").unlink()
    assert S.ensure_world(cache_dir=str(tmp_path), **kw) == root and store._complete(root)
    assert f"zoo: discarding the incomplete world {root}" in capsys.readouterr().err


def test_lost_rename_race_discards_own_copy(tmp_path, monkeypatch):
    import shutil

    kw = dict(TINY, n_captions=2, train_per_class=1, val_per_class=0, test_per_class=0)
    theirs = S.ensure_world(cache_dir=str(tmp_path / "other"), **kw)
    (theirs / "marker").write_text("built by the other process")
    root = S.world_dir(cache_dir=tmp_path / "mine", **{k: v for k, v in kw.items() if k != "progress"})
    real_build = store._build

    def racing_build(tmp, p, progress):  # the other builder renames its world into place first
        real_build(tmp, p, progress)
        shutil.copytree(theirs, root)

    monkeypatch.setattr(store, "_build", racing_build)
    assert S.ensure_world(cache_dir=str(tmp_path / "mine"), **kw) == root
    assert (root / "marker").is_file()  # theirs was kept
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # ours was discarded


def test_fewshot_does_not_import_ood():
    code = ("import sys, datamodules.fewshot.procedural, datamodules.fewshot.shapes; "
            "print(sorted(m for m in sys.modules if m.startswith('datamodules.ood')))")
    repo = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "[]"


def test_save_preview(tmp_path):
    from PIL import Image

    path = S.save_preview(tmp_path / "p" / "preview.png", seed=0)
    with Image.open(path) as im:
        assert im.size[0] > 24 * 96 and im.size[1] >= 4 * 96


# --------------------------------------------------------------------------- datamodule


def test_shapes_captions_datamodule(tiny_world):
    cache, root = tiny_world
    dm = ShapesCaptions(cache_dir=str(cache), n_captions=64, batch_size=16, eval_batch_size=20,
                        val_per_class=1, world_train_per_class=2, world_val_per_class=1,
                        world_test_per_class=2)
    assert dm.classnames["base"][0] == "red circle" and dm.classnames["new"][0] == "red cross"
    assert len(dm.classnames["base"]) == len(dm.classnames["new"]) == 24
    assert dm.template.format("red circle") == "a photo of a red circle."
    assert dm.val_set_names == ["base", "new"]
    dm.setup("fit")
    assert dm.root == root
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 4  # 64 / 16, drop_last
    b = batches[0]
    assert set(b) == {"image", "text"}
    assert b["image"].shape == (16, 3, 32, 32) and b["image"].dtype == torch.float32
    assert isinstance(b["text"], list) and len(b["text"]) == 16 and all(isinstance(t, str) for t in b["text"])
    assert all(set(S.words(t)) <= set(S.VOCAB) for t in b["text"])
    # normalised with the CLIP statistics
    with np.load(root / "captions" / "captions.npz") as z:
        raw = torch.from_numpy(z["images"]).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    torch.testing.assert_close(dm._train.images, (raw - mean) / std)
    vals = dm.val_dataloader()
    assert len(vals) == 2
    for loader in vals:
        batch = next(iter(loader))
        assert set(batch) == {"image", "label"} and batch["label"].dtype == torch.long
        assert batch["image"].shape == (20, 3, 32, 32)
        labels = torch.cat([bb["label"] for bb in loader])
        assert labels.tolist() == list(range(24))  # val_per_class=1, relabelled 0..23
    tests = dm.test_dataloader()
    assert sum(len(bb["label"]) for bb in tests[1]) == 48
    spec = dm.eval_transform_spec()
    assert spec["resize"] == spec["crop"] == 32 and spec["interpolation"] == "bicubic"
    assert spec["mean"] == list(CLIP_MEAN) and spec["std"] == list(CLIP_STD)


def test_shapes_captions_resize_and_hflip(tiny_world):
    cache, _ = tiny_world
    dm = ShapesCaptions(cache_dir=str(cache), n_captions=64, batch_size=8, image_size=48, hflip=True,
                        val_per_class=1, world_train_per_class=2, world_val_per_class=1,
                        world_test_per_class=2)
    assert next(iter(dm.train_dataloader()))["image"].shape == (8, 3, 48, 48)
    assert next(iter(dm.val_dataloader()[1]))["image"].shape[-2:] == (48, 48)
    assert dm.eval_transform_spec()["crop"] == 48


def test_generation_speed():
    S.render_task("train", 0, 0)
    t = time.perf_counter()
    for i in range(200):
        S.render_task("train", i % 48, i)
    ms = (time.perf_counter() - t) / 200 * 1e3
    assert ms < 10, f"{ms:.2f} ms per image"  # ~1 ms on a 2-core CPU; generous bound for loaded CI
