"""A run interrupted in the middle of an epoch and resumed from ``last.ckpt`` ends exactly where
the uninterrupted run ends (weights and test metrics), because the RNG states and the training
sampler's generator travel with the checkpoint (``callbacks.rng``, ``datamodules.common.sampling``)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback

from tests.helpers.fit import tiny_config
from zoo.core import registry
from zoo.core.training import build_cli


class _Crash(RuntimeError):
    pass


class _KillMidEpoch(Callback):
    """Dies at the second batch of ``epoch``, as a ``kill -9`` would (no checkpoint of that epoch)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            raise _Crash("killed")


def _run(name: str, run_dir, *extra: str, crash_at: int | None = None):
    cli = build_cli(registry.get(name), ["--config", tiny_config(name), f"--run_dir={run_dir}",
                                         "--trainer.max_epochs=3", *extra])
    if crash_at is not None:
        cli.trainer.callbacks.append(_KillMidEpoch(crash_at))
    ckpt = cli.config.get("ckpt_path")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    res = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return cli.model, res


@pytest.mark.parametrize("name", ["mode", "dept", "mcc_kd", "mgcda"])
def test_kill_mid_epoch_then_resume_matches_the_uninterrupted_run(name, tmp_path, world_cache):
    ref_model, ref = _run(name, tmp_path / "ref")
    with pytest.raises(_Crash):
        _run(name, tmp_path / "cut", crash_at=2)
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1  # written after epoch 1
    model, res = _run(name, tmp_path / "cut", f"--ckpt_path={last}")
    timing = {k for k in ref if k.endswith(("_per_s", "_qps"))}  # wall-clock rates differ run to run
    assert {k: v for k, v in res.items() if k not in timing} == {k: v for k, v in ref.items() if k not in timing}
    a, b = ref_model.state_dict(), model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")
