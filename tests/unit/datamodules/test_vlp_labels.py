"""Box -> patch labels (PTA spec rules 1-5) and the box transforms, on hand-made boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.vlp.base import ImageDataset, PairDataset, _Geometry
from datamodules.vlp.labels import crop_boxes, hflip_boxes, patch_labels, resize_boxes, swap_left_right
from datamodules.vlp.records import ImageRecord, VLPObject


def grid(labels: np.ndarray, w: int) -> list[list[int]]:
    return labels.reshape(-1, w).astype(int).tolist()


@pytest.mark.parametrize("tau", [1e-6, 0.25, 0.5, 1.0])
def test_a_grid_aligned_box_labels_exactly_its_cells_for_any_tau(tau):
    # columns 1..2, rows 0..1 of a 4 x 4 grid, P = 8: [c0 P, r0 P, (c1 + 1) P, (r1 + 1) P]
    got = patch_labels(np.array([[8, 0, 24, 16]]), (32, 32), 8, tau)
    assert grid(got, 4) == [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_patch_index_is_row_major():
    lab = patch_labels(np.array([[8, 16, 16, 24]]), (32, 32), 8)  # row 2, column 1
    assert np.flatnonzero(lab).tolist() == [2 * 4 + 1]


def test_coverage_threshold_and_exact_union_area():
    half = np.array([[0, 0, 4, 8]])  # covers half of cell (0, 0)
    assert patch_labels(half, (16, 16), 8, 0.5)[0] == 1 and patch_labels(half, (16, 16), 8, 0.51)[0] == 0
    two = np.array([[0, 0, 4, 8], [2, 0, 6, 8]])  # union 6 x 8 = 0.75 of the cell; the sum would be 1.0
    assert patch_labels(two, (16, 16), 8, 0.75)[0] == 1 and patch_labels(two, (16, 16), 8, 0.76)[0] == 0
    corner = np.array([[7, 7, 9, 9]])  # 1 px^2 in each of 4 cells
    assert patch_labels(corner, (16, 16), 8, 0.0).tolist() == [1, 1, 1, 1]
    assert patch_labels(corner, (16, 16), 8, 0.5).tolist() == [0, 0, 0, 0]


def test_no_box_and_boxes_outside_give_zero_labels():
    assert patch_labels(np.zeros((0, 4)), (16, 16), 8).sum() == 0
    assert patch_labels(np.array([[20, 20, 30, 30]]), (16, 16), 8).sum() == 0  # clipped away


def test_box_transforms_follow_the_image():
    b = np.array([[10.0, 20.0, 30.0, 40.0]])
    np.testing.assert_allclose(resize_boxes(b, (100, 200), (50, 50)), [[2.5, 10, 7.5, 20]])
    np.testing.assert_allclose(crop_boxes(b, top=25, left=5, height=10, width=40), [[5, 0, 25, 10]])
    np.testing.assert_allclose(hflip_boxes(b, 64), [[34, 20, 54, 40]])


def test_flip_swaps_left_and_right_words_only():
    assert swap_left_right("a red circle left of a ring") == "a red circle right of a ring"
    assert swap_left_right("Right of the leftover cart") == "Left of the leftover cart"


def _record() -> tuple[ImageRecord, np.ndarray]:
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    rec = ImageRecord("mem", 7, ["a thing left of a blob", "a blob"],
                      [VLPObject("thing", (0, 0, 8, 8)), VLPObject("blob", (24, 24, 32, 32))], [[0], [1]], 32, 32)
    return rec, img


def test_pair_dataset_labels_mentioned_objects_and_marks_distractors():
    rec, img = _record()
    ds = PairDataset([rec], lambda r: img, _Geometry(32, 8, 0.5, (0, 0, 0), (1, 1, 1)), train=False)
    a, b = ds[0], ds[1]
    assert a["caption"] == "a thing left of a blob" and a["has_boxes"]
    assert torch.nonzero(a["patch_labels"]).flatten().tolist() == [0]
    assert torch.nonzero(a["distractor_labels"]).flatten().tolist() == [15]
    assert torch.nonzero(b["patch_labels"]).flatten().tolist() == [15]


def test_a_flip_moves_labels_and_swaps_the_caption():
    rec, img = _record()
    geo = _Geometry(32, 8, 0.5, (0, 0, 0), (1, 1, 1), hflip=True)
    ds = PairDataset([rec], lambda r: img, geo, seed=0, train=True)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        x = ds[0]
        flipped = x["caption"] == "a thing right of a blob"
        seen.add(flipped)
        assert torch.nonzero(x["patch_labels"]).flatten().tolist() == ([3] if flipped else [0])
    assert seen == {True, False}


def test_image_dataset_holds_one_label_row_per_caption():
    rec, img = _record()
    item = ImageDataset([rec], lambda r: img, _Geometry(32, 8, 0.5, (0, 0, 0), (1, 1, 1)))[0]
    assert item["patch_labels"].shape == (2, 16) and item["captions"] == rec.captions
