"""The text half of a checkpoint's input contract: a tokenizer folder, embedded or referenced.

A language model's checkpoint must say how its inputs are tokenised. :func:`tokenizer_contract`
records a local tokenizer folder (``tokenizer.json``, ``tokenizer_config.json``, ...) either
*embedded* (the files' bytes, for small tokenizers such as the zoo's own) or *referenced* (its path),
always with a SHA-256 fingerprint over the file names and contents. :func:`restore_tokenizer`
gives back a folder that ``from_pretrained(folder, local_files_only=True)`` can read: the
embedded files are written once into the cache, and a referenced folder is checked against the
fingerprint (a changed or missing tokenizer is a one-line error, never a silent mismatch).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from zoo.core.errors import ZooError
from zoo.core.io import atomic_write, cache_root

#: files larger than this are referenced, not embedded, unless the caller forces it.
EMBED_LIMIT = 8 * 2**20


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ZooError(f"{folder}: tokenizer folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ZooError(f"{folder}: tokenizer folder is empty")
    return files


def fingerprint_folder(folder: str | os.PathLike) -> str:
    """SHA-256 over the sorted (name, contents) of the folder's files (hidden files excluded)."""
    h = hashlib.sha256()
    for p in _files(Path(folder)):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def tokenizer_contract(folder: str | os.PathLike, embed: bool | None = None) -> dict[str, Any]:
    """The ``inputs`` block of a text model: ``{"kind": "text", "tokenizer": {...}}``.

    Args:
        folder: a local tokenizer folder.
        embed: store the files' bytes in the checkpoint (default: when they total at most
            :data:`EMBED_LIMIT` bytes); otherwise store the folder's absolute path.
    """
    folder = Path(folder)
    files = _files(folder)
    fp = fingerprint_folder(folder)
    if embed is None:
        embed = sum(p.stat().st_size for p in files) <= EMBED_LIMIT
    tok: dict[str, Any] = {"fingerprint": fp}
    if embed:
        tok["files"] = {p.name: p.read_bytes() for p in files}
    else:
        tok["path"] = str(folder.resolve())
    return {"kind": "text", "tokenizer": tok}


def restore_tokenizer(inputs: dict[str, Any]) -> Path:
    """A local folder holding the contract's tokenizer (see module docstring)."""
    tok = (inputs or {}).get("tokenizer")
    if not tok or "fingerprint" not in tok:
        raise ZooError("checkpoint has no tokenizer in its input contract")
    fp = tok["fingerprint"]
    if "files" in tok:
        folder = cache_root() / "tokenizers" / fp[:16]
        for name, data in tok["files"].items():
            target = folder / name
            if not target.is_file() or target.read_bytes() != data:
                atomic_write(target, lambda f, d=data: f.write(d))
        return folder
    folder = Path(tok["path"])
    got = fingerprint_folder(folder)
    if got != fp:
        raise ZooError(f"{folder}: tokenizer differs from the one the checkpoint was trained with "
                       f"(fingerprint {got[:12]} vs {fp[:12]})")
    return folder
