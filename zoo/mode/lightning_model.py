"""MODE as a LightningModule: objectives, schedule, bank building, CSD/KNN evaluation, logging.

Thin on purpose: the maths lives in :mod:`zoo.mode.torch_model` (no Lightning there) and
:mod:`zoo.mode.evaluate`. One class covers MODE and its baselines through ``objective`` and
``score``:

============================  ===============================================================
MODE-T (CE)                   ``objective="ce+alpa"``
MODE-T (SupCon)               ``objective="supcon+alpa"``
MODE-F                        ``pretrain_epochs=P, pretrain_objective="ce", objective="alpa"``
                              (P epochs of CE, then ALPA alone with the attention module fresh),
                              or ``init_from=<converged checkpoint>, objective="alpa"``
KNN baseline (Sun et al.)     ``objective="ce"`` (or ``"supcon"``), ``score="knn"``
============================  ===============================================================
"""

from __future__ import annotations

import math
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.core.errors import ZooError
from zoo.common.metrics.ood import ood_metrics, roc_curve, threshold_at_tpr
from zoo.core.module import ZooModule
from zoo.core.schedule import warmup_cosine
from zoo.mode.evaluate import Features, extract, score, timed_score
from zoo.mode.torch_model import MODEModel, alpa_loss, supcon_loss

Objective = Literal["ce", "supcon", "ce+alpa", "supcon+alpa", "alpa"]


