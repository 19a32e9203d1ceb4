"""Shared building blocks of the procedural worlds: per-sample RNG streams, point-in-polygon,
the supersampled pixel grid, the worlds' cache folder and its key."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from datamodules.common.world import in_polygon, pixel_grid, rng_for, world_key, worlds_root

# --------------------------------------------------------------------------- rng_for


def test_rng_for_is_deterministic():
    a = rng_for("id_train", 7, 3).random(16)
    b = rng_for("id_train", 7, 3).random(16)
    np.testing.assert_array_equal(a, b)
    # the stream is the documented SeedSequence([seed, crc32(name)], spawn_key=(index,))
    import zlib

    ss = np.random.SeedSequence([3, zlib.crc32(b"id_train")], spawn_key=(7,))
    np.testing.assert_array_equal(a, np.random.default_rng(ss).random(16))


def test_rng_for_streams_are_independent():
    draws = {
        key: rng_for(*key).random(16).tobytes()
        for key in [("id_train", 0, 0), ("id_train", 1, 0), ("id_test", 0, 0), ("id_train", 0, 1),
                    ("train/07", 3, 0), ("train/08", 3, 0), ("captions", 3, 0)]
    }
    assert len(set(draws.values())) == len(draws)  # every (name, index, seed) has its own stream
    # neighbouring indices are not shifted copies of one another
    x0, x1 = rng_for("ood_far", 0, 0).random(64), rng_for("ood_far", 1, 0).random(64)
    assert not np.isin(x0, x1).any()
    assert abs(np.corrcoef(x0, x1)[0, 1]) < 0.5


def test_rng_for_rejects_negative_seed_or_index():
    with pytest.raises(ValueError):
        rng_for("id_train", -1, 0)
    with pytest.raises(ValueError):
        rng_for("id_train", 0, -1)


# --------------------------------------------------------------------------- in_polygon


def test_in_polygon_unit_square():
    square = np.array([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
    pts = {  # (u, v): inside?
        (0.5, 0.5): True, (0.25, 0.75): True, (0.9, 0.1): True, (0.01, 0.99): True,
        (1.5, 0.5): False, (-0.1, 0.5): False, (0.5, 1.2): False, (0.5, -0.2): False, (2.0, 2.0): False,
    }
    u = np.array([p[0] for p in pts])
    v = np.array([p[1] for p in pts])
    np.testing.assert_array_equal(in_polygon(u, v, square), list(pts.values()))
    # the vertex order (clockwise or not) does not matter
    np.testing.assert_array_equal(in_polygon(u, v, square[::-1]), list(pts.values()))


def test_in_polygon_triangle_by_hand():
    # right triangle (0,0), (4,0), (0,4): inside iff u > 0, v > 0 and u + v < 4
    tri = np.array([(0.0, 0.0), (4.0, 0.0), (0.0, 4.0)])
    pts = {
        (1.0, 1.0): True, (2.0, 1.5): True, (3.0, 0.5): True, (3.9, 0.05): True, (0.05, 3.9): True,
        (2.5, 2.0): False, (2.0, 2.1): False, (-0.5, 1.0): False, (1.0, -0.5): False, (5.0, 0.5): False,
    }
    u = np.array([p[0] for p in pts])
    v = np.array([p[1] for p in pts])
    np.testing.assert_array_equal(in_polygon(u, v, tri), list(pts.values()))
    # on a 2-D grid (no point on an edge) it matches the closed form and keeps the input shape
    c = (np.arange(24) + 0.37) * 0.25 - 1.0
    uu, vv = np.meshgrid(c, c)
    got = in_polygon(uu, vv, tri)
    assert got.shape == uu.shape and got.dtype == bool
    np.testing.assert_array_equal(got, (uu > 0) & (vv > 0) & (uu + vv < 4))


# --------------------------------------------------------------------------- pixel_grid


def test_pixel_grid_centres_and_read_only():
    x, y = pixel_grid(2, 2)
    np.testing.assert_array_equal(x[0], np.array([0.25, 0.75, 1.25, 1.75], dtype=np.float32))
    np.testing.assert_array_equal(y[:, 0], np.array([0.25, 0.75, 1.25, 1.75], dtype=np.float32))
    assert x.dtype == y.dtype == np.float32 and x.shape == y.shape == (4, 4)
    assert not x.flags.writeable and not y.flags.writeable
    assert pixel_grid(2, 2)[0] is x  # cached


# --------------------------------------------------------------------------- worlds_root / world_key


def test_worlds_root(monkeypatch, tmp_path):
    assert worlds_root(tmp_path / "c") == tmp_path / "c" / "worlds"
    assert worlds_root(str(tmp_path)) == tmp_path / "worlds"
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zc"))
    assert worlds_root() == tmp_path / "zc" / "worlds"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ("", None):  # empty means unset
        if unset is None:
            monkeypatch.delenv("ZOO_CACHE")
        else:
            monkeypatch.setenv("ZOO_CACHE", unset)
        assert worlds_root() == Path(tmp_path / "home" / ".cache" / "zoo" / "worlds")


def test_world_key_changes_with_a_param():
    base = {"version": 1, "seed": 0, "cfg": {"clutter_max": 5, "noise_sigma": 0.03}}
    key = world_key("clutterglyphs32", base)
    assert re.fullmatch(r"clutterglyphs32-[0-9a-f]{12}", key)
    assert world_key("clutterglyphs32", dict(base)) == key  # stable
    assert world_key("clutterglyphs32", dict(reversed(list(base.items())))) == key  # key order is irrelevant
    assert world_key("clutterglyphs32", {**base, "seed": 1}) != key
    assert world_key("clutterglyphs32", {**base, "cfg": {"clutter_max": 3, "noise_sigma": 0.03}}) != key
    assert world_key("clutterglyphs32", {**base, "version": 2}) != key
    assert world_key("shapes_b2n", base).split("-")[1] == key.split("-")[1]  # the name is a prefix only
