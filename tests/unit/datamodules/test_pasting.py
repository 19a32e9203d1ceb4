"""OE pasting, the joint augmentation (254 survives it) and the domain-balanced batch sampler."""

from __future__ import annotations

import pytest
import torch

from datamodules.anomaly.pasting import (
    OE_LABEL,
    VOID,
    crop_to_mask,
    fit_object,
    joint_augment,
    mask_bbox,
    paste_object,
    paste_objects,
    random_paste,
)
from datamodules.anomaly.sampling import DomainBalancedSampler
from zoo.core.errors import ZooError


def _scene(h: int = 8, w: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.arange(3 * h * w, dtype=torch.float32).reshape(3, h, w) / (3 * h * w)
    label = (torch.arange(h * w) % 6).reshape(h, w).long()
    return image, label


def _object() -> tuple[torch.Tensor, torch.Tensor]:
    """A 5x5 patch whose mask is an L of 3 pixels inside the box rows 1-2, cols 2-3."""
    obj = torch.full((3, 5, 5), 0.5)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[1, 2] = mask[2, 2] = mask[2, 3] = True
    return obj, mask


def test_mask_bbox_and_crop():
    obj, mask = _object()
    assert mask_bbox(mask) == (1, 3, 2, 4)
    o, m = crop_to_mask(obj, mask)
    assert o.shape == (3, 2, 2) and m.tolist() == [[True, False], [True, True]]
    with pytest.raises(ValueError):
        mask_bbox(torch.zeros(3, 3, dtype=torch.bool))


def test_paste_copies_only_mask_pixels_and_labels_254():
    image, label = _scene()
    obj, mask = crop_to_mask(*_object())
    out_img, out_lab = paste_object(image, label, obj, mask, top=3, left=4)
    changed = (out_lab != label)
    expected = torch.zeros_like(changed)
    expected[3, 4] = expected[4, 4] = expected[4, 5] = True
    assert torch.equal(out_lab == OE_LABEL, expected)
    assert torch.equal(changed | (label == OE_LABEL), expected)
    assert torch.equal((out_img != image).any(0), expected)  # image changes exactly there
    assert torch.allclose(out_img[:, expected], torch.full((3, 3), 0.5))
    assert not torch.equal(image, out_img)  # inputs untouched, outputs new
    assert (label != OE_LABEL).all()


def test_paste_clips_at_the_border():
    image, label = _scene(4, 4)
    obj, mask = torch.ones(3, 3, 3), torch.ones(3, 3, dtype=torch.bool)
    _, lab = paste_object(image, label, obj, mask, top=2, left=3)
    assert (lab == OE_LABEL).sum() == 2 * 1  # rows 2-3, column 3
    _, lab = paste_object(image, label, obj, mask, top=-2, left=-2)
    assert (lab == OE_LABEL).sum() == 1 and lab[0, 0] == OE_LABEL


def test_object_larger_than_the_scene_is_shrunk_to_fit():
    image, label = _scene(4, 6)
    obj, mask = torch.full((3, 12, 8), 200, dtype=torch.uint8), torch.ones(12, 8, dtype=torch.bool)
    o, m = fit_object(obj, mask, 4, 6)
    assert m.shape == (4, 2) and m.all() and o.dtype == torch.uint8 and (o == 200).all()
    assert fit_object(obj, mask, 12, 8)[1] is mask  # fits: unchanged
    _, lab, (top, left) = random_paste(image.float(), label, obj.float(), mask)
    assert (lab == OE_LABEL).sum() == 8 and top == 0


def test_random_paste_is_uniform_inside_and_seeded():
    image, label = _scene(8, 10)
    obj, mask = _object()
    seen = set()
    for s in range(60):
        _, lab, (top, left) = random_paste(image, label, obj, mask, generator=torch.Generator().manual_seed(s))
        assert 0 <= top <= 8 - 2 and 0 <= left <= 10 - 2  # the 2x2 bbox always fits, no rescale
        assert (lab == OE_LABEL).sum() == 3
        seen.add((top, left))
    assert len(seen) > 20  # positions spread over the 7 x 9 choices
    a = random_paste(image, label, obj, mask, generator=torch.Generator().manual_seed(3))[2]
    assert a == random_paste(image, label, obj, mask, generator=torch.Generator().manual_seed(3))[2]
    _, lab = paste_objects(image, label, [(obj, mask), (obj, mask)], generator=torch.Generator().manual_seed(0))
    assert 3 <= (lab == OE_LABEL).sum() <= 6


def test_joint_flip_keeps_image_and_label_aligned():
    image, label = _scene()
    flips = 0
    for s in range(10):
        img, lab = joint_augment(image, label, hflip=True, generator=torch.Generator().manual_seed(s))
        if torch.equal(lab, label.flip(-1)):
            assert torch.equal(img, image.flip(-1))
            flips += 1
        else:
            assert torch.equal(lab, label) and torch.equal(img, image)
    assert 0 < flips < 10


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.6, 2.0])
def test_254_and_255_survive_scaling_and_crop(scale):
    image, label = _scene(32, 48)
    label[10:20, 10:24] = OE_LABEL  # 10 x 14 px
    label[-2:] = VOID
    allowed = set(range(6)) | {OE_LABEL, VOID}
    img, lab = joint_augment(image, label, hflip=True, scale=(scale, scale), generator=torch.Generator().manual_seed(1))
    assert lab.shape == (round(32 * scale), round(48 * scale)) and img.shape[1:] == lab.shape
    assert set(lab.unique().tolist()) <= allowed  # nearest: no blended label values
    assert abs((lab == OE_LABEL).sum().item() - 140 * scale * scale) <= 2 * (10 + 14) * scale + 4
    assert abs((lab == VOID).sum().item() - 2 * 48 * scale * scale) <= 2 * 48 * scale + 4
    img, lab = joint_augment(image, label, hflip=True, scale=(scale, scale), crop=(32, 48),
                             generator=torch.Generator().manual_seed(1))
    assert img.shape == (3, 32, 48) and lab.shape == (32, 48) and lab.dtype == torch.long
    assert set(lab.unique().tolist()) <= allowed
    if scale < 1:  # the whole downscaled scene, padded bottom/right
        assert (lab == OE_LABEL).any()
        assert (lab[round(32 * scale):] == VOID).all() and (img[:, round(32 * scale):] == 0).all()


