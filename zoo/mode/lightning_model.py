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
SupCon with a CE warm start   ``pretrain_epochs=P, pretrain_objective="ce", objective="supcon"``
                              (or ``"supcon+alpa"``): see ``configs/mode/supcon_warmstart.yaml``
============================  ===============================================================

Arguments are checked when the model is built (a one-line :class:`ZooError` naming the argument)
and against the trainer and datamodule in :meth:`MODE.setup`, before any training step.

Under DDP (``configs/mode/ddp.yaml``) the bank is extracted in shards, one per rank, and
all-gathered; validation/test features are scored on each rank's shard and the scores are
all-gathered back into dataset order with the ``DistributedSampler`` padding dropped, so every test
image counts once and every rank computes the same metrics as a single process.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.core.errors import ZooError
from zoo.common.metrics.ood import FPRRule, accepted, ood_metrics, roc_curve, threshold_at_tpr
from zoo.core.module import ZooModule
from zoo.core.schedule import warmup_cosine
from zoo.mode.evaluate import Features, extract, score, timed_score
from zoo.mode.torch_model import MODEModel, alpa_loss, supcon_loss

Objective = Literal["ce", "supcon", "ce+alpa", "supcon+alpa", "alpa"]

#: metrics MODE logs in validation whatever the datamodule; the OOD ones need validation OOD sets.
_VAL_ID_KEYS = ("val/acc", "val/acc_fc", "val/acc_knn")


def _arg_error(name: str, expected: str, value: Any) -> ZooError:
    return ZooError(f"--model.{name} must be {expected}, got {value!r}")


