"""The cached tiny CLIP of the embedded worlds: built once by a zoo command, then reused.

``--model.clip_weights zoo:shapes_b2n`` (DePT's default) resolves to
``$ZOO_CACHE/clip/<arch>-shapes_b2n-<hash>.pt``, a plain open_clip state dict. When the file is
absent it is trained first with ``configs/clip/default.yaml`` (exactly what
``python -m zoo.fit clip`` runs), with a progress bar and a message saying so. The hash covers
the config file, so changing the recipe gives a new cache entry instead of a stale one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import torch

from zoo.core.errors import ZooError
from zoo.core.io import atomic_save, cache_root

PREFIX = "zoo:"
WORLDS = {"shapes_b2n": "configs/clip/default.yaml"}


def _config_path(world: str) -> Path:
    from zoo.core.registry import REPO_ROOT

    if world not in WORLDS:
        raise ZooError(f"unknown embedded CLIP {PREFIX}{world}; known: {', '.join(PREFIX + w for w in WORLDS)}")
    return REPO_ROOT / WORLDS[world]


def cached_clip_path(clip_model: str, world: str = "shapes_b2n") -> Path:
    """Where the tiny CLIP ``clip_model`` pretrained on ``world`` is cached."""
    cfg = _config_path(world)
    digest = hashlib.sha1(f"{clip_model}\n{cfg.read_text()}".encode()).hexdigest()[:10]
    return cache_root() / "clip" / f"{clip_model}-{world}-{digest}.pt"


def resolve_clip_weights(clip_model: str, weights: str | None) -> str | None:
    """``zoo:<world>`` -> the cached tiny CLIP file (built if absent); other values unchanged."""
    if weights is None or not weights.startswith(PREFIX):
        return weights
    return str(ensure_tiny_clip(clip_model, weights[len(PREFIX):]))


@contextlib.contextmanager
def _rng_preserved():
    """Run a nested training without touching the caller's seeded RNG streams (python, numpy,
    torch CPU/CUDA, Lightning's PL_GLOBAL_SEED): a run that first builds the tiny CLIP must
    initialise its own parameters exactly like a run that finds it cached."""
    import random

    import numpy as np

    py, npy, env = random.getstate(), np.random.get_state(), os.environ.get("PL_GLOBAL_SEED")
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)
            if env is None:
                os.environ.pop("PL_GLOBAL_SEED", None)
            else:
                os.environ["PL_GLOBAL_SEED"] = env


def ensure_tiny_clip(clip_model: str = "zoo-tiny-clip", world: str = "shapes_b2n",
                     extra_args: list[str] | None = None) -> Path:
    """Return the cached tiny CLIP, training it once with the world's CLIP config if absent.

    Args:
        clip_model: the zoo CLIP architecture (``zoo-tiny-clip``).
        world: the embedded world it is pretrained on.
        extra_args: extra ``zoo.fit`` arguments (tests shorten the run with them; a non-empty
            value bypasses the cache).
    """
    path = cached_clip_path(clip_model, world)
    if path.is_file() and not extra_args:
        return path
    from zoo.core import registry
    from zoo.core.training import build_cli

    cfg = _config_path(world)
    print(f"zoo: no cached {clip_model} for the {world} world; training it once with {cfg.relative_to(cfg.parents[2])} "
          f"(= python -m zoo.fit clip; ~7 min on 2 CPU cores) -> {path}", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _rng_preserved(), tempfile.TemporaryDirectory(dir=path.parent, prefix=".train-") as tmp:
        args = ["--config", str(cfg), "--model.clip_model", clip_model, "--trainer.logger=false",
                "--run_dir", tmp, *(extra_args or [])]
        cli = build_cli(registry.get("clip"), args)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        if cli.trainer.interrupted:
            raise ZooError(f"training of the tiny CLIP was interrupted; nothing cached at {path}")
        out = path if not extra_args else Path(tmp).parent / f"{path.stem}-custom.pt"
        cli.model.export(str(out))
    zs = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/zs_")}
    if zs:
        print("zoo: tiny CLIP zero-shot accuracy " + ", ".join(f"{k[7:]} {v:.3f}" for k, v in sorted(zs.items())),
              file=sys.stderr, flush=True)
    return out
