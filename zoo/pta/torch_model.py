"""PTA / COPA in plain PyTorch: a ViT with a text-aware patch detector (TPD), a BERT text encoder and
a cross-attention fusion encoder (arXiv:2308.03475; spec ``pta.md``).

Data flow for one (image, text) pair (spec "Architecture"):

1. ``prefix``: patch embedding, positional embeddings (added *before* any selection), ViT blocks
   1..k. Text-free: computed once per image and reused for every text it is paired with.
2. TPD (after block k): ``z_i = MLP([LN(x_i); W_t t_cls])``, ``s_i = sigmoid(z_i)``; keep the
   ``K = ceil(r N)`` top-scored patches in their original order and fuse the rest into one token
   weighted by normalised ``s`` (:func:`select_tokens`): ``[CLS, x_idx1..x_idxK, x_fused]``.
3. ``tail``: ViT blocks k+1..L and the final norm on K + 2 tokens, then the fusion encoder (BERT
   layers whose cross-attention reads the image tokens) on the text.

ITC never sees the paired text: its image embedding comes from a text-free pass (the TPD off, or
conditioned on a learned null text with ``itc_path="null_text"``). The baseline (``tpd=False``)
is the same network with the full sequence everywhere and no detector.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.core.errors import ZooError


def keep_count(n: int, r: float) -> int:
    """``K = ceil(r * n)`` in exact rational arithmetic (spec: float ``ceil(0.07 * 100)`` is 8, not 7).

    ``r`` is read as the decimal it prints as (``Fraction(repr(r))``), so 0.07 means 7/100.

    Raises:
        ZooError: ``r`` outside (0, 1] or ``n < 1``.
    """
    if not (isinstance(r, (int, float)) and 0 < r <= 1):
        raise ZooError(f"--model.keep_ratio must be in (0, 1], got {r!r}")
    if n < 1:
        raise ZooError(f"keep_count: the number of patches must be >= 1, got {n}")
    return max(1, math.ceil(Fraction(repr(float(r))) * n))


def select_tokens(x: Tensor, logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Keep the top-``k`` patches (original order) and fuse the rest into one token.

    Args:
        x: (B, 1 + N, D) tokens after block k, CLS first.
        logits: (B, N) TPD logits ``z`` (fp32).
        k: patches to keep, ``1 <= k <= N``.

    Returns:
        ``(tokens, idx)``: tokens (B, k + 2, D) = ``[CLS, x_idx, x_f]`` with
        ``x_f = sum_{j in C} s_j / (sum_{c in C} s_c) x_j`` over the complement C (spec "fuse");
        for ``k == N`` the input itself (no fused token). idx (B, k) ascending patch indices.
    """
    B, n1, D = x.shape
    N = n1 - 1
    if k >= N:
        return x, torch.arange(N, device=x.device).expand(B, N)
    idx = logits.topk(k, dim=1).indices.sort(dim=1).values
    patches = x[:, 1:]
    kept = patches.gather(1, idx.unsqueeze(-1).expand(B, k, D))
    rest = torch.ones(B, N, dtype=torch.bool, device=x.device).scatter(1, idx, False)
    w = logits.sigmoid() * rest
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    fused = torch.einsum("bn,bnd->bd", w.to(x.dtype), patches).unsqueeze(1)
    return torch.cat([x[:, :1], kept, fused], dim=1), idx


