"""The PTA bench: PTA (TPD + PTA loss) against the full-ViT baseline on shapes on clutter.

Per seed three models are trained with identical data, steps and seed: PTA (``tpd=true``), the
full-ViT baseline (``tpd=false``) and the TPD without the PTA loss (``w_pta=0``: the detector learns
from the VLP losses only; the spec's "recall falls when the box fraction is 0"). The PTA weights
are also evaluated with random and EViT ([CLS]-attention) selection at the same k and r. A speed
table (vision encoder with the TPD at r in {1, .75, .5, .25} against the no-TPD encoder, same
weights, one run, side by side) is measured on the bench's device in every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.common.harness import Bench, Comparison, Fitted, Setting, Variant
from zoo.common.harness.report import fmt
from zoo.pta.torch_model import keep_count

RATIOS = (1.0, 0.75, 0.5, 0.25)
CONVENTIONS = ("retrieval on the test split (1000 images, 2000 unique captions): ITC ranks every pair, ITM re-ranks "
               "the top k_test texts per image and images per text (ALBEF), each pair with its own text-conditioned "
               "selection; R@K in %, ties count against the query; detector metrics pooled over every (image, "
               "caption) pair at the model's r: recall@K = kept positive patches / positive patches, precision@K, "
               "AUROC of the scores vs the patch labels, distractor exclusion = dropped / all patches of unmentioned "
               "objects; +- is the std over seeds; final weights (no selection)")


class PTABench(Bench):
    """PTA vs the full-ViT baseline: retrieval, detector metrics, speed."""

    title = "PTA bench"
    conventions = CONVENTIONS
    metrics = {"r_mean": "mean of TR/IR R@1/5/10 after ITM re-ranking, %",
               "tr@1": "image -> text R@1, %", "ir@1": "text -> image R@1, %",
               "itc_r_mean": "R_mean of the ITC ranking alone, %",
               "tpd_recall": "detector recall@K at r, %", "tpd_precision": "detector precision@K, %",
               "tpd_auroc": "detector AUROC, %", "tpd_distractor_excl": "unmentioned-object patches dropped, %",
               "itm_acc": "ITM accuracy on positives + ITC-hardest negatives, %",
               "rerank_s": "wall time of the ITM re-ranking of the test split, s"}
    comparisons = (Comparison("pta", "full_vit", ("r_mean", "tr@1", "ir@1", "rerank_s")),
                   Comparison("pta", "tpd_no_pta", ("tpd_recall", "tpd_distractor_excl", "r_mean")))
    claims_heading = "Spec evidence that PTA works (means over the seeds run)"

    @classmethod
    def add_arguments(cls, parser) -> None:
        g = parser.add_argument_group("PTA options")
        g.add_argument("--speed-batch", type=int, default=64, help="images per timed batch")
        g.add_argument("--no-speed", action="store_true", help="skip the speed table")

    def settings(self) -> list[Setting]:
        return [Setting("shapes", label="shapes on clutter (embedded)")]

    def variants(self, setting: Setting) -> list[Variant]:
        return [Variant("pta", "PTA: TPD after block k, PTA loss on the boxed pairs", ["--model.tpd=true"]),
                Variant("full_vit", "full-ViT baseline: no detector, full sequence", ["--model.tpd=false"]),
                Variant("tpd_no_pta", "TPD without the PTA loss (VLP losses only)", ["--model.tpd=true",
                                                                                     "--model.w_pta=0"])]

    def rows(self, setting: Setting) -> dict[str, str]:
        return {"pta": "PTA (TPD + PTA loss)", "full_vit": "full-ViT baseline", "tpd_no_pta": "TPD without PTA loss",
                "pta_random": "PTA weights, random top-k", "pta_evit": "PTA weights, EViT [CLS]-attention top-k"}

    def describe(self, setting: Setting, fitted: Fitted) -> dict[str, Any]:
        m, dm = fitted.model, fitted.datamodule
        return {"keep_ratio": m.hparams.keep_ratio, "tpd_after": m.hparams.tpd_after,
                "patches": m.net.num_patches, "kept": keep_count(m.net.num_patches, m.hparams.keep_ratio),
                "box_fraction": dm.box_fraction, "params": sum(p.numel() for p in m.parameters()),
                "test_images": len(dm.dataset("test")), "test_texts": dm.dataset("test").num_texts}

    def _test(self, fitted: Fitted) -> dict[str, float]:
        res = fitted.trainer.test(fitted.model, datamodule=fitted.datamodule, verbose=False)[0]
        return {k.removeprefix("test/"): float(v) for k, v in res.items()}

    def evaluate(self, fitted: Fitted) -> dict[str, dict[str, Any]]:
        m = fitted.model
        rows = {fitted.variant.name: self._test(fitted)}
        if fitted.variant.name == "pta":
            for sel in ("random", "evit"):
                m.hparams.selection = sel
                rows[f"pta_{sel}"] = {**self._test(fitted), "train_seconds": None}
            m.hparams.selection = "tpd"
            if fitted.seed == self.args.seeds[0] and not self.args.no_speed:
                self._speed(fitted)
                self._examples(fitted)
        return rows

    def _speed(self, fitted: Fitted) -> None:
        from zoo.pta.speed import vision_speed

        m = fitted.model
        net = m.net
        self.raw["speed"] = vision_speed(net.vit, net.tpd, net.text.config.hidden_size, net.k, list(RATIOS),
                                         batch=self.args.speed_batch, device=str(self.device))
        net.to(m.device)

    def _examples(self, fitted: Fitted) -> None:
        import torch

        m, dm = fitted.model.eval(), fitted.datamodule
        ds = dm.dataset("test")
        ex = []
        with torch.no_grad():
            for i in range(6):
                item = ds[i]
                cap = item["captions"][0]
                ids, mask = m.tokenize([cap])
                x = m.net.prefix(item["image"][None].to(m.device))
                z = m.net.detect(x, m.net.encode_text(ids, mask)[:, 0])[0]
                keep = z.topk(keep_count(m.net.num_patches, m.hparams.keep_ratio)).indices.cpu()
                ex.append((item["image"], keep, item["patch_labels"][0], item["distractor_labels"][0], cap))
        self.raw["examples"] = (ex, m.hparams.patch, dm.transform_spec)

    def claims(self, setting: Setting, block: dict[str, Any]) -> dict[str, bool]:
        M = block["methods"]
        if "pta" not in M or "full_vit" not in M:
            return {}
        r = block.get("keep_ratio", 0.5)
        out = {f"TPD recall@K at r={r} >= 90": M["pta"].get("tpd_recall", 0) >= 90,
               "TPD recall above random top-k (about r) and EViT": (
                   M["pta"].get("tpd_recall", 0) > M.get("pta_random", {}).get("tpd_recall", 100)
                   and M["pta"].get("tpd_recall", 0) > M.get("pta_evit", {}).get("tpd_recall", 100))}
        if "tpd_no_pta" in M:
            out["recall falls without the PTA loss"] = M["tpd_no_pta"].get("tpd_recall", 100) < M["pta"].get(
                "tpd_recall", 0)
        out["retrieval R@1 (TR and IR) within 2 points of the full-ViT baseline"] = (
            abs(M["pta"]["tr@1"] - M["full_vit"]["tr@1"]) <= 2 and abs(M["pta"]["ir@1"] - M["full_vit"]["ir@1"]) <= 2)
        return out

    def finish(self, report: dict[str, Any]) -> None:
        if "speed" in self.raw:
            report["speed"] = self.raw["speed"]

    def markdown(self, r: dict[str, Any], s: dict[str, Any]) -> list[str]:
        M = s["methods"]
        L = [f"Model: {s.get('params', 0) / 1e6:.2f}M parameters; {s.get('patches')} patches, TPD after block "
             f"{s.get('tpd_after')}, keeps {s.get('kept')} (r = {s.get('keep_ratio')}); boxes on "
             f"{100 * s.get('box_fraction', 0):.0f}% of the training images; test {s.get('test_images')} images / "
             f"{s.get('test_texts')} captions.", "",
             "| method | R_mean ↑ | TR@1 | IR@1 | ITC-only R_mean | TPD recall@K | precision@K | AUROC | distractors dropped | ITM acc | re-rank s | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in M.values():
            def f(k):
                return fmt(x.get(k), x.get(f"{k}_std")) if x.get(k) is not None else "-"
            L.append(f"| **{x['label']}** | {f('r_mean')} | {f('tr@1')} | {f('ir@1')} | {f('itc_r_mean')} | "
                     f"{f('tpd_recall')} | {f('tpd_precision')} | {f('tpd_auroc')} | {f('tpd_distractor_excl')} | "
                     f"{f('itm_acc')} | {f('rerank_s')} | {f('train_seconds')} |")
        sp = r.get("speed")
        if sp:
            c = sp["conditions"]
            L += ["", f"Vision-encoder speed ({c['device']}, {c['precision']}, batch {c['batch']}, {c['threads']} "
                  f"threads, median of {c['iters']}; blocks 1..{c['depth']} + TPD after block {c['after']}, same "
                  f"weights, one run):", "",
                  "| r | kept patches | images/s | measured speedup | ideal (MACs) | measured / ideal |",
                  "|---|---|---|---|---|---|",
                  f"| no TPD (baseline) | {c['tokens'] - 1} | {sp['baseline']['images_per_s']:.0f} | 1.00 | 1.00 | - |"]
            for k, v in sp.items():
                if k.startswith("r="):
                    L.append(f"| {k[2:]} | {v['kept']} | {v['images_per_s']:.0f} | {v['speedup']:.2f}x | "
                             f"{v['ideal']:.2f}x | {v['of_ideal']:.2f} |")
        return L

    def plots(self, report: dict[str, Any], folder: Path) -> list[str]:
        out = []
        if "speed" in report:
            from zoo.common.harness.plots import _plt

            plt = _plt()
            sp = report["speed"]
            rs = [float(k[2:]) for k in sp if k.startswith("r=")]
            fig, ax = plt.subplots(figsize=(4.5, 3.2))
            ax.plot(rs, [sp[f"r={r}"]["speedup"] for r in rs], "o-", label="measured")
            ax.plot(rs, [sp[f"r={r}"]["ideal"] for r in rs], "s--", label="ideal (MACs)")
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_xlabel("keep ratio r")
            ax.set_ylabel("speedup vs no-TPD encoder")
            ax.legend()
            fig.tight_layout()
            fig.savefig(folder / "speed_vs_r.png", dpi=120)
            plt.close(fig)
            out.append("speed_vs_r.png")
        if "examples" in self.raw:
            from zoo.pta.plots import selection_grid

            ex, patch, spec = self.raw["examples"]
            selection_grid(ex, patch, spec, folder / "selections.png")
            out.append("selections.png")
        return out
