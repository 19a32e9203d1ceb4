"""Tiny vision-language trees in the layouts the real datasets are distributed in.

- ``write_coco(root)`` -> ``root/images/{train2014,val2014}/COCO_*_<id:012d>.jpg``,
  ``root/dataset_coco.json`` (Karpathy: 2 train, 1 restval, 1 val, 1 test image, 2 captions each) and
  ``root/annotations/instances_train2014.json`` (boxes ``[x, y, w, h]``; one crowd annotation).
- ``write_flickr(root)`` -> ``root/flickr30k-images/<n>.jpg`` + ``root/dataset_flickr30k.json``.
- ``write_vg(root)`` -> ``image_data.json``, ``objects.json``, ``region_descriptions.json``, one image in
  ``VG_100K/`` and one in ``VG_100K_2/``.
- ``write_albef(root)`` -> ``root/pairs.json`` + ``root/imgs/*.jpg``.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COCO_IDS = {"train": [11, 12], "restval": [13], "val": [21], "test": [31]}
CAPTIONS = {11: ["A man rides a bike.", "Two dogs near a car"], 12: ["a cat on a couch", "the kitten sleeps"],
            13: ["a red traffic light", "traffic lights at night"], 21: ["a plate on a table", "food"],
            31: ["a plane in the sky", "a jet flying"]}


def _jpg(path: Path, size: tuple[int, int] = (64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path, format="JPEG")


def write_coco(root: Path) -> Path:
    images = []
    for split, ids in COCO_IDS.items():
        folder = "train2014" if split == "train" else "val2014"
        for iid in ids:
            name = f"COCO_{folder}_{iid:012d}.jpg"
            _jpg(root / "images" / folder / name)
            images.append({"filepath": folder, "filename": name, "split": split, "cocoid": iid, "imgid": len(images),
                           "sentences": [{"raw": c, "tokens": c.lower().split()} for c in CAPTIONS[iid]]})
    (root / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    inst = {"images": [{"id": i, "width": 64, "height": 48, "file_name": f"COCO_train2014_{i:012d}.jpg"}
                       for i in (11, 12, 13)],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"},
                           {"id": 10, "name": "traffic light"}, {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 11, "bbox": [2, 3, 10, 20], "category_id": 1, "iscrowd": 0},
                            {"id": 2, "image_id": 11, "bbox": [50, 30, 30, 30], "category_id": 2, "iscrowd": 0},
                            {"id": 3, "image_id": 11, "bbox": [0, 0, 64, 48], "category_id": 1, "iscrowd": 1},
                            {"id": 4, "image_id": 11, "bbox": [20, 20, 5, 5], "category_id": 17, "iscrowd": 0},
                            {"id": 5, "image_id": 13, "bbox": [1, 1, 4, 8], "category_id": 10, "iscrowd": 0}]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(inst))
    return root


def write_flickr(root: Path) -> Path:
    images = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        name = f"{1000 + i}.jpg"
        _jpg(root / "flickr30k-images" / name)
        images.append({"filename": name, "split": split, "imgid": i,
                       "sentences": [{"raw": f" caption {i} {k} "} for k in range(5)]})
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    return root


def write_vg(root: Path) -> Path:
    _jpg(root / "VG_100K" / "1.jpg", (100, 80))
    _jpg(root / "VG_100K_2" / "2.jpg", (100, 80))
    (root / "image_data.json").write_text(json.dumps([{"image_id": 1, "width": 100, "height": 80, "url": "x"},
                                                      {"image_id": 2, "width": 100, "height": 80, "url": "y"}]))
    (root / "objects.json").write_text(json.dumps([
        {"image_id": 1, "objects": [{"object_id": 5, "x": 10, "y": 10, "w": 20, "h": 30, "names": ["Tree"]},
                                    {"object_id": 6, "x": 90, "y": 70, "w": 30, "h": 30, "names": ["dog"]}]},
        {"image_id": 2, "objects": []}]))
    (root / "region_descriptions.json").write_text(json.dumps([
        {"id": 1, "regions": [{"region_id": 7, "image_id": 1, "phrase": "two trees by a road", "x": 0, "y": 0,
                               "width": 40, "height": 50},
                              {"region_id": 8, "image_id": 1, "phrase": "a sleeping dog", "x": 80, "y": 60,
                               "width": 20, "height": 20}]},
        {"id": 2, "regions": [{"region_id": 9, "image_id": 2, "phrase": "blue sky", "x": 0, "y": 0, "width": 100,
                               "height": 30}]}]))
    return root


def write_albef(root: Path) -> Path:
    _jpg(root / "imgs" / "a.jpg")
    _jpg(root / "imgs" / "b.jpg")
    (root / "pairs.json").write_text(json.dumps([{"image": "imgs/a.jpg", "caption": "first"},
                                                 {"image": "imgs/b.jpg", "caption": ["second", "third"]},
                                                 {"image": "imgs/a.jpg", "caption": "fourth"}]))
    return root
