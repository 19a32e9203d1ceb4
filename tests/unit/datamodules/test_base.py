"""The OOD datamodule contract on a tiny world: batch schema, views, batched eval transform."""

from __future__ import annotations

import numpy as np
import torch

from datamodules.ood.base import ArrayDataset, MultiView, eval_transform
from datamodules.ood.procedural import ClutterGlyphs

SIZES = {"id_train": 24, "id_val": 8, "id_test": 8, "ood_near": 8, "ood_far": 8, "ood_bg": 8,
         "ood_val_near": 8, "ood_val_far": 8}


def test_batched_eval_transform_equals_per_image():
    x = np.random.default_rng(0).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    ds = ArrayDataset(x, np.zeros(10, dtype=np.int64))
    tf = eval_transform({"resize": 32, "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3})
    per = torch.stack([MultiView(ds, tf)[i]["image"] for i in range(10)])
    torch.testing.assert_close(tf(ds.images).as_subclass(torch.Tensor), per, rtol=0, atol=0)


def test_world_datamodule_schema(world_cache):
    dm = ClutterGlyphs(sizes=SIZES, batch_size=4, eval_batch_size=8, n_views=2)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert set(b) == {"image", "image_view2", "label"}
    assert b["image"].shape == (4, 3, 32, 32) and b["image"].dtype == torch.float32
    assert not torch.equal(b["image"], b["image_view2"])  # two independent augmentations
    val = dm.val_dataloader()
    assert len(val) == 3 and dm.val_set_names == ["ood_val_near", "ood_val_far"]
    test = dm.test_dataloader()
    assert dm.test_set_names == ["ood_near", "ood_far", "ood_bg"] and dm.average_names == ["ood_near", "ood_far"]
    assert (next(iter(test[1]))["label"] == -1).all() and (next(iter(test[0]))["label"] >= 0).all()
    bank = next(iter(dm.bank_dataloader()))
    assert bank["image"].shape == (8, 3, 32, 32)
    spec = dm.eval_transform_spec()
    assert spec["classes"][:2] == ["disk", "square"] and spec["crop"] == 32
