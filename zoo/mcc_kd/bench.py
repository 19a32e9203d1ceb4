"""The MCC-KD bench: MCC-KD against its baselines on the embedded arithmetic world, over seeds.

Every row is trained through the bench harness (:mod:`zoo.common.harness`), i.e. the same
LightningCLI path as ``python -m zoo.fit mcc_kd``, on the same world (its seed is fixed; the
training seed sets the student's initialisation, the shuffle and the rationale pairs):

==================  ==================================================================
``std_cot``         Std-CoT / Fine-tune-CoT: one rationale per question (the first kept), CE only
``multi_cot_ce``    multi-rationale CE: MCC-KD's data and pairs, alpha = 0 (isolates the KL term)
``mcc_kd``          MCC-KD: CE + alpha * answer-span KL (the method config)
``mcc_kd_random``   MCC-KD without the diversity filter (K random rationales, not Jaccard)
==================  ==================================================================

The final weights are evaluated (no checkpoint selection) by greedy generation and answer
extraction on ID test, OOD-steps and OOD-numbers (spec mcckd.md: the last is a sanity check,
about 0 for every method), with the missing-answer rate and the held-out answer-span KL between
the two gold rationales of each test question (teacher-forced, T = 1; lower = more consistent).
"""

from __future__ import annotations

from typing import Any

from zoo.common.harness import Bench, Comparison, Fitted, Setting, Variant
from zoo.common.harness.report import fmt

METHODS = {"std_cot": "Std-CoT (one rationale, CE)", "multi_cot_ce": "Multi-CoT CE (alpha = 0)",
           "mcc_kd": "MCC-KD", "mcc_kd_random": "MCC-KD without diversity (random K)"}
SETS = {"test": "id", "ood_steps": "ood", "ood_numbers": "ood_numbers"}
CONVENTIONS = ("exact-match accuracy in % after answer extraction from greedy generations (no extraction = wrong, "
               "counted in `missing`); `span_kl`: the held-out answer-span KL, 1/2 (KL(P||Q) + KL(Q||P)) per span "
               "token at T = 1 between the student's teacher-forced distributions on the two gold rationales of "
               "each ID-test question, averaged over valid pairs; +- is the std over seeds; every row is the "
               "last epoch (no selection)")


