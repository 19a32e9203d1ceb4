"""The DePT bench: zero-shot CLIP, CoOp and CoOp+DePT, base-to-new, over seeds (and datasets).

Every trained row goes through the same LightningCLI path as ``python -m zoo.fit`` with the same
data, few-shot draw and seed; CoOp's config is DePT's config without the CAT head (``lam = 0``;
``--baseline-config`` overrides). The last epoch is evaluated (no selection). Per dataset, base
and new accuracy are averaged over seeds and H = 2BN/(B+N) is computed from those averages; the
multi-dataset "average" row is H of the mean base and mean new (spec dept.md, Metrics).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from zoo import registry
from zoo.common.errors import ZooError
from zoo.common.report import environment, fmt, mean_std, write_atomically
from zoo.dept.lightning_model import harmonic_mean
from zoo.registry import ZooEntry

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


def coop_config(dept_cfg: str, out: Path) -> str:
    """Write DePT's config minus its head arguments (``lam``, ``fusion``, ``head_lr_mult``) as
    the CoOp config of the bench: the identical recipe without the CAT head."""
    import yaml

    cfg = yaml.safe_load(Path(dept_cfg).read_text()) or {}
    for k in DEPT_ONLY:
        (cfg.get("model") or {}).pop(k, None)
    path = out / "coop_from_dept.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# derived by zoo.bench from {dept_cfg}: the same recipe without the CAT head\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def _train_and_test(entry: ZooEntry, config: str, seed: int, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    from zoo.fit import fit_quietly

    cli, secs, ips = fit_quietly(entry, config, seed, run_dir, [f"--data.init_args.seed={seed}", *extra])
    res = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return {"model": cli.model, "dm": cli.datamodule, "seconds": secs, "images_per_s": ips,
            "base": 100 * res["test/base_acc"], "new": 100 * res["test/new_acc"],
            "base_itm": 100 * res.get("test/base_acc_itm", res["test/base_acc"]),
            "base_cat": 100 * res["test/base_acc_cat"] if "test/base_acc_cat" in res else None}


def _summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"per_seed": [{k: v for k, v in p.items() if k not in ("model", "dm")} for p in per_seed]}
    for k in ("base", "new", "base_itm", "base_cat", "seconds", "images_per_s"):
        vals = [p[k] for p in per_seed if p.get(k) is not None]
        if vals:
            out[k], out[f"{k}_std"] = mean_std(vals)
    for p in out["per_seed"]:
        p["h"] = harmonic_mean(p["base"], p["new"])
    out["h"] = harmonic_mean(out["base"], out["new"])  # H of the averaged base and new (spec)
    _, out["h_std"] = mean_std([p["h"] for p in out["per_seed"]])
    return out


def run_bench(entry: ZooEntry, args) -> None:
    from zoo.common.clip import get_tokenizer
    from zoo.dept.evaluate import zero_shot

    cfg = args.config or str(entry.config("default"))
    if not Path(cfg).is_file():
        raise ZooError(f"--config {cfg}: file not found")
    out = Path(args.out or Path("bench", entry.name))
    runs = out / "runs"
    base_cfg = args.baseline_config or coop_config(cfg, runs)
    if not Path(base_cfg).is_file():
        raise ZooError(f"--baseline-config {base_cfg}: file not found")
    datasets = list(args.datasets or [])
    if datasets and not args.data_root:
        raise ZooError("--datasets needs --data-root (the folder holding the datasets in CoOp's layout)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    coop_entry = registry.get("coop")
    t_start = time.perf_counter()
    report_sets: dict[str, Any] = {}
    for ds in datasets or ["shapes_b2n"]:
        data_args = [] if not datasets else [
            "--data.class_path=datamodules.fewshot.base.FewShotDataModule",
            f"--data.init_args.root={args.data_root}", f"--data.init_args.dataset={ds}"]
        rows: dict[str, list[dict[str, Any]]] = {"coop": [], "dept": []}
        plan = [("coop", coop_entry, base_cfg, []), ("dept", entry, cfg, [])]
        if args.grid:
            plan += [(g, entry, cfg, ov) for g, ov in GRID.items()]
            rows.update({g: [] for g in GRID})
        zs: dict[str, float] | None = None
        for seed in args.seeds:
            for name, e, c, ov in plan:
                label = METHODS.get(name, f"DePT {name}")
                print(f"[bench dept] {ds}, seed {seed}: training {label} ...", flush=True)
                r = _train_and_test(e, c, seed, runs / ds / f"{name}-s{seed}", [*data_args, *ov, *args.override])
                rows[name].append(r)
                print(f"[bench dept] {ds}, seed {seed}: {label} base {r['base']:.2f} new {r['new']:.2f} "
                      f"H {harmonic_mean(r['base'], r['new']):.2f} ({r['seconds']:.0f} s)", flush=True)
            if zs is None:  # the test sets do not depend on the seed: zero-shot once per dataset
                m, dm = rows["dept"][-1]["model"], rows["dept"][-1]["dm"]
                zs = zero_shot(m.net.clip, get_tokenizer(m.hparams.clip_model), dm, device)
        dm = rows["dept"][0]["dm"]
        zrow = {"base": 100 * zs["base_acc"], "new": 100 * zs["new_acc"]}
        methods = {"zeroshot": _summary([dict(zrow) for _ in args.seeds]), "coop": _summary(rows["coop"]),
                   "dept": _summary(rows["dept"])}
        m0 = rows["dept"][0]["model"]
        chance = {"base": 100 / len(dm.classnames["base"]), "new": 100 / len(dm.classnames["new"])}
        delta = {k: methods["dept"][k] - methods["coop"][k] for k in ("base", "new", "h")}
        delta["per_seed"] = [{k: a[k] - b[k] for k in ("base", "new", "h")}
                             for a, b in zip(methods["dept"]["per_seed"], methods["coop"]["per_seed"])]
        report_sets[ds] = {
            "dataset": ds if datasets else "shapes_b2n (embedded world)",
            "comparable": bool(getattr(dm, "comparable", True)), "note": getattr(dm, "note", ""),
            "classes": {k: len(dm.classnames[k]) for k in ("base", "new")}, "chance": chance,
            "template": dm.template, "methods": methods, "delta_dept_minus_coop": delta,
            "clip": {"model": m0.hparams.clip_model, "weights": m0.hparams.clip_weights,
                     "fingerprint": m0.clip_fingerprint},
        }
        if args.grid:
            report_sets[ds]["grid"] = {g: _summary(rows[g]) for g in GRID}
        if not datasets:
            report_sets[ds]["criteria"] = {k: bool(f(methods, chance)) for k, f in CRITERIA.items()}
        for r in (r for rs in rows.values() for r in rs):
            r.pop("model"), r.pop("dm")
    report: dict[str, Any] = {
        "model": entry.name, "paper": entry.paper, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python -m zoo.bench " + " ".join(sys.argv[1:]), "config": cfg, "baseline_config": base_cfg,
        "seeds": list(args.seeds), "datasets": report_sets, "environment": environment(device),
        "conventions": "top-1 accuracy in %; base = C_base-way on the base classes' test split (DePT: fused "
                       "(1-lam) ITM + lam CAT), new = C_new-way on the new classes (ITM only); per dataset, "
                       "base and new are averaged over seeds and H = 2BN/(B+N) of those averages; +- is the std "
                       "over seeds (for H: of the per-seed H); every row is the last epoch (no selection)",
    }
    if len(report_sets) > 1:
        report["average"] = {}
        for mth in METHODS:
            b = sum(s["methods"][mth]["base"] for s in report_sets.values()) / len(report_sets)
            n = sum(s["methods"][mth]["new"] for s in report_sets.values()) / len(report_sets)
            report["average"][mth] = {"base": b, "new": n, "h": harmonic_mean(b, n)}
    report["wall_time_s"] = time.perf_counter() - t_start
    _write(out, report)


def _write(out: Path, report: dict[str, Any]) -> None:
    from zoo.common.plots import plot_bars

    def write(tmp: Path) -> None:
        for ds, s in report["datasets"].items():
            groups = {k: {METHODS[m]: (s["methods"][m][k], s["methods"][m].get(f"{k}_std", 0.0)) for m in METHODS}
                      for k in ("base", "new", "h")}
            groups = {{"base": "base", "new": "new", "h": "H"}[k]: v for k, v in groups.items()}
            name = "accuracy.png" if len(report["datasets"]) == 1 else f"accuracy_{ds}.png"
            plot_bars(groups, tmp / name, "top-1 accuracy (%)",
                      f"{ds}: mean ± std over {len(report['seeds'])} seeds")
            if "grid" in s:
                lam = {"0 (CoOp)": s["methods"]["coop"], "0.3": s["grid"]["lam=0.3"], "0.5": s["grid"]["lam=0.5"],
                       "0.7 (DePT)": s["methods"]["dept"], "0.9": s["grid"]["lam=0.9"], "1.0": s["grid"]["lam=1.0"]}
                sweep = {f"λ={k}": {"base": (v["base"], v["base_std"]), "new": (v["new"], v["new_std"]),
                                    "H": (v["h"], v["h_std"])} for k, v in lam.items()}
                plot_bars(sweep, tmp / ("lambda.png" if len(report["datasets"]) == 1 else f"lambda_{ds}.png"),
                          "top-1 accuracy (%)", f"{ds}: the λ sweep (loss and fusion weight)")
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=float))
        (tmp / "report.md").write_text(_markdown(report))

    write_atomically(out, write)
    print((out / "report.md").read_text())
    print(f"[bench dept] wrote {out}/report.md, report.json and plots")


def _markdown(r: dict[str, Any]) -> str:
    L = [f"# DePT bench: {r['paper']}", "",
         f"- created {r['created']} by `{r['command']}`; wall time {r['wall_time_s'] / 60:.1f} min",
         f"- DePT config `{r['config']}`; CoOp config `{r['baseline_config']}` (DePT's without the CAT head); "
         f"seeds {r['seeds']}; {r['environment']['device_name']}, torch {r['environment']['torch']}, "
         f"lightning {r['environment']['lightning']}",
         f"- {r['conventions']}", ""]
    for ds, s in r["datasets"].items():
        M = s["methods"]
        L += [f"## {s['dataset']}", "",
              f"{s['classes']['base']} base / {s['classes']['new']} new classes (chance {s['chance']['base']:.1f}% / "
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
                     f"**{fmt(x['h'])}** (± {fmt(x['h_std'])}) | {per} | {fmt(x.get('seconds'), digits=0)} |")
        d = s["delta_dept_minus_coop"]
        L += ["", f"DePT − CoOp: base {d['base']:+.2f}, new {d['new']:+.2f}, H {d['h']:+.2f}; per seed (base/new/H): "
              + "; ".join(f"{p['base']:+.2f}/{p['new']:+.2f}/{p['h']:+.2f}" for p in d["per_seed"]) + "."]
        if M["dept"].get("base_cat") is not None:
            L.append(f"DePT base accuracy by head alone: ITM {fmt(M['dept']['base_itm'], M['dept']['base_itm_std'])}, "
                     f"CAT {fmt(M['dept']['base_cat'], M['dept']['base_cat_std'])} (fused: "
                     f"{fmt(M['dept']['base'])}).")
        if "grid" in s:
            L += ["", "Ablation (`--grid`): λ weights both the loss and the base fusion; λ=0 is the CoOp row, "
                  "λ=0.7 the DePT row.", "", "| variant | base | new | H | H per seed |", "|---|---|---|---|---|"]
            for g, x in s["grid"].items():
                per = ", ".join(f"{p['h']:.2f}" for p in x["per_seed"])
                L.append(f"| DePT {g} | {fmt(x['base'], x['base_std'])} | {fmt(x['new'], x['new_std'])} | "
                         f"**{fmt(x['h'])}** (± {fmt(x['h_std'])}) | {per} |")
        if "criteria" in s:
            L += ["", f"Spec pass criteria ({len(r['seeds'])}-seed means; the spec asks for 3): " + "; ".join(
                f"{k}: {'PASS' if v else 'FAIL'}" for k, v in s["criteria"].items()) + "."]
        L.append("")
    if "average" in r:
        L += ["## Average over datasets (H of the mean base and mean new)", "",
              "| dataset | CoOp base/new/H | CoOp+DePT base/new/H |", "|---|---|---|"]
        for ds, s in r["datasets"].items():
            c, d = s["methods"]["coop"], s["methods"]["dept"]
            flag = "" if s["comparable"] else " (not comparable)"
            L.append(f"| {ds}{flag} | {c['base']:.2f}/{c['new']:.2f}/{c['h']:.2f} | "
                     f"{d['base']:.2f}/{d['new']:.2f}/{d['h']:.2f} |")
        a = r["average"]
        L.append(f"| **average** | {a['coop']['base']:.2f}/{a['coop']['new']:.2f}/{a['coop']['h']:.2f} | "
                 f"{a['dept']['base']:.2f}/{a['dept']['new']:.2f}/{a['dept']['h']:.2f} |")
    return "\n".join(L) + "\n"
