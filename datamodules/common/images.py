"""Reading images from disk, shared by every data family and by ``zoo.predict``."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from zoo.core.errors import ZooError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Suffixes (compared lower-case) that the flat-folder glob picks up."""


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file and convert it to RGB.

    Raises:
        ZooError: ``"<file>: cannot read image (<PIL reason>)"`` for unreadable/corrupt files.
    """
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() forces a full decode, so truncation shows here
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError
        reason = str(e).strip() or type(e).__name__
        raise ZooError(f"{path}: cannot read image ({reason})") from e


def list_images(root: str | os.PathLike[str]) -> list[str]:
    """All image files under ``root``, recursively, as sorted POSIX paths relative to ``root``.

    Symlinked sub-directories are followed (each real directory once). Hidden files and
    directories are skipped. Extensions are matched case-insensitively against
    :data:`IMAGE_EXTENSIONS`.
    """
    root = Path(root)
    out: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for fn in filenames:
            if fn.startswith("."):
                continue
            if os.path.splitext(fn)[1].lower() in IMAGE_EXTENSIONS:
                out.append((rel_dir / fn).as_posix())
    out.sort()
    return out
