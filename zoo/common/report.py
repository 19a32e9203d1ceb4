"""Helpers shared by the bench reports: number formatting, mean ± std, environment, atomic write."""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def fmt(m: float | None, s: float | None = None, digits: int = 2) -> str:
    """``m`` (or ``m ± s``) with ``digits`` decimals; ``-`` for missing/NaN."""
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value, NaN for none) ignoring NaNs."""
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def environment(device: torch.device) -> dict[str, Any]:
    """Conditions of a measurement (recorded in every report, as timm's benchmark does)."""
    import lightning

    return {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "lightning": lightning.__version__, "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads()}


def write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to fill a temporary folder, then move its files into ``out`` at once
    (an earlier report is never replaced by a partial one)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        write(tmp)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
