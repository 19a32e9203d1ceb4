"""The on-disk cache of RoadWorld-64, and its preview PNG.

:func:`load_world` caches each split as ``<root>/roadworld64-<hash>/<split>-n<N>.npz``. The folder
hash covers :data:`~datamodules.anomaly.world.config.WORLD_VERSION`, the seed and every knob that
changes pixels (:meth:`~datamodules.anomaly.world.config.WorldConfig.identity`, the styles
resolved); the file name holds the size. A cached split with at least ``N`` samples serves any
smaller request (sample ``i`` never depends on the split size). Files are written atomically
(temporary file + ``os.replace``); a corrupt file is regenerated with a warning.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.anomaly.world.config import (
    CLASS_NAMES,
    OE_LABEL,
    SOURCE_STYLES,
    WORLD_NAME,
    WORLD_VERSION,
    WorldConfig,
    split_names,
    split_style,
)
from datamodules.anomaly.world.render import generate_split
from datamodules.common.world import world_key
from zoo.core.io import atomic_write, atomic_write_text

__all__ = ["load_world", "save_preview", "split_size", "world_dir"]

#: Arrays of each kind of split (the OE bank vs scenes).
_KEYS = {"oe": ("patches", "masks"), "scene": ("images", "labels", "anomaly")}


def world_dir(root: str | Path, seed: int = 0, cfg: WorldConfig | None = None) -> Path:
    """Cache folder ``<root>/roadworld64-<hash>`` for (version, seed, every pixel-changing knob)."""
    cfg = cfg or WorldConfig()
    return Path(root) / world_key(WORLD_NAME, {"version": WORLD_VERSION, "seed": int(seed), "cfg": cfg.identity()})


def split_size(name: str, cfg: WorldConfig) -> int:
    """The configured number of samples of split ``name`` (``n_train``, ``n_val``, ``n_test``, ``n_oe``)."""
    split_style(name)
    kind = "oe" if name == "oe" else name.split("_", 1)[0]
    return int(getattr(cfg, f"n_{kind}"))


def _shape_ok(name: str, data: dict[str, np.ndarray], n: int, cfg: WorldConfig) -> bool:
    if name == "oe":
        s = cfg.oe_size_max
        return data["patches"].shape == (n, s, s, 3) and data["masks"].shape == (n, s, s)
    hw = (cfg.height, cfg.width)
    return (data["images"].shape == (n, *hw, 3) and data["labels"].shape == (n, *hw)
            and data["anomaly"].shape == (n, *hw))


def _try_load(path: Path, name: str, n: int, cfg: WorldConfig) -> dict[str, np.ndarray] | None:
    keys = _KEYS["oe" if name == "oe" else "scene"]
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k][:n] for k in keys}
        if not _shape_ok(name, data, n, cfg):
            raise ValueError("unexpected array shapes " + str({k: v.shape for k, v in data.items()}))
    except Exception as e:  # truncated zip, bad CRC, missing key, wrong shape...
        warnings.warn(f"corrupt world cache {path} ({type(e).__name__}: {e}); regenerating", stacklevel=3)
        return None
    return data


def _cached(d: Path, name: str, n: int) -> list[Path]:
    """Cached files of split ``name`` holding at least ``n`` samples, the smallest first."""
    found = []
    for p in d.glob(f"{name}-n*.npz"):
        m = re.fullmatch(rf"{re.escape(name)}-n(\d+)\.npz", p.name)
        if m and int(m.group(1)) >= n:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def load_world(root: str | Path, seed: int = 0, cfg: WorldConfig | None = None,
               splits: Sequence[str] | None = None, sizes: dict[str, int] | None = None,
               progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Load splits from the cache, generating (and caching) what is missing.

    Args:
        root: cache root; files go to ``world_dir(root, seed, cfg)/<split>-n<N>.npz``.
        seed: world seed.
        cfg: world knobs; defaults to ``WorldConfig()``.
        splits: split names (``train_S1`` ... ``val_S3``, ``test_T``, ``oe``); default every split
            of the three source styles.
        sizes: per-split sizes overriding the config's ``n_train``/``n_val``/``n_test``/``n_oe``.
        progress: a tqdm bar while generating.

    Returns:
        ``{split: arrays}`` as :func:`~datamodules.anomaly.world.render.generate_split` returns them.
    """
    cfg = cfg or WorldConfig()
    names = list(split_names(SOURCE_STYLES)) if splits is None else list(splits)
    sizes = dict(sizes or {})
    for name in names + list(sizes):
        split_style(name)
    d = world_dir(root, seed, cfg)
    d.mkdir(parents=True, exist_ok=True)
    meta = d / "config.json"
    if not meta.exists():
        atomic_write_text(meta, json.dumps({"world": WORLD_NAME, "version": WORLD_VERSION, "seed": int(seed),
                                            "cfg": cfg.identity()}, indent=2))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        n = int(sizes.get(name, split_size(name, cfg)))
        data = None
        for path in _cached(d, name, n):
            data = _try_load(path, name, n, cfg)
            if data is not None:
                break
        if data is None:
            data = generate_split(name, n, seed, cfg, progress=progress)
            arrays = dict(data)
            atomic_write(d / f"{name}-n{n}.npz", lambda f: np.savez(f, **arrays))
        out[name] = data
    return out


