"""The real vision-language readers on fixture trees in the distributed formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datamodules.vlp.readers import (attach_coco_boxes, mention_indices, read_albef_json, read_coco_instances,
                                     read_karpathy, read_visual_genome)
from datamodules.vlp.records import VLPObject
from tests.helpers.vlp_real_fixtures import write_albef, write_coco, write_flickr, write_vg
from zoo.core.errors import ZooError


@pytest.fixture()
def coco(tmp_path) -> Path:
    return write_coco(tmp_path / "coco")


def test_karpathy_coco_splits_paths_ids_and_restval(coco):
    train = read_karpathy(coco / "dataset_coco.json", coco / "images", "train")
    assert [r.image_id for r in train] == [11, 12, 13]  # restval joins train
    assert train[0].image == str(coco / "images" / "train2014" / "COCO_train2014_000000000011.jpg")
    assert train[0].captions == ["A man rides a bike.", "Two dogs near a car"]
    assert [r.image_id for r in read_karpathy(coco / "dataset_coco.json", coco / "images", ["train"])] == [11, 12]
    assert [r.image_id for r in read_karpathy(coco / "dataset_coco.json", coco / "images", "test")] == [31]


def test_karpathy_flickr_layout(tmp_path):
    root = write_flickr(tmp_path / "f")
    recs = read_karpathy(root / "dataset_flickr30k.json", root / "flickr30k-images", "test")
    assert [r.image_id for r in recs] == [3] and recs[0].image.endswith("flickr30k-images/1003.jpg")
    assert recs[0].captions[0] == "caption 3 0" and len(recs[0].captions) == 5


def test_coco_instances_convert_boxes_clip_and_skip_crowds(coco):
    inst = read_coco_instances(coco / "annotations" / "instances_train2014.json")
    w, h, objs = inst[11]
    assert (w, h) == (64, 48)
    assert [(o.name, o.box) for o in objs] == [("person", (2.0, 3.0, 12.0, 23.0)), ("bicycle", (50.0, 30.0, 64.0, 48.0)),
                                              ("cat", (20.0, 20.0, 25.0, 25.0))]
    assert inst[12][2] == []


def test_mentions_use_names_plurals_synonyms_and_multiword_names():
    objs = [VLPObject("person", (0, 0, 1, 1)), VLPObject("bicycle", (0, 0, 1, 1)), VLPObject("car", (0, 0, 1, 1)),
            VLPObject("traffic light", (0, 0, 1, 1)), VLPObject("person", (0, 0, 1, 1)), VLPObject("dog", (0, 0, 1, 1))]
    assert mention_indices("A man rides a bike.", objs) == [0, 1, 4]
    assert mention_indices("Two dogs near a car", objs) == [2, 5]
    assert mention_indices("traffic lights at night", objs) == [3]
    assert mention_indices("a cart and a dogma", objs) == []  # whole words only
    assert mention_indices("a man", objs, synonyms=False) == []


def test_boxes_attach_to_a_stable_seeded_fraction(coco):
    inst = read_coco_instances(coco / "annotations" / "instances_train2014.json")

    def boxed(order, fraction):
        recs = read_karpathy(coco / "dataset_coco.json", coco / "images", "train")
        recs = [recs[i] for i in order]
        attach_coco_boxes(recs, inst, fraction, seed=3)
        return {r.image_id for r in recs if r.has_boxes}

    assert boxed([0, 1, 2], 1.0) == {11, 13}  # image 12 has no instances
    assert boxed([0, 1, 2], 0.0) == set()
    assert boxed([0, 1, 2], 0.5) == boxed([2, 1, 0], 0.5)
    recs = attach_coco_boxes(read_karpathy(coco / "dataset_coco.json", coco / "images", "train"), inst, 1.0)
    assert recs[0].mentions == [[0, 1], []] and recs[2].mentions == [[0], [0]]


def test_visual_genome_regions_objects_and_both_image_folders(tmp_path):
    root = write_vg(tmp_path / "vg")
    recs = read_visual_genome(root)
    assert [r.image_id for r in recs] == [1, 2] and recs[1].image.endswith("VG_100K_2/2.jpg")
    a = recs[0]
    assert a.captions == ["two trees by a road", "a sleeping dog"]
    names = [o.name for o in a.objects]
    assert names == ["tree", "dog", "region:7", "region:8"]
    assert a.objects[1].box == (90.0, 70.0, 100.0, 80.0)  # w/h keys, clipped to 100 x 80
    assert a.objects[2].box == (0.0, 0.0, 40.0, 50.0)  # width/height keys
    assert a.mentions == [[0, 2], [1, 3]]
    assert recs[1].mentions == [[0]] and read_visual_genome(root, limit=1)[0].image_id == 1


def test_albef_json_groups_captions_by_image(tmp_path):
    root = write_albef(tmp_path / "al")
    recs = read_albef_json(root / "pairs.json", root)
    assert [(r.image_id, r.captions) for r in recs] == [(0, ["first", "fourth"]), (1, ["second", "third"])]


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("case,msg", [
    ("missing_image", "missing image file"), ("empty_caption", "empty caption"), ("bad_json", "not valid JSON"),
    ("no_images_key", "no 'images' key")])
def test_karpathy_bad_input_is_one_line_naming_the_file(coco, case, msg):
    j = coco / "dataset_coco.json"
    if case == "missing_image":
        (coco / "images" / "train2014" / "COCO_train2014_000000000012.jpg").unlink()
    elif case == "empty_caption":
        _edit(j, lambda d: d["images"][0]["sentences"][0].update(raw="  "))
    elif case == "bad_json":
        j.write_text("{not json")
    else:
        j.write_text(json.dumps({"dataset": "coco"}))
    with pytest.raises(ZooError, match=msg) as e:
        read_karpathy(j, coco / "images", "train")
    assert str(j) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("bbox,msg", [([5, 5, 0, 4], "no area"), ([70, 50, 5, 5], "outside")])
def test_bad_boxes_are_errors(coco, bbox, msg):
    p = coco / "annotations" / "instances_train2014.json"
    _edit(p, lambda d: d["annotations"][0].update(bbox=bbox))
    with pytest.raises(ZooError, match=msg) as e:
        read_coco_instances(p)
    assert str(p) in str(e.value) and "image 11" in str(e.value)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ZooError, match="file not found"):
        read_karpathy(tmp_path / "nope.json", tmp_path, "train")
    root = write_vg(tmp_path / "vg")
    (root / "VG_100K_2" / "2.jpg").unlink()
    with pytest.raises(ZooError, match="no file 2.jpg"):
        read_visual_genome(root)


def test_the_karpathy_datamodule_builds_pairs_with_boxes(coco):
    from datamodules.vlp.captions import KarpathyCaptions

    dm = KarpathyCaptions(str(coco / "dataset_coco.json"), str(coco / "images"),
                          train_instances=str(coco / "annotations" / "instances_train2014.json"), box_fraction=1.0,
                          image_size=32, patch=16, tau=0.0, batch_size=2, eval_batch_size=2, num_workers=0, crop_scale=None,
                          hflip=False)
    train = dm.dataset("train")
    assert len(train) == 6 and len(dm.dataset("test")) == 1
    item = train[0]
    assert item["image"].shape == (3, 32, 32) and item["has_boxes"]
    # image 11 (64 x 48 -> 32 x 32, 2 x 2 cells of 16, tau = 0 = any overlap): "A man rides a bike." mentions
    # person [2, 3, 12, 23] -> [1, 2, 6, 15.3] (cell 0) and bicycle [50, 30, 64, 48] -> [25, 20, 32, 32] (cell 3);
    # the unmentioned cat [20, 20, 25, 25] -> [10, 13.3, 12.5, 16.7] straddles cells 0 and 2
    assert item["caption"] == "A man rides a bike."
    assert item["patch_labels"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert item["distractor_labels"].tolist() == [1.0, 0.0, 1.0, 0.0]
    batch = next(iter(dm.val_dataloader()))
    assert batch["captions"] == ["a plate on a table", "food"] and batch["caption_image"].tolist() == [0, 0]
