"""The DePT bench: zero-shot CLIP, CoOp and CoOp+DePT, base-to-new, over seeds (and datasets).

Every trained row goes through the bench harness (:mod:`zoo.common.harness`), i.e. the same
LightningCLI path as ``python -m zoo.fit`` with the same data, few-shot draw and seed; CoOp's
config is DePT's config without the CAT head (``lam = 0``; ``--baseline-config`` overrides). The
last epoch is evaluated (no selection). Per dataset, base and new accuracy are averaged over seeds
and H = 2BN/(B+N) is computed from those averages; the multi-dataset "average" row is H of the
mean base and mean new (DePT, arXiv:2309.07439v2, Sec. 4.1, following CoCoOp's protocol).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.common.harness import Bench, Comparison, Context, Fitted, Setting, Variant
from zoo.common.harness.report import fmt, rel
from zoo.common.metrics.classification import harmonic_mean
from zoo.core.errors import ZooError
from zoo.core.registry import ZooEntry

METHODS = {"zeroshot": "zero-shot CLIP (hand prompt)", "coop": "CoOp", "dept": "CoOp+DePT"}
#: --grid: the lambda sweep (0 = the CoOp row, 0.7 = the DePT row) and the paper's probability fusion
GRID = {"lam=0.3": ["--model.lam=0.3"], "lam=0.5": ["--model.lam=0.5"], "lam=0.9": ["--model.lam=0.9"],
        "lam=1.0": ["--model.lam=1.0"], "fusion=probs": ["--model.fusion=probs"]}
#: keys of the DePT config that CoOp does not have (removed to derive the baseline config).
DEPT_ONLY = ("lam", "fusion", "head_lr_mult")
#: the spec's pass criteria on the embedded world (3-seed means, accuracy points).
CRITERIA = {
    "base(DePT) >= base(CoOp) + 2": lambda m, c: m["dept"]["base"] >= m["coop"]["base"] + 2,
    "H(DePT) > H(CoOp)": lambda m, c: m["dept"]["h"] > m["coop"]["h"],
    "new(DePT) >= new(CoOp) - 2": lambda m, c: m["dept"]["new"] >= m["coop"]["new"] - 2,
    "zero-shot new >= 3x chance": lambda m, c: m["zeroshot"]["new"] >= 3 * c["new"],
}
CONVENTIONS = ("top-1 accuracy in %; base = C_base-way on the base classes' test split (DePT: fused "
               "(1-lam) ITM + lam CAT), new = C_new-way on the new classes (ITM only); per dataset, "
               "base and new are averaged over seeds and H = 2BN/(B+N) of those averages; +- is the std "
               "over seeds (for H: of the per-seed H); every row is the last epoch (no selection)")


def coop_config(dept_cfg: str, out: Path) -> str:
    """Write DePT's config minus its head arguments (``lam``, ``fusion``, ``head_lr_mult``) as
    the CoOp config of the bench: the identical recipe without the CAT head."""
    import yaml

    cfg = yaml.safe_load(Path(dept_cfg).read_text()) or {}
    for k in DEPT_ONLY:
        (cfg.get("model") or {}).pop(k, None)
    path = out / "coop_from_dept.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# derived by zoo.bench from {rel(dept_cfg)}: the same recipe without the CAT head\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


class DePTBench(Bench):
    """Zero-shot CLIP vs CoOp vs CoOp+DePT, base-to-new; ``--grid`` adds the lambda sweep."""

    title = "DePT bench"
    conventions = CONVENTIONS
    metrics = {"base": "base-class top-1 accuracy, %, higher is better",
               "new": "new-class top-1 accuracy (ITM only), %, higher is better",
               "h": "harmonic mean 2BN/(B+N) of the seed-averaged base and new, higher is better"}
    comparisons = (Comparison("dept", "coop", ("base", "new", "h")),)

    @classmethod
    def add_arguments(cls, parser) -> None:
        g = parser.add_argument_group("DePT options")
        g.add_argument("--grid", action="store_true", help="also train the lambda sweep and probability fusion")
        g.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                       help="run the protocol over real datasets in CoOp's layout (e.g. dtd eurosat oxford_pets) "
                            "instead of the embedded world; needs --data-root")
        g.add_argument("--data-root", default=None, help="folder holding the datasets (CoOp's DATASETS.md layout)")

    def __init__(self, entry: ZooEntry, args) -> None:
        super().__init__(entry, args)
        if args.datasets and not args.data_root:
            raise ZooError("--datasets needs --data-root (the folder holding the datasets in CoOp's layout)")
        self.baseline_config = self.baseline_config or coop_config(self.config, self.out / "runs")
        self._zero_shot: dict[str, dict[str, float]] = {}

    def settings(self) -> list[Setting]:
        if not self.args.datasets:
            return [Setting("shapes_b2n", label="shapes_b2n (embedded world)", info={"embedded": True})]
        return [Setting(ds, ["--data.class_path=datamodules.fewshot.base.FewShotDataModule",
                             f"--data.init_args.root={self.args.data_root}", f"--data.init_args.dataset={ds}"],
                        label=ds, info={"embedded": False}) for ds in self.args.datasets]

    def variants(self, setting: Setting) -> list[Variant]:
        def seeded(ov: list[str]):
            return lambda ctx: [f"--data.init_args.seed={ctx.seed}", *ov]

        out = [Variant("coop", "CoOp (the method config without the CAT head)", seeded([]), entry="coop",
                       config=self.baseline_config),
               Variant("dept", "CoOp+DePT", seeded([]))]
        if self.args.grid:
            out += [Variant(g, f"DePT {g}", seeded(ov)) for g, ov in GRID.items()]
        return out

    def rows(self, setting: Setting) -> dict[str, str]:
        return {**METHODS, **({g: f"DePT {g}" for g in GRID} if self.args.grid else {})}

    def describe(self, setting: Setting, fitted: Fitted) -> dict[str, Any]:
        if fitted.variant.name != "dept":
            return {}
        dm, m = fitted.datamodule, fitted.model
        return {"dataset": setting.label, "comparable": bool(getattr(dm, "comparable", True)),
                "note": getattr(dm, "note", ""),
                "classes": {k: len(dm.classnames[k]) for k in ("base", "new")},
                "chance": {"base": 100 / len(dm.classnames["base"]), "new": 100 / len(dm.classnames["new"])},
                "template": dm.template,
                "clip": {"model": m.hparams.clip_model, "weights": m.hparams.clip_weights,
                         "fingerprint": m.clip_fingerprint}}

    def evaluate(self, fitted: Fitted) -> dict[str, dict[str, Any]]:
        from zoo.dept.evaluate import zero_shot

        cli_trainer, model, dm = fitted.trainer, fitted.model, fitted.datamodule
        res = cli_trainer.test(model, datamodule=dm, verbose=False)[0]
        base, new = 100 * res["test/base_acc"], 100 * res["test/new_acc"]
        row = {"base": base, "new": new, "h": harmonic_mean(base, new),
               "base_itm": 100 * res.get("test/base_acc_itm", res["test/base_acc"])}
        if "test/base_acc_cat" in res:
            row["base_cat"] = 100 * res["test/base_acc_cat"]
        rows = {fitted.variant.name: row}
        if fitted.variant.name == "dept":
            name = fitted.setting.name
            if name not in self._zero_shot:  # the test sets do not depend on the seed: zero-shot once
                self._zero_shot[name] = zero_shot(model.net.clip, model.net.tokenizer, dm, self.device)
            zs = self._zero_shot[name]
            b, n = 100 * zs["base_acc"], 100 * zs["new_acc"]
            rows["zeroshot"] = {"base": b, "new": n, "h": harmonic_mean(b, n), "train_seconds": None}
        return rows

    def derive(self, row: dict[str, Any]) -> None:
        row["h"] = harmonic_mean(row["base"], row["new"])  # H of the averaged base and new (spec)

    def claims(self, setting: Setting, block: dict[str, Any]) -> dict[str, bool]:
        if not setting.info.get("embedded") or not all(m in block["methods"] for m in ("zeroshot", "coop", "dept")):
            return {}
        return {k: bool(f(block["methods"], block["chance"])) for k, f in CRITERIA.items()}

    def finish(self, report: dict[str, Any]) -> None:
        sets = report["settings"]
        if len(sets) > 1:
            report["average"] = {}
            for mth in METHODS:
                b = sum(s["methods"][mth]["base"] for s in sets.values()) / len(sets)
                n = sum(s["methods"][mth]["new"] for s in sets.values()) / len(sets)
                report["average"][mth] = {"base": b, "new": n, "h": harmonic_mean(b, n)}

    # ------------------------------------------------------------------ report
    def markdown(self, r: dict[str, Any], s: dict[str, Any]) -> list[str]:
        M = s["methods"]
        L = [f"{s['classes']['base']} base / {s['classes']['new']} new classes (chance {s['chance']['base']:.1f}% / "
             f"{s['chance']['new']:.1f}%); hand prompt `{s['template']}`; frozen CLIP `{s['clip']['model']}` "
             f"({s['clip']['weights'] or 'random init'})."]
        if not s["comparable"]:
            L += ["", f"**Not comparable to published numbers:** {s['note']}"]
        L += ["", "| method | base | new | H | H per seed | train s/run |", "|---|---|---|---|---|---|"]
        for m, label in METHODS.items():
            x = M[m]
            per = ", ".join(f"{p['h']:.2f}" for p in x["per_seed"])
            if m == "zeroshot":  # no training: the same value for every seed
                L.append(f"| {label} | {fmt(x['base'])} | {fmt(x['new'])} | **{fmt(x['h'])}** | (no training) | - |")
                continue
            L.append(f"| {label} | {fmt(x['base'], x['base_std'])} | {fmt(x['new'], x['new_std'])} | "
                     f"**{fmt(x['h'])}** (± {fmt(x['h_std'])}) | {per} | {fmt(x.get('train_seconds'), digits=0)} |")
        d = s["deltas"]["dept - coop"]
        L += ["", f"DePT − CoOp: base {d['base']:+.2f}, new {d['new']:+.2f}, H {d['h']:+.2f}; per seed (base/new/H): "
              + "; ".join(f"{b:+.2f}/{n:+.2f}/{h:+.2f}" for b, n, h in
                          zip(d["base_per_seed"], d["new_per_seed"], d["h_per_seed"])) + "."]
        if M["dept"].get("base_cat") is not None:
            L.append(f"DePT base accuracy by head alone: ITM {fmt(M['dept']['base_itm'], M['dept']['base_itm_std'])}, "
                     f"CAT {fmt(M['dept']['base_cat'], M['dept']['base_cat_std'])} (fused: "
                     f"{fmt(M['dept']['base'])}).")
        grid = [g for g in GRID if g in M]
        if grid:
            L += ["", "Ablation (`--grid`): λ weights both the loss and the base fusion; λ=0 is the CoOp row, "
                  "λ=0.7 the DePT row.", "", "| variant | base | new | H | H per seed |", "|---|---|---|---|---|"]
            for g in grid:
                x = M[g]
                per = ", ".join(f"{p['h']:.2f}" for p in x["per_seed"])
                L.append(f"| DePT {g} | {fmt(x['base'], x['base_std'])} | {fmt(x['new'], x['new_std'])} | "
                         f"**{fmt(x['h'])}** (± {fmt(x['h_std'])}) | {per} |")
        return L

    claims_heading = "Spec pass criteria (3-seed means; the spec asks for 3)"

    def markdown_tail(self, r: dict[str, Any]) -> list[str]:
        if "average" not in r:
            return []
        L = ["## Average over datasets (H of the mean base and mean new)", "",
             "| dataset | CoOp base/new/H | CoOp+DePT base/new/H |", "|---|---|---|"]
        for ds, s in r["settings"].items():
            c, d = s["methods"]["coop"], s["methods"]["dept"]
            flag = "" if s["comparable"] else " (not comparable)"
            L.append(f"| {ds}{flag} | {c['base']:.2f}/{c['new']:.2f}/{c['h']:.2f} | "
                     f"{d['base']:.2f}/{d['new']:.2f}/{d['h']:.2f} |")
        a = r["average"]
        L += [f"| **average** | {a['coop']['base']:.2f}/{a['coop']['new']:.2f}/{a['coop']['h']:.2f} | "
              f"{a['dept']['base']:.2f}/{a['dept']['new']:.2f}/{a['dept']['h']:.2f} |", ""]
        return L

    def plots(self, report: dict[str, Any], folder: Path) -> list[str]:
        from zoo.common.harness.plots import plot_bars

        out = []
        single = len(report["settings"]) == 1
        for ds, s in report["settings"].items():
            M = s["methods"]
            groups = {label: {METHODS[m]: (M[m][k], M[m].get(f"{k}_std", 0.0)) for m in METHODS}
                      for k, label in (("base", "base"), ("new", "new"), ("h", "H"))}
            name = "accuracy.png" if single else f"accuracy_{ds}.png"
            plot_bars(groups, folder / name, "top-1 accuracy (%)", f"{ds}: mean ± std over {len(report['seeds'])} seeds")
            out.append(name)
            if all(g in M for g in GRID):
                lam = {"0 (CoOp)": M["coop"], "0.3": M["lam=0.3"], "0.5": M["lam=0.5"], "0.7 (DePT)": M["dept"],
                       "0.9": M["lam=0.9"], "1.0": M["lam=1.0"]}
                sweep = {f"λ={k}": {"base": (v["base"], v["base_std"]), "new": (v["new"], v["new_std"]),
                                    "H": (v["h"], v["h_std"])} for k, v in lam.items()}
                name = "lambda.png" if single else f"lambda_{ds}.png"
                plot_bars(sweep, folder / name, "top-1 accuracy (%)", f"{ds}: the λ sweep (loss and fusion weight)")
                out.append(name)
        return out
