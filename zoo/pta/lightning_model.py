"""PTA (COPA, arXiv:2308.03475) as a LightningModule: ITC + ITM (hard negatives) + MLM + PTA.

=================================  ==============================================================
PTA / COPA                          ``tpd=true``, ``w_pta=1``: the text-aware patch detector after
                                    block k, keep ratio r, PTA loss on the pairs with boxes
TPD without PTA (ablation)          ``tpd=true``, ``w_pta=0`` (the detector learns from the VLP
                                    losses only, through the fusion weights)
full-ViT baseline                   ``tpd=false``: same network, no selection anywhere
random / EViT selection (eval)      ``selection=random`` / ``selection=evit`` at test time
=================================  ==============================================================

Retrieval follows ALBEF: text-free ITC embeddings rank all pairs; the top ``k_test`` candidates
of every image and every text are re-scored by ITM, each pair with its own text-conditioned
selection and ViT tail; the rest get -100. The baseline's image tokens are computed once per
image. Logged: ``train/{loss,itc,itm,mlm,pta,keep_ratio,temp}``, ``val|test/{tr@k,ir@k,r_mean}``
(ITM re-ranked), ``.../itc_{...}`` (ITC only), detector ``.../tpd_{recall,precision,auroc,
distractor_excl}`` at the model's keep ratio, and ``.../itm_acc``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from zoo.core.errors import ZooError
from zoo.core.module import ZooModule
from zoo.core.schedule import warmup_cosine
from zoo.pta.losses import itc_loss, itm_loss, mask_tokens, mlm_loss, pta_loss, sample_hard_negatives
from zoo.pta.retrieval import detector_counts, retrieval_metrics, topk_pairs
from zoo.pta.torch_model import FusionLayer, PTAModel, keep_count, select_tokens

TINY_VISION = {"depth": 4, "width": 96, "heads": 3, "mlp_ratio": 4.0}
TINY_TEXT = {"layers": 2, "fusion_layers": 2, "width": 96, "heads": 3, "ffn": 384}


class PTA(ZooModule):
    """ViT + TPD + BERT text encoder + fusion (see the module docstring).

    Args:
        image_size, patch: ViT input size and patch size.
        vision: tiny ViT shape (``depth``, ``width``, ``heads``, ``mlp_ratio``), used without ``vit_name``.
        vit_name: a timm ViT name (e.g. ``vit_base_patch16_224``) for the real setting; ``vit_weights``
            a local timm/open_clip-exported state dict loaded strictly (the head is dropped).
        text: tiny text/fusion shape (``layers``, ``fusion_layers``, ``width``, ``heads``, ``ffn``),
            used without ``bert_dir``.
        bert_dir: a local Hugging Face BERT folder: layers 0..L_t-1 become the text encoder and the next
            ``text.fusion_layers`` the fusion encoder (cross-attention new, as in ALBEF); its tokenizer is used.
        vocab: the word list of the embedded world's tokenizer (without ``bert_dir``).
        max_len: caption length in tokens (with [CLS]/[SEP]).
        tpd: build the text-aware patch detector (false = the full-ViT baseline).
        tpd_after: k. keep_ratio: r. keep_warmup: fraction of the steps over which r ramps from 1.
        itc_path: ``text_free`` or ``null_text``. tpd_hidden, tpd_product: detector options.
        selection: eval-time selection: ``tpd``, ``random`` (uniform top-k) or ``evit`` (block-k
            [CLS] attention, text-agnostic); training always uses the TPD.
        w_itc, w_itm, w_mlm, w_pta: loss weights. pos_weight_cap: PTA positive weight cap (null = none).
        mask_prob: MLM masking rate. embed_dim: ITC size. temp: initial temperature.
        lr, vit_lr, weight_decay, warmup_steps: AdamW and warm-up + cosine schedule.
        k_test: re-ranked candidates per query. eval_pairs_batch: ITM pairs per forward at eval.
    """

    zoo_name = "pta"
    weight_args = ("vit_weights",)
    external_weight_args = ("bert_dir",)

    def __init__(self, image_size: int = 64, patch: int = 8, vision: dict[str, Any] | None = None,
                 vit_name: str | None = None, vit_weights: str | None = None, text: dict[str, Any] | None = None,
                 bert_dir: str | None = None, vocab: list[str] | None = None, max_len: int = 16,
                 tpd: bool = True, tpd_after: int = 2, keep_ratio: float = 0.5, keep_warmup: float = 0.1,
                 itc_path: Literal["text_free", "null_text"] = "text_free", tpd_hidden: int | None = None,
                 tpd_product: bool = False, selection: Literal["tpd", "random", "evit"] = "tpd",
                 w_itc: float = 1.0, w_itm: float = 1.0, w_mlm: float = 1.0, w_pta: float = 1.0,
                 pos_weight_cap: float | None = None, mask_prob: float = 0.15, embed_dim: int = 64,
                 temp: float = 0.07, lr: float = 3e-4, vit_lr: float | None = None, weight_decay: float = 0.02,
                 warmup_steps: int = 50, k_test: int = 16, eval_pairs_batch: int = 512) -> None:
        super().__init__()
        self.save_hyperparameters()
        keep_count(1, keep_ratio)
        if selection not in ("tpd", "random", "evit"):
            raise ZooError(f"--model.selection must be tpd, random or evit, got {selection!r}")
        if selection != "tpd" and not tpd:
            raise ZooError("--model.selection other than 'tpd' needs the pruned model (--model.tpd=true)")
        if not 0 <= keep_warmup < 1:
            raise ZooError(f"--model.keep_warmup must be in [0, 1), got {keep_warmup}")
        vit = _build_vit(image_size, patch, vision or TINY_VISION, vit_name, vit_weights)
        self.tokenizer, bert, fusion = _build_text(bert_dir, vocab, text or TINY_TEXT, vit.embed_dim, max_len)
        self.net = PTAModel(vit, bert, fusion, len(self.tokenizer), tpd_after, tpd, keep_ratio, embed_dim, temp,
                            itc_path, tpd_hidden, tpd_product)
        self._eval: dict[str, Any] | None = None

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        words = getattr(dm, "vocabulary", None)
        if words is not None and not self.hparams.bert_dir:
            missing = sorted(set(words) - set(self.hparams.vocab or []))
            if missing:
                raise ZooError(f"--model.vocab lacks words the world's captions use: {missing[:5]}")

    # ------------------------------------------------------------------ helpers
    def tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ZooError("PTA: an empty caption reached the model (captions must be non-empty text)")
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.hparams.max_len,
                             return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def current_keep_ratio(self) -> float:
        """r_t: 1 -> r linearly over the first ``keep_warmup`` of the training steps [Z], then r."""
        r = self.hparams.keep_ratio
        if not self.training or self._trainer is None or self.hparams.keep_warmup == 0:
            return r
        total = max(1, int(self.trainer.estimated_stepping_batches))
        p = min(1.0, self.global_step / max(1.0, self.hparams.keep_warmup * total))
        return 1.0 - (1.0 - r) * p

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        return g

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        net, hp = self.net, self.hparams
        ids, mask = self.tokenize(batch["caption"])
        image_ids = batch["image_id"]
        x = net.prefix(batch["image"])
        full = net.tail(x)
        img_emb = net.image_embed(x) if net.null_text is not None else _proj(net, full)
        hidden = net.encode_text(ids, mask)
        txt_emb = net.text_embed(hidden)
        temp = net.temp.clamp(0.001, 0.5)
        l_itc = itc_loss(img_emb, txt_emb, temp, image_ids)
        g = self._generator()
        neg_t, neg_i = sample_hard_negatives((img_emb @ txt_emb.t()).detach(), image_ids, g)
        B = len(ids)
        ar = torch.arange(B, device=self.device)
        img_idx, txt_idx = torch.cat([ar, ar, neg_i]), torch.cat([ar, neg_t, ar])
        r = self.current_keep_ratio()
        if net.tpd is None:
            fused = net.fuse_full(full[img_idx], hidden[txt_idx], mask[txt_idx])
            logits = None
        else:
            fused, logits, _ = net.fuse(x[img_idx], hidden[txt_idx], mask[txt_idx], r)
        labels = torch.cat([torch.ones(B), torch.zeros(2 * B)]).long().to(self.device)
        l_itm = itm_loss(net.itm_logits(fused), labels)
        special = ~mask.bool() | (ids == self.tokenizer.cls_token_id) | (ids == self.tokenizer.sep_token_id)
        m_ids, m_labels = mask_tokens(ids, special, self.tokenizer.mask_token_id, len(self.tokenizer),
                                      hp.mask_prob, g)
        m_hidden = net.encode_text(m_ids, mask)
        if net.tpd is None:
            m_fused = net.fuse_full(full, m_hidden, mask)
        else:
            m_fused = net.fuse(x, m_hidden, mask, r)[0]
        l_mlm = mlm_loss(net.mlm_logits(m_fused), m_labels)
        l_pta = (pta_loss(logits[:B], batch["patch_labels"], batch["has_boxes"], hp.pos_weight_cap)
                 if logits is not None else full.sum() * 0.0)
        loss = hp.w_itc * l_itc + hp.w_itm * l_itm + hp.w_mlm * l_mlm + hp.w_pta * l_pta
        self.log_dict({"train/loss": loss, "train/itc": l_itc, "train/itm": l_itm, "train/mlm": l_mlm,
                       "train/pta": l_pta, "train/keep_ratio": r, "train/temp": temp.detach(),
                       "train/box_frac": batch["has_boxes"].float().mean()}, on_step=True, on_epoch=False,
                      batch_size=B)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        vit = [p for p in self.net.vit.parameters() if p.requires_grad]
        vit_ids = {id(p) for p in vit}
        rest = [p for p in self.net.parameters() if p.requires_grad and id(p) not in vit_ids]
        opt = torch.optim.AdamW([{"params": vit, "lr": hp.vit_lr or hp.lr}, {"params": rest, "lr": hp.lr}],
                                weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = min(hp.warmup_steps, total // 2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ evaluation
    def _select_logits(self, x: Tensor, t_cls: Tensor, attn: Tensor | None) -> Tensor:
        """Eval-time selection scores (P, N) for the configured ``selection``."""
        sel = self.hparams.selection
        if sel == "tpd":
            return self.net.detect(x, t_cls)
        if sel == "evit":
            return attn
        g = torch.Generator(device="cpu").manual_seed(0)
        return torch.rand(x.shape[0], x.shape[1] - 1, generator=g).to(x.device)

    def pair_scores(self, x: Tensor, full: Tensor | None, hidden: Tensor, mask: Tensor,
                    attn: Tensor | None = None, keep_ratio: float | None = None) -> tuple[Tensor, Tensor | None]:
        """ITM logits (P, 2) of P gathered pairs (column 1 = match, ALBEF's ranking score), and the
        selection scores (P, N) (None for the baseline).

        Args:
            x: (P, 1 + N, D) prefix tokens of each pair's image. full: (P, 1 + N, D) the baseline's
                tail output (used when there is no TPD). hidden, mask: each pair's text.
            attn: (P, N) block-k [CLS] attention (for ``selection=evit``).
        """
        net = self.net
        if net.tpd is None:
            fused = net.fuse_full(full, hidden, mask)
            return net.itm_logits(fused), None
        r = self.hparams.keep_ratio if keep_ratio is None else keep_ratio
        scores = self._select_logits(x, hidden[:, 0], attn)
        if self.hparams.selection == "tpd":
            tokens, _ = select_tokens(x, scores, keep_count(net.num_patches, r))
        else:  # sigmoid of a probability / attention is still monotone: the same top-k, positive weights
            tokens, _ = select_tokens(x, torch.logit(scores.clamp(1e-6, 1 - 1e-6)), keep_count(net.num_patches, r))
        fused = net.fuse_full(net.tail(tokens), hidden, mask)
        return net.itm_logits(fused), scores

    def _start_eval(self) -> None:
        self._eval = {k: [] for k in ("x", "full", "img_emb", "attn", "caps", "cap_img", "pos", "neg", "boxes", "index")}
        self._eval["n_img"] = 0

    @torch.no_grad()
    def _eval_step(self, batch: dict[str, Any]) -> None:
        net, st = self.net, self._eval
        x = net.prefix(batch["image"])
        full = net.tail(x)
        st["x"].append(x)
        st["full"].append(full if net.tpd is None else None)
        st["img_emb"].append(net.image_embed(x) if net.null_text is not None else _proj(net, full))
        st["attn"].append(_cls_attention(net, batch["image"]) if self.hparams.selection == "evit" else None)
        st["caps"] += list(batch["captions"])
        st["cap_img"].append(batch["caption_image"].to(self.device) + st["n_img"])
        st["pos"].append(batch["patch_labels"])
        st["neg"].append(batch["distractor_labels"])
        st["boxes"].append(batch["has_boxes"][batch["caption_image"]])
        st["index"].append(batch["index"])
        st["n_img"] += len(x)

    def _collect(self) -> dict[str, Any]:
        """The cached split as tensors; under DDP gathered from every rank, each image once (the
        padding that ``DistributedSampler`` repeats is dropped by dataset index), in index order."""
        from zoo.core.gather import distributed, first_occurrences, gather_cat

        st, dev = self._eval, self.device

        def cat(key: str) -> Tensor | None:
            return None if st[key][0] is None else torch.cat(st[key]).to(dev)

        c = {k: cat(k) for k in ("x", "full", "img_emb", "attn", "index", "cap_img", "pos", "neg", "boxes")}
        c["caps"] = list(st["caps"])
        if not distributed():
            return c
        import torch.distributed as dist

        counts = gather_cat(torch.tensor([len(c["x"])], device=dev))
        c["cap_img"] = c["cap_img"] + (counts.cumsum(0) - counts)[dist.get_rank()]
        c["boxes"] = c["boxes"].to(torch.uint8)
        for k in ("x", "full", "img_emb", "attn", "index", "cap_img", "pos", "neg", "boxes"):
            if c[k] is not None:
                c[k] = gather_cat(c[k])
        caps: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(caps, c["caps"])
        c["caps"] = [t for part in caps for t in part]
        keep = first_occurrences(c["index"])
        row = torch.full((len(c["index"]),), -1, dtype=torch.long, device=dev)
        row[keep] = torch.arange(len(keep), device=dev)
        cap_keep = row[c["cap_img"]] >= 0
        for k in ("x", "full", "img_emb", "attn", "index"):
            if c[k] is not None:
                c[k] = c[k][keep]
        c["cap_img"] = row[c["cap_img"]][cap_keep]
        for k in ("pos", "neg", "boxes"):
            c[k] = c[k][cap_keep]
        c["boxes"] = c["boxes"].bool()
        c["caps"] = [t for t, k in zip(c["caps"], cap_keep.tolist()) if k]
        return c

    @torch.no_grad()
    def evaluate_retrieval(self) -> dict[str, float]:
        """Retrieval (ITC, then ITM re-ranking), ITM accuracy and detector metrics of the cached split."""
        net, hp = self.net, self.hparams
        c = self._collect()
        x, full, attn, img_emb, cap_img = c["x"], c["full"], c["attn"], c["img_emb"], c["cap_img"]
        hid, msk = [], []
        for i in range(0, len(c["caps"]), hp.eval_pairs_batch):
            ids, m = self.tokenize(c["caps"][i:i + hp.eval_pairs_batch])
            hid.append(net.encode_text(ids, m))
            msk.append(m)
        hidden, mask = torch.cat(hid), torch.cat(msk)
        txt_emb = net.text_embed(hidden)
        sim = img_emb @ txt_emb.t()
        out = retrieval_metrics(sim, cap_img, prefix="itc_")
        t0 = time.perf_counter()
        ia, ta, ib, tb = topk_pairs(sim, hp.k_test)
        img_p, txt_p = torch.cat([ia, ib]), torch.cat([ta, tb])
        s = self._scores(x, full, attn, hidden, mask, img_p, txt_p)[0][:, 1]
        itm = torch.full_like(sim, -100.0)
        itm[img_p, txt_p] = s  # both passes score the same pair identically
        out["rerank_s"] = time.perf_counter() - t0
        out.update(retrieval_metrics(itm, cap_img))
        # ITM accuracy on the positives and one ITC-hardest negative per text
        neg = sim.t().masked_fill(cap_img[:, None] == torch.arange(len(sim), device=sim.device)[None], -1e9).argmax(1)
        pos_s, scores = self._scores(x, full, attn, hidden, mask, cap_img, torch.arange(len(cap_img), device=sim.device))
        neg_s = self._scores(x, full, attn, hidden, mask, neg, torch.arange(len(cap_img), device=sim.device))[0]
        out["itm_acc"] = 100.0 * float(torch.cat([pos_s.argmax(1) == 1, neg_s.argmax(1) == 0]).float().mean())
        if scores is not None:
            out.update(self._detector_metrics(scores, c))
        return out

    def _scores(self, x, full, attn, hidden, mask, img_p, txt_p) -> tuple[Tensor, Tensor | None]:
        bs = self.hparams.eval_pairs_batch
        s, sel = [], []
        for i in range(0, len(img_p), bs):
            a, b = img_p[i:i + bs], txt_p[i:i + bs]
            v, z = self.pair_scores(x[a], None if full is None else full[a], hidden[b], mask[b],
                                    None if attn is None else attn[a])
            s.append(v)
            sel.append(z)
        return torch.cat(s), (torch.cat(sel) if sel and sel[0] is not None else None)

    def _detector_metrics(self, scores: Tensor, c: dict[str, Any]) -> dict[str, float]:
        from torchmetrics.functional.classification import binary_auroc

        boxes = c["boxes"]
        pos, neg = c["pos"][boxes], c["neg"][boxes]
        z = scores[boxes]
        if not len(z) or pos.sum() == 0:
            return {}
        c = detector_counts(z, pos, neg, keep_count(self.net.num_patches, self.hparams.keep_ratio))
        out = {"tpd_recall": 100 * c["kept_pos"] / max(1.0, c["pos"]), "tpd_precision": 100 * c["kept_pos"] / c["kept"],
               "tpd_distractor_excl": 100 * c["dropped_distractor"] / max(1.0, c["distractor"])}
        out["tpd_auroc"] = 100 * float(binary_auroc(z.float().flatten().cpu(), pos.long().flatten().cpu()))
        return out

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        m = self.evaluate_retrieval()
        self.log_dict({f"val/{k}": v for k, v in m.items() if k != "r_mean"})
        self.log("val/r_mean", m["r_mean"], prog_bar=True)
        self._eval = None

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{k}": v for k, v in self.evaluate_retrieval().items()})
        self._eval = None

    # ------------------------------------------------------------------ prediction
    @classmethod
    def add_predict_arguments(cls, parser) -> None:
        parser.add_argument("--text", required=True, help="the text to match against every image")
        parser.add_argument("--out-dir", default="pta_patches",
                            help="folder for the kept-patch pictures (default ./pta_patches)")

    @torch.no_grad()
    def predict_rows(self, batches: Iterable[Tensor], text: str = "", out_dir: str = "pta_patches", **options: Any):
        """Per image: the ITM match probability for ``text`` and a PNG of the kept patches."""
        from zoo.pta.plots import save_selection

        if not text or not text.strip():
            raise ZooError("--text must be a non-empty caption")
        ids, mask = self.tokenize([text])
        hidden = self.net.encode_text(ids, mask)
        i = 0
        for xb in batches:
            xb = xb.to(self.device)
            x = self.net.prefix(xb)
            full = self.net.tail(x) if self.net.tpd is None else None
            h, m = hidden.expand(len(x), -1, -1), mask.expand(len(x), -1)
            logits, scores = self.pair_scores(x, full, h, m)
            prob = logits.softmax(-1)[:, 1]
            for j in range(len(x)):
                row = {"itm_logit": round(float(logits[j, 1]), 4), "itm_prob": round(float(prob[j]), 4)}
                if scores is not None:
                    K = keep_count(self.net.num_patches, self.hparams.keep_ratio)
                    keep = scores[j].topk(K).indices.sort().values
                    row["kept_patches"] = K
                    row["picture"] = str(save_selection(xb[j].cpu(), keep.cpu(), self.hparams.patch, self.transform_spec,
                                                        Path(out_dir) / f"{i:05d}.png", text))
                yield row
                i += 1

    def predict_legend(self, **options: Any) -> str:
        return ("itm_prob = softmax ITM match probability of (image, --text); kept_patches = ceil(r N) patches the "
                "text-aware detector keeps (picture: kept patches bright, the rest dimmed)")

    @torch.no_grad()
    def reference_outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        self._start_eval()
        self._eval_step(batch)
        out = self.evaluate_retrieval()
        out.pop("rerank_s")
        self._eval = None
        return out


def _proj(net: PTAModel, full: Tensor) -> Tensor:
    import torch.nn.functional as F

    with torch.autocast(full.device.type, enabled=False):
        return F.normalize(net.vision_proj(full[:, 0].float()), dim=-1)


def _cls_attention(net: PTAModel, image: Tensor) -> Tensor:
    """EViT's score: the head-averaged attention of [CLS] to each patch in ViT block k (B, N)."""
    v = net.vit
    x = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(image))))
    for blk in v.blocks[:net.k - 1]:
        x = blk(x)
    blk = v.blocks[net.k - 1]
    attn = blk.attn
    h = blk.norm1(x)
    B, n, D = h.shape
    qkv = attn.qkv(h).reshape(B, n, 3, attn.num_heads, D // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    a = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(-1)  # (B, H, 1, n)
    return a.mean(1)[:, 0, 1:]


def _build_vit(image_size: int, patch: int, vision: dict[str, Any], name: str | None, weights: str | None):
    import timm

    from zoo.core.weights import load_strict, read_weights

    if name:
        try:
            vit = timm.create_model(name, pretrained=False, num_classes=0, img_size=image_size)
        except Exception as e:  # noqa: BLE001 - an unknown timm name is a user error
            raise ZooError(f"--model.vit_name={name!r}: timm cannot build it ({str(e).splitlines()[0][:120]})") from e
    else:
        from timm.models.vision_transformer import VisionTransformer

        vit = VisionTransformer(img_size=image_size, patch_size=patch, embed_dim=int(vision["width"]),
                                depth=int(vision["depth"]), num_heads=int(vision["heads"]),
                                mlp_ratio=float(vision.get("mlp_ratio", 4.0)), num_classes=0, class_token=True,
                                global_pool="token")
    if vit.patch_embed.patch_size[0] != patch:
        raise ZooError(f"--model.patch={patch} but the ViT {name!r} has patch size {vit.patch_embed.patch_size[0]}")
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ZooError(f"--model.vit_weights: file not found: {path}")
        state = read_weights(path)
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        if "pos_embed" in state and state["pos_embed"].shape != vit.pos_embed.shape:
            from timm.layers import resample_abs_pos_embed

            state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], vit.patch_embed.grid_size,
                                                        num_prefix_tokens=1)
        load_strict(vit, state, path, "ViT")
    return vit


