"""zoo: a PyTorch Lightning model zoo of recent papers.

``zoo.load(ckpt)`` rebuilds any zoo model from its checkpoint alone; ``zoo.list_models()`` names
the registered models. Command-line entry points: ``python -m zoo.fit``, ``python -m zoo.predict``,
``python -m zoo.bench``.
"""

from __future__ import annotations

import os as _os

# Offline-first defaults, set before torch is imported anywhere: no hub requests (they retry for
# ~50 s without a network), W&B runs offline unless the user says WANDB_MODE=online, and OpenMP
# threads that do not spin (torch slows 10-150x on a shared CPU otherwise).
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("WANDB_MODE", "offline")
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from zoo.core import VERSION as __version__  # noqa: E402
from zoo.core.registry import list_models  # noqa: E402  (cheap: no torch import)


def load(path, **overrides):
    """Load a zoo checkpoint into its model class, in eval mode, strictly.

    Args:
        path: a ``.ckpt`` written by ``python -m zoo.fit`` (or ``trainer.save_checkpoint``).
        **overrides: hyper-parameters to override (e.g. ``k=50``).

    Returns:
        The LightningModule, on CPU, in eval mode.
    """
    from zoo.core.module import load_checkpoint

    return load_checkpoint(path, **overrides)


__all__ = ["load", "list_models", "__version__"]
