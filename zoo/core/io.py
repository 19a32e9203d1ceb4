"""The cache root and atomic writes, shared by every world, cache and report.

Nothing the zoo writes is ever left half-written: files go to a temporary sibling and are moved
into place with ``os.replace``; folders (a report, a world) are filled in a temporary folder and
then moved in at once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def resolve_repo_path(path: str | os.PathLike) -> Path:
    """A config path: as given when absolute or present relative to the working directory, else
    relative to the repository root (configs name repo files such as a world's vocabulary)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    from zoo.core.registry import REPO_ROOT

    return REPO_ROOT / p


def cache_root() -> Path:
    """``$ZOO_CACHE`` when set and non-empty, else ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a binary temporary sibling of ``path``, fsync it, then ``os.replace``
    it onto ``path`` (parents are created). On any error the temporary file is removed and
    ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 string."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` through :func:`atomic_write`."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def write_folder_atomically(out: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to fill a temporary folder inside ``out``, then move its files into
    ``out`` (each with ``os.replace``). If ``write`` fails nothing in ``out`` changes, so an
    earlier report is never replaced by a partial one."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        write(tmp)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_folder_atomically(root: str | os.PathLike, build: Callable[[Path], None],
                            complete: Callable[[Path], bool]) -> Path:
    """Build the folder ``root`` once: ``build(tmp)`` fills a temporary sibling that is renamed to
    ``root``. A ``root`` that exists but is not ``complete`` (left by a killed run) is moved aside
    and rebuilt; losing a race to another process that completed ``root`` first is not an error.
    """
    root = Path(root)
    if complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists():
        trash = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.broken-"))
        try:
            os.rename(root, trash / "old")
        except OSError:
            pass
        shutil.rmtree(trash, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        build(tmp)
        try:
            os.rename(tmp, root)
        except OSError:
            if not complete(root):  # not a lost race: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
