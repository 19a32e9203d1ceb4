"""The cached tiny CLIP: ``zoo:<world>`` resolution, build-once training, RNG isolation."""

from __future__ import annotations

import random

import pytest
import torch

from zoo.clip.cache import cached_clip_path, ensure_tiny_clip, resolve_clip_weights
from zoo.common.vision.clip import build_clip
from zoo.core.errors import ZooError

SHORT = ["--trainer.max_steps=2", "--trainer.accelerator=cpu", "--trainer.precision=32-true",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--data.init_args.n_captions=32", "--data.init_args.batch_size=16", "--data.init_args.val_per_class=1",
         "--data.init_args.world_train_per_class=16", "--data.init_args.world_val_per_class=1",
         "--data.init_args.world_test_per_class=1", "--trainer.check_val_every_n_epoch=1"]


def test_resolution_passes_files_through_and_rejects_unknown_worlds(tmp_path):
    assert resolve_clip_weights("zoo-test-clip", None) is None
    assert resolve_clip_weights("zoo-test-clip", "/w/ViT-B-16.pt") == "/w/ViT-B-16.pt"
    with pytest.raises(ZooError, match="unknown embedded CLIP zoo:nowhere"):
        resolve_clip_weights("zoo-test-clip", "zoo:nowhere")


def test_cache_path_depends_on_architecture_and_lives_under_zoo_cache(world_cache):
    a, b = cached_clip_path("zoo-test-clip"), cached_clip_path("zoo-tiny-clip")
    assert a != b and str(a).startswith(world_cache) and a.suffix == ".pt"


def test_training_once_writes_a_loadable_clip_and_leaves_the_callers_rng_alone(world_cache):
    torch.manual_seed(3)
    random.seed(3)
    want = (torch.rand(3), random.random())
    torch.manual_seed(3)
    random.seed(3)
    path = ensure_tiny_clip("zoo-test-clip", extra_args=SHORT)  # trains (seeds its own run) in between
    got = (torch.rand(3), random.random())
    assert torch.equal(got[0], want[0]) and got[1] == want[1]
    m = build_clip("zoo-test-clip", str(path))
    assert m.logit_scale.exp().item() <= 100.0 + 1e-4