def test_joint_augment_pads_image_0_label_255():
    image, label = _scene(4, 6)
    img, lab = joint_augment(image + 1.0, label, hflip=False, crop=(6, 9))
    assert img.shape == (3, 6, 9)
    assert (lab[4:] == VOID).all() and (lab[:, 6:] == VOID).all() and torch.equal(lab[:4, :6], label)
    assert (img[:, 4:] == 0).all() and (img[:, :, 6:] == 0).all()


# ------------------------------------------------------------------------------ the sampler
def _domains() -> torch.Tensor:
    return torch.tensor([0] * 10 + [1] * 7 + [2] * 9)


def test_every_batch_holds_every_domain():
    doms = _domains()
    s = DomainBalancedSampler(doms, 3, generator=torch.Generator().manual_seed(0))
    batches = list(s)
    assert len(batches) == len(s) == 7 // 3
    for b in batches:
        assert doms[b].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # no image twice in an epoch (default length)


def test_per_domain_counts_and_cycling():
    doms = _domains()
    s = DomainBalancedSampler(doms, [2, 1, 3], generator=torch.Generator().manual_seed(0), num_batches=12)
    batches = list(s)
    assert len(batches) == 12 and all(doms[b].tolist() == [0, 0, 1, 2, 2, 2] for b in batches)
    ones = [b[2] for b in batches]  # domain 1 (7 images) is cycled: each image before any repeats
    assert sorted(ones[:7]) == list(range(10, 17))


def test_sampler_is_seeded_and_restorable():
    g = torch.Generator().manual_seed(5)
    s = DomainBalancedSampler(_domains(), 2, generator=g)
    state = g.get_state()
    first = list(s)
    assert first != list(s)  # a new order every epoch
    g.set_state(state)
    assert first == list(s)  # the same order after restoring the generator


def test_ranks_get_disjoint_balanced_shards():
    doms = _domains()
    shards = [list(DomainBalancedSampler(doms, 1, generator=torch.Generator().manual_seed(0), rank=r,
                                         num_replicas=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 3  # 7 batches -> 6, 3 per rank
    flat = [i for sh in shards for b in sh for i in b]
    assert len(flat) == len(set(flat))
    assert all(doms[b].tolist() == [0, 1, 2] for sh in shards for b in sh)


@pytest.mark.parametrize("kwargs, match", [
    ({"domains": [0, 0, 2, 2], "per_domain": 1}, "domain ids \\[1\\] have no images"),
    ({"domains": [0, 1, 1], "per_domain": 2}, "domain 0 has 1 images"),
    ({"domains": [0, 1], "per_domain": [1]}, "per_domain"),
    ({"domains": [0, 1], "per_domain": 0}, "per_domain"),
    ({"domains": [], "per_domain": 1}, "no training images"),
])
def test_sampler_errors(kwargs, match):
    with pytest.raises(ZooError, match=match):
        DomainBalancedSampler(**kwargs)