class PatchDetector(nn.Module):
    """The TPD scorer: ``z_i = MLP([LN(x_i); u])`` with ``u = W_t t`` (spec; sizes [Z]).

    Args:
        dim: ViT width D. text_dim: width of the text [CLS]. hidden: MLP width (default D / 2).
        product: also feed ``x_i * u`` (the spec's optional flag).
    """

    def __init__(self, dim: int, text_dim: int, hidden: int | None = None, product: bool = False) -> None:
        super().__init__()
        hidden = hidden or max(1, dim // 2)
        self.norm = nn.LayerNorm(dim)
        self.text = nn.Linear(text_dim, dim)
        self.product = product
        self.mlp = nn.Sequential(nn.Linear((3 if product else 2) * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, patches: Tensor, text: Tensor) -> Tensor:
        """patches (B, N, D), text (B, Dt) -> logits (B, N) in fp32 (autocast off)."""
        with torch.autocast(patches.device.type, enabled=False):
            x = self.norm(patches.float())
            u = self.text(text.float()).unsqueeze(1).expand_as(x)
            parts = [x, u] + ([x * u] if self.product else [])
            return self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)


class _Attention(nn.Module):
    """BERT attention with BERT's parameter names (``self.{query,key,value}``, ``output.{dense,
    LayerNorm}``), post-LN, via ``scaled_dot_product_attention``; ``kv_dim`` for cross-attention."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, eps: float = 1e-12) -> None:
        super().__init__()
        kv_dim = kv_dim or dim
        self.heads = heads
        self.self = nn.Module()
        self.self.query, self.self.key, self.self.value = (nn.Linear(dim, dim), nn.Linear(kv_dim, dim),
                                                           nn.Linear(kv_dim, dim))
        self.output = nn.Module()
        self.output.dense, self.output.LayerNorm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, kv: Tensor, mask: Tensor | None) -> Tensor:
        B, L, D = x.shape
        h = self.heads

        def split(t: Tensor) -> Tensor:
            return t.view(B, t.shape[1], h, D // h).transpose(1, 2)

        q, k, v = split(self.self.query(x)), split(self.self.key(kv)), split(self.self.value(kv))
        m = None if mask is None else mask[:, None, None, :].bool()
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=m).transpose(1, 2).reshape(B, L, D)
        return self.output.LayerNorm(self.output.dense(a) + x)


class FusionLayer(nn.Module):
    """One ALBEF fusion layer: bidirectional self-attention on the text, cross-attention to the image
    tokens, feed-forward; parameter names of a BERT layer plus ``crossattention.*`` (new in ALBEF)."""

    def __init__(self, dim: int, heads: int, ffn: int, image_dim: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.attention = _Attention(dim, heads, eps=eps)
        self.crossattention = _Attention(dim, heads, kv_dim=image_dim, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(dim, ffn)
        self.output = nn.Module()
        self.output.dense, self.output.LayerNorm = nn.Linear(ffn, dim), nn.LayerNorm(dim, eps=eps)

    def forward(self, t: Tensor, t_mask: Tensor, image: Tensor) -> Tensor:
        t = self.attention(t, t, t_mask)
        t = self.crossattention(t, image, None)
        return self.output.LayerNorm(self.output.dense(F.gelu(self.intermediate.dense(t))) + t)


class PTAModel(nn.Module):
    """ViT + TPD + BERT text encoder + fusion encoder with ITC / ITM / MLM heads.

    Args:
        vit: a timm ``VisionTransformer`` (class token, no head).
        text: a ``transformers`` ``BertModel`` (no pooler); its [CLS] output is ``t_cls``.
        fusion: the fusion layers (:class:`FusionLayer`).
        vocab_size: MLM output size.
        tpd_after: k, the ViT block after which the TPD sits (1 <= k < depth).
        tpd: build the detector (False = the full-ViT baseline).
        keep_ratio: r, the default keep ratio.
        embed_dim: ITC projection size. temp: initial ITC temperature.
        itc_path: ``"text_free"`` (the TPD off for ITC) or ``"null_text"`` (a learned null text).
        tpd_hidden, tpd_product: :class:`PatchDetector` options.
    """

    def __init__(self, vit: nn.Module, text: nn.Module, fusion: nn.ModuleList, vocab_size: int, tpd_after: int,
                 tpd: bool = True, keep_ratio: float = 0.5, embed_dim: int = 256, temp: float = 0.07,
                 itc_path: Literal["text_free", "null_text"] = "text_free", tpd_hidden: int | None = None,
                 tpd_product: bool = False) -> None:
        super().__init__()
        depth = len(vit.blocks)
        if not 1 <= tpd_after < depth:
            raise ZooError(f"--model.tpd_after must be in 1..{depth - 1} for a {depth}-block ViT, got {tpd_after}")
        if itc_path not in ("text_free", "null_text"):
            raise ZooError(f"--model.itc_path must be 'text_free' or 'null_text', got {itc_path!r}")
        keep_count(1, keep_ratio)
        self.vit, self.text, self.fusion = vit, text, fusion
        D, Dt = vit.embed_dim, text.config.hidden_size
        self.k, self.keep_ratio, self.itc_path = int(tpd_after), float(keep_ratio), itc_path
        self.tpd = PatchDetector(D, Dt, tpd_hidden, tpd_product) if tpd else None
        self.null_text = nn.Parameter(torch.zeros(Dt)) if tpd and itc_path == "null_text" else None
        self.vision_proj, self.text_proj = nn.Linear(D, embed_dim), nn.Linear(Dt, embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(temp)))
        self.itm_head = nn.Linear(Dt, 2)
        self.mlm_head = nn.Sequential(nn.Linear(Dt, Dt), nn.GELU(), nn.LayerNorm(Dt, eps=1e-12),
                                      nn.Linear(Dt, vocab_size))

    @property
    def num_patches(self) -> int:
        return self.vit.patch_embed.num_patches

    # ------------------------------------------------------------------ vision
    def prefix(self, image: Tensor) -> Tensor:
        """image (B, 3, H, W) -> tokens (B, 1 + N, D) after block k (text-free, cacheable)."""
        v = self.vit
        x = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(image))))
        for blk in v.blocks[:self.k]:
            x = blk(x)
        return x

    def tail(self, x: Tensor) -> Tensor:
        """Blocks k+1..L and the final norm on any token sequence (B, n, D)."""
        for blk in self.vit.blocks[self.k:]:
            x = blk(x)
        return self.vit.norm(x)

    def detect(self, x: Tensor, t_cls: Tensor) -> Tensor:
        """TPD logits (B, N) of the patch tokens of ``x`` (B, 1 + N, D) for texts ``t_cls`` (B, Dt)."""
        if self.tpd is None:
            raise ZooError("this model has no patch detector (--model.tpd=false)")
        return self.tpd(x[:, 1:], t_cls)

    def select(self, x: Tensor, t_cls: Tensor | None, keep_ratio: float | None = None
               ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Text-aware selection: ``(tokens, logits, idx)``; the full sequence (and Nones) without a
        TPD, without a text, or at r = 1."""
        r = self.keep_ratio if keep_ratio is None else keep_ratio
        K = keep_count(self.num_patches, r)
        if self.tpd is None or t_cls is None:
            return x, None, None
        logits = self.detect(x, t_cls)
        tokens, idx = select_tokens(x, logits, K)
        return tokens, logits, idx

    def image_embed(self, x: Tensor) -> Tensor:
        """Text-independent ITC image embedding (B, E), L2-normalised, fp32, from prefix tokens."""
        if self.null_text is not None:
            x = self.select(x, self.null_text.expand(len(x), -1))[0]
        cls = self.tail(x)[:, 0]
        with torch.autocast(cls.device.type, enabled=False):
            return F.normalize(self.vision_proj(cls.float()), dim=-1)

    # ------------------------------------------------------------------ text
    def encode_text(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids, mask (B, L) -> hidden states (B, L, Dt)."""
        return self.text(input_ids=ids, attention_mask=mask).last_hidden_state

    def text_embed(self, hidden: Tensor) -> Tensor:
        """ITC text embedding (B, E), L2-normalised, fp32."""
        with torch.autocast(hidden.device.type, enabled=False):
            return F.normalize(self.text_proj(hidden[:, 0].float()), dim=-1)

    # ------------------------------------------------------------------ fusion
    def fuse(self, x: Tensor, hidden: Tensor, mask: Tensor, keep_ratio: float | None = None
             ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Fuse every pair (x[b], text b): its own TPD selection and its own ViT tail.

        Args:
            x: (B, 1 + N, D) prefix tokens, one row per pair (gathered by the caller).
            hidden, mask: (B, L, Dt), (B, L) the paired texts' encoder states.

        Returns:
            ``(fused, logits, idx)``: fusion output (B, L, Dt); TPD logits (B, N) and kept indices
            (B, K), or None without a TPD.
        """
        tokens, logits, idx = self.select(x, hidden[:, 0], keep_ratio)
        image = self.tail(tokens)
        t = hidden
        for layer in self.fusion:
            t = layer(t, mask, image)
        return t, logits, idx

    def fuse_full(self, image: Tensor, hidden: Tensor, mask: Tensor) -> Tensor:
        """The baseline's fusion on already-computed full image tokens (B, 1 + N, D) after the tail."""
        t = hidden
        for layer in self.fusion:
            t = layer(t, mask, image)
        return t

    def itm_logits(self, fused: Tensor) -> Tensor:
        """(B, L, Dt) fusion output -> (B, 2) ITM logits (index 1 = match), fp32."""
        with torch.autocast(fused.device.type, enabled=False):
            return self.itm_head(fused[:, 0].float())

    def mlm_logits(self, fused: Tensor) -> Tensor:
        """(B, L, Dt) -> (B, L, V) MLM logits, fp32."""
        with torch.autocast(fused.device.type, enabled=False):
            return self.mlm_head(fused.float())
