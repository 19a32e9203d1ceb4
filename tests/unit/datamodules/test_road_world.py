"""RoadWorld-64: determinism, classes and void rows, OE only in training, the target style's shift,
anomaly ground truth, the cache, domain-balanced batches and argument errors."""

from __future__ import annotations

import colorsys
import warnings

import numpy as np
import pytest
import torch

from datamodules.anomaly import world as W
from datamodules.anomaly.procedural import RoadWorld
from datamodules.common.transforms import eval_transform
from zoo.core.errors import ZooError

TINY = {"n_train": 8, "n_val": 4, "n_test": 4, "n_oe": 20}


@pytest.fixture(scope="module")
def tiny_dm(tmp_path_factory):
    dm = RoadWorld(world=TINY, oe_prob=1.0, batch_per_domain=2, eval_batch_size=4,
                   root=str(tmp_path_factory.mktemp("roadworld")))
    dm.prepare_data()
    dm.setup()
    return dm


def test_determinism_and_prefix():
    a = W.render_sample("val_S2", 3, seed=0)
    b = W.render_sample("val_S2", 3, seed=0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["image"], W.render_sample("val_S2", 3, seed=1)["image"])
    assert not np.array_equal(a["image"], W.render_sample("val_S2", 4, seed=0)["image"])
    split = W.generate_split("train_S1", 5, seed=0)
    np.testing.assert_array_equal(split["images"][4], W.render_sample("train_S1", 4)["image"])
    np.testing.assert_array_equal(W.generate_split("train_S1", 3)["labels"], split["labels"][:3])
    oe = W.generate_split("oe", 3)
    np.testing.assert_array_equal(oe["masks"][2], W.render_sample("oe", 2)["mask"])


def test_classes_void_rows_and_oe_sizes():
    cfg = W.WorldConfig()
    data = W.generate_split("train_S1", 12)
    assert data["images"].shape == (12, 64, 128, 3) and data["images"].dtype == np.uint8
    labels = data["labels"]
    assert set(np.unique(labels).tolist()) == set(range(6)) | {255}  # every class shows up; no 254
    assert (labels[:, -cfg.void_rows:] == 255).all() and (labels[:, :-cfg.void_rows] != 255).all()
    assert (data["anomaly"][:, -cfg.void_rows:] == 255).all() and (data["anomaly"][:, :-cfg.void_rows] == 0).all()
    assert (labels[:, 0] == 4).mean() > 0.3  # the top row is mostly sky
    masks = W.generate_split("oe", 40)["masks"]
    rows, cols = masks.any(2), masks.any(1)
    sides = np.maximum(rows.sum(1), cols.sum(1))
    assert sides.min() >= 3 and sides.max() <= cfg.oe_size_max and masks.reshape(40, -1).sum(1).min() >= 3


@pytest.mark.parametrize("split", ["val_S1", "val_S3", "test_T"])
def test_anomaly_ground_truth(split):
    data = W.generate_split(split, 6)
    anom, lab = data["anomaly"], data["labels"]
    assert set(np.unique(anom).tolist()) == {0, 1, 255}
    assert ((anom == 1).reshape(6, -1).sum(1) >= W.WorldConfig().anomaly_min_pixels).all()  # every image has one
    assert (lab[anom == 1] == 255).all() and (lab[anom == 0] < 6).all()
    assert not (lab == W.OE_LABEL).any()


def _mean_hue(images: np.ndarray) -> np.ndarray:
    """Circular mean hue (a unit 2-vector) of the saturated pixels."""
    px = images.reshape(-1, 3)[::7] / 255.0
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in px])
    sel = hsv[:, 1] > 0.2
    ang = 2 * np.pi * hsv[sel, 0]
    v = np.array([np.cos(ang).mean(), np.sin(ang).mean()])
    return v / np.linalg.norm(v)


