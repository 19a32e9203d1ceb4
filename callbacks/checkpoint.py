"""``last.ckpt`` written at the end of every epoch.

Lightning 2.6's ``ModelCheckpoint(save_last=True)`` refreshes ``last.ckpt`` only in an epoch where
a top-k checkpoint was saved too, so with a monitor that stops improving, ``last.ckpt`` goes stale
and ``--ckpt_path last`` would resume from an old epoch. This callback always writes it.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Save ``<dirpath>/last.ckpt`` after every training epoch (after its validation)."""

    def __init__(self, dirpath: str | None = None, filename: str = "last") -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, save_last=False,
                         enable_version_counter=False)
