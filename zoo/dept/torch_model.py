"""DePT on a frozen CLIP: the CoOp prompt learner, the CAT head, the losses and the fusion.

Plain PyTorch (no Lightning). Ref: Zhang et al., "DePT: Decoupled Prompt Tuning",
arXiv:2309.07439v2 (CVPR 2024), official code Koorye/DePT. CoOp: Zhou et al.,
"Learning to Prompt for Vision-Language Models", IJCV 2022 (arXiv:2109.01134).

Shapes: B images, C classes, L text context, D text width, E joint embedding (512 for ViT-B/16).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.core.errors import ZooError

Fusion = Literal["logits", "probs"]


def prompt_texts(classnames: list[str], n_ctx: int, placeholder: str = "X") -> list[str]:
    """CoOp's tokenised template, class token at the end: ``"X X ... X {name}."``.

    Underscores in class names become spaces. The ``n_ctx`` placeholders are swapped for the
    learned context vectors after embedding.
    """
    ctx = " ".join([placeholder] * n_ctx)
    return [f"{ctx} {name.replace('_', ' ')}." for name in classnames]


class PromptLearner(nn.Module):
    """CoOp's shared context: ``n_ctx`` learned vectors before every class name.

    The [SOS] prefix and the ``name . [EOS] pad`` suffix are *non-persistent* buffers rebuilt
    from the class names by :meth:`set_classnames` (at every stage; never loaded from a
    checkpoint). Only ``ctx`` (n_ctx, D) is a parameter.

    Args:
        token_embedding: the frozen CLIP token embedding (used to embed the fixed parts).
        tokenizer: texts -> LongTensor (N, L).
        n_ctx: number of context vectors (16 in the paper; 4 on the embedded world).
        ctx_init: optional words to initialise the context from (e.g. ``"a photo of a"``, then
            ``n_ctx`` is its number of tokens); default N(0, ctx_std^2) (CoOp's generic context).
        ctx_std: std of the random init (0.02).
    """

    def __init__(self, token_embedding: nn.Embedding, tokenizer: Callable[[list[str]], Tensor], n_ctx: int = 16,
                 ctx_init: str | None = None, ctx_std: float = 0.02) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self._embed = [token_embedding]  # a list, so the frozen CLIP table is not a submodule here
        dim = token_embedding.weight.shape[1]
        if ctx_init:
            tokens = tokenizer([ctx_init])
            n_ctx = int((tokens[0] != 0).sum().item()) - 2  # minus SOT and EOT (pad id 0)
            with torch.no_grad():
                init = token_embedding(tokens)[0, 1:1 + n_ctx].float().clone()
        else:
            init = torch.empty(n_ctx, dim).normal_(0.0, ctx_std)
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(init)
        self.classnames: list[str] = []
        self.register_buffer("token_prefix", torch.zeros(0, 1, dim), persistent=False)
        self.register_buffer("token_suffix", torch.zeros(0, 0, dim), persistent=False)
        self.register_buffer("tokens", torch.zeros(0, 0, dtype=torch.long), persistent=False)

    def set_classnames(self, classnames: list[str]) -> None:
        """Rebuild the fixed prompt parts for ``classnames`` (on the context's device)."""
        dups = sorted({c for c in classnames if classnames.count(c) > 1})
        if dups:
            raise ZooError(f"class list has duplicates: {', '.join(dups)}")
        dev = self.ctx.device
        tokens = self.tokenizer(prompt_texts(classnames, self.n_ctx)).to(dev)
        emb = self._embed[0]
        with torch.no_grad():
            embedding = emb(tokens.to(emb.weight.device)).to(dev, self.ctx.dtype)
        self.token_prefix = embedding[:, :1]
        self.token_suffix = embedding[:, 1 + self.n_ctx:]
        self.tokens = tokens
        self.classnames = list(classnames)

    def forward(self) -> Tensor:
        """Prompt embeddings (C, L, D): [SOS] + ctx + name tokens."""
        if not self.classnames:
            raise RuntimeError("PromptLearner.set_classnames must be called first")
        ctx = self.ctx.unsqueeze(0).expand(len(self.classnames), -1, -1)
        return torch.cat([self.token_prefix, ctx.to(self.token_prefix.dtype), self.token_suffix], dim=1)


def encode_prompts(clip: nn.Module, prompts: Tensor, tokens: Tensor) -> Tensor:
    """CLIP's text tower on prompt embeddings instead of token ids (CoOp's TextEncoder).

    f_T = ln_final(transformer(prompts + pos))[EOT] @ text_projection, EOT = argmax of the ids.

    Args:
        clip: an ``open_clip.model.CLIP``.
        prompts: (C, L, D) embeddings.
        tokens: (C, L) ids (only their argmax position is used).

    Returns:
        (C, E) raw (unnormalised) text features.
    """
    cast = clip.transformer.get_cast_dtype()
    x = prompts.to(cast) + clip.positional_embedding.to(cast)
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    proj = clip.text_projection
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def itm_logits(f_img: Tensor, f_txt: Tensor, logit_scale: Tensor) -> Tensor:
    """Image-text matching logits s_ITM = tau * n(f_I) n(f_T)^T, in float32.

    Ref: DePT arXiv:2309.07439v2, Method, the ITM head (CLIP/CoOp's matching), tau = exp(logit_scale).

    Args:
        f_img: (B, E) image features. f_txt: (C, E) text features. logit_scale: scalar (log tau).

    Returns:
        (B, C) float32 logits.
    """
    with torch.autocast(device_type=f_img.device.type, enabled=False):
        i = F.normalize(f_img.float(), dim=-1)
        t = F.normalize(f_txt.float(), dim=-1)
        return logit_scale.float().exp() * i @ t.t()


class CATHead(nn.Module):
    """The Channel Adjusted Transfer head: per-modality channel-wise affine maps + a linear
    classifier over the base classes.

    Ref: DePT arXiv:2309.07439v2, Method, the CAT head (channel-wise transformation cwT and the
    linear classifier; equation numbers not verified offline, see the model card); official code: gamma/beta initialised to ones/zeros, acting on RAW (unnormalised) features; the linear
    layer keeps nn.Linear's default init; no normalisation and no temperature.

    Args:
        dim: feature width E.
        num_classes: number of base classes C_base.
    """

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.gamma_img = nn.Parameter(torch.ones(dim))
        self.beta_img = nn.Parameter(torch.zeros(dim))
        self.gamma_txt = nn.Parameter(torch.ones(dim))
        self.beta_txt = nn.Parameter(torch.zeros(dim))
        self.linear = nn.Linear(dim, num_classes)

    def cwt_img(self, f: Tensor) -> Tensor:
        """g_I = gamma_I * f_I + beta_I (channel-wise), (B, E) -> (B, E)."""
        return self.gamma_img * f + self.beta_img

    def cwt_txt(self, f: Tensor) -> Tensor:
        """g_T = gamma_T * f_T + beta_T (channel-wise), (C, E) -> (C, E)."""
        return self.gamma_txt * f + self.beta_txt

    def forward(self, f_img: Tensor) -> Tensor:
        """Inference logits s_CAT = W g_I + b, (B, E) -> (B, C_base), float32."""
        with torch.autocast(device_type=f_img.device.type, enabled=False):
            return self.linear(self.cwt_img(f_img.float()))

    def train_logits(self, f_img: Tensor, f_txt: Tensor, y: Tensor) -> Tensor:
        """Training logits on the stacked rows [g_T[y_1..y_B]; g_I[1..B]] -> (2B, C_base).

        The text rows are the ground-truth classes' text features, so both halves have targets
        ``[y; y]``. Rows are stacked along the batch, never concatenated along channels.
        """
        with torch.autocast(device_type=f_img.device.type, enabled=False):
            rows = torch.cat([self.cwt_txt(f_txt.float()[y]), self.cwt_img(f_img.float())], dim=0)
            return self.linear(rows)


def dept_loss(logits_itm: Tensor, logits_cat: Tensor | None, y: Tensor, lam: float) -> Tensor:
    """L = (1 - lam) * CE(s_ITM, y) + lam * CE(s_CAT, [y; y]).

    Ref: DePT arXiv:2309.07439v2, Method, the dual-head objective L = lam*L_CAT + (1-lam)*L_ITM; lam = 0.7.
    The CAT term is the mean over the 2B stacked rows. With ``lam == 0`` (or no head) this is
    exactly CoOp's loss CE(s_ITM, y) (CoOp arXiv:2109.01134, its cross-entropy over the prompt logits).

    Args:
        logits_itm: (B, C) ITM logits.
        logits_cat: (2B, C) CAT logits on stacked [text; image] rows, or None (CoOp).
        y: (B,) labels.
        lam: the mixing weight.
    """
    itm = F.cross_entropy(logits_itm.float(), y)
    if logits_cat is None or lam == 0:
        return itm
    cat = F.cross_entropy(logits_cat.float(), torch.cat([y, y]))
    return (1 - lam) * itm + lam * cat


def fuse(logits_itm: Tensor, logits_cat: Tensor, lam: float, mode: Fusion = "logits") -> Tensor:
    """Base-class test-time fusion of the two heads.

    ``logits`` (official code): s = (1 - lam) * s_ITM + lam * s_CAT on raw logits.
    ``probs`` (the paper's test-time fusion p = lam*P_CAT + (1-lam)*P_ITM, arXiv:2309.07439v2): p = (1 - lam) * softmax(s_ITM) + lam * softmax(s_CAT).
    Either is then arg-maxed; note the logits live on different scales (tau = 100 cosines vs raw
    linear outputs), which is why the two rules can disagree.

    Returns:
        (B, C) fused scores (logits or probabilities).
    """
    if mode == "logits":
        return (1 - lam) * logits_itm + lam * logits_cat
    if mode == "probs":
        return (1 - lam) * logits_itm.softmax(-1) + lam * logits_cat.softmax(-1)
    raise ValueError(f"fusion must be 'logits' or 'probs', got {mode!r}")


class DePTModel(nn.Module):
    """A frozen CLIP + CoOp prompt learner (+ the CAT head for DePT).

    The CLIP is frozen, kept in eval mode and left out of :meth:`state_dict` (checkpoints hold
    only the context and the head; the frozen weights come from their own file). Loading is
    still strict for everything that *is* saved.

    Args:
        clip: an ``open_clip.model.CLIP`` (frozen here).
        tokenizer: the CLIP's tokenizer.
        n_ctx, ctx_init, ctx_std: see :class:`PromptLearner`.
        num_base_classes: size of the CAT head; 0 builds no head (CoOp).
    """

    def __init__(self, clip: nn.Module, tokenizer: Callable[[list[str]], Tensor], n_ctx: int = 16,
                 ctx_init: str | None = None, ctx_std: float = 0.02, num_base_classes: int = 0) -> None:
        super().__init__()
        self.clip = clip
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.clip.eval()
        self.tokenizer = tokenizer
        self.prompt = PromptLearner(clip.token_embedding, tokenizer, n_ctx, ctx_init, ctx_std)
        dim = int(clip.text_projection.shape[1] if isinstance(clip.text_projection, Tensor)
                  else clip.text_projection.out_features)
        self.embed_dim = dim
        self.head = CATHead(dim, num_base_classes) if num_base_classes > 0 else None
        self._register_state_dict_hook(_drop_frozen)
        self.register_load_state_dict_post_hook(_ignore_frozen_missing)

    def train(self, mode: bool = True) -> DePTModel:
        super().train(mode)
        self.clip.eval()  # frozen encoders stay in eval mode
        return self

    @property
    def logit_scale(self) -> Tensor:
        return self.clip.logit_scale.detach()

    def encode_image(self, images: Tensor) -> Tensor:
        """Raw image features f_I (B, E) of the frozen image tower (no gradient)."""
        with torch.no_grad():
            return self.clip.encode_image(images)

    def text_features(self) -> Tensor:
        """Raw text features f_T (C, E) of the learned prompts for the current class names."""
        return encode_prompts(self.clip, self.prompt(), self.prompt.tokens)

    def set_classnames(self, classnames: list[str]) -> None:
        self.prompt.set_classnames(classnames)

    def training_logits(self, images: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
        """(s_ITM (B, C), s_CAT on the 2B stacked rows or None) for a training batch."""
        f_img = self.encode_image(images)
        f_txt = self.text_features()
        s_itm = itm_logits(f_img, f_txt, self.logit_scale)
        s_cat = self.head.train_logits(f_img, f_txt, y) if self.head is not None else None
        return s_itm, s_cat

    def predict_logits(self, images: Tensor, f_txt: Tensor, use_head: bool, lam: float,
                       fusion: Fusion = "logits") -> Tensor:
        """Test-time scores: fused ITM + CAT on base classes (``use_head``), ITM only otherwise."""
        f_img = self.encode_image(images)
        s_itm = itm_logits(f_img, f_txt, self.logit_scale)
        if not use_head or self.head is None or lam == 0:
            return s_itm
        if self.head.linear.out_features != f_txt.shape[0]:
            raise ZooError(f"the CAT head has {self.head.linear.out_features} classes but {f_txt.shape[0]} class "
                           "names were given; new class names are scored with ITM only")
        return fuse(s_itm, self.head(f_img), lam, fusion)


def _drop_frozen(module: nn.Module, state: dict, prefix: str, local_metadata) -> None:
    for k in [k for k in state if k.startswith(prefix + "clip.")]:
        del state[k]


def _ignore_frozen_missing(module: nn.Module, incompatible) -> None:
    frozen = [k for k in incompatible.missing_keys if ".clip." in f".{k}" and "prompt." not in k]
    for k in frozen:
        incompatible.missing_keys.remove(k)


@torch.no_grad()
def hand_prompt_features(clip: nn.Module, tokenizer: Callable[[list[str]], Tensor], classnames: list[str],
                         template: str) -> Tensor:
    """Zero-shot CLIP text features (C, E) of the hand prompt ``template.format(name)``.

    Ref: CLIP (Radford et al. 2021) zero-shot classifier; templates per dataset from CoOp.
    """
    tokens = tokenizer([template.format(c.replace("_", " ")) for c in classnames])
    return clip.encode_text(tokens.to(clip.logit_scale.device))