def test_target_style_differs_from_every_source():
    target = _mean_hue(W.generate_split("test_T", 6)["images"])
    for s in W.SOURCE_STYLES:
        src = _mean_hue(W.generate_split(f"val_{s}", 6)["images"])
        assert np.arccos(np.clip(src @ target, -1, 1)) > np.deg2rad(20), s  # mean hue moved by > 20 degrees
    # blur: the target's neighbouring pixels differ less than S1's, once noise is averaged away
    t = W.generate_split("test_T", 4, cfg=W.WorldConfig(styles={"T": {"noise": 0.0, "chroma_noise": 0.0}}))
    s1 = W.generate_split("val_S1", 4)
    grad = lambda x: np.abs(np.diff(x["images"].astype(float), axis=2)).mean()  # noqa: E731
    assert grad(t) < 0.8 * grad(s1)


def test_world_config_validation():
    with pytest.raises(ValueError, match="horizon_min"):
        W.WorldConfig(horizon_min=0.6, horizon_max=0.5)
    with pytest.raises(ValueError, match="unknown style 'S9'"):
        W.WorldConfig(styles={"S9": {}})
    with pytest.raises(ValueError, match=r"styles.T: unknown knob\(s\) \['blurr'\]"):
        W.WorldConfig(styles={"T": {"blurr": 1.0}})
    with pytest.raises(ValueError, match="gamma must be > 0"):
        W.WorldConfig(styles={"S1": {"gamma": 0}})
    assert W.WorldConfig(styles={"T": {"blur": 2.0}}).style("T").blur == 2.0
    with pytest.raises(KeyError):
        W.split_style("test_S1")  # the test split is the target's only


