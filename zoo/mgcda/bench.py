"""The MGCDA bench: PEBAL-style OE against +MDAT, +CACL and MGCDA (+both) on the road world.

Per seed, stage A (plain CE on the source styles, no OE) is trained once; it is also the B0 row,
scored four ways (1-MSP, -max-logit, entropy, energy). Every OE variant then starts from that
stage-A checkpoint with identical data, trainable layers and steps, and differs only by flags
(``--model.mdat``, ``--model.cacl``; ``--grid`` adds the Meta-OoD base). The stage-A length is the
method config's ``pretrain_epochs``; the OE stage has the rest of its ``max_epochs``. The final
weights are evaluated (no selection) on the held-out target style (the test anomalies rendered
through the target pipeline) and on the source validation split (in-style anomalies, mIoU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.common.harness import Bench, Comparison, Context, Fitted, Setting, Variant
from zoo.common.harness.report import fmt

B0_SCORES = {"msp": "1 - MSP", "maxlogit": "-max logit", "entropy": "entropy", "energy": "energy"}
OE_VARIANTS = {"pebal": ("PEBAL-style OE (base)", ["--model.mdat=false", "--model.cacl=false"]),
               "mdat": ("+MDAT", ["--model.mdat=true", "--model.cacl=false"]),
               "cacl": ("+CACL", ["--model.mdat=false", "--model.cacl=true"]),
               "mgcda": ("MGCDA (+MDAT +CACL)", ["--model.mdat=true", "--model.cacl=true"])}
GRID = {"meta_ood": ("Meta-OoD-style OE (second base)", ["--model.base=meta_ood", "--model.mdat=false",
                                                          "--model.cacl=false"]),
        "meta_ood_mgcda": ("Meta-OoD + MDAT + CACL", ["--model.base=meta_ood", "--model.mdat=true",
                                                      "--model.cacl=true"])}
CONVENTIONS = ("pixel-level AP / AUROC / FPR95 in %, anomaly = positive, pooled over every non-void pixel of "
               "a split (no per-image mean), exact mode; FPR95 = FPR at the first threshold with TPR >= 0.95; "
               "score = -logsumexp of the class logits (abstention channel ignored), Gaussian blur k=7 s=1, "
               "unless a B0 row says otherwise; mIoU over the 6 world classes on the source validation split; "
               "+- is the std over seeds; final weights (no selection)")


class MGCDABench(Bench):
    """B0 scores, PEBAL-style OE, +MDAT, +CACL, MGCDA on the road world's target style."""

    title = "MGCDA bench"
    conventions = CONVENTIONS
    metrics = {"target_ap": "AP on the held-out target style, %, higher is better",
               "target_fpr95": "FPR95 on the target style, %, lower is better",
               "target_auroc": "AUROC on the target style, %",
               "source_ap": "AP on the source validation split, %",
               "source_fpr95": "FPR95 on the source validation split, %",
               "source_miou": "mIoU on the source validation split, %",
               "domain_probe": "linear domain probe accuracy on pooled mid features of the source val images, % "
                               "(chance 33.3; lower = more domain-invariant)"}
    comparisons = tuple(Comparison(m, "pebal", ("target_ap", "target_fpr95", "source_ap", "source_miou"))
                        for m in ("mgcda", "mdat", "cacl"))
    claims_heading = "Spec success criteria (3-seed means; world calibration first)"

    @classmethod
    def add_arguments(cls, parser) -> None:
        g = parser.add_argument_group("MGCDA options")
        g.add_argument("--grid", action="store_true", help="also train the Meta-OoD base (with and without MDAT+CACL)")

    def _epochs(self) -> tuple[int, int]:
        import yaml

        conf = yaml.safe_load(Path(self.config).read_text()) or {}
        a = int((conf.get("model") or {}).get("pretrain_epochs", 0) or 0)
        total = int((conf.get("trainer") or {}).get("max_epochs", 1))
        return max(1, a), max(1, total - a)

    def _stage_a_lr(self) -> float:
        import yaml

        m = (yaml.safe_load(Path(self.config).read_text()) or {}).get("model") or {}
        return float(m.get("pretrain_lr") or m.get("lr") or 1e-3)

    def settings(self) -> list[Setting]:
        return [Setting("road_world", label="road world (embedded)")]

    def variants(self, setting: Setting) -> list[Variant]:
        a, b = self._epochs()
        out = [Variant("stage_a", f"stage A: CE on the sources, no OE, {a} epochs (also the B0 rows)",
                       ["--model.base=ce", "--model.mdat=false", "--model.cacl=false", "--model.pretrain_epochs=0",
                        f"--model.lr={self._stage_a_lr()}",
                        "--data.init_args.oe_prob=0", f"--trainer.max_epochs={a}"])]
        items = {**OE_VARIANTS, **(GRID if self.args.grid else {})}
        for name, (desc, ov) in items.items():
            def overrides(ctx: Context, ov=ov) -> list[str]:
                ckpt = ctx.run_dir("stage_a") / "checkpoints" / "last.ckpt"
                return [f"--model.init_from={ckpt}", "--model.pretrain_epochs=0", f"--trainer.max_epochs={b}",
                        "--model.base=pebal", *ov]
            out.append(Variant(name, f"{desc}, {b} epochs from stage A", overrides))
        return out

    def rows(self, setting: Setting) -> dict[str, str]:
        rows = {f"b0_{s}": f"B0 no OE, {label}" for s, label in B0_SCORES.items()}
        rows.update({k: v[0] for k, v in OE_VARIANTS.items()})
        if self.args.grid:
            rows.update({k: v[0] for k, v in GRID.items()})
        return rows

    def describe(self, setting: Setting, fitted: Fitted) -> dict[str, Any]:
        dm, m = fitted.datamodule, fitted.model
        return {"classes": list(getattr(dm, "class_names", [])), "domains": getattr(dm, "num_domains", None),
                "segmenter_params": sum(p.numel() for p in m.net.segmenter.parameters()),
                "epochs": dict(zip(("stage_a", "oe"), self._epochs()))}

    def _test(self, fitted: Fitted) -> dict[str, float]:
        res = fitted.trainer.test(fitted.model, datamodule=fitted.datamodule, verbose=False)[0]
        row: dict[str, float] = {}
        for split in ("target", "source"):
            for k in ("ap", "auroc", "fpr95", "miou"):
                if f"test/{split}/{k}" in res:
                    row[f"{split}_{k}"] = float(res[f"test/{split}/{k}"])
        return row

    def _probe(self, fitted: Fitted) -> float:
        """Linear domain probe (spec) on pooled ``mid`` features of the source validation images."""
        import torch

        from zoo.mgcda.torch_model import domain_probe_accuracy, pooled_features

        m = fitted.model.eval()
        imgs, doms = [], []
        for b in fitted.datamodule.val_dataloader():
            imgs.append(b["image"])
            doms.append(b["domain"])
        with torch.no_grad():
            f = pooled_features(m.net.segmenter, torch.cat(imgs).to(m.device))
        return domain_probe_accuracy(f, torch.cat(doms), seed=fitted.seed)

    def evaluate(self, fitted: Fitted) -> dict[str, dict[str, Any]]:
        m = fitted.model
        probe = self._probe(fitted)
        if fitted.variant.name != "stage_a":
            row = {**self._test(fitted), "domain_probe": probe}
            self._curves(fitted)
            return {fitted.variant.name: row}
        rows = {}
        for s in B0_SCORES:
            m.hparams.score = s
            rows[f"b0_{s}"] = {**self._test(fitted), "domain_probe": probe}
        m.hparams.score = "energy"
        return rows

    def _curves(self, fitted: Fitted) -> None:
        """Target-split scores of seed 0 for the PR/ROC plot and a few example maps."""
        if fitted.seed != self.args.seeds[0]:
            return
        import torch

        model, dm = fitted.model.eval(), fitted.datamodule
        loader = dm.test_dataloader()[0]
        scores, labels, examples = [], [], []
        with torch.no_grad():
            for batch in loader:
                sc, _ = model.score_map(batch["image"].to(model.device))
                keep = batch["anomaly"] != 255
                scores.append(sc.cpu()[keep])
                labels.append(batch["anomaly"][keep])
                if not examples:
                    examples = [(batch["image"][i], batch["anomaly"][i], sc[i].cpu()) for i in range(min(4, len(sc)))]
        self.raw.setdefault("curves", {})[fitted.variant.name] = (torch.cat(scores), torch.cat(labels))
        self.raw.setdefault("examples", {})[fitted.variant.name] = examples
        self.raw["transform_spec"] = model.transform_spec

    def claims(self, setting: Setting, block: dict[str, Any]) -> dict[str, bool]:
        M, D = block["methods"], block["deltas"]
        if "pebal" not in M or "b0_energy" not in M:
            return {}
        out = {"calibration: PEBAL source AP - target AP >= 15": M["pebal"]["source_ap"] - M["pebal"]["target_ap"] >= 15,
               "calibration: PEBAL target AP above chance (anomaly pixel share)":
                   M["pebal"]["target_ap"] > block.get("target_anomaly_share", 0.0) * 100 + 1}
        for m in ("mgcda", "mdat", "cacl"):
            d = D.get(f"{m} - pebal")
            if not d:
                continue
            n = len(d["target_ap_per_seed"])
            agree = sum(1 for a, f in zip(d["target_ap_per_seed"], d["target_fpr95_per_seed"]) if a > 0 and f < 0)
            out[f"{M[m]['label']} beats PEBAL on target AP and FPR95 (mean, and >= 2/3 seeds)"] = (
                d["target_ap"] > 0 and d["target_fpr95"] < 0 and agree * 3 >= 2 * n)
            out[f"{M[m]['label']}: source AP and mIoU within 2 points of PEBAL"] = (
                d["source_ap"] >= -2 and d["source_miou"] >= -2)
        return out

    def finish(self, report: dict[str, Any]) -> None:
        pass

    def markdown(self, r: dict[str, Any], s: dict[str, Any]) -> list[str]:
        M = s["methods"]
        L = [f"Segmenter: mini DeepLabv3+, {s.get('segmenter_params', 0) / 1e6:.2f}M parameters; {s.get('domains')} "
             f"source domains; epochs {s.get('epochs')}.", "",
             "| method | target AP ↑ | target FPR95 ↓ | target AUROC ↑ | source AP ↑ | source FPR95 ↓ | source mIoU ↑ | domain probe | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
        for m, x in M.items():
            L.append(f"| **{x['label']}** | {fmt(x.get('target_ap'), x.get('target_ap_std'))} | "
                     f"{fmt(x.get('target_fpr95'), x.get('target_fpr95_std'))} | "
                     f"{fmt(x.get('target_auroc'), x.get('target_auroc_std'))} | "
                     f"{fmt(x.get('source_ap'), x.get('source_ap_std'))} | "
                     f"{fmt(x.get('source_fpr95'), x.get('source_fpr95_std'))} | "
                     f"{fmt(x.get('source_miou'), x.get('source_miou_std'))} | "
                     f"{fmt(x.get('domain_probe'), x.get('domain_probe_std'))} | {fmt(x.get('train_seconds'), digits=0)} |")
        return L

    def plots(self, report: dict[str, Any], folder: Path) -> list[str]:
        out = []
        curves = self.raw.get("curves", {})
        if curves:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            from zoo.common.metrics.segmentation import PixelAnomalyMetrics

            fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
            for name, (sc, lab) in curves.items():
                met = PixelAnomalyMetrics(mode="exact")
                met.update(sc[None, None, :], lab[None, None, :])
                c = met.curves()
                a1.plot(c["recall"], c["precision"], label=name)
                a2.plot(c["fpr"], c["tpr"], label=name)
            a1.set(xlabel="recall", ylabel="precision", title="target style: PR (seed %d)" % self.args.seeds[0])
            a2.set(xlabel="FPR", ylabel="TPR", title="target style: ROC")
            a2.axhline(0.95, ls=":", c="k")
            a1.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(folder / "target_pr_roc.png", dpi=110)
            plt.close(fig)
            out.append("target_pr_roc.png")
        ex = self.raw.get("examples", {})
        if ex:
            from zoo.common.harness.plots import denormalise
            from zoo.mgcda.plots import heatmap_grid

            names = list(ex)
            rows = []
            for i in range(len(ex[names[0]])):
                img, gt, _ = ex[names[0]][i]
                rows.append((f"target #{i}", denormalise(img, self.raw.get("transform_spec", {})),
                             [("ground truth", gt.float().numpy())] + [(n, ex[n][i][2].numpy()) for n in names]))
            heatmap_grid(rows, folder / "target_heatmaps.png")
            out.append("target_heatmaps.png")
        return out
