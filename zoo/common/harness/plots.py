"""Plots people would rather look at than read: ROC curves and ID-vs-OOD score histograms.

Matplotlib with the Agg backend (no display needed); every function writes a PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor


def denormalise(x: Tensor, spec: dict[str, Any]) -> np.ndarray:
    """(3, H, W) normalised image -> (H, W, 3) float in [0, 1] with the spec's mean/std."""
    mean = torch.tensor(spec.get("mean", (0.0, 0.0, 0.0)), dtype=torch.float32)[:, None, None]
    std = torch.tensor(spec.get("std", (1.0, 1.0, 1.0)), dtype=torch.float32)[:, None, None]
    return (x.detach().float().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_roc(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]], path: str | Path,
             title: str = "ROC (ID = positive)") -> Path:
    """``curves[name] = (fpr, tpr, auroc)`` -> one ROC panel with a dashed 95% TPR line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(np.asarray(fpr), np.asarray(tpr), label=f"{name} (AUROC {100 * auc:.1f})", lw=1.6)
    ax.axhline(0.95, color="grey", ls="--", lw=0.8)
    ax.plot([0, 1], [0, 1], color="lightgrey", lw=0.8)
    ax.set(xlabel="FPR (OOD accepted as ID)", ylabel="TPR (ID accepted)", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_score_hist(id_scores: Sequence[float], ood_scores: Mapping[str, Sequence[float]], path: str | Path,
                    threshold: float | None = None, title: str = "scores (higher = more ID)") -> Path:
    """Overlaid histograms of ID and each OOD set's scores, with the 95%-TPR threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    allv = np.concatenate([np.asarray(id_scores, dtype=float)] + [np.asarray(v, dtype=float) for v in ood_scores.values()])
    bins = np.linspace(allv.min(), allv.max() + 1e-9, 50)
    ax.hist(np.asarray(id_scores), bins=bins, alpha=0.55, density=True, label="ID", color="C0")
    for i, (name, v) in enumerate(ood_scores.items()):
        ax.hist(np.asarray(v), bins=bins, histtype="step", density=True, lw=1.5, label=name, color=f"C{i + 1}")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="95% TPR threshold")
    ax.set(xlabel="score", ylabel="density", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_bars(groups: Mapping[str, Mapping[str, tuple[float, float]]], path: str | Path, ylabel: str,
              title: str = "") -> Path:
    """Grouped bars with error bars: ``groups[x_label][method] = (mean, std)``."""
    plt = _plt()
    xs = list(groups)
    methods = list(dict.fromkeys(m for g in groups.values() for m in g))
    w = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.4 + 1.3 * len(xs), 3.6), dpi=110)
    for j, m in enumerate(methods):
        means = [groups[x].get(m, (np.nan, 0))[0] for x in xs]
        stds = [groups[x].get(m, (np.nan, 0))[1] for x in xs]
        ax.bar(np.arange(len(xs)) + (j - (len(methods) - 1) / 2) * w, means, w, yerr=stds, label=m, capsize=2)
    ax.set_xticks(np.arange(len(xs)), xs, fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_paired_seeds(metrics: Mapping[str, tuple[Sequence[float], Sequence[float]]], seeds: Sequence[int],
                      method: str, baseline: str, path: str | Path, title: str = "") -> Path:
    """Method and baseline side by side for every seed, one panel per metric, with the paired
    delta written above each pair: ``metrics[name] = (method values, baseline values)``."""
    plt = _plt()
    names = list(metrics)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(1.2 + 2.6 * max(1, len(names)), 3.4), dpi=110,
                             squeeze=False)
    x = np.arange(len(seeds))
    for ax, name in zip(axes[0], names):
        a, b = (np.asarray(v, dtype=float) for v in metrics[name])
        ax.bar(x - 0.2, b, 0.4, label=baseline, color="C7")
        ax.bar(x + 0.2, a, 0.4, label=method, color="C0")
        top = np.nanmax(np.concatenate([a, b])) if len(a) else 1.0
        for i in range(len(x)):
            ax.text(x[i], top * 1.02, f"{a[i] - b[i]:+.1f}", ha="center", fontsize=7)
        ax.set_xticks(x, [f"seed {s}" for s in seeds], fontsize=7)
        ax.set(title=name, ylim=(0, top * 1.12 if top > 0 else 1))
    axes[0][0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_roc_overlay(curves: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float], float]]],
                     path: str | Path, title: str = "ROC (ID = positive)") -> Path:
    """Method and baseline ROC curves on the same axes, one panel per test set:
    ``curves[set][method] = (fpr, tpr, auroc)``."""
    plt = _plt()
    sets = list(curves)
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(0.6 + 3.6 * max(1, len(sets)), 3.8), dpi=110,
                             squeeze=False)
    for ax, name in zip(axes[0], sets):
        for j, (method, (fpr, tpr, auc)) in enumerate(curves[name].items()):
            ax.plot(np.asarray(fpr), np.asarray(tpr), lw=1.6, color=f"C{j}", label=f"{method} ({100 * auc:.1f})")
        ax.axhline(0.95, color="grey", ls="--", lw=0.8)
        ax.plot([0, 1], [0, 1], color="lightgrey", lw=0.8)
        ax.set(xlabel="FPR (OOD accepted)", title=name, xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(fontsize=7, loc="lower right", title="AUROC", title_fontsize=7)
    axes[0][0].set_ylabel("TPR (ID accepted)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path, dpi: float | None = None) -> Path:
    plt = _plt()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return p