def test_cache_reuse_smaller_requests_and_corruption(tmp_path):
    cfg = W.WorldConfig(**TINY)
    first = W.load_world(tmp_path, cfg=cfg, splits=["val_S1"], progress=False)
    d = W.world_dir(tmp_path, 0, cfg)
    path = d / "val_S1-n4.npz"
    assert path.is_file() and (d / "config.json").is_file()
    # sizes are not in the key, every pixel-changing knob is
    assert W.world_dir(tmp_path, 0, W.WorldConfig(n_val=99)) == W.world_dir(tmp_path, 0, W.WorldConfig())
    assert W.world_dir(tmp_path, 0, W.WorldConfig(styles={"T": {"blur": 2.0}})) != W.world_dir(tmp_path, 0, cfg)
    small = W.load_world(tmp_path, cfg=cfg, splits=["val_S1"], sizes={"val_S1": 2}, progress=False)
    np.testing.assert_array_equal(small["val_S1"]["images"], first["val_S1"]["images"][:2])
    assert not (d / "val_S1-n2.npz").exists()  # served from the larger file
    path.write_bytes(b"not a zip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = W.load_world(tmp_path, cfg=cfg, splits=["val_S1"], progress=False)
    assert any("corrupt world cache" in str(w.message) for w in caught)
    np.testing.assert_array_equal(again["val_S1"]["labels"], first["val_S1"]["labels"])


def test_preview_png(tmp_path):
    from PIL import Image

    p = W.save_preview(tmp_path / "preview.png", per_row=2, zoom=1)
    assert Image.open(p).size[1] > 10 * 64


# ------------------------------------------------------------------------------ the datamodule
def test_batches_hold_every_domain_and_oe_only_in_train(tiny_dm):
    dm = tiny_dm
    assert (dm.num_classes, dm.num_domains, dm.class_names[0]) == (6, 3, "road")
    assert dm.test_set_names == ["target", "source"] and dm.val_set_names == ["source"]
    torch.manual_seed(0)
    batches = list(dm.train_dataloader())
    assert len(batches) == 8 // 2
    for b in batches:
        assert b["image"].shape == (6, 3, 64, 128) and b["image"].dtype == torch.float32
        assert b["label"].shape == (6, 64, 128) and b["label"].dtype == torch.long
        assert b["domain"].tolist() == [0, 0, 1, 1, 2, 2]
        assert set(b["label"].unique().tolist()) <= set(range(6)) | {254, 255}
    assert all((b["label"] == 254).any() for b in batches)  # oe_prob = 1
    idx = torch.cat([b["index"] for b in batches])
    assert len(set(idx.tolist())) == 24  # each training image once per epoch
    for loader in [dm.val_dataloader(), *dm.test_dataloader()]:
        for b in loader:
            assert not (b["label"] == 254).any() and (b["anomaly"] == 1).any()
            assert set(b) == {"image", "label", "anomaly", "domain", "index"}
    target = next(iter(dm.test_dataloader()[0]))
    assert (target["domain"] == -1).all()
    assert next(iter(dm.val_dataloader()))["domain"].tolist() == [0, 0, 0, 0]


def test_no_oe_without_oe_prob(tmp_path):
    dm = RoadWorld(world=TINY, oe_prob=0.0, batch_per_domain=4, domains=["S1", "S3"], root=str(tmp_path))
    b = next(iter(dm.train_dataloader()))
    assert not (b["label"] == 254).any() and b["domain"].tolist() == [0] * 4 + [1] * 4
    assert dm.num_domains == 2


def test_sampler_state_is_saved(tiny_dm):
    dm = tiny_dm
    dm.train_generator()
    state = dm.state_dict()
    order = list(dm.train_sampler())
    assert list(dm.train_sampler()) != order  # the generator moves on: a new order each epoch
    dm.load_state_dict(state)
    assert list(dm.train_sampler()) == order  # ...and a restored datamodule replays the saved one


def test_eval_spec_matches_eval_loader(tiny_dm):
    spec = tiny_dm.eval_transform_spec()
    assert spec["crop"] == [64, 128] and spec["classes"][-1] == "vehicle"
    raw = W.render_sample("test_T", 0, cfg=tiny_dm.cfg)["image"]
    x = eval_transform(spec)(torch.from_numpy(raw).permute(2, 0, 1))
    torch.testing.assert_close(x, next(iter(tiny_dm.test_dataloader()[0]))["image"][0])


@pytest.mark.parametrize("kwargs, match", [
    ({"world": {"n_trian": 5}}, r"--data.init_args.world: unknown knob\(s\) \['n_trian'\]"),
    ({"world": {"oe_size_max": 100}}, "--data.init_args.world: OE sizes"),
    ({"world": {"styles": {"T": {"gamma": -1}}}}, "--data.init_args.world: styles.T: gamma"),
    ({"domains": ["S1", "T"]}, "--data.init_args.domains: the target style 'T' is test-only"),
    ({"domains": ["S1", "S1"]}, "--data.init_args.domains must be distinct"),
    ({"domains": []}, "--data.init_args.domains must name at least one"),
    ({"oe_prob": 1.5}, "--data.init_args.oe_prob must be a probability"),
    ({"batch_per_domain": 0}, "--data.init_args.batch_per_domain must be an integer >= 1"),
    ({"batch_per_domain": [2, 2]}, "or a list of 3 of them"),
    ({"batch_per_domain": 9, "world": TINY}, "batch_per_domain=9 is larger than the 8 training images"),
    ({"scale": [1.5, 1.0]}, r"--data.init_args.scale must be \[min, max\]"),
    ({"crop": [64]}, r"--data.init_args.crop must be \[height, width\]"),
    ({"hflip": "yes"}, "--data.init_args.hflip must be true or false"),
    ({"eval_batch_size": 0}, "--data.init_args.eval_batch_size must be an integer >= 1"),
    ({"seed": -1}, "--data.init_args.seed must be an integer >= 0"),
    ({"std": [1, 0, 1]}, "--data.init_args.std must be 3 positive numbers"),
])
def test_argument_errors(kwargs, match):
    with pytest.raises(ZooError, match=match):
        RoadWorld(**kwargs)
