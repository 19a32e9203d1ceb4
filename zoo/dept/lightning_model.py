"""DePT (and its CoOp baseline) as LightningModules: optimiser groups, schedule, base/new evaluation.

Thin on purpose: the maths is in :mod:`zoo.dept.torch_model`.

=====================  ==========================================================================
CoOp+DePT              ``DePT`` (``lam=0.7``): CAT head on the base classes, fused base test
CoOp (baseline)        ``CoOp`` = ``DePT`` with ``lam=0``: no head is built, loss = CE(s_ITM, y)
Zero-shot CLIP         :func:`zoo.dept.evaluate.zero_shot` (hand prompts; no training)
=====================  ==========================================================================

Test stage: two loaders, ``base`` (C_base-way, fused ITM+CAT) and ``new`` (C_new-way, prompts
rebuilt from the new class names with the learned context, ITM only); logs ``test/base_acc``,
``test/new_acc`` and ``test/h`` (harmonic mean), accuracies as fractions.

Under DDP every image counts once: Lightning's ``DistributedSampler`` pads each rank's share of
an eval set with repeated images, so the per-image predictions of all ranks are gathered at the
end of the epoch with their dataset ``index`` (a key of the few-shot datamodules' batches) and
de-duplicated before the accuracies are computed. The numbers equal a single-process evaluation.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import warnings

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy
from torchmetrics.utilities.distributed import gather_all_tensors

from zoo.common.vision.clip import build_clip, fingerprint, get_tokenizer
from zoo.common.metrics.classification import harmonic_mean
from zoo.core.errors import ZooError
from zoo.core.gather import first_occurrences
from zoo.core.module import ZooModule
from zoo.core.schedule import warmup_cosine
from zoo.dept.torch_model import CATHead, DePTModel, Fusion, dept_loss, fuse, itm_logits

#: the vocabulary of the embedded world's tiny CLIP (a repo path; see ``zoo.core.io.resolve_repo_path``).
SHAPES_VOCAB = "datamodules/fewshot/shapes/vocab.txt"

# The frozen CLIP is kept in eval mode on purpose; Lightning warns about it at every fit start.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)


class DePT(ZooModule):
    """CoOp + DePT on a frozen CLIP (arXiv:2309.07439v2).

    Args:
        clip_model: open_clip architecture: ``ViT-B-16-quickgelu`` (paper) or ``zoo-tiny-clip``.
        clip_weights: local CLIP weights (OpenAI JIT archive, open_clip state dict or a zoo
            ``clip`` checkpoint), ``zoo:shapes_b2n`` for the embedded world's tiny CLIP (trained
            and cached on first use), or None for a seeded random CLIP (tests, throughput only).
            Checkpoints keep this path: the frozen CLIP is not stored in them.
        clip_vocab: the vocabulary file of the zoo's word-level CLIPs (default: the ShapesB2N
            world's ``vocab.txt``); ignored by open_clip's BPE architectures.
        n_ctx: context vectors (16 in the paper; 4 on the embedded world).
        ctx_init: optional words initialising the context (e.g. "a photo of a").
        ctx_std: std of the random context init (0.02).
        lam: lambda of the loss and of the base fusion (0.7); 0 = CoOp exactly (no head).
        fusion: ``logits`` (official code) or ``probs`` (the paper's wording).
        lr: SGD learning rate of the context (0.0035).
        head_lr_mult: the CAT head's learning-rate multiplier (6.5).
        momentum, weight_decay: SGD (0.9, 5e-4).
        warmup_epochs: epochs at the constant ``warmup_lr`` (both groups), then cosine per epoch.
        warmup_lr: the constant warm-up learning rate (1e-5).

    Raises:
        ZooError: an argument outside its range (one line naming it), at construction, before
            the CLIP is built or anything is trained.
    """

    zoo_name = "dept"
    metrics_note = ("accuracy as a fraction; base: C_base-way, fused ITM+CAT; new: C_new-way, ITM only; "
                    "h = 2*base*new/(base+new)")
    #: the frozen CLIP is not in the checkpoint, so its path must survive zoo.load.
    weight_args = ("clip_weights",)
    external_weight_args = ("clip_weights", "clip_vocab")

    def __init__(
        self,
        clip_model: str = "zoo-tiny-clip",
        clip_weights: str | None = "zoo:shapes_b2n",
        clip_vocab: str | None = SHAPES_VOCAB,
        n_ctx: int = 16,
        ctx_init: str | None = None,
        ctx_std: float = 0.02,
        lam: float = 0.7,
        fusion: Literal["logits", "probs"] = "logits",
        lr: float = 0.0035,
        head_lr_mult: float = 6.5,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_ranges(n_ctx=n_ctx, ctx_std=ctx_std, lam=lam, fusion=fusion, lr=lr, head_lr_mult=head_lr_mult,
                      momentum=momentum, weight_decay=weight_decay, warmup_epochs=warmup_epochs, warmup_lr=warmup_lr)
        # Only the arguments of the concrete class (CoOp has no lam/fusion/head_lr_mult).
        self.save_hyperparameters(*[n for n in inspect.signature(type(self).__init__).parameters if n != "self"])
        self.lam, self.fusion, self.head_lr_mult = float(lam), fusion, float(head_lr_mult)
        clip = _frozen_clip(clip_model, clip_weights)
        self.clip_fingerprint = fingerprint(clip)
        self.net = DePTModel(clip, get_tokenizer(clip_model, clip_vocab), n_ctx=n_ctx, ctx_init=ctx_init, ctx_std=ctx_std)
        #: the training (base) class names: the CAT head's classes and the default prediction set.
        self.classnames: list[str] = []
        self._eval: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------------ classes and head
    def set_train_classes(self, classnames: list[str]) -> None:
        """Build the prompts (and, for lam > 0, the CAT head) for the training classes."""
        try:
            self.net.set_classnames(classnames)
        except ZooError as e:
            if "tiny CLIP's vocabulary" not in str(e):
                raise
            raise ZooError(f"{e}; this config's tiny CLIP knows only the embedded world's words: for your own "
                           "class names use a real CLIP (--config configs/dept/vitb16.yaml "
                           "--model.clip_weights ViT-B-16.pt)") from None
        self.classnames = list(classnames)
        if self.lam > 0:
            head = self.net.head
            if head is None or head.linear.out_features != len(classnames):
                self.net.head = CATHead(self.net.embed_dim, len(classnames)).to(self.net.prompt.ctx.device)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        which = getattr(dm, "train_classes", "base")
        names = getattr(dm, "classnames", {}).get(which) if dm is not None else None
        if not names:
            if not self.classnames:
                raise ZooError("DePT needs a datamodule with classnames['base'] (e.g. FewShotDataModule)")
            return
        if stage == "fit":
            if self.classnames and self.classnames != list(names):
                raise ZooError(f"the model was trained on {len(self.classnames)} other classes; "
                               "resume only with the same dataset and class split")
            self.set_train_classes(list(names))
        elif not self.classnames:
            self.set_train_classes(list(names))
        elif list(names) != self.classnames and self.net.head is not None:
            raise ZooError(f"the datamodule's base classes ({len(names)}) differ from the {len(self.classnames)} classes "
                           "this DePT head was trained on; evaluate other classes as 'new' (ITM only)")

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x, y = batch["image"], batch["label"]
        s_itm, s_cat = self.net.training_logits(x, y)
        loss = dept_loss(s_itm, s_cat, y, self.lam)
        if not torch.isfinite(loss):
            raise ZooError(f"train/loss is {loss.item()} at epoch {self.current_epoch} step {self.global_step}; "
                           "lower --model.lr")
        bs = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("train/acc", (s_itm.argmax(1) == y).float().mean(), on_step=False, on_epoch=True, batch_size=bs,
                 sync_dist=True)
        if s_cat is not None:
            self.log("train/acc_cat", (s_cat[bs:].argmax(1) == y).float().mean(), on_step=False, on_epoch=True,
                     batch_size=bs, sync_dist=True)
        return loss

    def lr_factor(self, epoch: int) -> float:
        """Per-epoch multiplier of a group's base lr after the constant warm-up (official schedule):
        ``1/2 (1 + cos(pi (e - w) / E))`` for e >= w, with E = max_epochs (Dassl's cosine)."""
        hp = self.hparams
        total = self.trainer.max_epochs if self._trainer is not None and (self.trainer.max_epochs or -1) > 0 else 10
        return warmup_cosine(epoch, total, hp.warmup_epochs, cosine_length=total)

    def configure_optimizers(self):
        hp = self.hparams
        groups = [{"params": [self.net.prompt.ctx], "lr": hp.lr}]
        if self.net.head is not None:
            groups.append({"params": list(self.net.head.parameters()), "lr": hp.lr * self.head_lr_mult})
        opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

        def rule(base_lr: float):
            return lambda e: (hp.warmup_lr / base_lr) if e < hp.warmup_epochs else self.lr_factor(e)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, [rule(g["lr"]) for g in groups])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_train_epoch_start(self) -> None:
        for i, g in enumerate(self.optimizers().optimizer.param_groups):
            self.log(f"train/lr_{'ctx' if i == 0 else 'head'}", g["lr"], on_step=False, on_epoch=True, sync_dist=True)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def class_text_features(self, classnames: list[str]) -> Tensor:
        """Learned-context text features (C, E) for any class names (training classes restored)."""
        self.net.set_classnames(classnames)
        try:
            return self.net.text_features().float()
        finally:
            if self.classnames:
                self.net.set_classnames(self.classnames)

    def _start_eval(self, sets: list[tuple[str, list[str]]]) -> None:
        self._eval = {}
        for i, (name, names) in enumerate(sets):
            use_head = self.net.head is not None and list(names) == self.classnames
            self._eval[i] = {"name": name, "text": self.class_text_features(names), "head": use_head,
                             "n": len(names), "preds": [], "itm": [], "cat": [], "labels": [], "index": []}

    def _eval_step(self, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        st = self._eval[dataloader_idx]
        f_img = self.net.encode_image(batch["image"])
        s_itm = itm_logits(f_img, st["text"], self.net.logit_scale)
        if st["head"] and self.lam > 0:
            s_cat = self.net.head(f_img)
            st["cat"].append(s_cat.argmax(1))
            s = fuse(s_itm, s_cat, self.lam, self.fusion)
        else:
            s = s_itm
        st["itm"].append(s_itm.argmax(1))
        st["preds"].append(s.argmax(1))
        st["labels"].append(batch["label"])
        if "index" in batch:
            st["index"].append(torch.as_tensor(batch["index"], device=s.device))

    def _per_image(self, st: dict[str, Any]) -> dict[str, Tensor]:
        """This eval set's per-image columns (labels, preds, itm, [cat]), each image once: under
        DDP gathered from all ranks and de-duplicated by dataset index (the sampler's padding)."""
        keys = ["labels", "preds", "itm"] + (["cat"] if st["cat"] else [])
        cols = torch.stack([torch.cat(st[k]).long() for k in keys], dim=1)  # (N_local, K)
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1:
            if len(st["index"]) != len(st["labels"]):
                warnings.warn(f"DePT under DDP: the {st['name']} batches carry no 'index', so images that "
                              "DistributedSampler repeats to pad the ranks are counted twice", stacklevel=2)
                cols = torch.cat(gather_all_tensors(cols))
            else:
                index = torch.cat(st["index"]).long()
                gathered = torch.cat(gather_all_tensors(torch.cat([cols, index[:, None]], dim=1)))
                cols, index = gathered[:, :-1], gathered[:, -1]
                cols = cols[first_occurrences(index)]
        return {k: cols[:, j] for j, k in enumerate(keys)}

    def _accuracies(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for st in self._eval.values():
            if not st["labels"]:
                continue
            cols = self._per_image(st)
            y = cols["labels"]

            def acc(preds: Tensor) -> float:
                return multiclass_accuracy(preds, y, num_classes=st["n"], average="micro").item()

            out[f"{st['name']}_acc"] = acc(cols["preds"])
            if "cat" in cols:
                out[f"{st['name']}_acc_itm"] = acc(cols["itm"])
                out[f"{st['name']}_acc_cat"] = acc(cols["cat"])
        self._eval = {}
        return out

    def on_validation_epoch_start(self) -> None:
        self._start_eval([("base", self.classnames)])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        acc = self._accuracies()  # already global under DDP: the sync is a mean of equal values
        if "base_acc" in acc:
            self.log("val/acc", acc.pop("base_acc"), prog_bar=True, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in acc.items()}, sync_dist=True)

    def on_test_epoch_start(self) -> None:
        dm = self.trainer.datamodule
        names = getattr(dm, "test_set_names", ["base", "new"])
        self._start_eval([(n, dm.classnames[n]) for n in names])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        acc = self._accuracies()
        if "base_acc" in acc and "new_acc" in acc:
            acc["h"] = harmonic_mean(acc["base_acc"], acc["new_acc"])
        self.log_dict({f"test/{k}": v for k, v in acc.items()}, sync_dist=True)

    # ------------------------------------------------------------------ prediction
    @classmethod
    def add_predict_arguments(cls, parser) -> None:
        from datamodules.fewshot.real import class_names_from_arg

        parser.add_argument("--classes", type=class_names_from_arg, default=None, metavar='"a,b,c"',
                            help="classify against these class names (comma-separated; ITM only with the "
                                 "learned context) instead of the training classes")

    @torch.no_grad()
    def _predict_classes(self, classes: list[str] | None) -> tuple[list[str], Tensor, bool]:
        names = list(classes) if classes else list(self.classnames)
        if not names:
            raise ZooError("no classes: this model has no training classes stored; pass --classes")
        use_head = self.net.head is not None and names == self.classnames
        return names, self.class_text_features(names), use_head

    @torch.no_grad()
    def _predict_batch(self, images: Tensor, names: list[str], f_txt: Tensor, use_head: bool) -> dict[str, Any]:
        s = self.net.predict_logits(images.to(self.device), f_txt, use_head, self.lam, self.fusion)
        p = s if (use_head and self.fusion == "probs") else s.softmax(-1)
        conf, pred = p.max(1)
        return {"pred": pred.cpu(), "prob": conf.cpu(), "classes": names, "fused": use_head and self.lam > 0}

    @torch.no_grad()
    def predict_images(self, images: Tensor, classes: list[str] | None = None) -> dict[str, Any]:
        """Classify normalised images against the training classes (fused ITM + CAT) or against
        any ``classes`` given (ITM only, prompts rebuilt with the learned context).

        Returns:
            ``{"pred": (B,) class index, "prob": (B,) softmax probability of the ITM (or fused
            probs) score, "classes": the class list used, "fused": bool}``.
        """
        return self._predict_batch(images, *self._predict_classes(classes))

    def predict_rows(self, batches: Iterable[Tensor], classes: list[str] | None = None,
                     **options: Any) -> Iterator[dict[str, Any]]:
        """One row per image for ``python -m zoo.predict``: class name and its probability. The
        class text features are computed once for all batches."""
        names, f_txt, use_head = self._predict_classes(classes)
        for images in batches:
            out = self._predict_batch(images, names, f_txt, use_head)
            for i, p in zip(out["pred"].tolist(), out["prob"].tolist()):
                yield {"class": names[i], "prob": float(p)}

    def predict_legend(self, classes: list[str] | None = None, **options: Any) -> str:
        if classes:
            return f"({len(classes)} given classes: ITM only with the learned context)"
        head = "fused ITM + CAT head" if self.net.head is not None else "ITM"
        return f"({len(self.classnames)} training classes: {head})"

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["dept"] = {"classnames": list(self.classnames), "clip_fingerprint": self.clip_fingerprint}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        info = checkpoint.get("dept", {})
        fp = info.get("clip_fingerprint")
        if fp and fp != self.clip_fingerprint:
            raise ZooError(f"the frozen CLIP ({self.hparams.clip_model}, weights {self.hparams.clip_weights}) differs "
                           f"from the one this checkpoint was trained with (fingerprint {fp} vs {self.clip_fingerprint}); "
                           "pass the right file with clip_weights=...")
        if info.get("classnames"):
            self.set_train_classes(list(info["classnames"]))


class CoOp(DePT):
    """CoOp (Zhou et al., IJCV 2022): the learned shared context alone, L = CE(s_ITM, y).

    The same module as :class:`DePT` with ``lam=0``: no CAT head is built, base and new classes
    are both scored with ITM only.
    """

    zoo_name = "coop"

    def __init__(
        self,
        clip_model: str = "zoo-tiny-clip",
        clip_weights: str | None = "zoo:shapes_b2n",
        clip_vocab: str | None = SHAPES_VOCAB,
        n_ctx: int = 16,
        ctx_init: str | None = None,
        ctx_std: float = 0.02,
        lr: float = 0.0035,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
    ) -> None:
        super().__init__(clip_model=clip_model, clip_weights=clip_weights, clip_vocab=clip_vocab, n_ctx=n_ctx, ctx_init=ctx_init,
                         ctx_std=ctx_std, lam=0.0, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         warmup_epochs=warmup_epochs, warmup_lr=warmup_lr)


def _check_ranges(**args: Any) -> None:
    """One-line ZooErrors for DePT/CoOp arguments outside their range (NaN fails every check)."""
    rules = {
        "n_ctx": (lambda v: v >= 1, ">= 1"),
        "ctx_std": (lambda v: v >= 0, ">= 0"),
        "lam": (lambda v: 0 <= v <= 1, "in [0, 1]"),
        "fusion": (lambda v: v in ("logits", "probs"), "'logits' or 'probs'"),
        "lr": (lambda v: v > 0, "> 0"),
        "head_lr_mult": (lambda v: v > 0, "> 0"),
        "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "weight_decay": (lambda v: v >= 0, ">= 0"),
        "warmup_epochs": (lambda v: v >= 0, ">= 0"),
        "warmup_lr": (lambda v: v > 0, "> 0"),
    }
    for name, value in args.items():
        ok, rule = rules[name]
        if not ok(value):
            raise ZooError(f"--model.{name} must be {rule}, got {value!r}")


def _frozen_clip(clip_model: str, clip_weights: str | None):
    """The frozen CLIP: resolved ``zoo:`` weights, a local file, or a seeded random init."""
    from zoo.clip.cache import resolve_clip_weights

    path = resolve_clip_weights(clip_model, clip_weights)
    if path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # a reproducible random CLIP (tests / throughput runs only)
            return build_clip(clip_model, None)
    return build_clip(clip_model, path)


__all__ = ["DePT", "CoOp", "harmonic_mean", "Fusion"]
