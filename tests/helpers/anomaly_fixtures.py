"""Tiny anomaly-segmentation trees in exactly the layouts the real datasets are distributed in.

Each writer takes the folder it writes under and returns the folder to point a loader at
(``datamodules/anomaly/real.py``). Contents are deterministic; the expected labels and masks are
returned by the ``expected_*`` helpers so tests compare against known values.

- ``write_cityscapes(root, split, ...)`` -> ``root/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``
  + ``root/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png`` (and ``_labelTrainIds.png`` on request)
- ``write_coco(root)`` -> ``root/train2017/<id:012d>.jpg`` + ``root/annotations/instances_train2017.json``:
  image 1 (480x640) a polygon and a compressed-RLE instance, image 2 (640x480) an uncompressed
  (crowd) RLE instance, image 3 holds a person (excluded), image 4 is 400 px high (too small),
  image 5 has no annotation.
- ``write_fishyscapes(root, name)`` -> ``root/<name>/{original,labels}/*.png`` (0 / 1 / 255)
- ``write_road_anomaly(root, layout)`` -> ``root/frames/<id>.jpg`` + ``root/frames/<id>.labels/labels_semantic.png``
  (``layout="frames"``) or ``root/{original,labels}/`` (``layout="repacked"``, 0/1)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: labelIds used by the Cityscapes fixture and their trainIds (0 unlabeled and 4 static -> 255).
CITYSCAPES_IDS = (7, 8, 11, 21, 23, 26, 0, 4)
CITYSCAPES_TRAIN = (0, 1, 2, 8, 10, 13, 255, 255)


def expected_label_ids(i: int, size: tuple[int, int]) -> np.ndarray:
    """labelIds (H, W) uint8 of fixture image ``i``: vertical bands of :data:`CITYSCAPES_IDS`,
    rotated by ``i``."""
    h, w = size
    band = (np.arange(w) * len(CITYSCAPES_IDS) // w + i) % len(CITYSCAPES_IDS)
    return np.broadcast_to(np.array(CITYSCAPES_IDS, dtype=np.uint8)[band][None, :], (h, w)).copy()


def expected_train_ids(i: int, size: tuple[int, int]) -> np.ndarray:
    ids = expected_label_ids(i, size)
    lut = dict(zip(CITYSCAPES_IDS, CITYSCAPES_TRAIN))
    return np.vectorize(lut.get)(ids).astype(np.int64)


def _rgb(i: int, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 7 + i * 40) % 256, (y * 11 + i * 15) % 256, np.full((h, w), 60 + 30 * i)],
                    axis=-1).astype(np.uint8)


def write_cityscapes(root: str | Path, split: str = "train", city: str = "aachen", n: int = 2,
                     size: tuple[int, int] = (16, 32), train_ids: bool = False) -> Path:
    """A Cityscapes city with ``n`` images of ``size`` (H, W); labels per :func:`expected_label_ids`.

    With ``train_ids``, also ``*_gtFine_labelTrainIds.png`` holding the mapped trainIds plus a
    marker: its pixel (0, 0) is 18 (bicycle), so a test can tell which file was read.
    """
    root = Path(root)
    img_dir = root / "leftImg8bit" / split / city
    gt_dir = root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"{city}_{i:06d}_000019"
        Image.fromarray(_rgb(i, size)).save(img_dir / f"{stem}_leftImg8bit.png")
        Image.fromarray(expected_label_ids(i, size)).save(gt_dir / f"{stem}_gtFine_labelIds.png")
        if train_ids:
            t = expected_train_ids(i, size).astype(np.uint8)
            t[0, 0] = 18
            Image.fromarray(t).save(gt_dir / f"{stem}_gtFine_labelTrainIds.png")
    return root


# --------------------------------------------------------------------------------------------- COCO


def rle_encode(mask: np.ndarray, compressed: bool = True) -> dict:
    """COCO RLE of a bool (h, w) mask: column-major runs starting with 0s; ``compressed`` gives
    pycocotools' string form (``rleToString``), else the list form of crowd annotations."""
    h, w = mask.shape
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts: list[int] = []
    cur, run = 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    if not compressed:
        return {"size": [h, w], "counts": counts}
    s = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            s.append(chr(c + 48))
    return {"size": [h, w], "counts": "".join(s)}


def _disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


#: (id, height, width) of the fixture's COCO images.
COCO_IMAGES = ((1, 480, 640), (2, 640, 480), (3, 480, 640), (4, 400, 640), (5, 500, 500))
#: the polygon of image 1: the rectangle x in [10, 30], y in [20, 40] (PIL fills both ends).
COCO_POLYGON = [10.0, 20.0, 30.0, 20.0, 30.0, 40.0, 10.0, 40.0]


def expected_coco_masks() -> dict[int, np.ndarray]:
    """The union masks of the images that pass the OE filter (ids 1 and 2)."""
    m1 = np.zeros((480, 640), dtype=bool)
    m1[20:41, 10:31] = True
    m1 |= _disk(480, 640, 200, 300, 40)
    m2 = _disk(640, 480, 500, 100, 25) | _disk(640, 480, 100, 400, 10)
    return {1: m1, 2: m2}


