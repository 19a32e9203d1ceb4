"""MGCDA as a LightningModule: outlier-exposure fine-tuning with MDAT + CACL, and its baselines.

Zhang, Wu, Cheng, He, Li, "Improving Anomaly Segmentation with Multi-Granularity Cross-Domain
Alignment", ACM MM 2023, arXiv:2308.08696. No official code; every [R] choice of the spec is an
argument here (see ``zoo/mgcda/README.md``). One class covers the method and its baselines:

===============================  ==============================================================
stage A (the pretrained model)   ``base="ce"``: per-pixel CE on the source styles, no OE
B0 (no OE)                       a stage-A model scored by ``score`` = msp / maxlogit / entropy / energy
B1 PEBAL (primary baseline)      ``base="pebal"``, ``mdat=false``, ``cacl=false``, ``init_from=<stage A>``
+MDAT / +CACL                    ``mdat=true`` / ``cacl=true``
MGCDA                            ``base="pebal"``, ``mdat=true``, ``cacl=true``
B2 Meta-OoD base                 ``base="meta_ood"``
===============================  ==============================================================

Inference is parameter-free: the discriminators and the projection head are training-only. A
checkpoint keeps them (so that a run resumes exactly), but :func:`zoo.load` drops them and gives
the bare segmenter, loaded strictly. The anomaly score is the negative logsumexp of the class
logits (the abstention channel ignored), Gaussian-blurred.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from zoo.core.errors import ZooError
from zoo.core.gather import gather_cat, gather_sum
from zoo.core.module import ZooModule

Base = Literal["ce", "pebal", "meta_ood"]
Score = Literal["energy", "msp", "maxlogit", "entropy"]
_TRAIN_ONLY = ("net.disc_mid.", "net.disc_dec.", "net.proj.")


class MGCDA(ZooModule):
    """MGCDA and its baselines (see the module docstring).

    Args:
        arch: ``mini`` (the world's mini DeepLabv3+) or ``wv3plus`` (WiderResNet38 DeepLabv3+).
        num_classes: semantic classes n (6 in the world, 19 on Cityscapes); the net has n + 1
            outputs (the abstention channel of PEBAL).
        weights: NVIDIA ``cityscapes_best.pth`` for ``wv3plus`` (strict load, final grown to n + 1).
        init_from: a zoo checkpoint (stage A) whose segmenter initialises this one (strict).
        base: ``ce`` (stage A / no OE), ``pebal`` or ``meta_ood``.
        mdat, cacl: the two regularisers (training only).
        num_domains: K, the domains of the datamodule.
        lambda_cl: CACL weight; grl_scale / grl_gamma: the GRL ramp; eps_max / eps_mode: smoothing.
        cacl_tau, cacl_anchors, cacl_max_anchors, cacl_min_anomaly: CACL sampling [R].
        meta_ood_alpha: Meta-OoD's OE weight.
        score: the anomaly score used at evaluation (``energy`` for every OE model).
        blur_kernel, blur_sigma: Gaussian blur of the score map (0 = none).
        lr, head_lr, weight_decay: AdamW; ``head_lr`` for discriminators and projection head.
        freeze_early: freeze the early backbone (mod1-4 on wv3plus) with BN in eval [R].
        poly_power: poly lr decay power over the run (0 = constant).
        pretrain_epochs: first train this many epochs with plain CE (stage A; OE pixels ignored, no
            MDAT/CACL), then the OE stage in the same run (what ``python -m zoo.fit mgcda`` does; the
            bench trains stage A as its own run instead and starts every OE variant from it).
        pretrain_lr: the segmenter's lr during ``pretrain_epochs`` (default: ``lr``).
        disc_hidden, proj_hidden, proj_dim: sizes of the training-only discriminators and projection
            head [R] (the spec's 256/128 and 256 -> 128; the world config uses smaller ones).
    """

    zoo_name = "mgcda"
    weight_args = ("weights", "init_from")
    throughput_unit = "images"

    def __init__(self, arch: Literal["mini", "wv3plus"] = "mini", num_classes: int = 6, weights: str | None = None,
                 init_from: str | None = None, base: Base = "pebal", mdat: bool = True, cacl: bool = True,
                 num_domains: int = 3, lambda_cl: float = 0.1, grl_scale: float = 0.1, grl_gamma: float = 10.0,
                 eps_max: float = 0.2, eps_mode: Literal["linear", "adaptive", "none"] = "linear",
                 cacl_tau: float = 0.1, cacl_anchors: int = 64, cacl_max_anchors: int = 1024,
                 cacl_min_anomaly: int = 16, meta_ood_alpha: float = 0.9, score: Score = "energy",
                 blur_kernel: int = 7, blur_sigma: float = 1.0, lr: float = 1e-3, head_lr: float = 1e-3,
                 weight_decay: float = 1e-4, freeze_early: bool = False, poly_power: float = 0.9,
                 pretrain_epochs: int = 0, disc_hidden: tuple[int, int] = (256, 128), proj_hidden: int = 256,
                 proj_dim: int = 128, pretrain_lr: float | None = None) -> None:
        super().__init__()
        _check(locals())
        self.save_hyperparameters()
        from zoo.mgcda.torch_model import MGCDANet

        seg = _segmenter(arch, num_classes + 1)
        if weights is not None:
            from zoo.common.vision.deeplab import load_nvidia_cityscapes

            load_nvidia_cityscapes(seg, weights)
        self.net = MGCDANet(seg, num_domains=num_domains, mdat=mdat and base != "ce", cacl=cacl and base != "ce",
                            disc_hidden=tuple(disc_hidden), proj_hidden=proj_hidden, proj_dim=proj_dim)
        if init_from is not None:
            self._init_segmenter(init_from)
        if freeze_early:
            from zoo.common.vision.deeplab import freeze_early as _freeze

            _freeze(self.net.segmenter)
        #: the score threshold at 95% anomaly TPR on the validation anomalies (zoo.predict's cut)
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self._eval: dict[str, Any] = {}
        self._adaptive_acc = 1.0 / num_domains

    def _init_segmenter(self, path: str) -> None:
        from zoo.core.module import read_checkpoint
        from zoo.core.weights import load_strict

        ckpt = read_checkpoint(path)
        seg = {k[len("net.segmenter."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.segmenter.")}
        load_strict(self.net.segmenter, seg, Path(path), "the MGCDA segmenter",
                    "init_from must be an mgcda checkpoint with the same arch and num_classes")

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            return
        n, k = getattr(dm, "num_classes", None), getattr(dm, "num_domains", None)
        if n is not None and n != self.hparams.num_classes:
            raise ZooError(f"--model.num_classes={self.hparams.num_classes} but the data has {n} classes")
        if k is not None and k != self.hparams.num_domains:
            raise ZooError(f"--model.num_domains={self.hparams.num_domains} but the data has {k} domains")
        if (self.net.mdat or self.net.cacl) and k is not None and k < 2:
            raise ZooError("MDAT/CACL need at least 2 domains in the training data (set --model.mdat=false "
                           "--model.cacl=false for single-domain data)")

    def _progress(self) -> float:
        """p in [0, 1] over the OE stage (after ``pretrain_epochs``)."""
        if self._trainer is None:
            return 1.0
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, int(self.trainer.max_epochs or 1))
        start = total * self.hparams.pretrain_epochs // epochs
        return min(1.0, max(0.0, (self.global_step - start) / max(1, total - start)))

    def _in_pretrain(self) -> bool:
        return self._trainer is not None and self.current_epoch < self.hparams.pretrain_epochs

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        from zoo.mgcda import losses as L

        x, y, d = batch["image"], batch["label"], batch["domain"]
        p = self._progress()
        hp = self.hparams
        if self._in_pretrain():
            logits = self.net(x)
            loss = L.plain_ce_loss(logits[:, :hp.num_classes], y)["loss"]
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
            return loss
        if (self.net.mdat or self.net.cacl) and int(torch.unique(d).numel()) < 2:
            raise ZooError(f"a training batch holds a single domain ({int(d[0])}); MDAT/CACL need >= 2 per batch "
                           "(use the domain-balanced sampler)")
        lam = L.grl_lambda(p, hp.grl_scale, hp.grl_gamma)
        out = self.net.training_outputs(x, lam)
        logits = out["logits"]
        b = x.shape[0]
        if hp.base == "ce":
            parts = L.plain_ce_loss(logits[:, :hp.num_classes], y)
        elif hp.base == "meta_ood":
            parts = L.meta_ood_loss(logits[:, :hp.num_classes], y, alpha=hp.meta_ood_alpha)
        else:
            parts = L.pebal_loss(logits, y)
        loss = parts["loss"]
        for k, v in parts.items():
            self.log(f"train/{k}" if k != "loss" else "train/base", v, on_step=False, on_epoch=True, batch_size=b)
        if self.net.mdat:
            eps = self._eps(p)
            mdat = L.mdat_loss(out["disc"], d, eps)
            loss = loss + mdat
            acc = torch.stack([(z.argmax(1) == d).float().mean() for z in out["disc"]]).mean()
            self._adaptive_acc = 0.99 * self._adaptive_acc + 0.01 * float(acc)
            self.log("train/mdat", mdat, on_step=False, on_epoch=True, batch_size=b)
            self.log("train/disc_acc", acc, on_step=False, on_epoch=True, batch_size=b)
            self.log("train/grl_lambda", lam, on_step=False, on_epoch=True, batch_size=b)
            self.log("train/eps", eps, on_step=False, on_epoch=True, batch_size=b)
        if self.net.cacl:
            small = torch.nn.functional.interpolate(y[:, None].float(), size=out["z"].shape[-2:], mode="nearest")[:, 0].long()
            with torch.no_grad():  # the sampling scores: E on z's grid, detached
                e_full = -torch.logsumexp(logits[:, :hp.num_classes].float(), dim=1, keepdim=True)
                energy = torch.nn.functional.interpolate(e_full, size=out["z"].shape[-2:], mode="nearest")[:, 0]
            c = L.cacl_loss(out["z"], small, energy, d, tau=hp.cacl_tau, anchors_per_kind=hp.cacl_anchors,
                            max_anchors=hp.cacl_max_anchors, min_anomaly=hp.cacl_min_anomaly)
            loss = loss + hp.lambda_cl * c["loss"]
            self.log("train/cacl", c["loss"], on_step=False, on_epoch=True, batch_size=b)
            self.log("train/cacl_anchors", float(c["n_anchors"]), on_step=False, on_epoch=True, batch_size=b)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=b)
        return loss

    def _eps(self, p: float) -> float:
        from zoo.mgcda.losses import smoothing_eps

        hp = self.hparams
        if hp.eps_mode == "none":
            return 0.0
        if hp.eps_mode == "adaptive":
            k = hp.num_domains
            return hp.eps_max * min(1.0, max(0.0, (self._adaptive_acc - 1 / k) / (1 - 1 / k)))
        return smoothing_eps(p, hp.eps_max, hp.num_domains)

    def configure_optimizers(self):
        seg = [p for p in self.net.segmenter.parameters() if p.requires_grad]
        heads = [p for n, p in self.net.named_parameters() if not n.startswith("segmenter.") and p.requires_grad]
        groups = [{"params": seg, "lr": self.hparams.lr}]
        if heads:
            groups.append({"params": heads, "lr": self.hparams.head_lr})
        opt = torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
        if self.hparams.poly_power <= 0 and not (self.hparams.pretrain_epochs and self.hparams.pretrain_lr):
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        power = self.hparams.poly_power
        epochs = max(1, int(self.trainer.max_epochs or 1))
        pre_steps = total * self.hparams.pretrain_epochs // epochs
        pre = (self.hparams.pretrain_lr or self.hparams.lr) / self.hparams.lr

        def factor(s: int) -> float:
            return (pre if s < pre_steps else 1.0) * max(0.0, 1 - s / total) ** power

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ scoring and evaluation
    def score_map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, H, W) anomaly scores (higher = more anomalous) and the (B, n+1, H, W) logits."""
        from zoo.mgcda.losses import anomaly_score

        logits = self.net(x)
        n = self.hparams.num_classes
        s = self.hparams.score
        if s == "energy":
            sc = anomaly_score(logits, n, blur=self.hparams.blur_kernel > 0, kernel=max(1, self.hparams.blur_kernel),
                               sigma=self.hparams.blur_sigma)
        else:
            z = logits[:, :n].float()
            if s == "msp":
                sc = 1 - z.softmax(1).amax(1)
            elif s == "maxlogit":
                sc = -z.amax(1)
            else:
                pr = z.softmax(1)
                sc = -(pr * pr.clamp_min(1e-12).log()).sum(1)
        return sc, logits

    def _start_eval(self, names: list[str]) -> None:
        from zoo.common.metrics.segmentation import PixelAnomalyMetrics

        self._eval = {"names": names, "anom": {n: PixelAnomalyMetrics(mode="exact") for n in names},
                      "conf": {n: torch.zeros(self.hparams.num_classes, self.hparams.num_classes, dtype=torch.long)
                               for n in names}, "val_scores": []}

    def _eval_step(self, batch: dict[str, Tensor], name: str) -> None:
        from zoo.common.metrics.segmentation import confusion_matrix

        sc, logits = self.score_map(batch["image"])
        a = batch["anomaly"]
        self._eval["anom"][name].update(sc.detach().float().cpu(), a.cpu())
        if "label" in batch:
            pred = logits[:, :self.hparams.num_classes].argmax(1)
            self._eval["conf"][name] += confusion_matrix(pred.cpu(), batch["label"].cpu(), self.hparams.num_classes)
        if name == "val":
            keep = a == 1
            self._eval["val_scores"].append(sc[keep].detach().float().cpu())

    def _metrics(self, name: str) -> dict[str, float]:
        from zoo.common.metrics.segmentation import miou

        m = {k: 100 * float(v) for k, v in self._eval["anom"][name].compute().items()}  # synced over ranks
        conf = gather_sum(self._eval["conf"][name])
        if conf.sum() > 0:
            m["miou"] = 100 * float(miou(conf)[0])
        return m

    def on_validation_epoch_start(self) -> None:
        self._start_eval(["val"])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        for k, v in self._metrics("val").items():
            self.log(f"val/{k}", v, prog_bar=k == "ap")
        pos = gather_cat(torch.cat(self._eval["val_scores"]) if self._eval["val_scores"] else torch.zeros(0))
        if len(pos):  # the cut of zoo.predict: 95% of the validation anomaly pixels above it
            self.threshold.fill_(float(torch.quantile(pos, 0.05)))

    def on_test_epoch_start(self) -> None:
        names = list(getattr(self.trainer.datamodule, "test_set_names", None) or ["target"])
        self._start_eval(names)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, self._eval["names"][dataloader_idx])

    def on_test_epoch_end(self) -> None:
        for i, name in enumerate(self._eval["names"]):
            for k, v in self._metrics(name).items():
                self.log(f"test/{name}/{k}", v, add_dataloader_idx=False)
                if i == 0 and k in ("ap", "fpr95", "auroc"):  # the first set (the target style) as headline
                    self.log(f"test/{k}", v, add_dataloader_idx=False)

    # ------------------------------------------------------------------ prediction
    @classmethod
    def add_predict_arguments(cls, parser) -> None:
        parser.add_argument("--out-dir", default="anomaly_maps",
                            help="folder for the heat-map PNGs (overlay on the input; default ./anomaly_maps)")

    def predict_rows(self, batches: Iterable[Tensor], out_dir: str = "anomaly_maps", **options: Any):
        """One row per image: the fraction of pixels above the validation threshold and the PNG written."""
        from zoo.mgcda.plots import save_heatmap

        out = Path(out_dir)
        i = 0
        for x in batches:
            sc, _ = self.score_map(x.to(self.device))
            for j in range(len(sc)):
                thr = float(self.threshold)
                frac = float((sc[j] > thr).float().mean()) if math.isfinite(thr) else float("nan")
                path = save_heatmap(x[j], sc[j].cpu(), self.transform_spec, out / f"{i:05d}.png")
                yield {"anomalous_frac": round(frac, 4), "heatmap": str(path)}
                i += 1

    def predict_legend(self, **options: Any) -> str:
        thr = float(self.threshold)
        return (f"anomalous_frac = share of pixels whose score (-logsumexp of class logits, blurred) exceeds "
                f"{thr:.3f}, the 95%-TPR cut on the validation anomalies" if math.isfinite(thr)
                else "no validation threshold stored (the run had no validation anomalies)")

    @torch.no_grad()
    def reference_outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        sc, logits = self.score_map(batch["image"])
        return {"score": sc, "logits": logits}

    # ------------------------------------------------------------------ checkpoints
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self._trainer is None:  # zoo.load / load_from_checkpoint: the bare segmenter only
            self.net.drop_training_parts()
            sd = checkpoint["state_dict"]
            for k in [k for k in sd if k.startswith(_TRAIN_ONLY)]:
                del sd[k]


def _segmenter(arch: str, classes: int):
    from zoo.common.vision.deeplab import DeepWV3Plus, MiniDeepLabV3Plus

    return MiniDeepLabV3Plus(num_classes=classes) if arch == "mini" else DeepWV3Plus(num_classes=classes)


def _check(a: dict[str, Any]) -> None:
    from zoo.core.checks import check

    choices = {"arch": ("mini", "wv3plus"), "base": ("ce", "pebal", "meta_ood"),
               "score": ("energy", "msp", "maxlogit", "entropy"), "eps_mode": ("linear", "adaptive", "none")}
    for name, allowed in choices.items():
        if a[name] not in allowed:
            raise ZooError(f"--model.{name}: expected one of {', '.join(allowed)}, got {a[name]!r}")
    check("--model.num_classes", a["num_classes"], ge=1)
    check("--model.num_domains", a["num_domains"], ge=1)
    check("--model.lambda_cl", a["lambda_cl"], ge=0)
    check("--model.grl_scale", a["grl_scale"], ge=0)
    check("--model.grl_gamma", a["grl_gamma"], gt=0)
    check("--model.eps_max", a["eps_max"], ge=0)
    if a["eps_max"] >= (a["num_domains"] - 1) / max(1, a["num_domains"]) and a["eps_mode"] != "none" and a["mdat"]:
        raise ZooError(f"--model.eps_max={a['eps_max']} must be < (K-1)/K = "
                       f"{(a['num_domains'] - 1) / a['num_domains']:.3f} (K = --model.num_domains)")
    check("--model.cacl_tau", a["cacl_tau"], gt=0)
    check("--model.cacl_anchors", a["cacl_anchors"], ge=1)
    check("--model.cacl_max_anchors", a["cacl_max_anchors"], ge=2)
    check("--model.cacl_min_anomaly", a["cacl_min_anomaly"], ge=1)
    check("--model.meta_ood_alpha", a["meta_ood_alpha"], ge=0, le=1)
    check("--model.blur_kernel", a["blur_kernel"], ge=0)
    check("--model.blur_sigma", a["blur_sigma"], gt=0)
    check("--model.lr", a["lr"], gt=0)
    check("--model.head_lr", a["head_lr"], gt=0)
    check("--model.weight_decay", a["weight_decay"], ge=0)
    check("--model.poly_power", a["poly_power"], ge=0)
    check("--model.pretrain_epochs", a["pretrain_epochs"], ge=0)
    check("--model.pretrain_lr", a["pretrain_lr"], gt=0)
    if a["blur_kernel"] and a["blur_kernel"] % 2 == 0:
        raise ZooError(f"--model.blur_kernel must be odd (or 0 for no blur), got {a['blur_kernel']}")
