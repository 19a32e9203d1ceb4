"""PTA parts against hand-worked values: the keep rule, selection and fusion, the losses, the
hard-negative sampler, retrieval ranks and detector counts."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.core.errors import ZooError
from zoo.pta.losses import itc_loss, mask_tokens, mlm_loss, pta_loss, sample_hard_negatives
from zoo.pta.retrieval import detector_counts, ranks, retrieval_metrics
from zoo.pta.torch_model import keep_count, select_tokens


@pytest.mark.parametrize("n,r,k", [(100, 0.07, 7), (64, 0.5, 32), (64, 0.3, 20), (10, 0.25, 3), (196, 0.7, 138),
                                   (196, 1.0, 196), (3, 0.01, 1), (100, 0.29, 29), (100, 0.57, 57)])
def test_keep_count_is_the_exact_ceiling(n, r, k):
    assert keep_count(n, r) == k  # float ceil(0.07 * 100) = 8, ceil(0.29 * 100) = 29.000000000000004 -> 30, ...


@pytest.mark.parametrize("r", [0, -0.5, 1.01, float("nan")])
def test_keep_ratio_outside_the_unit_interval_is_an_error(r):
    with pytest.raises(ZooError, match="keep_ratio"):
        keep_count(64, r)


def test_selection_keeps_top_k_in_order_and_fuses_the_rest_with_normalised_sigmoid_weights():
    x = torch.tensor([[10.0, 1.0, 2.0, 3.0, 4.0]]).unsqueeze(-1)  # CLS, 4 patches, D = 1
    logits = torch.tensor([[0.0, 3.0, -1.0, 2.0]])
    tokens, idx = select_tokens(x, logits, 2)
    assert idx.tolist() == [[1, 3]]
    s0, s2 = 0.5, 1 / (1 + math.e)  # sigmoid(0), sigmoid(-1)
    fused = (s0 * 1.0 + s2 * 3.0) / (s0 + s2)
    torch.testing.assert_close(tokens[0, :, 0], torch.tensor([10.0, 2.0, 4.0, fused]))


def test_keeping_every_patch_returns_the_input_without_a_fused_token():
    x = torch.randn(2, 5, 3)
    tokens, idx = select_tokens(x, torch.randn(2, 4), 4)
    assert tokens is x and idx.tolist() == [[0, 1, 2, 3]] * 2


@pytest.mark.parametrize("n,r", [(16, 0.5), (16, 0.25), (64, 0.3), (100, 0.07)])
def test_kept_token_count_and_order(n, r):
    k = keep_count(n, r)
    x = torch.randn(3, n + 1, 4)
    tokens, idx = select_tokens(x, torch.randn(3, n), k)
    assert tokens.shape == (3, k + 2, 4)
    assert (idx.diff(dim=1) > 0).all()
    torch.testing.assert_close(tokens[:, 1:k + 1], x[:, 1:].gather(1, idx[..., None].expand(-1, -1, 4)))


def test_itc_loss_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # sim = [[1, .6], [0, .8]]
    i2t = (math.log1p(math.exp(-0.4)) + math.log1p(math.exp(-0.8))) / 2
    t2i = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-0.2))) / 2
    got = itc_loss(img, txt, 1.0, torch.tensor([0, 1]))
    assert float(got) == pytest.approx((i2t + t2i) / 2, abs=1e-6)


def test_itc_targets_spread_over_captions_of_the_same_image():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # both rows: sim [1, 0]; targets [.5, .5]
    row = -(0.5 * math.log(math.e / (math.e + 1)) + 0.5 * math.log(1 / (math.e + 1)))
    # t2i: column 0 scores [1, 1] (uniform target -> log 2 each way); column 1 scores [0, 0]
    t2i = math.log(2)
    assert float(itc_loss(img, txt, 1.0, torch.tensor([7, 7]))) == pytest.approx((row + t2i) / 2, abs=1e-6)


def test_hard_negatives_never_pick_a_pair_of_the_same_image():
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([0, 0, 1, 2, 2, 3])
    for _ in range(200):
        sim = torch.randn(6, 6, generator=g) * 5
        nt, ni = sample_hard_negatives(sim, ids, g)
        assert (ids[nt] != ids).all() and (ids[ni] != ids).all()


def test_hard_negatives_follow_the_similarity():
    g = torch.Generator().manual_seed(0)
    sim = torch.tensor([[0.0, 10.0, -10.0], [0.0, 0.0, 0.0], [10.0, -10.0, 0.0]])
    picks = torch.stack([sample_hard_negatives(sim, torch.arange(3), g)[0] for _ in range(50)])
    assert (picks[:, 0] == 1).all() and (picks[:, 2] == 0).all()  # the hardest text of images 0 and 2


def test_a_batch_of_one_image_has_no_negative():
    with pytest.raises(ZooError, match="one image"):
        sample_hard_negatives(torch.zeros(2, 2), torch.tensor([4, 4]))


def test_pta_loss_by_hand_and_masking_of_unannotated_pairs():
    logits = torch.tensor([[0.0, 2.0], [50.0, -50.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # row 1 would cost ~50 but has no boxes
    boxes = torch.tensor([True, False])
    want = (math.log(2) + math.log1p(math.exp(2.0))) / 2
    assert float(pta_loss(logits, labels, boxes)) == pytest.approx(want, abs=1e-6)


def test_pta_positive_weight_is_neg_over_pos_capped():
    logits, labels = torch.zeros(1, 4), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert float(pta_loss(logits, labels, torch.tensor([True]), 10.0)) == pytest.approx((3 + 3) * math.log(2) / 4)
    assert float(pta_loss(logits, labels, torch.tensor([True]), 2.0)) == pytest.approx((2 + 3) * math.log(2) / 4)


def test_pta_loss_is_zero_but_attached_without_boxes():
    logits = torch.randn(3, 4, requires_grad=True)
    loss = pta_loss(logits, torch.ones(3, 4), torch.zeros(3, dtype=torch.bool))
    assert float(loss) == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 4))


def test_masking_skips_special_tokens_and_labels_the_chosen_ones():
    ids = torch.tensor([[2, 7, 8, 9, 3, 0]])
    special = torch.tensor([[True, False, False, False, True, True]])
    g = torch.Generator().manual_seed(0)
    out, labels = mask_tokens(ids, special, mask_id=4, vocab_size=10, prob=1.0, generator=g)
    assert labels.tolist() == [[-100, 7, 8, 9, -100, -100]]
    assert out[special].tolist() == [2, 3, 0]
    none, lab0 = mask_tokens(ids, special, 4, 10, prob=0.0, generator=g)
    assert torch.equal(none, ids) and (lab0 == -100).all()
    z = torch.randn(1, 6, 10, requires_grad=True)
    loss = mlm_loss(z, lab0)
    assert float(loss) == 0.0 and loss.requires_grad


def test_ranks_count_ties_against_the_query():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0]])
    gt = torch.tensor([[False, True, False, False], [False, False, False, True]])
    assert ranks(scores, gt).tolist() == [2, 3]


def test_retrieval_metrics_with_two_captions_per_image():
    # image 0 owns texts 0, 1; image 1 owns texts 2, 3
    i2t = torch.tensor([[0.1, 0.9, 0.8, 0.0], [0.7, 0.2, 0.3, 0.1]])
    m = retrieval_metrics(i2t, torch.tensor([0, 0, 1, 1]))
    assert m["tr@1"] == 50.0  # image 0: text 1 first (hit); image 1: text 0 of image 0 first (miss)
    # texts -> images: t0 -> 1 (miss), t1 -> 0 (hit), t2 -> 0 (miss), t3 -> 1 (hit)
    assert m["ir@1"] == 50.0 and m["ir@5"] == 100.0
    assert m["r_mean"] == pytest.approx((50 + 100 + 100 + 50 + 100 + 100) / 6)


def test_detector_counts_by_hand():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    pos = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    dis = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    c = detector_counts(logits, pos, dis, k=2)  # keeps patches 0, 1
    assert c == {"kept_pos": 1.0, "pos": 2.0, "kept": 2.0, "dropped_distractor": 1.0, "distractor": 2.0}
