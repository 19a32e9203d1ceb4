"""MODE LightningModule pieces that need no Trainer: schedule, objectives, bank buffers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from zoo.mode.lightning_model import MODE


def _model(**kw) -> MODE:
    torch.manual_seed(0)
    return MODE(**{"backbone": "test_resnet", "num_classes": 3, "alpa_dim": 8, **kw})


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


# ------------------------------------------------------------------ argument checks (before training)


@pytest.mark.parametrize(("kw", "line"), [
    ({"k": -3}, "--model.k must be >= 1, got -3"),
    ({"k": 0}, "--model.k must be >= 1, got 0"),
    ({"vote_k": 0}, "--model.vote_k must be >= 1, got 0"),
    ({"lr": 0.0}, "--model.lr must be > 0, got 0.0"),
    ({"pretrain_lr": -0.1}, "--model.pretrain_lr must be > 0, got -0.1"),
    ({"momentum": 1.0}, "--model.momentum must be in [0, 1), got 1.0"),
    ({"weight_decay": -1e-4}, "--model.weight_decay must be >= 0, got -0.0001"),
    ({"pretrain_epochs": -1}, "--model.pretrain_epochs must be >= 0, got -1"),
    ({"warmup_epochs": -2.0}, "--model.warmup_epochs must be >= 0, got -2.0"),
    ({"min_lr_ratio": 1.5}, "--model.min_lr_ratio must be in [0, 1], got 1.5"),
    ({"alpa_lambda": -1.0}, "--model.alpa_lambda must be >= 0, got -1.0"),
    ({"alpa_dim": 0}, "--model.alpa_dim must be >= 1, got 0"),
    ({"alpa_inv_temperature": 0.0}, "--model.alpa_inv_temperature must be > 0, got 0.0"),
    ({"alpa_chunk_size": 0}, "--model.alpa_chunk_size must be >= 1, got 0"),
    ({"supcon_temperature": float("nan")}, "--model.supcon_temperature must be a finite number, got nan"),
    ({"supcon_dim": 0}, "--model.supcon_dim must be >= 1, got 0"),
    ({"tpr": 0.0}, "--model.tpr must be in (0, 1], got 0.0"),
    ({"tpr": 1.2}, "--model.tpr must be in (0, 1], got 1.2"),
    ({"knn_chunk_size": 0}, "--model.knn_chunk_size must be >= 1, got 0"),
    ({"num_classes": 0}, "--model.num_classes must be >= 1, got 0"),
    ({"k": 2.5}, "--model.k must be an integer, got 2.5"),
    ({"objective": "mse"}, "--model.objective must be one of ce, supcon, ce+alpa, supcon+alpa, alpa, got 'mse'"),
    ({"fpr_rule": "openood"}, "--model.fpr_rule must be one of knn_ood, roc, got 'openood'"),
])
def test_bad_arguments_are_one_line_errors(kw, line):
    from zoo.core.errors import ZooError

    with pytest.raises(ZooError) as e:
        _model(**kw)
    assert str(e.value) == line


def test_valid_edge_arguments_are_accepted():
    m = _model(momentum=0.0, weight_decay=0.0, min_lr_ratio=1.0, alpa_lambda=0.0, tpr=1.0, alpa_chunk_size=None)
    assert m.hparams.tpr == 1.0


def _fake_trainer(bank_images: int, val_sets: list[str], monitor: str, limit_val_batches: float = 1.0):
    from lightning.pytorch.callbacks import ModelCheckpoint

    loader = SimpleNamespace(dataset=list(range(bank_images)))
    dm = SimpleNamespace(bank_dataloader=lambda: loader, val_set_names=val_sets)
    return SimpleNamespace(datamodule=dm, callbacks=[ModelCheckpoint(monitor=monitor)],
                           limit_val_batches=limit_val_batches)


def test_setup_checks_k_against_the_bank():
    from zoo.core.errors import ZooError

    m = _model(k=13)  # CSD: 6 rows per image; 2 images = 12 rows
    m._trainer = _fake_trainer(2, ["ood_val"], "val/auroc")
    with pytest.raises(ZooError, match=r"^--model.k must be <= the 12 rows of the CSD bank \(6 regions x 2 ID train "
                                        r"images\), got 13$"):
        m.setup("fit")
    m = _model(k=3, score="knn")
    m._trainer = _fake_trainer(2, ["ood_val"], "val/auroc")
    with pytest.raises(ZooError, match=r"rows of the KNN bank \(2 ID train images\), got 3"):
        m.setup("test")
    m = _model(k=12)
    m._trainer = _fake_trainer(2, ["ood_val"], "val/auroc")
    m.setup("fit")  # fits exactly


def test_setup_checks_checkpoint_monitor_against_validation_sets():
    from zoo.core.errors import ZooError

    m = _model(k=3)
    m._trainer = _fake_trainer(10, [], "val/auroc")
    with pytest.raises(ZooError) as e:
        m.setup("fit")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("ModelCheckpoint monitors 'val/auroc', which is never logged: ")
    assert "no validation OOD sets" in msg and "monitor val/acc (mode: max)" in msg
    m._trainer = _fake_trainer(10, [], "val/acc")
    m.setup("fit")
    m._trainer = _fake_trainer(10, ["ood_val_near"], "val/ood_val_near/fpr95")
    m.setup("fit")
    m._trainer = _fake_trainer(10, ["ood_val_near"], "val/ood_val_far/auroc")
    with pytest.raises(ZooError, match="monitors 'val/ood_val_far/auroc', which is never logged"):
        m.setup("fit")
    m._trainer = _fake_trainer(10, [], "val/auroc", limit_val_batches=0)
    m.setup("fit")  # no validation at all: nothing to check


# ------------------------------------------------------------------ bank dtype, FPR rule, DDP order


def test_bank_defaults_to_fp32_and_fp16_stays_an_option():
    assert _model().bank.dtype == torch.float32
    assert _model(bank_dtype="float16").bank.dtype == torch.float16


def test_predict_decision_follows_the_fpr_rule():
    """A score equal to the stored threshold is OOD under knn_ood (strictly above t) and ID under roc."""
    for rule in ("knn_ood", "roc"):
        m = _model(fpr_rule=rule).eval()
        m.bank = torch.nn.functional.normalize(torch.randn(4, 6, m.net.num_features), dim=-1)
        m.bank_labels = torch.tensor([0, 1, 2, 0])
        images = torch.randn(3, 3, 32, 32)
        s = m.predict_images(images)["score"]
        m.threshold = s[0].clone()
        out = m.predict_images(images)
        want = (s > s[0]) if rule == "knn_ood" else (s >= s[0])
        assert out["is_id"].tolist() == want.tolist() and out["is_id"][0].item() is (rule == "roc")
        assert ("score >" if rule == "knn_ood" else "score >=") in m.predict_legend()


def test_old_checkpoints_keep_the_roc_threshold_rule():
    m = _model()
    m.on_load_checkpoint({"state_dict": {}, "hyper_parameters": {"k": 10}, "zoo": {}})
    assert m.hparams.fpr_rule == "roc"
    m = _model()
    m.on_load_checkpoint({"state_dict": {}, "hyper_parameters": {"fpr_rule": "knn_ood"}, "zoo": {}})
    assert m.hparams.fpr_rule == "knn_ood"


@pytest.mark.parametrize(("n", "world"), [(5, 2), (7, 3), (6, 2), (1, 2)])
def test_in_order_undoes_distributed_sampler_padding(n, world):
    """What each rank holds under Lightning's DistributedSampler(shuffle=False), gathered as
    LightningModule.all_gather does ((W, L, ...)), comes back as rows 0..n-1, duplicates dropped."""
    from torch.utils.data import DistributedSampler

    data = torch.arange(n) * 10
    shards = [data[list(DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False))]
              for r in range(world)]
    assert sum(len(s) for s in shards) > n or n % world == 0  # padding repeats samples when uneven
    m = _model()
    m._trainer = SimpleNamespace(global_rank=0, world_size=world)
    m.all_gather = lambda t: torch.stack(shards)
    assert torch.equal(m._in_order(shards[0], n), data)
    m._trainer = SimpleNamespace(global_rank=0, world_size=1)
    assert m._in_order(data, n) is data


def test_checkpoint_monitor_that_real_data_cannot_log_is_refused_before_training():
    """The world config's ``val/auroc`` monitor with a datamodule that has no validation OOD sets
    (e.g. the real OODBenchmark) is one line at setup, not a Lightning traceback after an epoch."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.core.errors import ZooError

    m = _model()
    trainer = SimpleNamespace(limit_val_batches=1.0, callbacks=[ModelCheckpoint(monitor="val/auroc")])
    with pytest.raises(ZooError, match=r"ModelCheckpoint monitors 'val/auroc', which is never logged.*val/acc"):
        m._check_monitors(trainer, SimpleNamespace(val_set_names=[]))
    m._check_monitors(trainer, SimpleNamespace(val_set_names=["ood_val_near"]))  # the world logs it
