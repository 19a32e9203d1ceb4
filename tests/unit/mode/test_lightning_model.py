"""MODE LightningModule pieces that need no Trainer: schedule, objectives, bank buffers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from zoo.mode.lightning_model import MODE


def _model(**kw) -> MODE:
    torch.manual_seed(0)
    return MODE(backbone="test_resnet", num_classes=3, alpa_dim=8, **kw)


def test_objective_stages():
    m = _model(pretrain_epochs=2, pretrain_objective="ce", objective="alpa")
    assert [m.objective_at(e) for e in range(4)] == ["ce", "ce", "alpa", "alpa"]
    assert m.net.head == "ce"


def test_lr_schedule_by_hand():
    m = _model(pretrain_epochs=2, pretrain_lr=0.1, lr=0.05, min_lr_ratio=1e-3)
    m._trainer = SimpleNamespace(max_epochs=4)
    # stage 1 (2 epochs from 0.1): cosine to 1e-4; halfway = (0.1 + 1e-4) / 2
    assert m.lr_at(0.0) == pytest.approx(0.1)
    assert m.lr_at(1.0) == pytest.approx((0.1 + 1e-4) / 2)
    # stage 2 restarts at its own lr: 0.05 at epoch 2, 5e-5 + (0.05 - 5e-5) * (1 + cos(pi/4)) / 2 at 2.5
    assert m.lr_at(2.0) == pytest.approx(0.05)
    assert m.lr_at(2.5) == pytest.approx(5e-5 + (0.05 - 5e-5) * (1 + math.cos(math.pi / 4)) / 2)
    assert m.lr_at(4.0) == pytest.approx(5e-5)


def test_warmup_is_linear_to_the_cosine_value():
    m = _model(lr=0.5, warmup_epochs=10, warmup_from=0.01)
    m._trainer = SimpleNamespace(max_epochs=100)
    target = 0.5e-3 + (0.5 - 0.5e-3) * (1 + math.cos(math.pi * 10 / 100)) / 2
    assert m.lr_at(0.0) == pytest.approx(0.01)
    assert m.lr_at(5.0) == pytest.approx(0.01 + 0.5 * (target - 0.01))
    assert m.lr_at(10.0) == pytest.approx(target)


def test_training_step_two_views_required():
    from zoo.core.errors import ZooError

    m = _model(objective="ce+alpa")
    m._trainer = SimpleNamespace(max_epochs=1, current_epoch=0)
    with pytest.raises(ZooError, match="n_views=2"):
        m.training_step({"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 0])}, 0)


def test_bank_buffers_resize_on_load():
    m = _model()
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd["bank"] = torch.randn(5, 6, m.net.num_features).half()
    sd["bank_labels"] = torch.arange(5)
    sd["threshold"] = torch.tensor(-0.5)
    m2 = _model()
    m2.on_load_checkpoint({"state_dict": sd, "zoo": {"transform": {"crop": 32}}})
    m2.load_state_dict(sd, strict=True)
    assert m2.bank.shape == (5, 6, m.net.num_features) and m2.bank.dtype == torch.float16
    assert float(m2.threshold) == -0.5 and m2.transform_spec == {"crop": 32}


def test_scores_without_bank_is_a_clear_error():
    from zoo.core.errors import ZooError
    from zoo.mode.evaluate import Features

    m = _model()
    f = Features(torch.randn(2, 6, m.net.num_features), torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ZooError, match="no ID bank"):
        m.scores(f)


def test_baseline_is_the_method_config_without_alpa(tmp_path):
    from zoo.mode.bench import baseline_overrides

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  objective: supcon+alpa\n")
    assert baseline_overrides(str(cfg))[:2] == ["--model.objective=supcon", "--model.pretrain_epochs=0"]
    assert "--data.init_args.n_views=2" in baseline_overrides(str(cfg))
    cfg.write_text("model:\n  objective: alpa\n  pretrain_epochs: 8\n  pretrain_objective: ce\n  pretrain_lr: 0.1\n")
    assert baseline_overrides(str(cfg)) == ["--model.objective=ce", "--model.pretrain_epochs=0", "--model.score=knn",
                                            "--data.init_args.n_views=1", "--model.lr=0.1"]
