"""Readers of the real vision-language data in their distributed layouts (PTA spec, "Datasets").

- :func:`read_karpathy`: ``dataset_coco.json`` / ``dataset_flickr30k.json`` (Karpathy splits).
- :func:`read_coco_instances`: COCO ``instances_*.json`` boxes (``[x, y, w, h]`` -> ``[x1, y1, x2, y2]``).
- :func:`mention_indices` / :func:`attach_coco_boxes`: which objects a caption mentions, and boxes on
  a seeded fraction of the images.
- :func:`read_visual_genome`: ``image_data.json``, ``objects.json`` (``x, y, w, h``),
  ``region_descriptions.json`` (``x, y, width, height``), images in ``VG_100K/`` or ``VG_100K_2/``.
- :func:`read_albef_json`: an ALBEF-style list of ``{"image", "caption"}``.

Every bad input is a one-line :class:`~zoo.core.errors.ZooError` naming the file: a missing file or
key, a caption whose image file does not exist, an empty caption, a box with no area or wholly
outside its image (boxes partly outside are clipped).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datamodules.vlp.records import ImageRecord, VLPObject
from zoo.core.errors import ZooError

#: COCO category -> extra words a caption may use for it (besides the name and its plural).
COCO_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("man", "men", "woman", "women", "people", "boy", "boys", "girl", "girls", "child", "children",
               "kid", "kids", "player", "players", "guy", "guys", "lady", "ladies", "person", "persons"),
    "bicycle": ("bike", "bikes"), "motorcycle": ("motorbike", "motorbikes"), "airplane": ("plane", "planes", "jet",
                                                                                            "jets", "aircraft"),
    "car": ("automobile", "automobiles"), "tv": ("television", "televisions"), "couch": ("sofa", "sofas"),
    "dining table": ("table", "tables"), "cell phone": ("phone", "phones", "cellphone", "cellphones"),
    "laptop": ("computer",), "hot dog": ("hotdog", "hotdogs"), "donut": ("doughnut", "doughnuts"),
}
_WORD = re.compile(r"[a-z]+")


def _load_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ZooError(f"{p}: file not found")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ZooError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _need(obj: dict, key: str, path: Path, what: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ZooError(f"{path}: {what} has no {key!r} key")
    return obj[key]


def _caption(text: Any, path: Path, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ZooError(f"{path}: empty caption for {where}")
    return text.strip()


def _image(path: Path, src: Path, where: str) -> str:
    if not path.is_file():
        raise ZooError(f"{src}: {where} refers to a missing image file {path}")
    return str(path)


def xywh_box(box: Sequence[float], width: float, height: float, path: Path, where: str) -> tuple[float, ...]:
    """``[x, y, w, h]`` -> ``[x1, y1, x2, y2]`` clipped to the image; an empty or outside box is an error."""
    if len(box) != 4:
        raise ZooError(f"{path}: {where}: a box needs 4 numbers, got {list(box)}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ZooError(f"{path}: {where}: box {list(box)} has no area (w and h must be > 0)")
    x1, y1, x2, y2 = max(0.0, x), max(0.0, y), x + w, y + h
    if width > 0 and height > 0:
        x2, y2 = min(float(width), x2), min(float(height), y2)
    if x2 <= x1 or y2 <= y1:
        raise ZooError(f"{path}: {where}: box {list(box)} lies outside the {width}x{height} image")
    return (x1, y1, x2, y2)


def read_karpathy(json_path: str | Path, image_root: str | Path, split: str | Sequence[str],
                  restval_to_train: bool = True) -> list[ImageRecord]:
    """Records of one Karpathy split (``train`` also takes ``restval`` for COCO unless
    ``restval_to_train`` is false; pass a list for several splits).

    Image path: ``image_root/filepath/filename`` (COCO) or ``image_root/filename`` (Flickr30k).
    ``image_id``: ``cocoid`` when present, else ``imgid``.
    """
    path = Path(json_path)
    data = _load_json(path)
    images = _need(data, "images", path, "the file")
    splits = {split} if isinstance(split, str) else set(split)
    if isinstance(split, str) and split == "train" and restval_to_train:
        splits.add("restval")
    root = Path(image_root)
    out = []
    for i, im in enumerate(images):
        if _need(im, "split", path, f"image #{i}") not in splits:
            continue
        name = _need(im, "filename", path, f"image #{i}")
        img = _image(root / im.get("filepath", "") / name, path, f"image {name!r}")
        sents = _need(im, "sentences", path, f"image {name!r}")
        caps = [_caption(_need(s, "raw", path, f"a sentence of {name!r}"), path, f"image {name!r}") for s in sents]
        if not caps:
            raise ZooError(f"{path}: image {name!r} has no sentences")
        out.append(ImageRecord(img, int(im.get("cocoid", im.get("imgid", i))), caps))
    return out


def read_coco_instances(instances_json: str | Path) -> dict[int, tuple[int, int, list[VLPObject]]]:
    """COCO image id -> ``(width, height, objects)``; ``iscrowd`` annotations are skipped (a crowd
    box covers many objects)."""
    path = Path(instances_json)
    data = _load_json(path)
    cats = {int(_need(c, "id", path, "a category")): _need(c, "name", path, "a category")
            for c in _need(data, "categories", path, "the file")}
    out: dict[int, tuple[int, int, list[VLPObject]]] = {}
    for im in _need(data, "images", path, "the file"):
        out[int(_need(im, "id", path, "an image"))] = (int(im.get("width", 0)), int(im.get("height", 0)), [])
    for a in _need(data, "annotations", path, "the file"):
        if a.get("iscrowd", 0):
            continue
        iid = int(_need(a, "image_id", path, "an annotation"))
        if iid not in out:
            raise ZooError(f"{path}: annotation {a.get('id')} refers to unknown image {iid}")
        cid = int(_need(a, "category_id", path, f"annotation {a.get('id')}"))
        if cid not in cats:
            raise ZooError(f"{path}: annotation {a.get('id')} has unknown category {cid}")
        w, h, objs = out[iid]
        objs.append(VLPObject(cats[cid], xywh_box(_need(a, "bbox", path, "an annotation"), w, h, path,
                                                   f"image {iid}, annotation {a.get('id')}")))
    return out


def _forms(name: str, synonyms: bool) -> set[tuple[str, ...]]:
    words = tuple(name.lower().split())
    last = words[-1]
    plurals = {last + "s", last + "es"} | ({last[:-1] + "ies"} if last.endswith("y") else set())
    forms = {words} | {words[:-1] + (p,) for p in plurals}
    if synonyms:
        forms |= {tuple(s.split()) for s in COCO_SYNONYMS.get(name, ())}
    return forms


def mention_indices(caption: str, objects: Sequence[VLPObject], synonyms: bool = True) -> list[int]:
    """Ascending indices of the objects whose name (a plural, or with ``synonyms`` a word of
    :data:`COCO_SYNONYMS`) occurs in the caption as whole lower-cased words; multi-word names match
    consecutive words. Every object of a matched name counts."""
    toks = _WORD.findall(caption.lower())
    grams = {tuple(toks[i:i + n]) for n in (1, 2, 3) for i in range(len(toks) - n + 1)}
    hit: dict[str, bool] = {}
    out = []
    for i, o in enumerate(objects):
        if o.name not in hit:
            hit[o.name] = bool(_forms(o.name, synonyms) & grams)
        if hit[o.name]:
            out.append(i)
    return out


def _keep(seed: int, image_id: int, fraction: float) -> bool:
    """Stable per-image coin: the same images keep their boxes whatever the record order."""
    h = hashlib.sha1(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def attach_coco_boxes(records: list[ImageRecord], instances: dict[int, tuple[int, int, list[VLPObject]]],
                      fraction: float, seed: int = 0) -> list[ImageRecord]:
    """Give a seeded ``fraction`` of the records that have instances their objects and mentions
    (in place; returns ``records``)."""
    if not 0 <= fraction <= 1:
        raise ZooError(f"box fraction must be in [0, 1], got {fraction}")
    for rec in records:
        inst = instances.get(rec.image_id)
        if inst is None or not inst[2] or not _keep(seed, rec.image_id, fraction):
            continue
        rec.width, rec.height = inst[0], inst[1]
        rec.objects = list(inst[2])
        rec.mentions = [mention_indices(c, rec.objects) for c in rec.captions]
    return records


def read_visual_genome(root: str | Path, limit: int | None = None) -> list[ImageRecord]:
    """One record per VG image with region descriptions: each region phrase is a caption; its
    mentions are the image's objects named in the phrase (names and plurals, no synonyms) plus the
    region's own box, an extra object ``"region:<id>"`` that only that caption mentions."""
    root = Path(root)
    meta_path, obj_path, reg_path = root / "image_data.json", root / "objects.json", root / "region_descriptions.json"
    meta = {int(m.get("image_id", m.get("id"))): m for m in _load_json(meta_path)}
    objects: dict[int, list[VLPObject]] = {}
    for entry in _load_json(obj_path):
        iid = int(entry.get("image_id", entry.get("id")))
        w, h = meta.get(iid, {}).get("width", 0), meta.get(iid, {}).get("height", 0)
        objs = []
        for o in _need(entry, "objects", obj_path, f"image {iid}"):
            names = o.get("names") or ([o["name"]] if "name" in o else [])
            if not names:
                raise ZooError(f"{obj_path}: image {iid}: object {o.get('object_id')} has no name")
            box = [_need(o, k, obj_path, f"image {iid} object") for k in ("x", "y", "w", "h")]
            objs.append(VLPObject(str(names[0]).strip().lower(), xywh_box(box, w, h, obj_path, f"image {iid}")))
        objects[iid] = objs
    out = []
    for entry in _load_json(reg_path):
        iid = int(entry.get("id", entry.get("image_id")))
        regions = _need(entry, "regions", reg_path, f"image {iid}")
        if not regions:
            continue
        m = meta.get(iid)
        if m is None:
            raise ZooError(f"{reg_path}: image {iid} is not in {meta_path}")
        img = next((root / d / f"{iid}.jpg" for d in ("VG_100K", "VG_100K_2") if (root / d / f"{iid}.jpg").is_file()),
                   None)
        if img is None:
            raise ZooError(f"{reg_path}: image {iid} has no file {iid}.jpg in {root}/VG_100K or VG_100K_2")
        objs = list(objects.get(iid, []))
        caps, mentions = [], []
        for r in regions:
            cap = _caption(r.get("phrase"), reg_path, f"image {iid}, region {r.get('region_id')}")
            box = [_need(r, k, reg_path, f"image {iid} region") for k in ("x", "y", "width", "height")]
            named = mention_indices(cap, objs[:len(objects.get(iid, []))], synonyms=False)
            objs.append(VLPObject(f"region:{r.get('region_id')}", xywh_box(box, m.get("width", 0), m.get("height", 0),
                                                                           reg_path, f"image {iid}")))
            caps.append(cap)
            mentions.append(named + [len(objs) - 1])
        out.append(ImageRecord(str(img), iid, caps, objs, mentions, int(m.get("width", 0)), int(m.get("height", 0))))
        if limit is not None and len(out) >= limit:
            break
    return out


def read_albef_json(json_path: str | Path, image_root: str | Path) -> list[ImageRecord]:
    """An ALBEF-style list ``[{"image": path, "caption": str | [str]}]``: one record per image (in order
    of first appearance, ``image_id`` = that order), its captions in file order."""
    path = Path(json_path)
    items = _load_json(path)
    if not isinstance(items, list):
        raise ZooError(f"{path}: expected a JSON list of {{'image', 'caption'}} objects")
    by_image: dict[str, ImageRecord] = {}
    for i, it in enumerate(items):
        rel = _need(it, "image", path, f"item #{i}")
        caps = _need(it, "caption", path, f"item #{i}")
        caps = caps if isinstance(caps, list) else [caps]
        if rel not in by_image:
            by_image[rel] = ImageRecord(_image(Path(image_root) / rel, path, f"item #{i}"), len(by_image), [])
        by_image[rel].captions += [_caption(c, path, f"item #{i} ({rel})") for c in caps]
    return list(by_image.values())
