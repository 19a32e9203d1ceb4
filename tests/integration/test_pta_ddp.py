"""PTA under Lightning's DDP (2 CPU processes, gloo) retrieves over every test image exactly once.

The tiny world keeps 11 validation and 11 test scenes (22 captions each), so ``DistributedSampler``
pads each split with a repeated scene and every rank ends in a partial batch. The ranks' cached
image tokens, embeddings, captions and patch labels are gathered and the padding dropped by
dataset index before the ITC ranking, the ITM re-ranking and the detector metrics.

What is compared: the DDP run's ``last.ckpt`` is evaluated again in this process; every val and test
metric must agree to 1e-3 points (a duplicated image adds a candidate to every ranking and moves
R@K of 11 images by 9 points; a dropped one removes two queries).
"""

from __future__ import annotations


import pytest

from tests.helpers.ddp import ddp_fit
from zoo.core import registry


def test_ddp_retrieval_equals_single_process_on_the_same_weights(tmp_path, world_cache):
    from lightning.pytorch import Trainer

    import zoo
    from datamodules.vlp.procedural import ShapesClutter

    run_dir = tmp_path / "ddp"
    ddp = ddp_fit("pta", str(registry.get("pta").config("tiny")), run_dir, "--data.init_args.n_val=11",
                  "--data.init_args.n_test=11", "--data.init_args.eval_batch_size=4")

    model = zoo.load(str(run_dir / "checkpoints" / "last.ckpt"))
    dm = ShapesClutter(n_train=64, n_val=11, n_test=11, box_fraction=0.5, batch_size=16, eval_batch_size=4)
    trainer = Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    single = {k: float(v) for k, v in trainer.validate(model, datamodule=dm, verbose=False)[0].items()}
    single.update({k: float(v) for k, v in trainer.test(model, datamodule=dm, verbose=False)[0].items()})
    keys = {k for k in single if not k.endswith("rerank_s")}
    assert {"val/r_mean", "test/tr@1", "test/ir@5", "test/tpd_recall", "test/itm_acc"} <= keys
    for k in sorted(keys):
        assert ddp[k] == pytest.approx(single[k], abs=1e-3), (k, ddp[k], single[k])
