"""ClutterGlyphs-32 world: determinism, caching, object masks, class stripe orientations."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from datamodules.common import world as common_world
from datamodules.ood import world as W
from datamodules.ood.world import store as world_store

TINY = {name: 6 for name in W.SPLITS}


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return root, W.load_world(root, sizes=TINY, progress=False)


@pytest.mark.parametrize("name", list(W.SPLITS))
def test_shapes_dtypes_labels(tiny_world, name):
    _, data = tiny_world
    images, labels = data[name]
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (6,) and labels.dtype == np.int64
    if name in W.ID_SPLITS:
        assert labels.min() >= 0 and labels.max() < len(W.CLASS_NAMES)
        np.testing.assert_array_equal(labels, np.arange(6) % 6)
    else:
        assert (labels == -1).all()
    assert images.std() > 5  # not blank


def test_split_tables_consistent():
    assert set(W.SPLITS) == set(W.SPLIT_KIND)
    assert sum(W.SPLITS.values()) == 9500
    assert set(W.ID_SPLITS) | set(W.OOD_SPLITS) | set(W.OOD_VAL_SPLITS) == set(W.SPLITS)
    assert not set(W.OOD_SPLITS) & set(W.OOD_VAL_SPLITS)
    assert len(W.CLASS_NAMES) == 6


def test_determinism_and_distinct_splits():
    a, la = W.generate_split("id_train", 8, seed=0)
    b, lb = W.generate_split("id_train", 8, seed=0)
    assert a.tobytes() == b.tobytes() and (la == lb).all()
    assert a.tobytes() != W.generate_split("id_train", 8, seed=1)[0].tobytes()
    assert a.tobytes() != W.generate_split("id_test", 8, seed=0)[0].tobytes()
    near, val_near = W.generate_split("ood_near", 4)[0], W.generate_split("ood_val_near", 4)[0]
    assert near.tobytes() != val_near.tobytes()
    # no duplicate images within a split
    assert len({img.tobytes() for img in a}) == len(a)


def test_prefix_and_single_sample_regeneration():
    full, labels = W.generate_split("ood_near", 10)
    np.testing.assert_array_equal(W.generate_split("ood_near", 4)[0], full[:4])
    img, label, _ = W.render_sample("ood_near", 7)
    np.testing.assert_array_equal(img, full[7])
    assert label == labels[7] == -1


def test_per_split_regeneration_matches_full_world(tiny_world, tmp_path):
    _, full = tiny_world
    alone = W.load_world(tmp_path, sizes={"ood_far": 6, "id_val": 6}, splits=["ood_far", "id_val"], progress=False)
    assert set(alone) == {"ood_far", "id_val"}
    for name in alone:
        assert alone[name][0].tobytes() == full[name][0].tobytes()
        np.testing.assert_array_equal(alone[name][1], full[name][1])
        assert alone[name][0].tobytes() == W.generate_split(name, 6)[0].tobytes()


def test_cache_reused_and_knob_changes_dir(tmp_path, monkeypatch):
    sizes = {"id_test": 4, "ood_bg": 4}
    first = W.load_world(tmp_path, splits=list(sizes), sizes=sizes, progress=False)
    d = W.world_dir(tmp_path)
    files = sorted(d.glob("*.npz"))
    assert [f.name for f in files] == ["id_test-n4.npz", "ood_bg-n4.npz"]
    assert not list(d.glob("*.tmp"))
    mtimes = [f.stat().st_mtime_ns for f in files]

    def boom(*args, **kwargs):
        raise AssertionError("cache not reused")

    monkeypatch.setattr(world_store, "generate_split", boom)
    second = W.load_world(tmp_path, splits=list(sizes), sizes=sizes, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    for name in sizes:
        np.testing.assert_array_equal(first[name][0], second[name][0])
    # a changed knob, seed or size regenerates
    with pytest.raises(AssertionError, match="cache not reused"):
        W.load_world(tmp_path, cfg=W.WorldConfig(clutter_max=3), splits=["id_test"], sizes=sizes, progress=False)
    with pytest.raises(AssertionError, match="cache not reused"):
        W.load_world(tmp_path, splits=["id_test"], sizes={"id_test": 5}, progress=False)
    assert W.world_dir(tmp_path, cfg=W.WorldConfig(clutter_max=3)) != d
    assert W.world_dir(tmp_path, seed=1) != d
    assert W.world_dir(tmp_path, cfg=W.WorldConfig()) == d


def test_corrupt_cache_is_regenerated(tmp_path):
    sizes = {"id_val": 4}
    good = W.load_world(tmp_path, splits=["id_val"], sizes=sizes, progress=False)["id_val"]
    path = W.world_dir(tmp_path) / "id_val-n4.npz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.warns(UserWarning, match="corrupt world cache"):
        again = W.load_world(tmp_path, splits=["id_val"], sizes=sizes, progress=False)["id_val"]
    assert again[0].tobytes() == good[0].tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # now valid again: no warning
        W.load_world(tmp_path, splits=["id_val"], sizes=sizes, progress=False)
    path.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="corrupt world cache"):
        W.load_world(tmp_path, splits=["id_val"], sizes=sizes, progress=False)
    assert os.path.getsize(path) == len(raw)


def test_object_masks():
    for i in range(12):
        _, label, cover = W.render_sample("ood_bg", i)
        assert label == -1 and cover.max() == 0.0
        assert W.render_sample("ood_far", i)[2].max() == 0.0
        assert W.render_sample("id_test", i)[2].sum() > 20  # >= 20 object pixels visible
        assert W.render_sample("ood_near", i)[2].sum() > 20


def test_occluder_covers_requested_fraction():
    cfg = W.WorldConfig(occlude_p=1.0, occlude_frac_min=0.3, occlude_frac_max=0.3, clutter_max=0)
    base = W.WorldConfig(occlude_p=0.0, clutter_max=0)
    for i in range(6):
        # the occluder draw comes last, so the object is identical with and without it
        full = W.render_sample("id_train", i, cfg=base)[2].sum()
        occluded = W.render_sample("id_train", i, cfg=cfg)[2].sum()
        assert occluded / full == pytest.approx(0.7, abs=0.03)


def _stripe_angle_deg(img: np.ndarray, cover: np.ndarray) -> float | None:
    """Structure-tensor orientation (degrees mod 180) of the gradient inside the object."""
    gray = img.astype(np.float64).mean(-1)
    gy, gx = np.gradient(gray)
    inner = cover >= 1.0
    inner = inner & np.roll(inner, 1, 0) & np.roll(inner, -1, 0) & np.roll(inner, 1, 1) & np.roll(inner, -1, 1)
    if inner.sum() < 10:
        return None
    jxx, jyy, jxy = (gx[inner] ** 2).sum(), (gy[inner] ** 2).sum(), (gx[inner] * gy[inner]).sum()
    return float(np.rad2deg(0.5 * np.arctan2(2 * jxy, jxx - jyy)) % 180)


def test_class_stripe_orientations_differ():
    expected = W.class_angles()
    errors: dict[int, list[float]] = {k: [] for k in range(6)}
    for i in range(60):
        img, label, cover = W.render_sample("id_train", i)
        angle = _stripe_angle_deg(img, cover)
        if angle is not None:
            d = abs(angle - expected[label]) % 180
            errors[label].append(min(d, 180 - d))
    for k, errs in errors.items():
        assert len(errs) >= 6, k
        assert np.median(errs) < 10, (W.CLASS_NAMES[k], errs)


def test_save_preview(tmp_path):
    from PIL import Image

    path = W.save_preview(tmp_path / "p.png", per_split=2)
    with Image.open(path) as im:
        assert im.size[1] > len(W.SPLITS) * 32


def test_package_reexports_and_shared_helpers():
    # the public API of the package is the one of the former single module
    for name in W.__all__:
        assert hasattr(W, name), name
    assert W.pixel_grid is common_world.pixel_grid
    # the cache folder name is the shared world key of (version, seed, every knob)
    from dataclasses import asdict

    key = common_world.world_key(W.WORLD_NAME, {"version": W.WORLD_VERSION, "seed": 3, "cfg": asdict(W.WorldConfig())})
    assert W.world_dir("/r", seed=3).name == key and key.startswith("clutterglyphs32-")


def test_config_json_written(tmp_path):
    import json

    W.load_world(tmp_path, splits=["id_val"], sizes={"id_val": 2}, progress=False)
    meta = json.loads((W.world_dir(tmp_path) / "config.json").read_text())
    assert meta["world"] == W.WORLD_NAME and meta["version"] == W.WORLD_VERSION and meta["seed"] == 0
    assert meta["cfg"]["clutter_max"] == W.WorldConfig().clutter_max
    assert not [p for p in W.world_dir(tmp_path).iterdir() if p.name.startswith(".")]  # no temp files left


def test_config_validation():
    with pytest.raises(ValueError):
        W.WorldConfig(n_classes=7)
    with pytest.raises(ValueError):
        W.WorldConfig(clutter_min=3, clutter_max=1)
    with pytest.raises(KeyError):
        W.generate_split("nope", 2)
