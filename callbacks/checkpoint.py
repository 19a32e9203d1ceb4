"""``last.ckpt`` written at the end of every epoch.

Lightning 2.6's ``ModelCheckpoint(save_last=True)`` refreshes ``last.ckpt`` only in an epoch where
a top-k checkpoint was saved too, so with a monitor that stops improving, ``last.ckpt`` goes stale
and ``--ckpt_path last`` would resume from an old epoch. This callback always writes it.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Save ``<dirpath>/last.ckpt`` after every training epoch (after its validation) and at the end of training."""

    def __init__(self, dirpath: str | None = None, filename: str = "last") -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, save_last=False,
                         enable_version_counter=False)

    def on_train_end(self, trainer, pl_module) -> None:
        """Also save when training stops mid-epoch (``max_steps``), so last.ckpt is the final model."""
        super().on_train_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_none_monitor_checkpoint(trainer, self._monitor_candidates(trainer))
