"""Classification summaries shared by the benches."""

from __future__ import annotations


def harmonic_mean(base: float, new: float) -> float:
    """H = 2BN / (B + N), the base-to-new summary (CoCoOp, arXiv:2203.05557v2, Sec. 5.1; DePT,
    arXiv:2309.07439v2, Sec. 4.1); 0 when both are 0."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0