def _build_text(bert_dir: str | None, vocab: list[str] | None, text: dict[str, Any], image_dim: int, max_len: int):
    """``(tokenizer, text encoder, fusion layers)``: a local BERT split as ALBEF does, or tiny ones."""
    from transformers import BertConfig, BertModel

    if bert_dir:
        from zoo.common.lm.loading import check_model_dir, load_tokenizer
        from zoo.core.weights import mismatch

        path = check_model_dir(bert_dir)
        tok = load_tokenizer(path)
        full = BertModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=False)
        cfg = full.config
        n_text = int(text.get("layers", 6))
        n_fuse = int(text.get("fusion_layers", cfg.num_hidden_layers - n_text))
        if n_text + n_fuse > cfg.num_hidden_layers:
            raise ZooError(f"--model.bert_dir={bert_dir}: {n_text} text + {n_fuse} fusion layers exceed its "
                           f"{cfg.num_hidden_layers} layers")
        fusion = torch.nn.ModuleList(FusionLayer(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
                                                 image_dim, cfg.layer_norm_eps) for _ in range(n_fuse))
        for i, layer in enumerate(fusion):
            src = {k: v for k, v in full.encoder.layer[n_text + i].state_dict().items()}
            own = {k: v for k, v in layer.state_dict().items() if not k.startswith("crossattention.")}
            bad = mismatch(own, src)
            if bad:
                raise ZooError(f"--model.bert_dir={bert_dir}: layer {n_text + i} does not map onto a fusion layer "
                               f"({'; '.join(bad)})")
            layer.load_state_dict(src, strict=False)  # crossattention.* is new (ALBEF); every other key checked above
        full.encoder.layer = full.encoder.layer[:n_text]
        full.config.num_hidden_layers = n_text
        return tok, full, fusion
    from zoo.common.lm.tiny import word_tokenizer

    if not vocab:
        raise ZooError("--model.vocab is empty: give the embedded world's word list (configs/pta/default.yaml) "
                       "or --model.bert_dir")
    tok = word_tokenizer(vocab, max_length=max_len)
    w, heads = int(text["width"]), int(text["heads"])
    cfg = BertConfig(vocab_size=len(tok), hidden_size=w, num_hidden_layers=int(text["layers"]),
                     num_attention_heads=heads, intermediate_size=int(text["ffn"]), max_position_embeddings=max_len,
                     pad_token_id=tok.pad_token_id, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    bert = BertModel(cfg, add_pooling_layer=False)
    fusion = torch.nn.ModuleList(FusionLayer(w, heads, int(text["ffn"]), image_dim)
                                 for _ in range(int(text["fusion_layers"])))
    return tok, bert, fusion