def check_arguments(args: dict[str, Any]) -> None:
    """Validate MODE's init arguments; the first bad one raises a one-line :class:`ZooError`
    (``--model.k must be >= 1, got -3``). Runs in ``MODE.__init__``, i.e. before any training."""

    def integer(name: str, lo: int, allow_none: bool = False) -> None:
        v = args[name]
        if v is None and allow_none:
            return
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise _arg_error(name, "an integer" + (" or null" if allow_none else ""), v)
        if v < lo:
            raise _arg_error(name, f">= {lo}", v)

    def real(name: str, lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False) -> None:
        v = args[name]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise _arg_error(name, "a finite number", v)
        if (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
            if hi == math.inf:
                raise _arg_error(name, f"> {lo:g}" if lo_open else f">= {lo:g}", v)
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            raise _arg_error(name, f"in {left}{lo:g}, {hi:g}{right}", v)

    def choice(name: str, options: tuple[str, ...]) -> None:
        if args[name] not in options:
            raise _arg_error(name, f"one of {', '.join(options)}", args[name])

    choice("objective", get_args(Objective))
    choice("pretrain_objective", ("ce", "supcon"))
    choice("alpa_agg", ("mean", "max", "sum", "logsumexp"))
    choice("score", ("csd", "knn"))
    choice("bank_dtype", ("float16", "float32"))
    choice("knn_precision", ("fp32", "bf16_rerank"))
    choice("fpr_rule", ("knn_ood", "roc"))
    integer("num_classes", 1)
    integer("pretrain_epochs", 0)
    real("lr", 0.0, lo_open=True)
    real("pretrain_lr", 0.0, lo_open=True)
    real("momentum", 0.0, 1.0, hi_open=True)
    real("weight_decay", 0.0)
    real("warmup_epochs", 0.0)
    real("warmup_from", 0.0)
    real("min_lr_ratio", 0.0, 1.0)
    real("alpa_lambda", 0.0)
    integer("alpa_dim", 1)
    real("alpa_inv_temperature", 0.0, lo_open=True)
    integer("alpa_chunk_size", 1, allow_none=True)
    real("supcon_temperature", 0.0, lo_open=True)
    integer("supcon_dim", 1)
    integer("k", 1)
    integer("vote_k", 1)
    real("tpr", 0.0, 1.0, lo_open=True)
    integer("knn_chunk_size", 1)


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
        fpr_rule: FPR95 / threshold convention (``zoo.common.metrics.ood``): ``knn_ood`` (the
            official knn-ood / MODE evaluation: t = ascending ID scores at ``round(0.05 n)``, ID only
            if ``score > t``) or ``roc`` (the zoo's earlier rule: ``score >= t`` at the ROC point).
            The stored threshold and ``zoo.predict``'s decisions follow it.
        bank_dtype: dtype of the stored region bank: ``float32`` (exact) or ``float16`` (halves the
            checkpoint; moves scores by up to ~2e-4, which can reorder near-ties).
        knn_chunk_size: query chunk of the kNN search.
        knn_precision: ``fp32`` (exact) or ``bf16_rerank`` (GPU fast path, exact re-rank).
        plots: write ROC / histogram PNGs of the last validation and of test into the run folder
            (and log them as images to loggers that take images).
    """

    zoo_name = "mode"
    #: weight files whose weights land in the state dict: not needed to reload.
    weight_args = ("backbone_weights", "init_from")
    metrics_note = "ID = positive class; FPR95 = FPR of OOD at 95% ID TPR"
    #: data-sized buffers kept out of DDP's per-step buffer broadcast (every rank builds the same).
    _ddp_params_and_buffers_to_ignore = ("bank", "bank_labels", "threshold")

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
        fpr_rule: FPRRule = "knn_ood",
        bank_dtype: Literal["float16", "float32"] = "float32",
        knn_chunk_size: int = 1024,
        knn_precision: Literal["fp32", "bf16_rerank"] = "fp32",
        plots: bool = True,
    ) -> None:
        super().__init__()
        check_arguments({k: v for k, v in locals().items() if k not in ("self", "__class__")})
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
            self.log(f"train/{name}", v, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("train/lr", self.optimizers().optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)
        if "ce" in obj:
            acc = (out["logits"].argmax(1) == y).float().mean()
            self.log("train/acc", acc, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    def _watch_collapse(self, proj: Tensor, n: int) -> None:
        """Log the mean pairwise cosine of the SupCon embeddings; warn once when it stays above
        0.99 (all embeddings one direction). That is the stationary point at which the SupCon
        loss equals (tau/tau_b) * ln(N - 1), e.g. 6.93 for N = 128, tau = 0.1, and its gradient
        vanishes; see the model card (Known issues) for when it happens."""
        cos = (proj @ proj.T).mean()
        self.log("train/supcon_mean_cos", cos, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        if cos > 0.99 and self.global_step >= 50 and not getattr(self, "_collapse_warned", False):
            self._collapse_warned = True
            import warnings

            warnings.warn(f"SupCon embeddings collapsed (mean cosine {cos.item():.3f} at step {self.global_step}): the "
                          "loss is stuck at (tau/tau_b) ln(N-1) and kNN features carry no class signal; see "
                          "zoo/mode/README.md, Known issues (a CE warm start avoids it: "
                          "configs/mode/supcon_warmstart.yaml)", stacklevel=2)

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

    # ------------------------------------------------------------------ checks before training
    def setup(self, stage: str) -> None:
        """Check the arguments that depend on the datamodule and trainer, before any step runs:
        ``k`` against the bank size, and the monitors of checkpoint / early-stopping callbacks
        against the validation metrics this datamodule lets MODE log."""
        trainer = self._trainer
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        if dm is None or not hasattr(dm, "bank_dataloader"):
            return
        hp = self.hparams
        if self.bank.shape[0]:
            n_images = self.bank.shape[0]
        elif stage in ("fit", "validate", "test"):
            n_images = len(dm.bank_dataloader().dataset)
        else:
            n_images = None
        if n_images is not None:
            rows = n_images * (6 if hp.score == "csd" else 1)
            if hp.k > rows:
                what = "6 regions x " if hp.score == "csd" else ""
                raise ZooError(f"--model.k must be <= the {rows} rows of the {hp.score.upper()} bank "
                               f"({what}{n_images} ID train images), got {hp.k}")
        if stage == "fit":
            self._check_monitors(trainer, dm)
            self._ddp_find_unused(trainer)

    def _ddp_find_unused(self, trainer) -> None:
        """MODE trains a different subset of its parameters in each objective (the CE head, the
        SupCon head, the ALPA module), so DDP must be told that some receive no gradient; without
        it the second training step fails. Switched on here, before the strategy wraps the model."""
        from lightning.pytorch.strategies import DDPStrategy

        strategy = getattr(trainer, "strategy", None)
        if not isinstance(strategy, DDPStrategy):
            return
        kwargs = getattr(strategy, "_ddp_kwargs", None)
        if not isinstance(kwargs, dict):
            raise ZooError("MODE leaves some parameters without gradient in each objective; use "
                           "--trainer.strategy=ddp_find_unused_parameters_true (as configs/mode/ddp.yaml does)")
        if not kwargs.get("find_unused_parameters"):
            kwargs["find_unused_parameters"] = True
            from lightning.pytorch.utilities import rank_zero_info

            rank_zero_info("MODE: DDP find_unused_parameters=True (each objective trains only some of the heads)")

    def _check_monitors(self, trainer, dm) -> None:
        if not trainer.limit_val_batches:
            return
        names = list(getattr(dm, "val_set_names", []) or [])
        logged = set(_VAL_ID_KEYS)
        if names:
            logged |= {"val/auroc", "val/fpr95"}
            logged |= {f"val/{n}/{m}" for n in names for m in ("auroc", "fpr95", "aupr_in")}
        for cb in trainer.callbacks:
            mon = getattr(cb, "monitor", None)
            if not isinstance(mon, str) or not mon.startswith("val/") or mon in logged:
                continue
            why = (f"{type(dm).__name__} has no validation OOD sets, so MODE validates with "
                   f"{', '.join(_VAL_ID_KEYS)} only" if not names else
                   f"MODE's validation metrics are {', '.join(sorted(logged))}")
            raise ZooError(f"{type(cb).__name__} monitors {mon!r}, which is never logged: {why}; monitor "
                           "val/acc (mode: max) instead, as configs/mode/cifar10_r18.yaml does, or give the "
                           "datamodule validation OOD sets")

    # ------------------------------------------------------------------ distributed helpers
    def _world(self) -> tuple[int, int]:
        """(global rank, world size); (0, 1) without a trainer."""
        t = self._trainer
        if t is None:
            return 0, 1
        return int(t.global_rank), int(t.world_size)

    def _in_order(self, local: Tensor, n: int) -> Tensor:
        """All-gather one rank's rows of a ``DistributedSampler(shuffle=False)`` shard and return the
        rows of the whole dataset in dataset order, the sampler's padding (repeated samples) dropped.

        Rank r holds padded indices r, r + W, r + 2W, ... (all ranks the same count), so the
        gathered (W, L, ...) block read column by column is dataset order; the first n rows are the
        dataset, the rest duplicates. A single process returns ``local`` unchanged.
        """
        _, world = self._world()
        if world == 1:
            return local
        dtype = local.dtype
        gathered = self.all_gather(local.to(torch.long) if dtype == torch.bool else local)  # (W, L, ...)
        rows = gathered.transpose(0, 1).reshape(-1, *gathered.shape[2:])[:n]
        return rows.to(dtype).cpu()

    def _eval_sizes(self, stage: str, count: int) -> list[int]:
        """Dataset length of each evaluation loader; under DDP also checks that Lightning's
        ``DistributedSampler`` (no shuffle, no drop_last) shards them, as :meth:`_in_order` assumes."""
        from torch.utils.data import DistributedSampler

        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        sizes = []
        for ld in list(loaders)[:count]:
            if self._world()[1] > 1:
                smp = getattr(ld, "sampler", None)
                if not isinstance(smp, DistributedSampler) or smp.shuffle or smp.drop_last:
                    raise ZooError("MODE under DDP needs Lightning's DistributedSampler on its evaluation "
                                   "loaders (unshuffled); keep --trainer.use_distributed_sampler=true")
            sizes.append(len(ld.dataset))
        return sizes

    def _shard(self, loader):
        """The rank's shard of an (unsharded) bank loader, padded like Lightning's eval sampler."""
        from torch.utils.data import DataLoader, DistributedSampler

        rank, world = self._world()
        sampler = DistributedSampler(loader.dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                          num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory)

    # ------------------------------------------------------------------ evaluation
    def _features_step(self, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        with torch.autocast(device_type=self.device.type, enabled=False):
            out = self.net(batch["image"].float())
        self._outputs.setdefault(dataloader_idx, []).append(Features.from_output(out, batch["label"]))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._features_step(batch, dataloader_idx)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._features_step(batch, dataloader_idx)

    def _local(self) -> list[Features]:
        """This rank's features of every evaluation loader (its shard under DDP), then cleared."""
        out = [Features.cat(self._outputs[i]) for i in sorted(self._outputs)]
        self._outputs = {}
        return out

    def _progress(self) -> bool:
        return self._trainer is not None and self.trainer.progress_bar_callback is not None

    @torch.no_grad()
    def build_bank(self, loader) -> None:
        """Extract, normalise and store the 6 regions of every ID training image (the CSD bank).

        Under DDP each rank extracts one shard and the shards are all-gathered in loader order, so
        every rank holds the same bank as a single process would."""
        _, world = self._world()
        n = len(loader.dataset)
        if world > 1:
            loader = self._shard(loader)
        f = extract(self.net, loader, self.device, progress=self._progress(), desc="bank")
        self.bank = self._in_order(f.regions.to(self.bank.dtype), n).to(self.device)
        self.bank_labels = self._in_order(f.labels, n).to(self.device)

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
        return self._accuracies(feats.labels, feats.logits.argmax(1), self._vote(feats))

    def _accuracies(self, y: Tensor, pred_fc: Tensor, pred_knn: Tensor) -> dict[str, float]:
        acc_fc = (pred_fc == y).float().mean().item()
        acc_knn = (pred_knn == y).float().mean().item()
        return {"acc_fc": acc_fc, "acc_knn": acc_knn, "acc": acc_fc if "ce" in self.final_objective else acc_knn}

    def _evaluate(self, stage: str, names: list[str], average: list[str]) -> dict[str, float]:
        """Metrics of one evaluation epoch. Each rank scores its own shard (the kNN search is the
        costly part); scores, labels and predictions are then put back into dataset order across
        ranks (:meth:`_in_order`), so every image counts once and all ranks agree."""
        hp = self.hparams
        local = self._local()
        sizes = self._eval_sizes(stage, len(local))
        id_f, ood_f = local[0], local[1:]
        metrics: dict[str, float] = {}
        if stage == "val":
            id_s = self.scores(id_f)
        else:
            id_s, qps = timed_score(hp.score, id_f, self.bank.float(), hp.k, device=self.device,
                                    chunk_size=hp.knn_chunk_size, precision=hp.knn_precision)
            metrics[f"{stage}/score_qps"] = qps  # per process under DDP (averaged over ranks when logged)
        y = self._in_order(id_f.labels, sizes[0])
        pred_fc = self._in_order(id_f.logits.argmax(1), sizes[0])
        pred_knn = self._in_order(self._vote(id_f), sizes[0])
        id_s = self._in_order(id_s, sizes[0])
        metrics.update({f"{stage}/{k}": v for k, v in self._accuracies(y, pred_fc, pred_knn).items()})
        if stage == "val" or not torch.isfinite(self.threshold):
            self.threshold = torch.tensor(threshold_at_tpr(id_s, hp.tpr, hp.fpr_rule), device=self.device)
        per: dict[str, dict[str, float]] = {}
        ood_scores: dict[str, Tensor] = {}
        for i, (name, f) in enumerate(zip(names, ood_f), start=1):
            s = self._in_order(self.scores(f), sizes[i])
            ood_scores[name] = s
            per[name] = ood_metrics(id_s, s, tpr=hp.tpr, fpr_rule=hp.fpr_rule)
            for m in ("auroc", "fpr95", "aupr_in"):
                metrics[f"{stage}/{name}/{m}"] = per[name][m]
        avg = [n for n in names if n in average] or names
        if avg:
            for m in ("auroc", "fpr95"):
                metrics[f"{stage}/{m}"] = sum(per[n][m] for n in avg) / len(avg)
        last_epoch = stage != "val" or self.current_epoch + 1 >= (self.trainer.max_epochs or 0)
        if hp.plots and ood_scores and last_epoch and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self._plot(stage, id_s, ood_scores, per)
        return metrics

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._outputs = {}
            return
        dm = self.trainer.datamodule
        self.build_bank(dm.bank_dataloader())
        metrics = self._evaluate("val", dm.val_set_names, dm.val_set_names)
        # identical on every rank (gathered); sync_dist only keeps Lightning's DDP bookkeeping happy
        self.log("val/acc", metrics.pop("val/acc"), prog_bar=True, sync_dist=True)
        self.log_dict(metrics, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        if self.bank.shape[0] == 0:
            self.build_bank(dm.bank_dataloader())
        metrics = self._evaluate("test", dm.test_set_names, dm.average_names)
        self.log_dict(metrics, sync_dist=True)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        return self.predict_images(batch["image"])

    @torch.no_grad()
    def predict_images(self, images: Tensor) -> dict[str, Tensor]:
        """Class, OOD score (higher = more ID) and ID decision at the stored 95%-TPR threshold
        (``score > t`` under the default ``fpr_rule="knn_ood"``, ``score >= t`` under ``"roc"``).

        Args:
            images: (B, 3, H, W) normalised images (see ``transform_spec``).
        """
        with torch.autocast(device_type=self.device.type, enabled=False):
            out = self.net(images.to(self.device).float())
        f = Features.from_output(out, torch.full((images.shape[0],), -1))
        s = self.scores(f)
        pred = f.logits.argmax(1) if "ce" in self.final_objective else self._vote(f)
        return {"pred": pred, "score": s, "is_id": accepted(s, self.threshold.cpu(), self.hparams.fpr_rule)}

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
        op = ">" if self.hparams.fpr_rule == "knn_ood" else ">="
        return (f"(score: higher = more ID; ID if score {op} {float(self.threshold):.4f}, the 95%-TPR threshold "
                f"on ID validation data, {self.hparams.fpr_rule} rule)")

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
        if "fpr_rule" not in checkpoint.get("hyper_parameters", {"fpr_rule": None}):
            # written before fpr_rule existed: its threshold was fixed with the ROC rule (score >= t)
            self.hparams.fpr_rule = "roc"
        sd = checkpoint.get("state_dict", {})
        # The bank is data-sized: resize the empty buffers so the strict load can fill them.
        for name in ("bank", "bank_labels"):
            if name in sd:
                setattr(self, name, torch.empty_like(sd[name], device=self.device))
