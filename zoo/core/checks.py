"""Argument checks at build time: a bad value is one line naming the argument as the CLI spells it,
before any data is read or any step is trained."""

from __future__ import annotations

from typing import Any

from zoo.core.errors import ZooError


def check(name: str, value: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
          lt: float | None = None) -> None:
    """Raise ``ZooError("<name> must be >= <ge>, got <value>")`` (likewise ``>``, ``<=``, ``<``).

    Args:
        name: the argument as a user types it, e.g. ``--model.k`` or ``--data.init_args.batch_size``.
        value: its value (``None`` passes: optional arguments are checked only when given).
    """
    if value is None:
        return
    for bound, ok, word in ((ge, lambda v, b: v >= b, ">="), (gt, lambda v, b: v > b, ">"),
                            (le, lambda v, b: v <= b, "<="), (lt, lambda v, b: v < b, "<")):
        if bound is not None and not ok(value, bound):
            raise ZooError(f"{name} must be {word} {bound}, got {value}")
