"""DePT/CoOp maths against hand-computed values (arXiv:2309.07439v2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from zoo.common.vision.clip import build_clip, get_tokenizer
from zoo.core.errors import ZooError
from zoo.dept.lightning_model import CoOp, DePT, harmonic_mean
from zoo.dept.torch_model import CATHead, DePTModel, dept_loss, encode_prompts, fuse, itm_logits, prompt_texts

BASE = ["red circle", "green square", "blue triangle"]
NEW = ["red star", "blue heart"]


@pytest.fixture(scope="module")
def clip() -> nn.Module:
    torch.manual_seed(0)
    return build_clip("zoo-test-clip")


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("zoo-test-clip", "datamodules/fewshot/shapes/vocab.txt")


def _model(clip, tok, head: int = 0, seed: int = 0) -> DePTModel:
    torch.manual_seed(seed)
    m = DePTModel(clip, tok, n_ctx=4, num_base_classes=head)
    m.set_classnames(BASE)
    return m


def test_cat_head_shapes_and_init():
    head = CATHead(8, 5)
    assert_close(head.gamma_img, torch.ones(8))
    assert_close(head.gamma_txt, torch.ones(8))
    assert_close(head.beta_img, torch.zeros(8))
    assert_close(head.beta_txt, torch.zeros(8))
    bound = 1 / math.sqrt(8)  # nn.Linear default init U(-1/sqrt(d), 1/sqrt(d))
    assert head.linear.weight.abs().max() <= bound and head.linear.bias.abs().max() <= bound
    for b in (1, 3):
        f_img, f_txt, y = torch.randn(b, 8), torch.randn(5, 8), torch.randint(0, 5, (b,))
        assert head(f_img).shape == (b, 5)
        assert head.train_logits(f_img, f_txt, y).shape == (2 * b, 5)  # rows stacked, not channels
    assert sum(p.numel() for p in head.parameters()) == 4 * 8 + 9 * 5


def test_stacked_two_b_row_loss_by_hand():
    head = CATHead(2, 2)
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(2))
        head.linear.bias.zero_()
    f_txt = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    f_img = torch.tensor([[1.0, 1.0]])
    y = torch.tensor([0])
    s_cat = head.train_logits(f_img, f_txt, y)
    assert_close(s_cat, torch.tensor([[2.0, 0.0], [1.0, 1.0]]))  # [g_T[y]; g_I]
    s_itm = itm_logits(f_img, f_txt, torch.tensor(0.0))  # tau = 1
    assert_close(s_itm, torch.tensor([[2 ** -0.5, 2 ** -0.5]]))
    # CE rows: log(1 + e^-2) = 0.126928 and log 2 = 0.693147 -> CAT 0.410038; ITM log 2
    # L = 0.3 * 0.693147 + 0.7 * 0.410038 = 0.494971
    assert_close(dept_loss(s_itm, s_cat, y, 0.7), torch.tensor(0.494971), atol=1e-6, rtol=0)
    assert_close(dept_loss(s_itm, s_cat, y, 0.0), torch.tensor(math.log(2)), atol=1e-6, rtol=0)
    assert_close(dept_loss(s_itm, s_cat, y, 1.0), torch.tensor(0.410038), atol=1e-6, rtol=0)


def test_cwt_acts_on_raw_features():
    head = CATHead(2, 1)
    with torch.no_grad():
        head.gamma_img.copy_(torch.tensor([2.0, 3.0]))
        head.beta_img.copy_(torch.tensor([1.0, -1.0]))
    assert_close(head.cwt_img(torch.tensor([[10.0, 10.0]])), torch.tensor([[21.0, 29.0]]))


def test_itm_logits_by_hand():
    s = itm_logits(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor(math.log(100)))
    assert_close(s, torch.tensor([[60.0, 80.0]]))
    assert s.dtype == torch.float32


def test_fusion_on_hand_made_logits():
    itm, cat = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]])
    assert_close(fuse(itm, cat, 0.7, "logits"), torch.tensor([[2.4, 0.6]]))
    # softmax([1,2]) = [0.268941, 0.731059]; softmax([3,0]) = [0.952574, 0.047426]
    assert_close(fuse(itm, cat, 0.7, "probs"), torch.tensor([[0.747484, 0.252516]]), atol=1e-6, rtol=0)
    # the rules can disagree: logits 0.3*[0, 9] + 0.7*[3, 0] = [2.1, 2.7] -> class 1, while
    # probs 0.3*[0.000123, 0.999877] + 0.7*[0.952574, 0.047426] = [0.666839, 0.333161] -> class 0
    itm2 = torch.tensor([[0.0, 9.0]])
    assert_close(fuse(itm2, cat, 0.7, "logits"), torch.tensor([[2.1, 2.7]]))
    assert_close(fuse(itm2, cat, 0.7, "probs"), torch.tensor([[0.666839, 0.333161]]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        fuse(itm, cat, 0.7, "mean")  # type: ignore[arg-type]


def test_harmonic_mean():
    assert harmonic_mean(0.8, 0.6) == pytest.approx(0.685714, abs=1e-6)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_prompts_are_coop_template_and_match_clip_text_tower(clip, tok):
    assert prompt_texts(["sea_lion"], 2) == ["X X sea lion."]
    m = _model(clip, tok)
    with torch.no_grad():  # context = the embeddings of the placeholder words -> plain CLIP text
        m.prompt.ctx.copy_(clip.token_embedding(tok(["x x x x"]))[0, 1:5])
        ref = clip.encode_text(tok(prompt_texts(BASE, 4)))
        assert_close(m.text_features(), ref)
        assert_close(encode_prompts(clip, m.prompt(), m.prompt.tokens), ref)
    assert m.prompt().shape == (3, 16, clip.token_embedding.weight.shape[1])


def test_lambda_zero_gives_coop_loss_and_gradients_exactly(clip, tok):
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 2, 1, 0])
    dept = _model(clip, tok, head=3, seed=1)
    coop = _model(clip, tok, head=0, seed=1)
    assert_close(dept.prompt.ctx, coop.prompt.ctx)
    s_itm, s_cat = dept.training_logits(x, y)
    loss_d = dept_loss(s_itm, s_cat, y, 0.0)
    c_itm, c_cat = coop.training_logits(x, y)
    assert c_cat is None
    loss_c = dept_loss(c_itm, None, y, 0.0)
    assert_close(loss_d, loss_c, rtol=0, atol=0)
    assert_close(loss_c, nn.functional.cross_entropy(c_itm, y), rtol=0, atol=0)
    loss_d.backward()
    loss_c.backward()
    assert_close(dept.prompt.ctx.grad, coop.prompt.ctx.grad, rtol=0, atol=0)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in dept.head.parameters())


def test_clip_gets_no_gradient_and_stays_unchanged_after_a_step(tok):
    model = DePT(clip_model="zoo-test-clip", clip_weights=None, n_ctx=4, lam=0.7)
    model.set_train_classes(BASE)
    before = {k: v.clone() for k, v in model.net.clip.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model.train()
    assert not model.net.clip.training  # frozen encoders stay in eval mode
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    s_itm, s_cat = model.net.training_logits(x, y)
    dept_loss(s_itm, s_cat, y, 0.7).backward()
    assert all(p.grad is None for p in model.net.clip.parameters())
    assert model.net.prompt.ctx.grad is not None and model.net.head.linear.weight.grad is not None
    opt.step()
    for k, v in model.net.clip.state_dict().items():
        assert torch.equal(v, before[k]), k
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"net.prompt.ctx", "net.head.gamma_img", "net.head.beta_img", "net.head.gamma_txt",
                         "net.head.beta_txt", "net.head.linear.weight", "net.head.linear.bias"}
    assert set(model.state_dict()) == trainable  # checkpoints hold only the trainable tensors


def test_new_classes_use_itm_only_and_equal_coop_with_the_same_context():
    dept = DePT(clip_model="zoo-test-clip", clip_weights=None, n_ctx=4, lam=0.7)
    dept.set_train_classes(BASE)
    coop = CoOp(clip_model="zoo-test-clip", clip_weights=None, n_ctx=4)
    coop.set_train_classes(BASE)
    assert coop.net.head is None
    with torch.no_grad():
        coop.net.prompt.ctx.copy_(dept.net.prompt.ctx)
    dept.eval(), coop.eval()
    x = torch.randn(5, 3, 32, 32)
    head_before = dept.net.head
    out_d = dept.predict_images(x, classes=NEW)
    out_c = coop.predict_images(x, classes=NEW)
    assert dept.net.head is head_before and dept.net.head.linear.out_features == len(BASE)  # no head built
    assert not out_d["fused"]
    assert torch.equal(out_d["pred"], out_c["pred"]) and torch.allclose(out_d["prob"], out_c["prob"])
    f_new = dept.class_text_features(NEW)
    assert_close(dept.net.predict_logits(x, f_new, use_head=False, lam=0.7),
                 coop.net.predict_logits(x, coop.class_text_features(NEW), use_head=False, lam=0.0))
    assert dept.net.prompt.classnames == BASE  # training classes restored after scoring new ones
    # base classes are fused: (1 - lam) ITM + lam CAT
    f_base = dept.class_text_features(BASE)
    f_img = dept.net.encode_image(x)
    want = fuse(itm_logits(f_img, f_base, dept.net.logit_scale), dept.net.head(f_img), 0.7)
    assert_close(dept.net.predict_logits(x, f_base, use_head=True, lam=0.7), want)
    with pytest.raises(ZooError, match="ITM only"):
        dept.net.predict_logits(x, f_new, use_head=True, lam=0.7)


def test_duplicate_class_names_are_an_error(clip, tok):
    m = _model(clip, tok)
    with pytest.raises(ZooError, match="duplicates: red circle"):
        m.set_classnames(["red circle", "blue star", "red circle"])


def test_unknown_word_for_the_tiny_tokenizer_is_an_error(tok):
    with pytest.raises(ZooError, match="'zebra'"):
        tok(["a photo of a zebra."])


def test_lr_schedule_constant_warmup_then_cosine():
    model = DePT(clip_model="zoo-test-clip", clip_weights=None, n_ctx=4, lam=0.7, lr=0.0035, head_lr_mult=6.5)
    model.set_train_classes(BASE)
    cfg = model.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(4):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx([1e-5, 1e-5])  # epoch 0: both groups at the constant 1e-5
    assert lrs[1] == pytest.approx([0.0035, 0.02275])  # head gets 6.5x
    c = 0.5 * (1 + math.cos(math.pi * 1 / 10))  # E = 10 when no trainer is attached
    assert lrs[2] == pytest.approx([0.0035 * c, 0.02275 * c])
