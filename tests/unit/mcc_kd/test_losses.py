"""MCC-KD's answer-span KL and per-sequence CE against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.mcc_kd.losses import answer_span_kl, mcc_kd_loss, sequence_ce

LN3 = math.log(3.0)


def _one_pair(za, zb):
    """logits (1, 1, 2) per side, a span of one token at position 0."""
    a = torch.tensor([[za]], dtype=torch.float32, requires_grad=True)
    b = torch.tensor([[zb]], dtype=torch.float32, requires_grad=True)
    pos = torch.zeros(1, 1, dtype=torch.long)
    return a, b, pos, torch.ones(1, 1, dtype=torch.bool), torch.ones(1, dtype=torch.bool)


def test_kl_by_hand_two_token_vocabulary():
    # P = softmax([0, 0]) = (1/2, 1/2); Q = softmax([ln 3, 0]) = (3/4, 1/4).
    # KL(P||Q) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3) = 0.1438410
    # KL(Q||P) = 3/4 ln(3/2) + 1/4 ln(1/2)           = 0.1308120
    # L = 1/2 (0.1438410 + 0.1308120)                = 0.1373265
    a, b, pos, mask, valid = _one_pair([0.0, 0.0], [LN3, 0.0])
    loss, per_pair = answer_span_kl(a, b, pos, pos, mask, valid)
    assert loss.item() == pytest.approx(0.1373265, abs=1e-6)
    assert per_pair.tolist() == pytest.approx([0.1373265], abs=1e-6)


def test_temperature_applies_to_both_sides():
    # T = 2: P = softmax([0, 0]) again; Q = softmax([ln 3 / 2, 0]) = (sqrt3/(sqrt3+1), 1/(sqrt3+1)).
    q0 = math.sqrt(3) / (math.sqrt(3) + 1)
    q = (q0, 1 - q0)
    fwd = sum(0.5 * math.log(0.5 / qi) for qi in q)
    bwd = sum(qi * math.log(qi / 0.5) for qi in q)
    a, b, pos, mask, valid = _one_pair([0.0, 0.0], [LN3, 0.0])
    loss, _ = answer_span_kl(a, b, pos, pos, mask, valid, temperature=2.0)
    assert loss.item() == pytest.approx(0.5 * (fwd + bwd), abs=1e-6)
    # with T on one side only, the value would differ: the rule is "T on both sides"
    a2, b2, *_ = _one_pair([0.0, 0.0], [LN3 / 2, 0.0])
    same, _ = answer_span_kl(a2, b2, pos, pos, mask, valid, temperature=1.0)
    assert loss.item() == pytest.approx(same.item(), abs=1e-7)


def test_zero_for_identical_logits_and_symmetric():
    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(3, 7, 5, generator=g), torch.randn(3, 6, 5, generator=g)
    pa = torch.tensor([[1, 2, 0], [3, 4, 5], [0, 0, 0]])
    pb = torch.tensor([[2, 3, 0], [1, 2, 3], [4, 0, 0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    valid = torch.ones(3, dtype=torch.bool)
    zero, _ = answer_span_kl(za, za, pa, pa, mask, valid)
    assert zero.item() == pytest.approx(0.0, abs=1e-7)
    ab, _ = answer_span_kl(za, zb, pa, pb, mask, valid)
    ba, _ = answer_span_kl(zb, za, pb, pa, mask, valid)
    assert ab.item() > 0 and ab.item() == pytest.approx(ba.item(), abs=1e-7)


def test_only_span_positions_contribute_and_padding_is_masked():
    g = torch.Generator().manual_seed(1)
    za, zb = torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    pa = torch.tensor([[1, 2], [3, 5]])   # row 0 has a span of 2, row 1 of 1 (second entry padding)
    pb = torch.tensor([[0, 4], [2, 5]])
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    valid = torch.ones(2, dtype=torch.bool)
    ref, _ = answer_span_kl(za, zb, pa, pb, mask, valid)
    za2, zb2 = za.clone(), zb.clone()
    za2[0, [0, 3, 4, 5]] += 5.0   # non-span positions of row 0
    za2[1, 5] -= 7.0              # the padded span entry of row 1
    zb2[1, [0, 1, 3, 4, 5]] *= 3.0
    got, _ = answer_span_kl(za2, zb2, pa, pb, mask, valid)
    assert got.item() == pytest.approx(ref.item(), abs=1e-6)


def test_mean_over_valid_pairs_only_and_zero_when_none():
    a, b, pos, mask, _ = _one_pair([0.0, 0.0], [LN3, 0.0])
    a2 = torch.cat([a, torch.tensor([[[9.0, -9.0]]])])
    b2 = torch.cat([b, torch.tensor([[[-9.0, 9.0]]])])   # a huge KL, but the pair is invalid
    pos2, mask2 = torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool)
    loss, per = answer_span_kl(a2, b2, pos2, pos2, mask2, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(0.1373265, abs=1e-6) and per[1].item() == 0.0
    none, _ = answer_span_kl(a2, b2, pos2, pos2, mask2, torch.tensor([False, False]))
    assert none.item() == 0.0
    none.backward()  # defined gradient (zero), no NaN


def test_gradients_flow_through_both_branches():
    a, b, pos, mask, valid = _one_pair([0.0, 0.0], [LN3, 0.0])
    loss, _ = answer_span_kl(a, b, pos, pos, mask, valid)
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_kl_in_fp32_under_bf16_autocast():
    g = torch.Generator().manual_seed(2)
    za, zb = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    pos = torch.tensor([[1, 2], [0, 3]])
    mask, valid = torch.ones(2, 2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    ref, _ = answer_span_kl(za, zb, pos, pos, mask, valid)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = answer_span_kl(za, zb, pos, pos, mask, valid)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(ref.item(), abs=1e-7)


def test_sequence_ce_by_hand():
    # seq 1: [0, 0] -> label 0: ln 2 = 0.6931472; [ln 3, 0] -> label 0: -ln(3/4) = 0.2876821; mean 0.4904146
    # seq 2: [0, ln 3] -> label 0: -ln(1/4) = 1.3862944; its second position is padding (-100)
    # per-sequence then batch mean: (0.4904146 + 1.3862944) / 2 = 0.9383545 (a token mean would be 0.7890412)
    logits = torch.tensor([[[0.0, 0.0], [LN3, 0.0]], [[0.0, LN3], [5.0, -5.0]]])
    labels = torch.tensor([[0, 0], [0, -100]])
    assert sequence_ce(logits, labels).item() == pytest.approx(0.9383545, abs=1e-6)


def test_total_is_mean_ce_plus_alpha_kl():
    g = torch.Generator().manual_seed(3)
    za, zb = torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    la, lb = torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, 5]]), torch.tensor([[-100, 2, 2, 3], [-100, 1, 4, -100]])
    pos = torch.tensor([[2, 3], [2, 3]])
    mask, valid = torch.ones(2, 2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    out = mcc_kd_loss(za, la, zb, lb, pos, pos, mask, valid, alpha=0.5)
    kl, _ = answer_span_kl(za, zb, pos, pos, mask, valid)
    ce = 0.5 * (sequence_ce(za, la) + sequence_ce(zb, lb))
    assert out["loss"].item() == pytest.approx((ce + 0.5 * kl).item(), abs=1e-6)
    assert out["ce"].item() == pytest.approx(ce.item()) and out["kl"].item() == pytest.approx(kl.item())