def save_preview(path: str | Path, seed: int = 0, cfg: WorldConfig | None = None, per_row: int = 6,
                 zoom: int = 2) -> Path:
    """A PNG grid for the model card, rendered in memory (no cache).

    Rows: training images of each source style with OE proxies pasted (outlined in white on the
    label row), val images of S1 with their anomalies, the target style T, and colour-coded label
    maps (anomalies red, OE proxies white, void black).

    Args:
        path: output PNG.
        seed: world seed.
        cfg: world knobs.
        per_row: images per row.
        zoom: nearest-neighbour upscaling.

    Returns:
        The written path.
    """
    import torch
    from PIL import Image, ImageDraw

    from datamodules.anomaly.pasting import paste_objects

    cfg = cfg or WorldConfig()
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(CLASS_NAMES)] = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180),
                                   (0, 0, 142)]
    palette[OE_LABEL] = (255, 255, 255)
    bank = generate_split("oe", 4 * per_row, seed, cfg)
    g = torch.Generator().manual_seed(seed)
    rows: list[tuple[str, np.ndarray]] = []
    for style in SOURCE_STYLES:
        data = generate_split(f"train_{style}", per_row, seed, cfg)
        imgs, labs = [], []
        for i in range(per_row):
            img = torch.from_numpy(data["images"][i]).permute(2, 0, 1).float() / 255.0
            lab = torch.from_numpy(data["labels"][i]).long()
            objs = [(torch.from_numpy(bank["patches"][k]).permute(2, 0, 1).float() / 255.0,
                     torch.from_numpy(bank["masks"][k])) for k in (2 * i, 2 * i + 1)]
            img, lab = paste_objects(img, lab, objs, generator=g)
            imgs.append((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            labs.append(palette[lab.numpy()])
        rows += [(f"train {style} + OE", np.concatenate(imgs, 1)), ("labels", np.concatenate(labs, 1))]
    for name in ("val_S1", "test_T"):
        data = generate_split(name, per_row, seed, cfg)
        vis = palette[data["labels"]]
        vis[data["anomaly"] == 1] = (255, 0, 0)
        rows += [(name.replace("_", " "), np.concatenate(list(data["images"]), 1)),
                 ("labels", np.concatenate(list(vis), 1))]
    label_w, pad = 90, 4
    h, w = cfg.height * zoom, cfg.width * zoom * per_row
    canvas = Image.new("RGB", (label_w + w + pad, len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (title, arr) in enumerate(rows):
        top = pad + r * (h + pad)
        draw.text((4, top + h // 2 - 6), title, fill="black")
        canvas.paste(Image.fromarray(arr).resize((w, h), Image.NEAREST), (label_w, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
