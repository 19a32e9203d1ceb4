"""MCC-KD as a LightningModule: a student LM distilled from several rationales per question.

Chen et al., "MCC-KD: Multi-CoT Consistent Knowledge Distillation", Findings of EMNLP 2023,
arXiv:2310.14747. The objective is :func:`zoo.mcc_kd.losses.mcc_kd_loss`; the data are
:class:`datamodules.reasoning.base.ReasoningDataModule` batches. The method and its baselines
differ only by flags (``configs/mcc_kd/``):

==============================  ===================================================================
MCC-KD                          ``data.mode=pairs``, ``model.alpha=0.1`` (the spec's zoo default)
Multi-CoT CE (no consistency)   ``data.mode=pairs``, ``model.alpha=0``
Std-CoT (vanilla CoT KD)        ``data.mode=single`` (first kept rationale, CE only)
MCC-KD without diversity        the world's ``select=random`` (K random rationales, not Jaccard)
==============================  ===================================================================

The student is a local Hugging Face model folder (``model_dir``; LLaMA or FlanT5 families) or,
when ``model_dir`` is null, a tiny model built from the ``tiny`` config over the datamodule's
tokenizer. ``lora`` (a :class:`zoo.common.lm.lora.LoraSpec` dict) trains adapters only; the
checkpoint then holds the adapters and a fingerprint of the base weights, which ``zoo.load``
checks against ``model_dir``. Full fine-tuning stores every weight and the model config, so the
checkpoint alone rebuilds the student.

Logged: ``train/loss``, ``train/ce``, ``train/kl``, ``train/valid_pair_frac``, ``train/target_tokens``
(per epoch); ``val/acc``, ``val/missing``, ``val/span_kl``; ``test/<set>/{acc,missing,span_kl,
valid_pair_frac}``. ``span_kl`` is the held-out answer-span KL (T = 1) between the two gold
rationales of each evaluation question: lower means more consistent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from zoo.core.errors import ZooError
from zoo.core.gather import first_occurrences
from zoo.core.module import ZooModule
from zoo.core.schedule import warmup_cosine
from zoo.mcc_kd.torch_model import MCCKDModel

_SEQ2SEQ = ("t5", "bart")
TINY_DEFAULT = {"family": "llama", "hidden": 128, "layers": 3, "heads": 4, "intermediate": 384,
                "max_positions": 320}


class MCCKD(ZooModule):
    """MCC-KD student (see the module docstring).

    Args:
        model_dir: local Hugging Face model folder of the student; null builds ``tiny``.
        tiny: the tiny student's config (``family`` llama/gpt2/bart/t5, ``hidden``, ``layers``,
            ``heads``, ``intermediate``, ``max_positions``), used when ``model_dir`` is null.
        lora: LoRA spec (``targets``, ``r``, ``alpha``, ``dropout``, ``modules_to_save``); null = full FT.
        alpha: weight of the answer-span KL (0 = multi-rationale CE).
        temperature: the KL temperature T (both sides).
        lr, weight_decay: AdamW.
        warmup_steps: linear warm-up steps; ``schedule``: ``cosine`` (to 0 over the run) or ``constant``
            (the official recipe: constant lr, no warm-up).
        max_new_tokens: greedy generation budget at evaluation and prediction.
        answer_kind: answer extraction, ``number``, ``choice`` or ``yesno``.
        tokenizer: local tokenizer folder; null takes the datamodule's.
        seed: the tiny student's initialisation seed.
    """

    zoo_name = "mcc_kd"
    input_kind = "text"
    throughput_unit = "tokens"

    def __init__(self, model_dir: str | None = None, tiny: dict[str, Any] | None = None,
                 lora: dict[str, Any] | None = None, alpha: float = 0.1, temperature: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, warmup_steps: int = 50,
                 schedule: str = "cosine", max_new_tokens: int = 160, answer_kind: str = "number",
                 tokenizer: str | None = None, seed: int = 0) -> None:
        super().__init__()
        _check(alpha=alpha, temperature=temperature, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
               schedule=schedule, max_new_tokens=max_new_tokens, answer_kind=answer_kind)
        self.save_hyperparameters()
        self.tiny_cfg = {**TINY_DEFAULT, **(tiny or {})}
        self.lm_kind = "seq2seq" if self.tiny_cfg["family"] in _SEQ2SEQ else "causal"
        self.net: MCCKDModel | None = None
        self.tokenizer = None
        self._tok_dir: str | None = tokenizer
        self._lm_config: dict[str, Any] | None = None
        self._base_fp: str | None = None
        self._eval: dict[str, list] = {}

    # ------------------------------------------------------------------ building
    def _build(self, tok_dir: str, lm_config: dict[str, Any] | None = None) -> None:
        """Load the tokenizer and build the student (weights: pretrained, tiny init, or config only)."""
        from zoo.common.lm import loading, tiny

        self._tok_dir = str(tok_dir)
        self.tokenizer = loading.load_tokenizer(tok_dir)
        tok = self.tokenizer
        if lm_config is not None:  # reload of a full fine-tune: the config alone, weights from the state dict
            from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

            cfg = AutoConfig.for_model(**lm_config)
            auto = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
            lm = auto.from_config(cfg)
        elif self.hparams.model_dir is not None:
            lm = loading.load_causal_lm(self.hparams.model_dir) if not _is_seq2seq_dir(self.hparams.model_dir) \
                else loading.load_seq2seq_lm(self.hparams.model_dir)
        else:
            t = self.tiny_cfg
            cfg = tiny.tiny_config(t["family"], len(tok), hidden=t["hidden"], layers=t["layers"], heads=t["heads"],
                                   intermediate=t["intermediate"], max_positions=t["max_positions"],
                                   pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id,
                                   decoder_start_token_id=tok.pad_token_id if t["family"] in _SEQ2SEQ else None)
            lm = tiny.tiny_model(cfg, seed=self.hparams.seed)
        self.lm_kind = loading.lm_kind(lm)
        self._lm_config = lm.config.to_dict()
        if self.hparams.lora:
            from zoo.common.lm.lora import LoraSpec, apply_lora, base_fingerprint

            self._base_fp = base_fingerprint(lm)
            lm = apply_lora(lm, LoraSpec(**self.hparams.lora))
        self.net = MCCKDModel(lm, self.lm_kind, self.hparams.alpha, self.hparams.temperature)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.net is None:
            tok_dir = self._tok_dir or (getattr(dm, "tokenizer_dir", None) if dm is not None else None)
            if tok_dir is None:
                raise ZooError("mcc_kd: no tokenizer (set --model.tokenizer or use a datamodule with a tokenizer)")
            self._build(tok_dir)
        if dm is not None and getattr(dm, "lm_kind", self.lm_kind) != self.lm_kind:
            raise ZooError(f"--data.init_args.lm_kind={dm.lm_kind!r} but the student is a {self.lm_kind} LM; "
                           f"set --data.init_args.lm_kind={self.lm_kind}")

    # ------------------------------------------------------------------ training
    def count_units(self, batch: dict[str, Any]) -> int:
        n = int(batch["attention_mask"].sum())
        if "decoder_input_ids" in batch:
            n += int((batch["labels"] != -100).sum())
        return n

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.net(batch)
        b = batch["span_a"].shape[0] if "span_a" in batch else batch["input_ids"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=b, sync_dist=True)
        self.log("train/ce", out["ce"], on_step=False, on_epoch=True, batch_size=b, sync_dist=True)
        if "kl" in out:
            self.log("train/kl", out["kl"], prog_bar=True, on_step=False, on_epoch=True, batch_size=b, sync_dist=True)
            self.log("train/valid_pair_frac", batch["pair_valid"].float().mean(), on_step=False, on_epoch=True,
                     batch_size=b, sync_dist=True)
        self.log("train/target_tokens", (batch["labels"] != -100).sum().float(), on_step=False, on_epoch=True,
                 reduce_fx="sum", batch_size=b, sync_dist=True)
        return out["loss"]

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.schedule == "constant":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = min(self.hparams.warmup_steps, total // 2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ generation and evaluation
    def generate(self, questions: list[str]) -> list[str]:
        """Greedy CoT generation (the spec's inference: prompt = the question, stop at EOS)."""
        from zoo.common.lm.generation import generate

        return generate(self.net.lm, self.tokenizer, list(questions), max_new_tokens=self.hparams.max_new_tokens,
                        num_beams=1, add_bos=self.lm_kind == "causal")

    def answer_rows(self, questions: list[str], golds: list[str] | None = None,
                    kinds: list[str] | None = None) -> list[dict[str, Any]]:
        """Generated rationale, extracted answer (None = missing) and correctness per question."""
        from zoo.common.lm.answers import answers_match, extract

        outs = self.generate(questions)
        rows = []
        for i, text in enumerate(outs):
            kind = (kinds[i] if kinds else None) or self.hparams.answer_kind
            pred = extract(text, kind)
            row = {"question": questions[i], "rationale": text, "answer": pred}
            if golds is not None:
                row["gold"] = golds[i]
                row["correct"] = bool(answers_match(pred, golds[i]))
            rows.append(row)
        return rows

    def _eval_step(self, batch: dict[str, Any], set_name: str) -> None:
        rows = self.answer_rows(batch["question"], batch["answer"], batch["kind"])
        st = self._eval.setdefault(set_name, [])
        n = len(rows)
        kl = torch.zeros(n, device=self.device)
        has = torch.zeros(n, dtype=torch.bool, device=self.device)
        valid = torch.zeros(n, dtype=torch.bool, device=self.device)
        if len(batch["pair_rows"]):
            pr = batch["pair_rows"]
            kl[pr] = self.net.span_kl(batch)
            has[pr] = True
            valid[pr] = batch["pair_valid"]
        st.append(torch.stack([batch["index"].to(self.device).float(),
                               torch.tensor([r["correct"] for r in rows], device=self.device).float(),
                               torch.tensor([r["answer"] is None for r in rows], device=self.device).float(),
                               kl, has.float(), valid.float()], 1))

    def _eval_metrics(self, set_name: str) -> dict[str, float]:
        """Accuracy, missing rate and span KL of one set, each question counted once (under DDP the
        padded DistributedSampler shards are gathered and de-duplicated by question index)."""
        rows = torch.cat(self._eval.pop(set_name, []) or [torch.zeros(0, 6, device=self.device)])
        if self.trainer.world_size > 1:
            rows = self.all_gather(rows).reshape(-1, 6)
        if not len(rows):
            return {}
        rows = rows[first_occurrences(rows[:, 0].long())]
        valid = rows[:, 5] > 0
        out = {"acc": float(rows[:, 1].mean()), "missing": float(rows[:, 2].mean()), "n": float(len(rows))}
        has = rows[:, 4] > 0
        if has.any():
            out["valid_pair_frac"] = float(valid[has].float().mean())
            out["span_kl"] = float(rows[valid, 3].mean()) if valid.any() else math.nan
        return out

    def on_validation_epoch_start(self) -> None:
        self._eval = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        m = self._eval_metrics("val")
        for k, v in m.items():
            if k != "n":
                self.log(f"val/{k}", v, prog_bar=k == "acc", sync_dist=False, rank_zero_only=False)

    def on_test_epoch_start(self) -> None:
        self._eval = {}

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        names = getattr(self.trainer.datamodule, "test_set_names", None) or [str(dataloader_idx)]
        self._eval_step(batch, names[dataloader_idx])

    def on_test_epoch_end(self) -> None:
        names = list(getattr(self.trainer.datamodule, "test_set_names", None) or self._eval)
        for i, name in enumerate(n for n in names if n in self._eval):
            for k, v in self._eval_metrics(name).items():
                self.log(f"test/{name}/{k}", v, add_dataloader_idx=False)
                if i == 0 and k in ("acc", "missing", "span_kl"):  # the first set (ID test) as the headline
                    self.log(f"test/{k}", v, add_dataloader_idx=False)

    # ------------------------------------------------------------------ prediction
    @classmethod
    def add_predict_arguments(cls, parser) -> None:
        parser.add_argument("--question", action="append", default=None,
                            help="a question to answer (repeatable; positional INPUTs and @FILE work too)")

    def predict_inputs(self, options: dict[str, Any]) -> list[str]:
        return list(options.pop("question", None) or [])

    def predict_rows(self, inputs: Iterable[list[str]], **options: Any) -> Iterable[dict[str, Any]]:
        for batch in inputs:
            for r in self.answer_rows(list(batch)):
                yield {"answer": r["answer"], "rationale": r["rationale"]}

    def predict_legend(self, **options: Any) -> str:
        return "greedy chain-of-thought generation; answer = the extracted final answer (None: missing)"

    @torch.no_grad()
    def reference_outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.answer_rows(list(batch["question"]), list(batch["answer"]))}
        if "input_ids" in batch:  # teacher-forced logits of the gold rationales, and their span KL
            out["logits"] = self.net.logits(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                            batch.get("decoder_input_ids"))
            if batch["input_ids"].shape[0] == 2 * batch["span_a"].shape[0]:
                out["span_kl"] = self.net.span_kl(batch)
        return out

    # ------------------------------------------------------------------ checkpoints
    def input_contract(self) -> dict[str, Any]:
        from zoo.core.contract import tokenizer_contract

        return tokenizer_contract(self._tok_dir) if self._tok_dir else {"kind": "text"}

    def restore_input_contract(self, inputs: dict[str, Any]) -> None:
        pass  # the tokenizer is restored (and the net built) in on_load_checkpoint

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        z = checkpoint["zoo"]
        z["lm_kind"] = self.lm_kind
        if self.hparams.lora:
            from zoo.common.lm.lora import trainable_state_dict

            keep = {f"net.lm.{k}" for k in trainable_state_dict(self.net.lm)}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
            z["base_fingerprint"] = self._base_fp
        else:
            z["lm_config"] = self._lm_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.net is not None:  # resuming a fit: the student exists already
            return
        from zoo.core.contract import restore_tokenizer

        z = checkpoint.get("zoo", {})
        tok_dir = restore_tokenizer(z.get("inputs") or {})
        if self.hparams.lora:  # the base again (model_dir, or the seeded tiny init), then the adapters
            self._build(str(tok_dir))
            fp = z.get("base_fingerprint")
            if fp is not None and fp != self._base_fp:
                raise ZooError(f"base model {self.hparams.model_dir or '(tiny)'} differs from the one the LoRA "
                               f"adapters were trained on (fingerprint {self._base_fp[:12]} vs {fp[:12]})")
        else:
            self._build(str(tok_dir), lm_config=z.get("lm_config"))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.hparams.lora and self.net is not None:  # adapters only, strictly on their keys
            from zoo.common.lm.lora import load_trainable_state_dict

            prefix = "net.lm."
            bad = [k for k in state_dict if not k.startswith(prefix)]
            if bad:
                raise ZooError(f"LoRA checkpoint holds keys outside the student: {bad[:3]}")
            load_trainable_state_dict(self.net.lm, {k[len(prefix):]: v for k, v in state_dict.items()})
            return None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _is_seq2seq_dir(path: str) -> bool:
    import json
    from pathlib import Path

    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise ZooError(f"{path}: missing config.json (expected a local Hugging Face model folder)")
    return bool(json.loads(cfg.read_text()).get("is_encoder_decoder", False))


def _check(**a: Any) -> None:
    from zoo.core.checks import check

    check("--model.alpha", a["alpha"], ge=0)
    check("--model.temperature", a["temperature"], gt=0)
    check("--model.lr", a["lr"], gt=0)
    check("--model.weight_decay", a["weight_decay"], ge=0)
    check("--model.warmup_steps", a["warmup_steps"], ge=0)
    check("--model.max_new_tokens", a["max_new_tokens"], ge=1)
    if a["schedule"] not in ("cosine", "constant"):
        raise ZooError(f"--model.schedule: expected 'cosine' or 'constant', got {a['schedule']!r}")
    if a["answer_kind"] not in ("number", "choice", "yesno"):
        raise ZooError(f"--model.answer_kind: expected number, choice or yesno, got {a['answer_kind']!r}")
