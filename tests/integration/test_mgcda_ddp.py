"""MGCDA under Lightning's DDP (2 CPU processes, gloo) counts every evaluation pixel exactly once.

The tiny road world keeps odd split sizes: 9 validation images (3 per source style) and 7 target
test images, so the two ranks' unpadded shares differ in length (5/4 and 4/3) and each ends in a
partial batch. Training runs under DDP with the domain-balanced sampler sharding whole batches by
rank (``use_distributed_sampler=false``); evaluation pools the pixel AP/AUROC/FPR95 states, the
confusion matrix and the validation threshold's anomaly scores across the ranks.

What is compared: training cannot match a single process, so the DDP run's ``last.ckpt`` (written
after its last validation) is evaluated again in this process by ``trainer.validate`` and
``trainer.test`` on the same world. Every metric must agree to 1e-4 points; a pixel counted twice
or dropped moves pooled AP by far more (an image holds 1-3% anomaly pixels).
"""

from __future__ import annotations


import pytest

from tests.helpers.ddp import ddp_fit
from zoo.core import registry

WORLD = {"n_train": 8, "n_val": 3, "n_test": 7, "n_oe": 16}


def test_ddp_pixel_metrics_equal_single_process_on_the_same_weights(tmp_path, world_cache):
    from lightning.pytorch import Trainer

    import zoo
    from datamodules.anomaly.procedural import RoadWorld

    run_dir = tmp_path / "ddp"
    world = "{" + ", ".join(f"{k}: {v}" for k, v in WORLD.items()) + "}"
    ddp = ddp_fit("mgcda", str(registry.get("mgcda").config("tiny")), run_dir, f"--data.init_args.world={world}",
                  "--trainer.use_distributed_sampler=false", strategy="ddp_find_unused_parameters_true")

    model = zoo.load(str(run_dir / "checkpoints" / "last.ckpt"))
    dm = RoadWorld(world=WORLD, batch_per_domain=2, eval_batch_size=8)
    trainer = Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    single = {k: float(v) for k, v in trainer.validate(model, datamodule=dm, verbose=False)[0].items()}
    assert len(trainer.val_dataloaders.dataset) == 9
    single.update({k: float(v) for k, v in trainer.test(model, datamodule=dm, verbose=False)[0].items()})
    assert [len(ld.dataset) for ld in trainer.test_dataloaders] == [7, 9]  # target, then the sources

    keys = {k for k in single if k.split("/")[-1] in ("ap", "auroc", "fpr95", "miou")}
    assert {"val/ap", "val/miou", "test/target/ap", "test/target/fpr95", "test/target/miou"} <= keys
    for k in sorted(keys):
        assert ddp[k] == pytest.approx(single[k], abs=1e-4), (k, ddp[k], single[k])
