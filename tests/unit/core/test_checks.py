"""Build-time argument checks name the argument as the CLI spells it."""

from __future__ import annotations

import pytest

from zoo.core.checks import check
from zoo.core.errors import ZooError


def test_bounds_and_none():
    check("--model.k", 1, ge=1)
    check("--model.tau", None, gt=0)  # optional arguments are checked only when given
    with pytest.raises(ZooError, match=r"^--model\.k must be >= 1, got -3$"):
        check("--model.k", -3, ge=1)
    with pytest.raises(ZooError, match=r"^--model\.lr must be > 0, got 0$"):
        check("--model.lr", 0, gt=0)
    with pytest.raises(ZooError, match=r"^--model\.lam must be <= 1, got 1.5$"):
        check("--model.lam", 1.5, ge=0, le=1)


def test_world_datamodules_check_their_arguments():
    from datamodules.fewshot.procedural import ShapesCaptions, ShapesFewShot

    with pytest.raises(ZooError, match=r"--data\.init_args\.val_per_class must be >= 1, got 0"):
        ShapesCaptions(val_per_class=0)
    with pytest.raises(ZooError, match=r"--data\.init_args\.shift must be >= 0, got -1"):
        ShapesCaptions(shift=-1.0)
    with pytest.raises(ZooError, match=r"--data\.init_args\.world_test_per_class must be >= 1, got 0"):
        ShapesFewShot(world_test_per_class=0)