class MCCKDBench(Bench):
    """Std-CoT vs multi-rationale CE vs MCC-KD (and MCC-KD without diversity)."""

    title = "MCC-KD bench"
    conventions = CONVENTIONS
    metrics = {"span_kl": "held-out ID answer-span KL (x1000), lower = more consistent",
               "id_acc": "ID test accuracy, %, higher is better",
               "ood_acc": "OOD-steps accuracy (4-5 operations), %, higher is better",
               "ood_numbers_acc": "OOD-numbers accuracy (values up to 99; sanity check), %",
               "id_missing": "ID answers not extracted, %", "ood_missing": "OOD-steps answers not extracted, %"}
    comparisons = (Comparison("mcc_kd", "multi_cot_ce", ("span_kl", "id_acc", "ood_acc")),
                   Comparison("mcc_kd", "std_cot", ("id_acc", "ood_acc")),
                   Comparison("mcc_kd", "mcc_kd_random", ("span_kl", "id_acc", "ood_acc")))
    claims_heading = "Spec success criteria (3-seed means; the toy checks the mechanism, it is not a replication)"

    @classmethod
    def add_arguments(cls, parser) -> None:
        g = parser.add_argument_group("MCC-KD options")
        g.add_argument("--only", nargs="+", choices=list(METHODS), default=None,
                       help="train only these rows (default: all four)")
        g.add_argument("--throughput-steps", type=int, default=30,
                       help="training steps timed for the Lightning-vs-bare-transformers tokens/s row (0 = skip)")

    def settings(self) -> list[Setting]:
        return [Setting("arith_world", label="arith world (embedded)")]

    def variants(self, setting: Setting) -> list[Variant]:
        def seeded(ov: list[str]):
            return lambda ctx: [f"--model.seed={ctx.seed}", *ov]

        out = [Variant("std_cot", METHODS["std_cot"], seeded(["--data.init_args.mode=single"])),
               Variant("multi_cot_ce", METHODS["multi_cot_ce"], seeded(["--model.alpha=0"])),
               Variant("mcc_kd", METHODS["mcc_kd"], seeded([])),
               Variant("mcc_kd_random", METHODS["mcc_kd_random"], seeded(["--data.init_args.select=random"]))]
        return [v for v in out if not self.args.only or v.name in self.args.only]

    def rows(self, setting: Setting) -> dict[str, str]:
        return dict(METHODS)

    def describe(self, setting: Setting, fitted: Fitted) -> dict[str, Any]:
        dm, m = fitted.datamodule, fitted.model
        n_params = sum(p.numel() for p in m.net.lm.parameters())
        return {"world": {k: v for k, v in vars(dm.world_cfg).items() if not k.startswith("_")},
                "preparation": dict(dm.prep_stats), "student_params": n_params,
                "student": {**m.tiny_cfg} if m.hparams.model_dir is None else m.hparams.model_dir,
                "alpha": m.hparams.alpha, "temperature": m.hparams.temperature,
                "vocab_size": len(dm.tokenizer)}

    def evaluate(self, fitted: Fitted) -> dict[str, dict[str, Any]]:
        cm = dict(fitted.trainer.callback_metrics)  # the training metrics, before test() replaces them
        res = fitted.trainer.test(fitted.model, datamodule=fitted.datamodule, verbose=False)[0]
        row: dict[str, Any] = {}
        for name, short in SETS.items():
            if f"test/{name}/acc" not in res:
                continue
            row[f"{short}_acc"] = 100 * res[f"test/{name}/acc"]
            row[f"{short}_missing"] = 100 * res[f"test/{name}/missing"]
            if f"test/{name}/span_kl" in res:
                row[f"{short}_span_kl"] = 1000 * res[f"test/{name}/span_kl"]
                row[f"{short}_valid_pair_frac"] = res[f"test/{name}/valid_pair_frac"]
        row["span_kl"] = row.get("id_span_kl", float("nan"))
        if "train/target_tokens" in cm:
            row["target_tokens_per_epoch"] = float(cm["train/target_tokens"])
        if "train/kl" in cm:
            row["final_train_kl"] = float(cm["train/kl"])
        if "train/valid_pair_frac" in cm:
            row["train_valid_pair_frac"] = float(cm["train/valid_pair_frac"])
        return {fitted.variant.name: row}

    def claims(self, setting: Setting, block: dict[str, Any]) -> dict[str, bool]:
        M = block["methods"]
        if not all(m in M for m in ("std_cot", "multi_cot_ce", "mcc_kd")):
            return {}
        out = {"primary: span KL(MCC-KD) < span KL(Multi-CoT CE)": M["mcc_kd"]["span_kl"] < M["multi_cot_ce"]["span_kl"]}
        noise = max(M["mcc_kd"].get("id_acc_std", 0.0), M["multi_cot_ce"].get("id_acc_std", 0.0))
        out[f"ID acc(MCC-KD) >= ID acc(Multi-CoT CE) - max seed std ({noise:.2f})"] = (
            M["mcc_kd"]["id_acc"] >= M["multi_cot_ce"]["id_acc"] - noise)
        out["ID acc(MCC-KD) > ID acc(Std-CoT)"] = M["mcc_kd"]["id_acc"] > M["std_cot"]["id_acc"]
        out["ID acc(Multi-CoT CE) > ID acc(Std-CoT)"] = M["multi_cot_ce"]["id_acc"] > M["std_cot"]["id_acc"]
        return out

    def finish(self, report: dict[str, Any]) -> None:
        if getattr(self.args, "throughput_steps", 0) > 0:
            from zoo.mcc_kd.throughput import lightning_vs_bare

            print(f"[bench mcc_kd] timing Lightning vs a bare transformers loop ({self.args.throughput_steps} steps) ...",
                  flush=True)
            report["throughput"] = lightning_vs_bare(self.config, self.args.throughput_steps, str(self.device))

    def markdown_tail(self, r: dict[str, Any]) -> list[str]:
        t = r.get("throughput")
        if not t:
            return []
        return ["## Throughput", "",
                f"MCC-KD training step (2 x {t['batch_questions']} sequences, AdamW, clip 1.0) on {t['device']}, "
                f"{t['precision']}, {t['threads']} threads, {t['steps']} timed steps on the same in-memory batches: "
                f"bare transformers loop {t['bare_tokens_per_s']:.0f} tokens/s, Lightning "
                f"{t['lightning_tokens_per_s']:.0f} tokens/s, ratio **{t['ratio']:.3f}** (goal >= 0.9 on a GPU).", ""]

    def markdown(self, r: dict[str, Any], s: dict[str, Any]) -> list[str]:
        M = s["methods"]
        p = s.get("preparation", {})
        L = [f"Student: {s.get('student')} ({s.get('student_params', 0) / 1e6:.2f}M parameters, vocabulary "
             f"{s.get('vocab_size')}), alpha {s.get('alpha')}, T {s.get('temperature')}. Teacher rationales: "
             f"{p.get('rationales_in')} candidates for {p.get('questions_in')} questions, {p.get('wrong_answer')} "
             f"wrong (dropped), {p.get('duplicates_removed')} duplicates, {p.get('selected')} kept (K = 3) for "
             f"{p.get('questions_mcc')} questions; {p.get('questions_baseline_only')} questions with one usable "
             "rationale train Std-CoT only.", "",
             "| method | ID acc | OOD-steps acc | OOD-numbers acc | ID missing | span KL x1000 (ID) | "
             "span KL x1000 (OOD) | target tokens/epoch | train s | tokens/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
        for m, label in METHODS.items():
            if m not in M:
                continue
            x = M[m]
            L.append(f"| **{label}** | {fmt(x.get('id_acc'), x.get('id_acc_std'))} | "
                     f"{fmt(x.get('ood_acc'), x.get('ood_acc_std'))} | "
                     f"{fmt(x.get('ood_numbers_acc'), x.get('ood_numbers_acc_std'))} | "
                     f"{fmt(x.get('id_missing'), x.get('id_missing_std'))} | "
                     f"{fmt(x.get('span_kl'), x.get('span_kl_std'), digits=1)} | "
                     f"{fmt(x.get('ood_span_kl'), x.get('ood_span_kl_std'), digits=1)} | "
                     f"{fmt(x.get('target_tokens_per_epoch'), digits=0)} | {fmt(x.get('train_seconds'), digits=0)} | "
                     f"{fmt(x.get('train_tokens_per_s'), digits=0)} |")
        return L