def write_coco(root: str | Path, masks_png: bool = False) -> Path:
    """A COCO 2017 train tree (see the module docstring); with ``masks_png`` also the pre-made
    ``annotations/ood_seg_train2017/<id:012d>.png`` masks (254 / 0) of the kept images."""
    root = Path(root)
    (root / "train2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 2, "name": "bicycle"},
            {"id": 4, "name": "motorcycle"}, {"id": 6, "name": "bus"}, {"id": 8, "name": "truck"},
            {"id": 10, "name": "traffic light"}, {"id": 13, "name": "stop sign"}, {"id": 18, "name": "dog"},
            {"id": 38, "name": "kite"}, {"id": 15, "name": "bench"}]
    images = []
    for i, h, w in COCO_IMAGES:
        name = f"{i:012d}.jpg"
        Image.fromarray(np.full((h, w, 3), 40 * i, dtype=np.uint8)).save(root / "train2017" / name, quality=90)
        images.append({"id": i, "file_name": name, "height": h, "width": w})
    exp = expected_coco_masks()
    disk1 = _disk(480, 640, 200, 300, 40)
    anns = [
        {"id": 101, "image_id": 1, "category_id": 38, "iscrowd": 0, "segmentation": [COCO_POLYGON]},
        {"id": 102, "image_id": 1, "category_id": 18, "iscrowd": 0, "segmentation": rle_encode(disk1)},
        {"id": 201, "image_id": 2, "category_id": 15, "iscrowd": 1,
         "segmentation": rle_encode(exp[2], compressed=False)},
        {"id": 301, "image_id": 3, "category_id": 18, "iscrowd": 0, "segmentation": [COCO_POLYGON]},
        {"id": 302, "image_id": 3, "category_id": 1, "iscrowd": 0, "segmentation": [COCO_POLYGON]},
        {"id": 401, "image_id": 4, "category_id": 18, "iscrowd": 0, "segmentation": [COCO_POLYGON]},
    ]
    data = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    if masks_png:
        d = root / "annotations" / "ood_seg_train2017"
        d.mkdir(parents=True, exist_ok=True)
        for i, m in exp.items():
            Image.fromarray(np.where(m, 254, 0).astype(np.uint8)).save(d / f"{i:012d}.png")
    return root


# --------------------------------------------------------------------------------------------- test sets


def expected_anomaly(i: int, size: tuple[int, int], void: bool = True) -> np.ndarray:
    """Anomaly ground truth (H, W) of test image ``i``: a square of 1s, void (255) bottom row."""
    h, w = size
    a = np.zeros((h, w), dtype=np.uint8)
    a[2 + i:6 + i, 4:10] = 1
    if void:
        a[-1] = 255
    return a


def write_fishyscapes(root: str | Path, name: str = "LostAndFound", n: int = 2,
                      size: tuple[int, int] = (16, 32)) -> Path:
    """``root/<name>/{original,labels}/<i>.png`` with labels per :func:`expected_anomaly`."""
    d = Path(root) / name
    (d / "original").mkdir(parents=True, exist_ok=True)
    (d / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"{i:04d}_{name}"
        Image.fromarray(_rgb(i, size)).save(d / "original" / f"{stem}.png")
        Image.fromarray(expected_anomaly(i, size)).save(d / "labels" / f"{stem}.png")
    return d


def write_road_anomaly(root: str | Path, layout: str = "frames", n: int = 2, size: tuple[int, int] = (16, 32)) -> Path:
    """Road Anomaly in its original ``frames`` layout (``labels_semantic.png``: 0 / 1 normal, 2 anomaly;
    the anomaly of :func:`expected_anomaly` without void) or the ``repacked`` original/ + labels/ (0/1)."""
    d = Path(root) / ("RoadAnomaly" if layout == "frames" else "RoadAnomaly_repacked")
    for i in range(n):
        a = expected_anomaly(i, size, void=False)
        img = Image.fromarray(_rgb(i, size))
        if layout == "frames":
            (d / "frames" / f"{i:03d}.labels").mkdir(parents=True, exist_ok=True)
            img.save(d / "frames" / f"{i:03d}.jpg", quality=95)
            sem = np.where(a == 1, 2, 0).astype(np.uint8)
            sem[: size[0] // 2][sem[: size[0] // 2] == 0] = 1  # "road" vs "not road" among normal pixels
            Image.fromarray(sem).save(d / "frames" / f"{i:03d}.labels" / "labels_semantic.png")
        else:
            (d / "original").mkdir(parents=True, exist_ok=True)
            (d / "labels").mkdir(parents=True, exist_ok=True)
            img.save(d / "original" / f"{i:03d}.jpg", quality=95)
            Image.fromarray(a).save(d / "labels" / f"{i:03d}.png")
    return d
