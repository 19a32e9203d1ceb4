"""Readers for the real anomaly-segmentation data, in the layouts they are distributed in, and the
real-setting datamodule :class:`CityscapesOE`.

Nothing is downloaded; every path is local. A missing folder, an image/label size mismatch (both
files named) or an unexpected label value raises a one-line :class:`~zoo.core.errors.ZooError`.

==================  ==========================================================================
set                 layout (relative to the root you pass)
==================  ==========================================================================
Cityscapes          ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` +
                    ``gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png`` (used when
                    present) or ``..._gtFine_labelIds.png`` (mapped by the official table)
COCO 2017 (OE)      ``train2017/<id:012d>.jpg`` + ``annotations/instances_train2017.json``
                    (polygons and RLE rasterised here), or pre-made masks
                    ``annotations/ood_seg_train2017/<id:012d>.png`` (254 = object, 0 = not)
Fishyscapes         ``<root>/{original,labels}/*.png`` for ``LostAndFound`` or ``Static``:
                    labels 0 normal / 1 anomaly / 255 void
Road Anomaly        ``frames/<id>.jpg`` + ``frames/<id>.labels/labels_semantic.png`` (anomaly =
                    value >= 2, no void), or the repacked ``original/`` + ``labels/`` (0/1)
==================  ==========================================================================

COCO filtering follows the MGCDA spec (after Meta-OoD / PEBAL): drop every image holding an
instance of person, bicycle, car, motorcycle, bus, truck, traffic light or stop sign; keep images
whose sides are both >= 480; the mask is the union of all remaining instances.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from datamodules.anomaly.base import (
    UNSEEN_DOMAIN,
    VOID,
    AnomalyDataModule,
    AnomalyEvalSet,
    AnomalyTrainSet,
    OEImagePart,
    ScenePart,
    arg,
    check_bool,
    check_int,
    check_prob,
)
from datamodules.anomaly.pasting import crop_to_mask, fit_object, paste_object
from datamodules.common.images import load_rgb
from datamodules.common.world import rng_for
from zoo.core.errors import ZooError
from zoo.core.io import build_folder_atomically

__all__ = [
    "CITYSCAPES_CLASSES",
    "COCO_EXCLUDED",
    "LABEL_ID_TO_TRAIN_ID",
    "AnomalyFolder",
    "CityscapesOE",
    "CityscapesSeg",
    "CocoOE",
    "PastedEval",
    "annotation_mask",
    "labelids_to_trainids",
    "polygons_to_mask",
    "read_coco_index",
    "rle_decode",
    "rle_string_to_counts",
    "write_ood_masks",
]

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")

#: The official cityscapesScripts table (labels.py): labelId -> trainId, 255 = ignored.
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3, 13: 4,
    14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}
_BAD = 1000  # marks values outside a label table
_ID_LUT = np.full(256, _BAD, dtype=np.int64)
for _k, _v in LABEL_ID_TO_TRAIN_ID.items():
    _ID_LUT[_k] = _v
_TRAIN_LUT = np.full(256, _BAD, dtype=np.int64)
_TRAIN_LUT[:19] = np.arange(19)
_TRAIN_LUT[255] = 255

COCO_EXCLUDED: tuple[str, ...] = ("person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light",
                                  "stop sign")
COCO_MASK_DIR = "ood_seg_train2017"
_LABEL_EXT = ".png"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _require_dir(path: Path, expected: str) -> None:
    if not path.is_dir():
        what = "not a directory" if path.exists() else "not found"
        raise ZooError(f"{path}: {what}; expected {expected}")


def _read_label(path: Path) -> np.ndarray:
    """A single-channel label PNG as uint8 (H, W)."""
    if not path.is_file():
        raise ZooError(f"{path}: label file not found")
    try:
        with Image.open(path) as im:
            arr = np.array(im)
    except Exception as e:
        raise ZooError(f"{path}: cannot read label image ({str(e).strip() or type(e).__name__})") from e
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
            arr = arr[..., 0]
        else:
            raise ZooError(f"{path}: expected a single-channel label image, got {arr.shape[2]} channels")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise ZooError(f"{path}: label values outside 0..255 (min {arr.min()}, max {arr.max()})")
        arr = arr.astype(np.uint8)
    return arr


def _read_image(path: Path) -> np.ndarray:
    return np.array(load_rgb(path))


def _check_sizes(img: np.ndarray, lab: np.ndarray, img_path: Path, lab_path: Path) -> None:
    if img.shape[:2] != lab.shape[:2]:
        raise ZooError(f"{lab_path}: label size {lab.shape[1]}x{lab.shape[0]} differs from the image {img_path} "
                       f"({img.shape[1]}x{img.shape[0]}, width x height)")


def _lookup(arr: np.ndarray, lut: np.ndarray, path: Path, allowed: str) -> np.ndarray:
    out = lut[arr]
    bad = out == _BAD
    if bad.any():
        vals = sorted(int(v) for v in np.unique(arr[bad]))[:8]
        raise ZooError(f"{path}: unknown label values {vals}; expected {allowed}")
    return out


def labelids_to_trainids(arr: np.ndarray, path: str | Path = "<labels>") -> np.ndarray:
    """Cityscapes labelIds (0..33) -> trainIds (0..18, 255 ignored), int64.

    Raises:
        ZooError: a value outside 0..33, naming ``path``.
    """
    return _lookup(arr, _ID_LUT, Path(path), "Cityscapes labelIds 0..33")


def _to_tensors(img: np.ndarray, lab: np.ndarray) -> tuple[Tensor, Tensor]:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1), torch.from_numpy(lab.astype(np.int64))


# --------------------------------------------------------------------------------------------
# Cityscapes
# --------------------------------------------------------------------------------------------


class CityscapesSeg:
    """Cityscapes ``leftImg8bit``/``gtFine`` as trainIds (a scene source: ``get(i)``, ``get_eval(i)``).

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` (or ``test``, whose labels are all void).
        limit: keep the first ``limit`` images (sorted by path), None = all.

    Raises:
        ZooError: a missing split folder, an image without a label file, a city folder with no
            images (at construction); a size mismatch or unknown label values (when read).
    """

    def __init__(self, root: str | Path, split: str = "train", limit: int | None = None) -> None:
        root = Path(root)
        img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        _require_dir(img_dir, f"Cityscapes images leftImg8bit/{split}/<city>/*_leftImg8bit.png")
        _require_dir(gt_dir, f"Cityscapes labels gtFine/{split}/<city>/*_gtFine_labelIds.png")
        items: list[tuple[Path, Path, bool]] = []
        for img in sorted(img_dir.glob("*/*_leftImg8bit.png")):
            stem = img.name[: -len("_leftImg8bit.png")]
            base = gt_dir / img.parent.name / stem
            train_ids = Path(f"{base}_gtFine_labelTrainIds.png")
            ids = Path(f"{base}_gtFine_labelIds.png")
            if train_ids.is_file():
                items.append((img, train_ids, True))
            elif ids.is_file():
                items.append((img, ids, False))
            else:
                raise ZooError(f"{ids}: label file not found for {img} (expected *_gtFine_labelIds.png or "
                               f"*_gtFine_labelTrainIds.png)")
        if not items:
            raise ZooError(f"{img_dir}: no images; expected <city>/*_leftImg8bit.png")
        self.items = items[:limit] if limit is not None else items
        self.root, self.split = root, split

    def __len__(self) -> int:
        return len(self.items)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, trainIds (H, W) int64)."""
        img_path, lab_path, is_train = self.items[i]
        img, raw = _read_image(img_path), _read_label(lab_path)
        _check_sizes(img, raw, img_path, lab_path)
        if is_train:
            return img, _lookup(raw, _TRAIN_LUT, lab_path, "Cityscapes trainIds 0..18 or 255")
        return img, labelids_to_trainids(raw, lab_path)

    def get(self, i: int) -> tuple[Tensor, Tensor]:
        return _to_tensors(*self.read(i))

    def get_eval(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        """(image, label, anomaly): no anomalies, anomaly 255 where the label is void."""
        image, label = self.get(i)
        anomaly = torch.where(label == VOID, VOID, 0).long()
        return image, label, anomaly


# --------------------------------------------------------------------------------------------
# COCO OE masks
# --------------------------------------------------------------------------------------------


def rle_string_to_counts(s: str | bytes) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools ``rleFrString``) into run lengths.

    Each count is a little-endian sequence of 5-bit groups, offset by 48 into printable ASCII, bit
    0x20 meaning "more groups follow" and bit 0x10 of the last group the sign; from the third count
    on, the value is a difference to the count two places earlier.
    """
    if isinstance(s, bytes):
        s = s.decode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("truncated RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """A COCO RLE (``{"size": [h, w], "counts": str | list[int]}``, compressed or not) as a bool
    (h, w) mask. Runs alternate 0s and 1s starting with 0s, over the pixels in column-major order.

    Raises:
        ValueError: malformed counts (negative runs, or a total other than h * w).
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = rle_string_to_counts(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise ValueError(f"RLE counts sum to {sum(counts)} (or hold negative runs) for a {h}x{w} mask")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T.copy()


def polygons_to_mask(polygons: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    """COCO polygons (each ``[x1, y1, x2, y2, ...]``, pixel coordinates) filled into a bool (h, w)
    mask with PIL's ImageDraw."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        pts = [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)]
        if len(pts) >= 3:
            draw.polygon(pts, fill=1, outline=1)
    return np.array(canvas, dtype=bool)


def annotation_mask(ann: dict[str, Any], h: int, w: int) -> np.ndarray:
    """The bool (h, w) mask of one COCO instance annotation (polygons or RLE)."""
    seg = ann["segmentation"]
    if isinstance(seg, list):
        return polygons_to_mask(seg, h, w)
    mask = rle_decode(seg)
    if mask.shape != (h, w):
        raise ValueError(f"RLE size {list(mask.shape)} differs from the image size {[h, w]}")
    return mask


def read_coco_index(root: str | Path, split: str = "train2017", min_side: int = 480,
                    excluded: Sequence[str] = COCO_EXCLUDED) -> list[dict[str, Any]]:
    """The OE images of a COCO split, filtered as the spec says, with their annotations.

    Returns:
        ``[{"id", "file_name", "height", "width", "anns": [annotation dicts]}]`` sorted by id:
        images with at least one annotation, none of a category in ``excluded``, both sides
        >= ``min_side``.

    Raises:
        ZooError: a missing annotations file, unreadable JSON, or an unknown excluded category name.
    """
    path = Path(root) / "annotations" / f"instances_{split}.json"
    if not path.is_file():
        raise ZooError(f"{path}: not found; expected the COCO instances annotations")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        cats = {c["name"]: int(c["id"]) for c in data["categories"]}
        images, anns = data["images"], data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ZooError(f"{path}: not a COCO instances file ({type(e).__name__}: {e})") from e
    unknown = [n for n in excluded if n not in cats]
    if unknown:
        raise ZooError(f"{path}: excluded categories {unknown} are not COCO categories of this file")
    bad_ids = {cats[n] for n in excluded}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in anns:
        by_image.setdefault(int(a["image_id"]), []).append(a)
    out = []
    for im in images:
        a = by_image.get(int(im["id"]), [])
        if not a or any(int(x["category_id"]) in bad_ids for x in a):
            continue
        if min(int(im["height"]), int(im["width"])) < min_side:
            continue
        out.append({"id": int(im["id"]), "file_name": im["file_name"], "height": int(im["height"]),
                    "width": int(im["width"]), "anns": a})
    out.sort(key=lambda r: r["id"])
    return out


def _union_mask(rec: dict[str, Any], json_path: Path) -> np.ndarray:
    h, w = rec["height"], rec["width"]
    mask = np.zeros((h, w), dtype=bool)
    for a in rec["anns"]:
        try:
            mask |= annotation_mask(a, h, w)
        except (ValueError, KeyError, TypeError) as e:
            raise ZooError(f"{json_path}: annotation {a.get('id')} of image {rec['id']}: {e}") from e
    return mask


def write_ood_masks(root: str | Path, out: str | Path | None = None, split: str = "train2017",
                    min_side: int = 480, excluded: Sequence[str] = COCO_EXCLUDED, progress: bool = True) -> Path:
    """Rasterise the OE masks once: ``<out>/<id:012d>.png`` with 254 on the object union, 0 elsewhere.

    The folder (default ``<root>/annotations/ood_seg_<split>``) is built in a temporary sibling and
    renamed into place, so it exists only when complete (it then holds a ``DONE`` file).

    Returns:
        The mask folder.

    Raises:
        ZooError: ``out`` exists but was not written by this function (it is never replaced).
    """
    root = Path(root)
    out = Path(out) if out is not None else root / "annotations" / f"ood_seg_{split}"
    if out.exists() and not (out / "DONE").is_file():
        raise ZooError(f"{out}: exists and was not written by write_ood_masks; remove it or choose another folder")
    records = read_coco_index(root, split, min_side, excluded)
    json_path = root / "annotations" / f"instances_{split}.json"

    def build(tmp: Path) -> None:
        it = records
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(records, desc="COCO OE masks", leave=False)
        for rec in it:
            mask = _union_mask(rec, json_path)
            Image.fromarray(np.where(mask, 254, 0).astype(np.uint8)).save(tmp / f"{rec['id']:012d}.png")
        (tmp / "DONE").write_text(f"{len(records)}\n")

    return build_folder_atomically(out, build, lambda p: (p / "DONE").is_file())


class CocoOE:
    """COCO 2017 OE objects (an OE pool: ``get(i) -> (image uint8 (3, H, W), mask bool (H, W))``).

    Args:
        root: the COCO folder holding ``train2017/`` and ``annotations/``.
        split: image split folder name.
        masks: ``png`` = pre-made ``annotations/ood_seg_<split>/*.png``; ``json`` = rasterise from
            ``instances_<split>.json``; ``auto`` = the PNGs when that folder exists, else the JSON.
        min_side, excluded: the JSON filter (:func:`read_coco_index`); pre-made masks are taken as
            they are.
        limit: keep the first ``limit`` images (by id), None = all.

    Raises:
        ZooError: a missing folder or file (at construction); an image/mask size mismatch or mask
            values other than 0 / 254 / 255, or an empty mask (when read).
    """

    def __init__(self, root: str | Path, split: str = "train2017", masks: Literal["auto", "png", "json"] = "auto",
                 min_side: int = 480, excluded: Sequence[str] = COCO_EXCLUDED, limit: int | None = None) -> None:
        root = Path(root)
        self.image_dir = root / split
        _require_dir(self.image_dir, f"COCO images {split}/<id:012d>.jpg")
        self.mask_dir = root / "annotations" / f"ood_seg_{split}"
        if masks == "auto":
            masks = "png" if self.mask_dir.is_dir() else "json"
        if masks not in ("png", "json"):
            raise ZooError(f"masks={masks!r}: expected 'auto', 'png' or 'json'")
        self.mode = masks
        self.json_path = root / "annotations" / f"instances_{split}.json"
        if masks == "png":
            _require_dir(self.mask_dir, f"pre-made OE masks annotations/ood_seg_{split}/<id:012d>.png")
            files = sorted(p for p in self.mask_dir.glob("*.png") if not p.name.startswith("."))
            if not files:
                raise ZooError(f"{self.mask_dir}: no mask PNGs; expected <id:012d>.png")
            self.records: list[dict[str, Any]] = [{"id": int(p.stem) if p.stem.isdigit() else p.stem,
                                                   "file_name": f"{p.stem}.jpg", "mask": p} for p in files]
        else:
            self.records = read_coco_index(root, split, min_side, excluded)
            if not self.records:
                raise ZooError(f"{self.json_path}: no image passes the OE filter (sides >= {min_side}, "
                               f"none of {list(excluded)})")
        if limit is not None:
            self.records = self.records[:limit]

    def __len__(self) -> int:
        return len(self.records)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, mask (H, W) bool)."""
        rec = self.records[i]
        img_path = self.image_dir / rec["file_name"]
        if not img_path.is_file():
            raise ZooError(f"{img_path}: COCO image not found")
        img = _read_image(img_path)
        if self.mode == "png":
            raw = _read_label(rec["mask"])
            _check_sizes(img, raw, img_path, rec["mask"])
            bad = ~np.isin(raw, (0, 254, 255))
            if bad.any():
                vals = sorted(int(v) for v in np.unique(raw[bad]))[:8]
                raise ZooError(f"{rec['mask']}: unknown mask values {vals}; expected 0 (not OE), 254 (OE) or 255")
            mask = raw == 254
            src = rec["mask"]
        else:
            if img.shape[:2] != (rec["height"], rec["width"]):
                raise ZooError(f"{img_path}: image size {img.shape[1]}x{img.shape[0]} differs from "
                               f"{rec['width']}x{rec['height']} in {self.json_path}")
            mask = _union_mask(rec, self.json_path)
            src = self.json_path
        if not mask.any():
            raise ZooError(f"{src}: the OE mask of {img_path.name} is empty")
        return img, mask

    def get(self, i: int) -> tuple[Tensor, Tensor]:
        img, mask = self.read(i)
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1), torch.from_numpy(mask)


# --------------------------------------------------------------------------------------------
# anomaly test sets
# --------------------------------------------------------------------------------------------


class AnomalyFolder:
    """A pixel-level anomaly test set (an eval source: ``get_eval(i)``).

    Layouts:
        ``pairs``: ``<root>/original/<name>.{png,jpg}`` + ``<root>/labels/<name>.png`` with 0 normal,
        1 anomaly, 255 void (Fishyscapes L&F / Static; the repacked Road Anomaly).
        ``road_anomaly``: ``<root>/frames/<id>.jpg`` + ``<root>/frames/<id>.labels/labels_semantic.png``,
        anomaly = value >= 2, no void.
        ``auto``: ``road_anomaly`` when ``frames/`` exists, else ``pairs``.

    Items: ``(image uint8 (3, H, W), label all 255 (H, W), anomaly (H, W) 0/1/255)`` (no semantic labels).

    Raises:
        ZooError: a missing folder, an image without labels, a folder with no images (at
            construction); a size mismatch (both files named) or unknown label values (when read).
    """

    def __init__(self, root: str | Path, layout: Literal["auto", "pairs", "road_anomaly"] = "auto",
                 limit: int | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ZooError(f"{root}: not found; expected an anomaly set with original/ + labels/ or frames/")
        if layout == "auto":
            layout = "road_anomaly" if (root / "frames").is_dir() else "pairs"
        self.layout = layout
        items: list[tuple[Path, Path]] = []
        exts = (".png", ".jpg", ".jpeg", ".webp")
        if layout == "road_anomaly":
            frames = root / "frames"
            _require_dir(frames, "Road Anomaly frames/<id>.jpg + frames/<id>.labels/labels_semantic.png")
            for img in sorted(p for p in frames.iterdir() if p.is_file() and p.suffix.lower() in exts
                              and not p.name.startswith(".")):
                lab = frames / f"{img.stem}.labels" / "labels_semantic.png"
                if not lab.is_file():
                    raise ZooError(f"{lab}: label file not found for {img}")
                items.append((img, lab))
        elif layout == "pairs":
            orig, labels = root / "original", root / "labels"
            _require_dir(orig, "original/<name>.png images (Fishyscapes / repacked Road Anomaly)")
            _require_dir(labels, "labels/<name>.png with 0 normal, 1 anomaly, 255 void")
            for img in sorted(p for p in orig.iterdir() if p.is_file() and p.suffix.lower() in exts
                              and not p.name.startswith(".")):
                lab = labels / f"{img.stem}{_LABEL_EXT}"
                if not lab.is_file():
                    raise ZooError(f"{lab}: label file not found for {img}")
                items.append((img, lab))
        else:
            raise ZooError(f"layout={layout!r}: expected 'auto', 'pairs' or 'road_anomaly'")
        if not items:
            raise ZooError(f"{root}: no images found in the {layout} layout")
        self.items = items[:limit] if limit is not None else items
        self.root = root

    def __len__(self) -> int:
        return len(self.items)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, anomaly (H, W) int64 0/1/255)."""
        img_path, lab_path = self.items[i]
        img, raw = _read_image(img_path), _read_label(lab_path)
        _check_sizes(img, raw, img_path, lab_path)
        if self.layout == "road_anomaly":
            return img, (raw >= 2).astype(np.int64)
        bad = ~np.isin(raw, (0, 1, 255))
        if bad.any():
            vals = sorted(int(v) for v in np.unique(raw[bad]))[:8]
            raise ZooError(f"{lab_path}: unknown label values {vals}; expected 0 (normal), 1 (anomaly), 255 (void)")
        return img, raw.astype(np.int64)

    def get_eval(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        img, anomaly = self.read(i)
        image = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        anomaly_t = torch.from_numpy(anomaly)
        return image, torch.full_like(anomaly_t, VOID), anomaly_t


# --------------------------------------------------------------------------------------------
# the real-setting datamodule
# --------------------------------------------------------------------------------------------


class PastedEval:
    """Eval scenes with one OE object pasted into each, deterministically per index (a source
    split with "in-style" anomalies for model selection; anomaly 1 and label 255 on the object).

    Args:
        scenes: a source with ``get(i) -> (image, label)``.
        pool: an OE pool.
        seed: which object and where: image ``i`` draws from ``rng_for("pasted_eval", i, seed)``.
    """

    def __init__(self, scenes: Any, pool: Any, seed: int = 0) -> None:
        self.scenes, self.pool, self.seed = scenes, pool, int(seed)

    def __len__(self) -> int:
        return len(self.scenes)

    def get_eval(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        image, label = self.scenes.get(i)
        rng = rng_for("pasted_eval", i, self.seed)
        obj, mask = self.pool.get(int(rng.integers(len(self.pool))))
        obj, mask = crop_to_mask(obj, mask)
        H, W = label.shape
        obj, mask = fit_object(obj, mask, H, W)
        h, w = mask.shape
        top = int(rng.integers(0, H - h + 1))
        left = int(rng.integers(0, W - w + 1))
        anomaly = torch.where(label == VOID, VOID, 0).long()
        image, anomaly = paste_object(image, anomaly, obj, mask, top, left, value=1)
        label = torch.where(anomaly == 1, VOID, label)
        return image, label, anomaly


class CityscapesOE(AnomalyDataModule):
    """The real setting: Cityscapes train with COCO objects pasted per epoch; FS / Road Anomaly tests.

    Training items (MGCDA spec, "Outlier-exposure data synthesis" and "Datasets"):

    - domain 0 (``cityscapes``): every Cityscapes train image, plus ``round(oe_fraction * N)``
      composites per epoch (297 for N = 2975), each a uniformly drawn Cityscapes train image
      (never a COCO image) with one COCO object union pasted at a uniform position, label 254;
    - domain 1 (``coco``, with ``coco_domain``) **[R]**: the filtered COCO images themselves,
      label 254 on the object and 255 elsewhere (the OE source context, as in CoroCL).

    All go through hflip, scale ``{0.5..2.0}`` and a 900 crop (pad 0 / 255). Every batch holds
    ``batch_per_domain[d]`` images of each domain. Validation: Cityscapes val with one COCO object
    pasted per image (``val_paste``, fixed by ``seed``; anomaly 1 on it) for selection on a source
    split, and the trainIds for mIoU. Test: ``test_sets`` (name -> folder, layout auto-detected,
    each optional), e.g. ``{"fs_lost_and_found": ".../LostAndFound", "fs_static": ".../Static",
    "road_anomaly": ".../RoadAnomaly"}``; ``test_set_names`` lists them in order.

    Under DDP set ``trainer.use_distributed_sampler: false`` (the domain-balanced sampler shards
    by rank itself).

    Args:
        cityscapes: Cityscapes root (``leftImg8bit/``, ``gtFine/``).
        coco: COCO root (``train2017/``, ``annotations/``).
        test_sets: anomaly test sets, name -> folder.
        oe_fraction: composites per epoch as a fraction of the Cityscapes train images.
        coco_domain: the COCO images as a second domain **[R]**.
        batch_per_domain: images per domain and batch (int or one per domain).
        eval_batch_size: val/test batch size (1: the test sets differ in resolution).
        num_workers: DataLoader workers.
        hflip, scale, crop: the joint augmentation.
        coco_masks: ``auto`` / ``png`` / ``json`` (see :class:`CocoOE`).
        cache_coco_masks: in ``prepare_data``, write ``annotations/ood_seg_train2017`` once when it
            is missing (a warning and JSON rasterisation if the folder is not writable).
        min_side: COCO filter, both sides >= this.
        val_paste: paste COCO objects into Cityscapes val.
        val_limit: first N val images only (None = all 500).
        seed: the val pasting seed.
        steps_per_epoch: batches per epoch (default: the fewest any domain fills).
        mean, std: normalisation (ImageNet's, as NVIDIA's checkpoint).
    """

    def __init__(self, cityscapes: str, coco: str, test_sets: dict[str, str] | None = None,
                 oe_fraction: float = 0.1, coco_domain: bool = True, batch_per_domain: int | list[int] = 4,
                 eval_batch_size: int = 1, num_workers: int = 4, hflip: bool = True,
                 scale: list[float] | None = None, crop: list[int] | None = None,
                 coco_masks: Literal["auto", "png", "json"] = "auto", cache_coco_masks: bool = True,
                 min_side: int = 480, val_paste: bool = True, val_limit: int | None = None, seed: int = 0,
                 steps_per_epoch: int | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None) -> None:
        check_bool("coco_domain", coco_domain)
        super().__init__(batch_per_domain, eval_batch_size, num_workers, hflip,
                         [0.5, 2.0] if scale is None else scale, [900, 900] if crop is None else crop, mean, std,
                         steps_per_epoch, num_domains=2 if coco_domain else 1)
        self.save_hyperparameters()
        for name, v in (("cityscapes", cityscapes), ("coco", coco)):
            if not isinstance(v, str) or not v:
                raise ZooError(f"{arg(name)} must be a folder path, got {v!r}")
        check_prob("oe_fraction", oe_fraction)
        if coco_masks not in ("auto", "png", "json"):
            raise ZooError(f"{arg('coco_masks')} must be 'auto', 'png' or 'json', got {coco_masks!r}")
        for name, v in (("cache_coco_masks", cache_coco_masks), ("val_paste", val_paste)):
            check_bool(name, v)
        check_int("min_side", min_side, 1)
        check_int("seed", seed, 0)
        if val_limit is not None:
            check_int("val_limit", val_limit, 1)
        test_sets = dict(test_sets or {})
        for name, path in test_sets.items():
            if not isinstance(path, str) or not path:
                raise ZooError(f"{arg('test_sets')}.{name} must be a folder path, got {path!r}")
        self.cityscapes, self.coco, self.test_sets = cityscapes, coco, test_sets
        self.oe_fraction, self.coco_domain = float(oe_fraction), coco_domain
        self.coco_masks, self.cache_coco_masks, self.min_side = coco_masks, cache_coco_masks, min_side
        self.val_paste, self.val_limit, self.seed = val_paste, val_limit, seed
        self.class_names = list(CITYSCAPES_CLASSES)
        self.domain_names = ["cityscapes", "coco"] if coco_domain else ["cityscapes"]
        self.val_set_names = ["cityscapes_val"]
        self.test_set_names = list(test_sets)

    def _eval_size(self) -> tuple[int, int]:
        return 1024, 2048

    def prepare_data(self) -> None:
        """Write the COCO OE masks once (``cache_coco_masks`` and ``coco_masks`` in auto/png)."""
        mask_dir = Path(self.coco) / "annotations" / COCO_MASK_DIR
        if not self.cache_coco_masks or self.coco_masks == "json" or mask_dir.is_dir():
            return
        if not os.access(mask_dir.parent, os.W_OK):
            warnings.warn(f"{mask_dir.parent} is not writable: OE masks are rasterised from the JSON on the fly",
                          stacklevel=2)
            return
        write_ood_masks(self.coco, mask_dir, min_side=self.min_side)

    def _build(self) -> dict[str, Any]:
        train_cs = CityscapesSeg(self.cityscapes, "train")
        pool = CocoOE(self.coco, masks=self.coco_masks, min_side=self.min_side)
        parts: list[Any] = [ScenePart(train_cs, 0)]
        n_comp = round(self.oe_fraction * len(train_cs))
        if n_comp:
            parts.append(ScenePart(train_cs, 0, oe=pool, oe_prob=1.0, oe_objects=(1, 1), length=n_comp,
                                   random_background=True))
        if self.coco_domain:
            parts.append(OEImagePart(pool, 1))
        train = AnomalyTrainSet(parts, hflip=self.hflip, scale=self.scale, crop=self.crop, mean=self.mean,
                                std=self.std)
        val_cs = CityscapesSeg(self.cityscapes, "val", limit=self.val_limit)
        val_src = PastedEval(val_cs, pool, self.seed) if self.val_paste else val_cs
        val = AnomalyEvalSet(val_src, 0, self.mean, self.std)
        tests = {name: AnomalyEvalSet(AnomalyFolder(path), UNSEEN_DOMAIN, self.mean, self.std)
                 for name, path in self.test_sets.items()}
        return {"train": train, "val": val, "test": tests}

    def test_dataloader(self) -> list:
        if not self.test_set_names:
            raise ZooError(f"{arg('test_sets')} is empty: give the anomaly test sets as name -> folder")
        return super().test_dataloader()
