"""Report helpers: number formatting, mean ± std over seeds, the environment block, repo-relative
paths."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any


def fmt(m: float | None, s: float | None = None, digits: int = 2) -> str:
    """``m`` (or ``m ± s``) with ``digits`` decimals; ``-`` for missing/NaN."""
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value, NaN for none) ignoring NaNs and Nones."""
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std of every numeric leaf of per-seed result dicts of one structure.

    A number ``k`` becomes ``k`` (mean) and ``k_std``; a nested dict is summarised recursively;
    other values are kept when all seeds agree. Keys missing in some seeds use the seeds that have
    them.
    """
    out: dict[str, Any] = {}
    keys = list(dict.fromkeys(k for p in per_seed for k in p))
    for k in keys:
        vals = [p[k] for p in per_seed if k in p and p[k] is not None]
        if not vals:
            continue
        if all(isinstance(v, bool) for v in vals):
            out[k] = vals[0] if len(set(vals)) == 1 else vals
        elif all(isinstance(v, (int, float)) for v in vals):
            out[k], out[f"{k}_std"] = mean_std([float(v) for v in vals])
        elif all(isinstance(v, dict) for v in vals):
            out[k] = summarise(vals)
        elif all(v == vals[0] for v in vals):
            out[k] = vals[0]
    return out


def device_name(device: Any) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def git_commit(repo: Path | None = None) -> str:
    """``<sha>`` of HEAD, ``+dirty`` when the tracked files differ from it; ``unknown`` outside git."""
    from zoo.core.registry import REPO_ROOT

    cwd = str(repo or REPO_ROOT)
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def package_versions(names: tuple[str, ...] = ("torch", "lightning", "torchmetrics", "timm", "open_clip_torch",
                                               "transformers", "peft", "numpy")) -> dict[str, str]:
    """Installed versions of the packages a measurement depends on (absent ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            pass
    return out


def environment(device: Any, precision: str | None = None) -> dict[str, Any]:
    """Conditions of a measurement, recorded in every report (as timm's benchmark does): git
    commit, package versions, device, precision, thread count."""
    import torch

    pk = package_versions()
    return {"git_commit": git_commit(), "device": str(device), "device_name": device_name(device),
            "precision": precision or ("bf16-mixed" if torch.device(device).type == "cuda" else "32-true"),
            "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "lightning": pk.get("lightning", "?"), "packages": pk}


def rel(path: str | os.PathLike | None) -> str | None:
    """``path`` relative to the repository root when inside it, else relative to the working
    directory when inside that, else as given (reports never print this machine's absolute paths)."""
    if path is None:
        return None
    from zoo.core.registry import REPO_ROOT

    p = Path(path).resolve()
    for base in (REPO_ROOT, Path.cwd()):
        try:
            return p.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)
