"""Every registered model: fit its tiny config, save, ``zoo.load`` the checkpoint alone, and get
identical eval outputs and the same input contract."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.helpers.fit import fit_tiny
from zoo.core import registry


def _assert_same(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda m: f"{where}: {m}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("name", registry.list_models())
def test_fit_then_load_gives_identical_outputs(name, tmp_path, world_cache):
    cli = fit_tiny(name, tmp_path / "run", "--trainer.max_epochs=1")
    model = cli.model.eval()
    path = tmp_path / "m.ckpt"
    cli.trainer.save_checkpoint(path)
    loaded = zoo.load(path)
    assert type(loaded) is type(model) and not loaded.training
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["zoo"]["name"] == name and ckpt["zoo"]["inputs"] == model.input_contract()
    assert loaded.input_contract() == model.input_contract()
    loaders = cli.datamodule.test_dataloader()
    batch = next(iter(loaders[0] if isinstance(loaders, (list, tuple)) else loaders))
    batch = {k: v[:8] for k, v in batch.items()}
    _assert_same(model.reference_outputs(batch), loaded.reference_outputs(batch), name)
