"""The on-disk cache of the arithmetic world.

:func:`build_world` writes the whole world once into ``<worlds root>/arith_world-<hash>/``; the
hash covers :data:`~datamodules.reasoning.world.config.WORLD_VERSION` and every
:class:`~datamodules.reasoning.world.config.ArithWorldConfig` knob (seed included), so any change
gives a new folder. The folder is filled in a temporary sibling and renamed into place
(:func:`zoo.core.io.build_folder_atomically`); a complete folder is reused, an incomplete one (a
killed run) is rebuilt.

Files (zoo records, :mod:`datamodules.reasoning.records`):

- ``raw_train.jsonl``: training questions with the teacher's raw candidates (slips included);
  run :func:`datamodules.reasoning.rationales.prepare_rationales` on it.
- ``dev.jsonl``, ``test.jsonl``, ``ood_steps.jsonl``, ``ood_numbers.jsonl``: held-out questions,
  two gold rationales each.
- ``corpus.txt``: every question and rationale text, one per line (for the tokenizer trainer).
- ``world.json``: the world name, version, config and counts; written last, so its presence marks
  a complete folder.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datamodules.common.world import world_key, worlds_root
from datamodules.reasoning.records import read_jsonl, write_jsonl
from datamodules.reasoning.world.config import EVAL_SPLITS, SPLITS, WORLD_NAME, WORLD_VERSION, ArithWorldConfig
from datamodules.reasoning.world.generate import generate_world
from zoo.core.errors import ZooError
from zoo.core.io import build_folder_atomically

__all__ = ["FILES", "build_world", "load_split", "world_dir"]

#: split -> file name in the world folder.
FILES: dict[str, str] = {
    "train": "raw_train.jsonl",
    "dev": "dev.jsonl",
    "test": "test.jsonl",
    "ood_steps": "ood_steps.jsonl",
    "ood_numbers": "ood_numbers.jsonl",
}


def world_dir(cfg: ArithWorldConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """The folder ``<worlds_root(cache_dir)>/arith_world-<hash of (version, every knob)>``."""
    cfg = cfg or ArithWorldConfig()
    return worlds_root(cache_dir) / world_key(WORLD_NAME, {"version": WORLD_VERSION, "cfg": asdict(cfg)})


def _complete(root: Path) -> bool:
    return (root / "world.json").is_file() and all((root / f).is_file() for f in (*FILES.values(), "corpus.txt"))


def _counts(world: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    train = world["train"]
    slipped = sum(sum(r["meta"]["slipped"]) for r in train)
    n_cands = sum(len(r["rationales"]) for r in train)
    styles = Counter(s for r in train for s in r["meta"]["styles"])
    return {
        "questions": {split: len(world[split]) for split in SPLITS},
        "raw_train_rationales": n_cands,
        "slipped_candidates": slipped,
        "slip_rate": slipped / n_cands if n_cands else 0.0,
        "train_styles": dict(sorted(styles.items())),
        "eval_styles": {split: dict(sorted(Counter(s for r in world[split] for s in r["meta"]["styles"]).items()))
                        for split in EVAL_SPLITS},
    }


def _write(tmp: Path, cfg: ArithWorldConfig) -> None:
    world = generate_world(cfg)
    for split, name in FILES.items():
        write_jsonl(tmp / name, world[split])
    lines = [text for split in SPLITS for r in world[split] for text in (r["question"], *r["rationales"])]
    (tmp / "corpus.txt").write_text("".join(t + "\n" for t in lines), encoding="utf-8")
    meta = {"world": WORLD_NAME, "version": WORLD_VERSION, "config": asdict(cfg), "files": FILES,
            "counts": _counts(world)}
    (tmp / "world.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def build_world(cfg: ArithWorldConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """Generate (once) and return the world folder of ``cfg``.

    Args:
        cfg: world knobs; defaults to ``ArithWorldConfig()``.
        cache_dir: cache root (the worlds go to ``<cache_dir>/worlds``); None uses the zoo cache
            root (``$ZOO_CACHE`` or ``~/.cache/zoo``).

    Returns:
        The folder holding the files listed in the module docstring.
    """
    cfg = cfg or ArithWorldConfig()
    return build_folder_atomically(world_dir(cfg, cache_dir), lambda tmp: _write(tmp, cfg), _complete)


def load_split(root: str | Path, split: str) -> list[dict[str, Any]]:
    """The records of ``split`` (a key of :data:`FILES`) from a world folder."""
    if split not in FILES:
        raise ZooError(f"unknown arith-world split {split!r}; expected one of {list(FILES)}")
    return read_jsonl(Path(root) / FILES[split])
