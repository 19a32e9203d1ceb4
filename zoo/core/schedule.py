"""One warm-up + cosine learning-rate rule for every paper.

The papers' official schedules differ only in details, which are arguments here:

* MODE / SupContrast: a linear warm-up from ``warmup_start`` *onto* a cosine that starts at
  ``t = 0`` (``cosine_from="start"``), per fractional epoch, decaying to ``eta_min``.
* DePT / Dassl: a constant warm-up value, then ``1/2 (1 + cos(pi (e - w) / E))`` with E the total
  epochs (``cosine_from="warmup"``, ``cosine_length=E``).
* CLIP (open_clip): a linear ramp to ``base`` whose first step already trains
  (``warmup_inclusive=True``: ``(t + 1) / warmup``), then a cosine over the remaining steps.
"""

from __future__ import annotations

import math
from typing import Literal


def warmup_cosine(t: float, total: float, warmup: float = 0.0, *, base: float = 1.0, eta_min: float = 0.0,
                  warmup_start: float = 0.0, warmup_kind: Literal["linear", "constant"] = "linear",
                  warmup_inclusive: bool = False, cosine_from: Literal["warmup", "start"] = "warmup",
                  cosine_length: float | None = None) -> float:
    """The learning rate (or a multiplier, with ``base=1``) at time ``t`` (steps or epochs).

    Args:
        t: the current step or fractional epoch (>= 0).
        total: the schedule's length in the same unit.
        warmup: warm-up length (0 = none).
        base: the peak value; eta_min: the final value of the cosine.
        warmup_start: the value at ``t = 0`` of a linear warm-up, or the constant warm-up value.
        warmup_kind: ``linear`` ramps from ``warmup_start`` to the cosine's value at ``warmup``;
            ``constant`` holds ``warmup_start``.
        warmup_inclusive: the ramp is evaluated at ``t + 1`` (the first step is not at 0).
        cosine_from: the cosine's phase starts at the end of the warm-up (``warmup``) or at 0
            (``start``, the warm-up then bends onto it).
        cosine_length: the cosine's period half-length (default ``total - warmup`` or ``total``).
    """
    offset = warmup if cosine_from == "warmup" else 0.0
    length = cosine_length if cosine_length is not None else max(1e-9, total - offset)

    def cosine(x: float) -> float:
        u = min(max(x - offset, 0.0), length)
        return eta_min + (base - eta_min) * (1 + math.cos(math.pi * u / length)) / 2

    if warmup and t < warmup:
        if warmup_kind == "constant":
            return warmup_start
        r = (t + 1 if warmup_inclusive else t) / warmup
        return warmup_start + r * (cosine(warmup) - warmup_start)
    return cosine(t)
