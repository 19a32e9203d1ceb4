"""Real anomaly-segmentation formats on fixture trees: Cityscapes, COCO OE masks (polygons, RLE,
pre-made PNGs), Fishyscapes, Road Anomaly (both layouts), the CityscapesOE datamodule, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.anomaly.pasting import OE_LABEL, VOID
from datamodules.anomaly.real import (
    LABEL_ID_TO_TRAIN_ID,
    AnomalyFolder,
    CityscapesOE,
    CityscapesSeg,
    CocoOE,
    labelids_to_trainids,
    polygons_to_mask,
    read_coco_index,
    rle_decode,
    rle_string_to_counts,
    write_ood_masks,
)
from tests.helpers import anomaly_fixtures as fx
from zoo.core.errors import ZooError


# ------------------------------------------------------------------------------ Cityscapes
def test_official_label_table():
    assert len(LABEL_ID_TO_TRAIN_ID) == 34
    train = sorted(v for v in LABEL_ID_TO_TRAIN_ID.values() if v != 255)
    assert train == list(range(19))  # each trainId from exactly one labelId
    assert (LABEL_ID_TO_TRAIN_ID[7], LABEL_ID_TO_TRAIN_ID[26], LABEL_ID_TO_TRAIN_ID[33]) == (0, 13, 18)
    assert LABEL_ID_TO_TRAIN_ID[9] == LABEL_ID_TO_TRAIN_ID[0] == 255  # parking, unlabeled
    np.testing.assert_array_equal(labelids_to_trainids(np.array([[7, 8], [24, 3]], dtype=np.uint8)),
                                  [[0, 1], [11, 255]])


def test_cityscapes_label_ids_are_mapped(tmp_path):
    root = fx.write_cityscapes(tmp_path, n=2)
    ds = CityscapesSeg(root, "train")
    assert len(ds) == 2
    image, label = ds.get(1)
    assert image.shape == (3, 16, 32) and image.dtype == torch.uint8 and label.dtype == torch.long
    np.testing.assert_array_equal(label.numpy(), fx.expected_train_ids(1, (16, 32)))
    _, lab, anomaly = ds.get_eval(0)
    assert set(anomaly.unique().tolist()) == {0, 255} and torch.equal(anomaly == 255, lab == 255)


def test_cityscapes_prefers_label_train_ids(tmp_path):
    root = fx.write_cityscapes(tmp_path, n=1, train_ids=True)
    _, label = CityscapesSeg(root, "train").get(0)
    assert label[0, 0] == 18  # the marker only the *_labelTrainIds.png file holds
    np.testing.assert_array_equal(label.numpy()[1:], fx.expected_train_ids(0, (16, 32))[1:])


def test_cityscapes_errors(tmp_path):
    root = fx.write_cityscapes(tmp_path, n=2)
    with pytest.raises(ZooError, match="leftImg8bit/val: not found"):
        CityscapesSeg(root, "val")
    gt = sorted((root / "gtFine" / "train" / "aachen").glob("*_labelIds.png"))
    Image.fromarray(np.full((8, 32), 7, dtype=np.uint8)).save(gt[0])
    with pytest.raises(ZooError, match=r"label size 32x8 differs from the image .*leftImg8bit\.png"):
        CityscapesSeg(root, "train").get(0)
    Image.fromarray(np.full((16, 32), 40, dtype=np.uint8)).save(gt[1])
    with pytest.raises(ZooError, match=r"unknown label values \[40\]"):
        CityscapesSeg(root, "train").get(1)
    gt[0].unlink()
    with pytest.raises(ZooError, match="label file not found"):
        CityscapesSeg(root, "train")


# ------------------------------------------------------------------------------ COCO
def test_rle_string_hand_example():
    # counts [5, 40, 3, 10]: '5'; 40 = 8 + 1*32 -> 'X' (8|0x20) '1'; '3'; 10 - 40 = -30 -> 'R' 'O'
    assert rle_string_to_counts("5X13RO") == [5, 40, 3, 10]
    # a 3x2 mask, column-major [0,1,1 | 1,0,0] -> counts [1, 3, 2] -> "132"
    mask = rle_decode({"size": [3, 2], "counts": "132"})
    np.testing.assert_array_equal(mask, [[False, True], [True, False], [True, False]])
    np.testing.assert_array_equal(rle_decode({"size": [3, 2], "counts": [1, 3, 2]}), mask)
    with pytest.raises(ValueError, match="sum to 5"):
        rle_decode({"size": [3, 2], "counts": [1, 3, 1]})


def test_rle_roundtrip_with_fixture_encoder():
    rng = np.random.default_rng(0)
    mask = rng.random((37, 23)) < 0.3
    for compressed in (True, False):
        np.testing.assert_array_equal(rle_decode(fx.rle_encode(mask, compressed)), mask)


def test_polygon_rasterisation():
    m = polygons_to_mask([fx.COCO_POLYGON], 60, 50)
    assert m.sum() == 21 * 21 and m[20:41, 10:31].all()


def test_coco_filter_and_masks_from_json(tmp_path):
    root = fx.write_coco(tmp_path)
    idx = read_coco_index(root)
    assert [r["id"] for r in idx] == [1, 2]  # 3: person, 4: 400 px high, 5: no annotation
    pool = CocoOE(root)
    assert pool.mode == "json" and len(pool) == 2
    exp = fx.expected_coco_masks()
    for i, k in enumerate((1, 2)):
        image, mask = pool.get(i)
        assert image.shape == (3, *exp[k].shape) and image.dtype == torch.uint8
        np.testing.assert_array_equal(mask.numpy(), exp[k])
    assert len(read_coco_index(root, min_side=300)) == 3  # image 4 passes a lower threshold


def test_coco_premade_masks_and_writer(tmp_path):
    root = fx.write_coco(tmp_path / "a", masks_png=True)
    pool = CocoOE(root)
    assert pool.mode == "png" and len(pool) == 2
    np.testing.assert_array_equal(pool.get(1)[1].numpy(), fx.expected_coco_masks()[2])
    with pytest.raises(ZooError, match="was not written by write_ood_masks"):
        write_ood_masks(root)  # never replaces a folder it did not write
    root2 = fx.write_coco(tmp_path / "b")
    out = write_ood_masks(root2, progress=False)
    assert sorted(p.name for p in out.glob("*.png")) == ["000000000001.png", "000000000002.png"]
    arr = np.array(Image.open(out / "000000000001.png"))
    assert set(np.unique(arr).tolist()) == {0, 254}
    np.testing.assert_array_equal(arr == 254, fx.expected_coco_masks()[1])
    assert write_ood_masks(root2, progress=False) == out  # complete: reused
    Image.fromarray(np.full((480, 640), 7, dtype=np.uint8)).save(out / "000000000001.png")
    with pytest.raises(ZooError, match=r"unknown mask values \[7\]"):
        CocoOE(root2, masks="png").get(0)


def test_coco_errors(tmp_path):
    root = fx.write_coco(tmp_path)
    with pytest.raises(ZooError, match="val2017: not found"):
        CocoOE(root, split="val2017")
    data = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    data["images"][0]["width"] = 700  # the JPEG is 640 wide
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    with pytest.raises(ZooError, match=r"image size 640x480 differs from 700x480 in .*instances_train2017\.json"):
        CocoOE(root).get(0)
    (root / "annotations" / "instances_train2017.json").unlink()
    with pytest.raises(ZooError, match="instances_train2017.json: not found"):
        CocoOE(root, masks="json")


# ------------------------------------------------------------------------------ test sets
@pytest.mark.parametrize("name", ["LostAndFound", "Static"])
def test_fishyscapes(tmp_path, name):
    d = fx.write_fishyscapes(tmp_path, name, n=2)
    ds = AnomalyFolder(d)
    assert ds.layout == "pairs" and len(ds) == 2
    image, label, anomaly = ds.get_eval(1)
    assert image.shape == (3, 16, 32) and (label == VOID).all()
    np.testing.assert_array_equal(anomaly.numpy(), fx.expected_anomaly(1, (16, 32)))


@pytest.mark.parametrize("layout", ["frames", "repacked"])
def test_road_anomaly(tmp_path, layout):
    d = fx.write_road_anomaly(tmp_path, layout, n=2)
    ds = AnomalyFolder(d)
    assert ds.layout == ("road_anomaly" if layout == "frames" else "pairs") and len(ds) == 2
    _, _, anomaly = ds.get_eval(0)
    np.testing.assert_array_equal(anomaly.numpy(), fx.expected_anomaly(0, (16, 32), void=False))


def test_anomaly_folder_errors(tmp_path):
    d = fx.write_fishyscapes(tmp_path, "Static", n=2)
    labels = sorted((d / "labels").glob("*.png"))
    Image.fromarray(np.full((16, 32), 2, dtype=np.uint8)).save(labels[0])
    with pytest.raises(ZooError, match=r"unknown label values \[2\]; expected 0 \(normal\), 1 \(anomaly\)"):
        AnomalyFolder(d).get_eval(0)
    Image.fromarray(np.zeros((16, 30), dtype=np.uint8)).save(labels[1])
    with pytest.raises(ZooError, match=r"label size 30x16 differs from the image .*original"):
        AnomalyFolder(d).get_eval(1)
    labels[1].unlink()
    with pytest.raises(ZooError, match="label file not found"):
        AnomalyFolder(d)
    with pytest.raises(ZooError, match="original: not found"):
        AnomalyFolder(tmp_path / "Static" / "labels")
    with pytest.raises(ZooError, match="nowhere: not found"):
        AnomalyFolder(tmp_path / "nowhere")


# ------------------------------------------------------------------------------ the datamodule
@pytest.fixture()
def real_tree(tmp_path):
    cs = fx.write_cityscapes(tmp_path / "cityscapes", "train", n=10, size=(64, 128))
    fx.write_cityscapes(cs, "val", city="frankfurt", n=2, size=(64, 128))
    coco = fx.write_coco(tmp_path / "coco")
    fs = fx.write_fishyscapes(tmp_path / "fs", "LostAndFound", n=2)
    ra = fx.write_road_anomaly(tmp_path / "ra", "frames", n=2)
    return {"cityscapes": str(cs), "coco": str(coco), "test_sets": {"fs_lost_and_found": str(fs),
                                                                    "road_anomaly": str(ra)}}


def test_cityscapes_oe_datamodule(real_tree):
    dm = CityscapesOE(**real_tree, batch_per_domain=[2, 1], crop=[32, 64], scale=[0.5, 1.0], num_workers=0)
    assert dm.num_classes == 19 and dm.num_domains == 2 and dm.test_set_names == ["fs_lost_and_found", "road_anomaly"]
    dm.prepare_data()  # writes the OE masks once
    assert (Path(dm.coco) / "annotations" / "ood_seg_train2017" / "DONE").is_file()
    dm.setup()
    train = dm._sets["train"]
    assert len(train) == 10 + 1 + 2  # Cityscapes, round(0.1 * 10) composites, COCO images (domain 1)
    assert train.domains.tolist() == [0] * 11 + [1] * 2
    torch.manual_seed(0)
    _, lab = train.parts[1].get(0)  # a composite: a Cityscapes scene + a COCO object
    assert (lab == OE_LABEL).any() and set(lab.unique().tolist()) <= set(range(19)) | {OE_LABEL, VOID}
    _, lab = train.parts[2].get(0)  # a COCO image: 254 on the object, 255 elsewhere
    assert set(lab.unique().tolist()) == {OE_LABEL, VOID}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 3, 32, 64) and batch["domain"].tolist() == [0, 0, 1]
    v = next(iter(dm.val_dataloader()))
    assert v["image"].shape == (1, 3, 64, 128) and (v["anomaly"] == 1).any()
    assert (v["label"][v["anomaly"] == 1] == VOID).all()
    tests = dm.test_dataloader()
    assert len(tests) == 2
    t = next(iter(tests[1]))
    assert set(t) == {"image", "label", "anomaly", "domain", "index"} and t["domain"].tolist() == [-1]
    assert dm.eval_transform_spec()["crop"] == [1024, 2048]


def test_cityscapes_oe_errors(real_tree, tmp_path):
    with pytest.raises(ZooError, match=r"--data.init_args.batch_per_domain must be an integer >= 1 or a list of 2"):
        CityscapesOE(**real_tree, batch_per_domain=[1, 1, 1])
    with pytest.raises(ZooError, match=r"--data.init_args.oe_fraction must be a probability"):
        CityscapesOE(**real_tree, oe_fraction=1.5)
    with pytest.raises(ZooError, match=r"--data.init_args.crop must be \[height, width\]"):
        CityscapesOE(**real_tree, crop=[900])
    dm = CityscapesOE(real_tree["cityscapes"], str(tmp_path / "no_coco"), num_workers=0)
    with pytest.raises(ZooError, match="no_coco/train2017: not found"):
        dm.setup()
    dm = CityscapesOE(real_tree["cityscapes"], real_tree["coco"], coco_masks="json", num_workers=0)
    with pytest.raises(ZooError, match="test_sets is empty"):
        dm.test_dataloader()