class MODE(ZooModule):
    """MODE (ALPA + CSD) and the KNN baseline on one backbone.

    Ref: Zhang et al., "From Global to Local: Multi-scale Out-of-distribution Detection",
    arXiv:2308.10239v1 (IEEE TIP 2023).

    Args:
        backbone: ``world_resnet`` (embedded world), ``cifar_resnet18``, ``cifar_resnet34``,
            ``resnet50`` (see ``zoo.common.vision.backbones``).
        num_classes: ID classes.
        backbone_weights: local backbone weight file (strict); ``None`` = random init.
        init_from: MODE-F start point: a zoo MODE checkpoint (backbone and heads are loaded,
            strictly; the ALPA module stays freshly initialised).
        objective: training loss after the pre-training stage (see module docstring).
        pretrain_epochs: epochs of ``pretrain_objective`` before ``objective`` (0 = none).
        pretrain_objective: ``ce`` or ``supcon``.
        lr: SGD learning rate of the main stage (momentum 0.9, wd 1e-4; cosine to lr*min_lr_ratio).
        pretrain_lr: learning rate of the pre-training stage.
        warmup_epochs: linear warm-up from ``warmup_from`` (SupCon recipe: 10 epochs when bs>256).
        alpa_lambda: weight of L_ALPA in the joint objectives (MODE-T; 1 in the paper).
        alpa_dim: ALPA projection width d (80 in the paper).
        alpa_inv_temperature: ALPA inverse temperature (10 in the code, i.e. tau = 0.1).
        alpa_agg: aggregation over positions (``mean`` in the code).
        alpa_chunk_size: anchors per chunk in the N x N ALPA similarity (memory bound); None = all.
        supcon_temperature: SupCon tau (0.1).
        score: test-time score of this model: ``csd`` (MODE) or ``knn`` (baseline).
        k: the k of ``score`` (CSD: 10; KNN: 50 on CIFAR-10, 200 on CIFAR-100).
        vote_k: k of the kNN-vote ID accuracy (for models without a trained CE head).
        tpr: ID true-positive rate of the decision threshold (0.95).
        bank_dtype: dtype of the stored region bank (``float16`` halves checkpoint size).
        knn_chunk_size: query chunk of the kNN search.
        knn_precision: ``fp32`` (exact) or ``bf16_rerank`` (GPU fast path, exact re-rank).
        plots: write ROC / histogram PNGs of the last validation and of test into the run folder
            (and log them as images to loggers that take images).
    """

    zoo_name = "mode"
    #: weight files whose weights land in the state dict: not needed to reload.
    weight_args = ("backbone_weights", "init_from")
    metrics_note = "ID = positive class; FPR95 = FPR of OOD at 95% ID TPR"

    def __init__(
        self,
        backbone: str = "world_resnet",
        num_classes: int = 6,
        backbone_weights: str | None = None,
        init_from: str | None = None,
        objective: Objective = "alpa",
        pretrain_epochs: int = 0,
        pretrain_objective: Literal["ce", "supcon"] = "ce",
        lr: float = 0.05,
        pretrain_lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 0.0,
        warmup_from: float = 0.01,
        min_lr_ratio: float = 1e-3,
        alpa_lambda: float = 1.0,
        alpa_dim: int = 80,
        alpa_inv_temperature: float = 10.0,
        alpa_agg: Literal["mean", "max", "sum", "logsumexp"] = "mean",
        alpa_chunk_size: int | None = None,
        supcon_temperature: float = 0.1,
        supcon_dim: int = 128,
        score: Literal["csd", "knn"] = "csd",
        k: int = 10,
        vote_k: int = 10,
        tpr: float = 0.95,
        bank_dtype: Literal["float16", "float32"] = "float16",
        knn_chunk_size: int = 1024,
        knn_precision: Literal["fp32", "bf16_rerank"] = "fp32",
        plots: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        head = "supcon" if "supcon" in objective or (pretrain_epochs and pretrain_objective == "supcon") else "ce"
        self.net = MODEModel(backbone=backbone, num_classes=num_classes, head=head, alpa_dim=alpa_dim,
                             supcon_dim=supcon_dim, backbone_weights=backbone_weights)
        c = self.net.num_features
        dt = getattr(torch, bank_dtype)
        # The ID region bank (M, 6, C), unit rows, its labels, and the 95%-TPR threshold: data-sized
        # buffers stored in the checkpoint so that inference needs nothing but the checkpoint.
        self.register_buffer("bank", torch.zeros(0, 6, c, dtype=dt))
        self.register_buffer("bank_labels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("threshold", torch.tensor(float("nan")))
        if init_from:
            self._init_from(init_from)
        self._outputs: dict[int, list[Features]] = {}

    # ------------------------------------------------------------------ objectives & schedule
    def objective_at(self, epoch: int) -> str:
        """The objective in force at ``epoch`` (pre-training stage first)."""
        hp = self.hparams
        return hp.pretrain_objective if epoch < hp.pretrain_epochs else hp.objective

    @property
    def final_objective(self) -> str:
        return self.hparams.objective

    def lr_at(self, t: float) -> float:
        """Learning rate at fractional epoch ``t``: per-stage warm-up then cosine to lr*min_lr_ratio."""
        hp = self.hparams
        total = self.trainer.max_epochs if self._trainer is not None and self.trainer.max_epochs not in (None, -1) \
            else hp.pretrain_epochs + 1
        if t < hp.pretrain_epochs:
            base, t0, length = hp.pretrain_lr, 0.0, hp.pretrain_epochs
        else:
            base, t0, length = hp.lr, float(hp.pretrain_epochs), max(1e-9, total - hp.pretrain_epochs)
        return warmup_cosine(t - t0, length, hp.warmup_epochs, base=base, eta_min=base * hp.min_lr_ratio,
                             warmup_start=hp.warmup_from, cosine_from="start", cosine_length=length)

    def configure_optimizers(self):
        hp = self.hparams
        # One SGD group: the attention parameters share the backbone's lr (official code).
        return torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    def on_train_epoch_start(self) -> None:
        hp = self.hparams
        if hp.pretrain_epochs and self.current_epoch == hp.pretrain_epochs:
            # MODE-F stage switch: a fresh optimiser state for the fine-tuning stage.
            self.optimizers().optimizer.state.clear()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        n = max(1, int(self.trainer.num_training_batches))
        lr = self.lr_at(self.current_epoch + batch_idx / n)
        for g in self.optimizers().optimizer.param_groups:
            g["lr"] = lr

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        hp = self.hparams
        obj = self.objective_at(self.current_epoch)
        two_views = "supcon" in obj or "alpa" in obj
        x, y = batch["image"], batch["label"]
        if two_views:
            if "image_view2" not in batch:
                raise ZooError(f"objective {obj!r} needs two views per image; set --data.init_args.n_views=2")
            x, y = torch.cat([x, batch["image_view2"]]), torch.cat([y, y])
        out = self.net(x)
        losses: dict[str, Tensor] = {}
        if "ce" in obj:
            losses["ce"] = F.cross_entropy(out["logits"], y)
        if "supcon" in obj:
            losses["supcon"] = supcon_loss(out["proj"], y, temperature=hp.supcon_temperature)
            self._watch_collapse(out["proj"].detach(), x.shape[0])
        if "alpa" in obj:
            sim = self.net.alpa(out["tokens"].float(), agg=hp.alpa_agg, chunk_size=hp.alpa_chunk_size)
            la = alpa_loss(sim, y, inv_temperature=hp.alpa_inv_temperature)
            losses["alpa"] = la if obj == "alpa" else hp.alpa_lambda * la
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise ZooError(f"train/loss is {loss.item()} at epoch {self.current_epoch} step {self.global_step} "
                           f"(objective {obj}, lr {self.lr_at(self.current_epoch):.4g}); lower --model.lr")
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        for name, v in losses.items():
            self.log(f"train/{name}", v, on_step=False, on_epoch=True, batch_size=bs)
        self.log("train/lr", self.optimizers().optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)
        if "ce" in obj:
            acc = (out["logits"].argmax(1) == y).float().mean()
            self.log("train/acc", acc, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _watch_collapse(self, proj: Tensor, n: int) -> None:
        """Log the mean pairwise cosine of the SupCon embeddings; warn once when it stays above
        0.99 (all embeddings one direction). That is the stationary point at which the SupCon
        loss equals (tau/tau_b) * ln(N - 1), e.g. 6.93 for N = 128, tau = 0.1, and its gradient
        vanishes; see the model card (Known issues) for when it happens."""
        cos = (proj @ proj.T).mean()
        self.log("train/supcon_mean_cos", cos, on_step=False, on_epoch=True, batch_size=n)
        if cos > 0.99 and self.global_step >= 50 and not getattr(self, "_collapse_warned", False):
            self._collapse_warned = True
            import warnings

            warnings.warn(f"SupCon embeddings collapsed (mean cosine {cos.item():.3f} at step {self.global_step}): the "
                          "loss is stuck at (tau/tau_b) ln(N-1) and kNN features carry no class signal; see "
                          "zoo/mode/README.md, Known issues", stacklevel=2)

    # ------------------------------------------------------------------ init_from (MODE-F)
    def _init_from(self, path: str) -> None:
        from zoo.core.module import read_checkpoint

        ckpt = read_checkpoint(path)
        if ckpt["zoo"].get("name") != "mode":
            raise ZooError(f"--model.init_from {path}: a {ckpt['zoo'].get('name')!r} checkpoint, expected 'mode'")
        sd = {k[len("net."):]: v for k, v in ckpt["state_dict"].items()
              if k.startswith("net.") and not k.startswith("net.alpa.")}
        own = {k: v for k, v in self.net.state_dict().items() if not k.startswith("alpa.")}
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        bad = [k for k in sd if k in own and sd[k].shape != own[k].shape]
        if missing or unexpected or bad:
            raise ZooError(f"--model.init_from {path}: keys do not match this backbone "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]}, shape {bad[:3]})")
        self.net.load_state_dict(sd, strict=False)  # alpa.* deliberately stays fresh (MODE-F)

    # ------------------------------------------------------------------ evaluation
    def _features_step(self, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        with torch.autocast(device_type=self.device.type, enabled=False):
            out = self.net(batch["image"].float())
        self._outputs.setdefault(dataloader_idx, []).append(Features.from_output(out, batch["label"]))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._features_step(batch, dataloader_idx)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._features_step(batch, dataloader_idx)

    def _gathered(self) -> list[Features]:
        out = [Features.cat(self._outputs[i]) for i in sorted(self._outputs)]
        self._outputs = {}
        return out

    def _progress(self) -> bool:
        return self._trainer is not None and self.trainer.progress_bar_callback is not None

    @torch.no_grad()
    def build_bank(self, loader) -> None:
        """Extract, normalise and store the 6 regions of every ID training image (the CSD bank)."""
        f = extract(self.net, loader, self.device, progress=self._progress(), desc="bank")
        self.bank = f.regions.to(self.bank.dtype).to(self.device)
        self.bank_labels = f.labels.to(self.device)

    def scores(self, feats: Features, method: str | None = None, k: int | None = None) -> Tensor:
        """OOD scores (higher = more ID) of ``feats`` against the stored bank."""
        if self.bank.shape[0] == 0:
            raise ZooError("this MODE model has no ID bank yet: fit it, or call build_bank(loader)")
        hp = self.hparams
        return score(method or hp.score, feats, self.bank.float(), k or hp.k, device=self.device,
                     chunk_size=hp.knn_chunk_size, precision=hp.knn_precision, progress=self._progress())

    def id_accuracy(self, feats: Features) -> dict[str, float]:
        """``acc_fc`` (CE head), ``acc_knn`` (kNN vote of the global feature) and ``acc``: the fc head
        when the final objective trains it (CE, CE+ALPA), else the kNN vote (spec)."""
        y = feats.labels
        acc_fc = (feats.logits.argmax(1) == y).float().mean().item()
        acc_knn = (self._vote(feats) == y).float().mean().item()
        return {"acc_fc": acc_fc, "acc_knn": acc_knn, "acc": acc_fc if "ce" in self.final_objective else acc_knn}

    def _evaluate(self, stage: str, names: list[str], average: list[str]) -> dict[str, float]:
        feats = self._gathered()
        id_f, ood_f = feats[0], feats[1:]
        metrics = {f"{stage}/{k}": v for k, v in self.id_accuracy(id_f).items()}
        if stage == "val":
            id_s = self.scores(id_f)
        else:
            id_s, qps = timed_score(self.hparams.score, id_f, self.bank.float(), self.hparams.k, device=self.device,
                                    chunk_size=self.hparams.knn_chunk_size, precision=self.hparams.knn_precision)
            metrics[f"{stage}/score_qps"] = qps
        if stage == "val" or not torch.isfinite(self.threshold):
            self.threshold = torch.tensor(threshold_at_tpr(id_s, self.hparams.tpr), device=self.device)
        per: dict[str, dict[str, float]] = {}
        ood_scores: dict[str, Tensor] = {}
        for name, f in zip(names, ood_f):
            s = self.scores(f)
            ood_scores[name] = s
            per[name] = ood_metrics(id_s, s, tpr=self.hparams.tpr)
            for m in ("auroc", "fpr95", "aupr_in"):
                metrics[f"{stage}/{name}/{m}"] = per[name][m]
        avg = [n for n in names if n in average] or names
        if avg:
            for m in ("auroc", "fpr95"):
                metrics[f"{stage}/{m}"] = sum(per[n][m] for n in avg) / len(avg)
        last_epoch = stage != "val" or self.current_epoch + 1 >= (self.trainer.max_epochs or 0)
        if self.hparams.plots and ood_scores and last_epoch and not self.trainer.sanity_checking:
            self._plot(stage, id_s, ood_scores, per)
        return metrics

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._outputs = {}
            return
        dm = self.trainer.datamodule
        self.build_bank(dm.bank_dataloader())
        metrics = self._evaluate("val", dm.val_set_names, dm.val_set_names)
        self.log("val/acc", metrics.pop("val/acc"), prog_bar=True)
        self.log_dict(metrics)

    def on_test_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        if self.bank.shape[0] == 0:
            self.build_bank(dm.bank_dataloader())
        metrics = self._evaluate("test", dm.test_set_names, dm.average_names)
        self.log_dict(metrics)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        return self.predict_images(batch["image"])

    @torch.no_grad()
    def predict_images(self, images: Tensor) -> dict[str, Tensor]:
        """Class, OOD score (higher = more ID) and ID decision at the stored 95%-TPR threshold.

        Args:
            images: (B, 3, H, W) normalised images (see ``transform_spec``).
        """
        with torch.autocast(device_type=self.device.type, enabled=False):
            out = self.net(images.to(self.device).float())
        f = Features.from_output(out, torch.full((images.shape[0],), -1))
        s = self.scores(f)
        pred = f.logits.argmax(1) if "ce" in self.final_objective else self._vote(f)
        return {"pred": pred, "score": s, "is_id": s >= self.threshold.cpu()}

    def predict_rows(self, batches: Iterable[Tensor], **options: Any) -> Iterator[dict[str, Any]]:
        """One row per image for ``python -m zoo.predict``: class, score and ID/OOD decision.

        Args:
            batches: (B, 3, H, W) normalised image batches.
        """
        classes = self.transform_spec.get("classes") or []
        for images in batches:
            out = self.predict_images(images)
            for c, s, d in zip(out["pred"].tolist(), out["score"].tolist(), out["is_id"].tolist()):
                yield {"class": classes[c] if c < len(classes) else str(c), "score": float(s),
                       "decision": "ID" if d else "OOD", "threshold": float(self.threshold)}

    def predict_legend(self, **options: Any) -> str:
        return (f"(score: higher = more ID; ID if score >= {float(self.threshold):.4f}, the 95%-TPR threshold "
                "on ID validation data)")

    def _vote(self, feats: Features) -> Tensor:
        """Class by a ``vote_k``-NN vote of the global feature against the bank."""
        from zoo.common.vision.knn import knn_vote

        return knn_vote(feats.global_, self.bank[:, 4].float().cpu(), self.bank_labels.cpu(),
                        k=min(self.hparams.vote_k, self.bank.shape[0]), num_classes=feats.logits.shape[1])

    # ------------------------------------------------------------------ plots & checkpoint
    def _plot(self, stage: str, id_s: Tensor, ood_scores: dict[str, Tensor], per: dict[str, dict]) -> None:
        from zoo.common.harness.plots import plot_roc, plot_score_hist

        folder = Path(self.trainer.default_root_dir) / "plots"
        curves = {}
        for name, s in ood_scores.items():
            fpr, tpr, _ = roc_curve(id_s, s)
            curves[name] = (fpr.numpy(), tpr.numpy(), per[name]["auroc"])
        tag = f"{stage}_e{self.current_epoch:03d}" if stage == "val" else stage
        method = self.hparams.score.upper()
        roc = plot_roc(curves, folder / f"{tag}_roc.png", title=f"{stage} ROC, {method} (ID = positive)")
        hist = plot_score_hist(id_s.numpy(), {n: s.numpy() for n, s in ood_scores.items()},
                               folder / f"{tag}_scores.png", threshold=float(self.threshold),
                               title=f"{stage} {method} scores (higher = more ID)")
        for lg in self.loggers:
            if hasattr(lg, "log_image"):
                lg.log_image(key=f"{stage}/plots", images=[str(roc), str(hist)], step=self.global_step)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        sd = checkpoint.get("state_dict", {})
        # The bank is data-sized: resize the empty buffers so the strict load can fill them.
        for name in ("bank", "bank_labels"):
            if name in sd:
                setattr(self, name, torch.empty_like(sd[name], device=self.device))
