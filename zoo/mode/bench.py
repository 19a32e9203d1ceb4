"""The MODE bench: MODE-F (CSD) against the KNN baseline, plus the spec's ablation grid.

Every variant is trained through the same LightningCLI path as ``python -m zoo.fit mode`` (same
data, splits and seed per row), then the *final* weights are scored with every test-time score:
KNN on the global feature (at the baseline's k and at 50) and CSD at CSD's k. Checkpoint
selection plays no part (no OOD data is used for selection).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from zoo.common.errors import ZooError
from zoo.common.metrics import CONVENTION, ood_metrics, roc_curve
from zoo.common.report import device_name, environment, fmt, mean_std, write_atomically
from zoo.registry import ZooEntry

#: name -> (description, config (None = the method config), overrides)
HEADLINE = {
    "ce": ("CE only (baseline model)", "baseline", []),
    "ce+alpa_f": ("CE, then ALPA alone (MODE-F)", None, []),
    # the paper's MODE-F protocol: ALPA alone on top of the *converged* baseline (extra compute)
    "base+alpa_f": ("baseline, then ALPA alone (MODE-F from the converged baseline; extra epochs)",
                    "from_base", []),
}
GRID = {
    "ce+alpa_t": ("CE + ALPA jointly (MODE-T, CE)", None,
                  ["--model.objective=ce+alpa", "--model.pretrain_epochs=0", "--model.lr=0.1"]),
    "supcon": ("SupCon only", None,
               ["--model.objective=supcon", "--model.pretrain_epochs=0", "--model.lr=0.1"]),
    "supcon+alpa_t": ("SupCon + ALPA jointly (MODE-T, SupCon)", None,
                      ["--model.objective=supcon+alpa", "--model.pretrain_epochs=0", "--model.lr=0.1"]),
    "supcon+alpa_f": ("SupCon, then ALPA alone (MODE-F, SupCon)", None, ["--model.pretrain_objective=supcon"]),
}
#: report rows: method name -> (variant, score, k or None for the run's own k)
METHODS = {
    "knn": ("ce", "knn", None),
    "knn@50": ("ce", "knn", 50),
    "csd_on_base": ("ce", "csd", None),
    "knn_on_mode": ("ce+alpa_f", "knn", None),
    "mode": ("ce+alpa_f", "csd", None),
    "knn_on_mode_from_base": ("base+alpa_f", "knn", None),
    "mode_from_base": ("base+alpa_f", "csd", None),
}
METRIC_DOC = {
    "fpr95": "FPR of OOD at 95% ID TPR, %, lower is better",
    "auroc": "AUROC with ID as the positive class, %, higher is better",
    "id_acc": "ID test accuracy, % (CE head for CE-trained rows, 10-NN vote for ALPA-only rows)",
}


def baseline_overrides(cfg: str) -> list[str]:
    """CLI overrides turning a MODE config into its KNN baseline: the same run without ALPA.

    ``supcon+alpa`` -> ``supcon``, ``ce+alpa`` -> ``ce``, MODE-F (``alpa`` after a pre-training
    stage) -> the pre-training objective for all epochs at the pre-training lr; scored by KNN.
    """
    import yaml

    model = (yaml.safe_load(Path(cfg).read_text()) or {}).get("model", {})
    obj = model.get("objective", "alpa")
    if obj == "alpa":
        base = model.get("pretrain_objective", "ce")
        extra = [f"--model.lr={model.get('pretrain_lr', 0.1)}"] if model.get("pretrain_epochs") else []
    else:
        base, extra = obj.split("+")[0], []
    views = 2 if base == "supcon" else 1
    return [f"--model.objective={base}", "--model.pretrain_epochs=0", "--model.score=knn",
            f"--data.init_args.n_views={views}", *extra]


def from_base_overrides(cfg: str, base_ckpt: Path) -> list[str]:
    """MODE-F from the baseline's final checkpoint: ALPA alone for the method's fine-tuning epochs
    (``max_epochs - pretrain_epochs`` of the method config) at the method's lr."""
    import yaml

    conf = yaml.safe_load(Path(cfg).read_text()) or {}
    model = conf.get("model", {})
    epochs = int(conf.get("trainer", {}).get("max_epochs", 1)) - int(model.get("pretrain_epochs", 0) or 0)
    return ["--model.objective=alpa", "--model.pretrain_epochs=0", f"--model.init_from={base_ckpt}",
            f"--trainer.max_epochs={max(1, epochs)}", "--data.init_args.n_views=2"]


def _train(entry: ZooEntry, config: str, overrides: list[str], seed: int, run_dir: Path, extra: list[str]):
    from zoo.fit import fit_quietly

    cli, secs, ips = fit_quietly(entry, config, seed, run_dir, [*overrides, *extra])
    return cli.model, cli.datamodule, secs, ips


def _evaluate(model, dm, device: torch.device, scores: dict[str, tuple[str, int]]) -> dict[str, Any]:
    from zoo.common.knn import knn_vote
    from zoo.mode.evaluate import extract, score, timed_score

    net = model.net.to(device)
    bank = extract(net, dm.bank_dataloader(), device)
    loaders = dm.test_dataloader()
    id_f = extract(net, loaders[0], device)
    ood_f = {n: extract(net, ld, device) for n, ld in zip(dm.test_set_names, loaders[1:])}
    bank_regions = bank.regions
    acc_fc = (id_f.logits.argmax(1) == id_f.labels).float().mean().item()
    vote = knn_vote(id_f.global_, bank.global_, bank.labels, k=min(int(model.hparams.vote_k), len(bank.labels)),
                    num_classes=id_f.logits.shape[1])
    acc_knn = (vote == id_f.labels).float().mean().item()
    acc = acc_fc if "ce" in model.final_objective else acc_knn
    out: dict[str, Any] = {"id_acc": 100 * acc, "acc_fc": 100 * acc_fc, "acc_knn": 100 * acc_knn, "scores": {}}
    for name, (method, k) in scores.items():
        id_s, qps = timed_score(method, id_f, bank_regions, k, device=device)
        per, raw = {}, {}
        for ood_name, f in ood_f.items():
            s = score(method, f, bank_regions, k, device=device)
            m = ood_metrics(id_s, s)
            per[ood_name] = {"fpr95": 100 * m["fpr95"], "auroc": 100 * m["auroc"], "aupr_in": 100 * m["aupr_in"]}
            raw[ood_name] = s
        out["scores"][name] = {"per_set": per, "queries_per_s": qps, "k": k, "id_scores": id_s, "ood_scores": raw}
    return out


def run_bench(entry: ZooEntry, args) -> None:
    cfg = args.config or str(entry.config("default"))
    if not Path(cfg).is_file():
        raise ZooError(f"--config {cfg}: file not found")
    base_cfg = args.baseline_config  # None: the method config without ALPA (baseline_overrides)
    if base_cfg is not None and not Path(base_cfg).is_file():
        raise ZooError(f"--baseline-config {base_cfg}: file not found")
    out = Path(args.out or Path("bench", entry.name))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    variants = dict(HEADLINE)
    if args.grid:
        variants.update(GRID)
    runs_root = out / "runs"
    t_start = time.perf_counter()
    results: dict[str, list[dict]] = {v: [] for v in variants}
    train_info: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in args.seeds:
        for vname, (desc, vcfg, overrides) in variants.items():
            config = cfg if vcfg is None else base_cfg
            ov = list(overrides)
            if vcfg == "baseline" and base_cfg is None:  # derive the baseline from the method config
                ov, config = baseline_overrides(cfg), cfg
            elif vcfg == "from_base":
                ov, config = from_base_overrides(cfg, runs_root / f"ce-s{seed}" / "checkpoints" / "last.ckpt"), cfg
            print(f"[bench mode] seed {seed}: training {vname} ({desc}) ...", flush=True)
            model, dm, secs, ips = _train(entry, config, ov, seed, runs_root / f"{vname}-s{seed}", args.override)
            k_run = int(model.hparams.k)
            scores = {"knn": ("knn", k_run), "csd": ("csd", k_run)}
            if len(dm.bank_dataloader().dataset) >= 50:
                scores["knn@50"] = ("knn", 50)
            ev = _evaluate(model, dm, device, scores)
            ev["k"] = k_run
            results[vname].append(ev)
            train_info[vname].append({"seconds": secs, "images_per_s": ips, "seed": seed,
                                      "epochs": model.trainer.max_epochs})
            print(f"[bench mode] seed {seed}: {vname} trained in {secs:.0f} s "
                  f"({ips:.0f} img/s); ID acc {ev['id_acc']:.2f}%", flush=True)
            average = list(dm.average_names)
            test_sets = list(dm.test_set_names)
    report = _assemble(entry, args, cfg, base_cfg, variants, results, train_info, average, test_sets, device)
    report["wall_time_s"] = time.perf_counter() - t_start
    if args.throughput_steps:
        print("[bench mode] timing Lightning vs a bare PyTorch loop ...", flush=True)
        report["throughput"] = lightning_vs_bare(entry, cfg, args.throughput_steps, device)
    if args.knn_bench:
        report["knn_bench"] = _knn_bench(args.knn_bench, device)
    _write(out, report, results, average)


def _assemble(entry, args, cfg, base_cfg, variants, results, train_info, average, test_sets, device) -> dict:
    methods: dict[str, dict] = {}
    rows = dict(METHODS)
    if args.grid:
        for v in GRID:
            rows[f"{v}/knn"] = (v, "knn", None)
            rows[f"{v}/csd"] = (v, "csd", None)
    for mname, (v, sc, k) in rows.items():
        key = sc if k is None else f"{sc}@{k}"
        if v not in results or not results[v] or key not in results[v][0]["scores"]:
            continue
        per_seed = []
        for ev in results[v]:
            s = ev["scores"][key]
            avg = {m: statistics.fmean(s["per_set"][n][m] for n in average) for m in ("fpr95", "auroc")}
            per_seed.append({"per_set": s["per_set"], **avg, "id_acc": ev["id_acc"], "acc_fc": ev["acc_fc"],
                             "acc_knn": ev["acc_knn"], "queries_per_s": s["queries_per_s"], "k": s["k"]})
        entry_m: dict[str, Any] = {"variant": v, "training": variants[v][0], "score": sc,
                                   "k": per_seed[0]["k"], "per_seed": per_seed}
        for m in ("fpr95", "auroc", "id_acc", "queries_per_s"):
            entry_m[m], entry_m[f"{m}_std"] = mean_std([p[m] for p in per_seed])
        entry_m["per_set"] = {}
        for n in test_sets:
            entry_m["per_set"][n] = {}
            for m in ("fpr95", "auroc"):
                mu, sd = mean_std([p["per_set"][n][m] for p in per_seed])
                entry_m["per_set"][n][m], entry_m["per_set"][n][f"{m}_std"] = mu, sd
        ti = train_info[v]
        entry_m["train_seconds"], _ = mean_std([t["seconds"] for t in ti])
        entry_m["train_images_per_s"], _ = mean_std([t["images_per_s"] for t in ti])
        methods[mname] = entry_m
    deltas = {}
    if "mode" in methods and "knn" in methods:
        for m in ("fpr95", "auroc", "id_acc"):
            deltas[m] = methods["mode"][m] - methods["knn"][m]
        paired = [a["fpr95"] - b["fpr95"] for a, b in zip(methods["mode"]["per_seed"], methods["knn"]["per_seed"])]
        deltas["fpr95_per_seed"] = paired
    if "mode_from_base" in methods and "knn" in methods:
        deltas["from_base"] = {m: methods["mode_from_base"][m] - methods["knn"][m] for m in ("fpr95", "auroc", "id_acc")}
    return {
        "model": entry.name, "paper": entry.paper, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python -m zoo.bench " + " ".join(sys.argv[1:]) if sys.argv else "",
        "config": cfg, "baseline_config": base_cfg, "seeds": list(args.seeds), "average_over": average,
        "test_sets": test_sets, "conventions": CONVENTION, "metrics": METRIC_DOC, "methods": methods,
        "delta_mode_minus_knn": deltas,
        "environment": environment(device),
    }


def lightning_vs_bare(entry: ZooEntry, cfg: str, steps: int, device: torch.device) -> dict[str, Any]:
    """Training images/s of the MODE LightningModule (CE objective) against a bare PyTorch loop on the
    same backbone, batch size, precision and in-memory batches."""
    import lightning as L
    import yaml
    from torch.utils.data import DataLoader, Dataset

    from callbacks.throughput import TrainThroughput
    from zoo.mode.lightning_model import MODE

    conf = yaml.safe_load(Path(cfg).read_text())
    mcfg = dict(conf.get("model", {}))
    bs = int(conf.get("data", {}).get("init_args", {}).get("batch_size", 64))
    size = int(conf.get("data", {}).get("init_args", {}).get("image_size", 32))
    hp = dict(backbone=mcfg.get("backbone", "world_resnet"), num_classes=int(mcfg.get("num_classes", 6)),
              objective="ce", pretrain_epochs=0, lr=0.1, plots=False)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    precision = "bf16-mixed" if bf16 else "32-true"

    class Batches(Dataset):
        def __init__(self, n: int) -> None:
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(n, 3, size, size, generator=g)
            self.y = torch.randint(0, hp["num_classes"], (n,), generator=g)

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> dict:
            return {"image": self.x[i], "label": self.y[i]}

    data = Batches(bs * 8)
    loader = DataLoader(data, batch_size=bs, shuffle=False, drop_last=True, pin_memory=device.type == "cuda")

    # bare PyTorch
    torch.manual_seed(0)
    m = MODE(**hp).to(device)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    warm, done, t0 = 5, 0, 0.0
    it = iter(loader)
    while done < steps + warm:
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        if done == warm:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, y = b["image"].to(device, non_blocking=True), b["label"].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(m.net(x)["logits"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    bare = steps * bs / (time.perf_counter() - t0)

    # Lightning
    torch.manual_seed(0)
    m2 = MODE(**hp)
    meter = TrainThroughput(warmup=warm)
    trainer = L.Trainer(accelerator=device.type if device.type != "cuda" else "gpu", devices=1,
                        precision=precision, max_steps=steps + warm, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[meter],
                        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(m2, train_dataloaders=loader)
    lit = meter.images_per_s
    return {"batch_size": bs, "image_size": size, "precision": precision, "steps": steps,
            "bare_images_per_s": bare, "lightning_images_per_s": lit, "ratio": lit / bare,
            "backbone": hp["backbone"], "device": device_name(device)}


def _knn_bench(spec: str, device: torch.device) -> dict[str, Any]:
    from zoo.common.knn import benchmark_knn

    try:
        q, mrows, c = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        raise ZooError(f"--knn-bench {spec!r}: expected QxMxC, e.g. 60000x300000x512") from None
    res = {}
    for prec in ("fp32", "bf16_rerank"):
        res[prec] = benchmark_knn(num_queries=q, bank_rows=mrows, dim=c, k=10, device=str(device), precision=prec)
    return res


# ---------------------------------------------------------------------------------------------- report
def _write(out: Path, report: dict, results: dict, average: list[str]) -> None:
    """Write report.json/.md and plots into a temp folder, then move them into ``out`` at once."""
    from zoo.common.plots import plot_bars, plot_roc, plot_score_hist

    def write(tmp: Path) -> None:
        methods = report["methods"]
        head = [m for m in ("knn", "csd_on_base", "knn_on_mode", "mode", "mode_from_base") if m in methods]
        sets = report["test_sets"]
        groups_f = {n: {m: (methods[m]["per_set"][n]["fpr95"], methods[m]["per_set"][n]["fpr95_std"]) for m in head}
                    for n in sets}
        groups_a = {n: {m: (methods[m]["per_set"][n]["auroc"], methods[m]["per_set"][n]["auroc_std"]) for m in head}
                    for n in sets}
        plot_bars(groups_f, tmp / "fpr95.png", "FPR95 (%) ↓", "FPR95 per OOD set (mean ± std over seeds)")
        plot_bars(groups_a, tmp / "auroc.png", "AUROC (%) ↑", "AUROC per OOD set (mean ± std over seeds)")
        first = {v: r[0] for v, r in results.items() if r}
        for mname in ("knn", "mode"):
            if mname not in methods:
                continue
            v, sc, k = METHODS[mname]
            s = first[v]["scores"][sc if k is None else f"{sc}@{k}"]
            curves = {}
            for n, o in s["ood_scores"].items():
                fpr, tpr, _ = roc_curve(s["id_scores"], o)
                curves[n] = (fpr.numpy(), tpr.numpy(), ood_metrics(s["id_scores"], o)["auroc"])
            plot_roc(curves, tmp / f"roc_{mname}.png", title=f"ROC, {mname} (seed {report['seeds'][0]})")
            thr = ood_metrics(s["id_scores"], next(iter(s["ood_scores"].values())))["threshold"]
            plot_score_hist(s["id_scores"].numpy(), {n: o.numpy() for n, o in s["ood_scores"].items()},
                            tmp / f"scores_{mname}.png", threshold=thr,
                            title=f"{mname} scores, seed {report['seeds'][0]} (higher = more ID)")
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=float))
        (tmp / "report.md").write_text(_markdown(report))

    write_atomically(out, write)
    print((out / "report.md").read_text())
    print(f"[bench mode] wrote {out}/report.md, report.json and plots")


def _markdown(r: dict) -> str:
    M = r["methods"]
    sets, avg = r["test_sets"], r["average_over"]
    L = [f"# MODE bench: {r['paper']}", "",
         f"- created {r['created']} by `{r['command']}`",
         f"- method config `{r['config']}`, baseline config `{r['baseline_config'] or '(derived)'}`; "
         f"seeds {r['seeds']}; scoring device {r['environment']['device_name']}; torch {r['environment']['torch']}, "
         f"lightning {r['environment']['lightning']}",
         f"- {r['conventions']}",
         f"- headline average over: {', '.join(avg)}; other sets are diagnostics. Mean ± std over seeds; "
         "every row is scored on the *final* weights of its run (no checkpoint selection).",
         f"- wall time of the whole bench: {r['wall_time_s']:.0f} s", "",
         "## Headline", "",
         "| method | training | score | " + " | ".join(f"{n} FPR95 ↓ | {n} AUROC ↑" for n in sets)
         + " | avg FPR95 ↓ | avg AUROC ↑ | ID acc | train s |",
         "|---|---|---|" + "---|---|" * len(sets) + "---|---|---|---|"]
    order = [m for m in ("knn", "knn@50", "csd_on_base", "knn_on_mode", "mode", "knn_on_mode_from_base",
                         "mode_from_base") if m in M]
    order += [m for m in M if m not in order]
    for m in order:
        e = M[m]
        cells = " | ".join(f"{fmt(e['per_set'][n]['fpr95'], e['per_set'][n]['fpr95_std'])} | "
                           f"{fmt(e['per_set'][n]['auroc'], e['per_set'][n]['auroc_std'])}" for n in sets)
        L.append(f"| **{m}** | {e['training']} | {e['score'].upper()} k={e['k']} | {cells} | "
                 f"{fmt(e['fpr95'], e['fpr95_std'])} | {fmt(e['auroc'], e['auroc_std'])} | "
                 f"{fmt(e['id_acc'], e['id_acc_std'])} | {e['train_seconds']:.0f} |")
    d = r.get("delta_mode_minus_knn") or {}
    if d:
        L += ["", f"**MODE − KNN** (avg over {', '.join(avg)}): FPR95 {d['fpr95']:+.2f} points "
              f"(per seed: {', '.join(f'{x:+.2f}' for x in d['fpr95_per_seed'])}), AUROC {d['auroc']:+.2f}, "
              f"ID acc {d['id_acc']:+.2f}.", "",
              "Spec success criteria (mode.md, embedded world): "
              f"FPR95 at least 5 points lower: **{'met' if d['fpr95'] <= -5 else 'not met'}**; "
              f"AUROC higher: **{'met' if d['auroc'] > 0 else 'not met'}**; "
              f"ID accuracy within 2 points: **{'met' if abs(d['id_acc']) <= 2 else 'not met'}**."]
        fb = d.get("from_base")
        if fb:
            L.append(f"MODE-F from the converged baseline (paper protocol, +{M['mode_from_base']['train_seconds']:.0f} s "
                     f"of ALPA on top of the baseline's training) − KNN: FPR95 {fb['fpr95']:+.2f}, "
                     f"AUROC {fb['auroc']:+.2f}, ID acc {fb['id_acc']:+.2f}.")
        if all(x in M for x in ("mode", "knn", "csd_on_base")):
            ok = M["mode"]["fpr95"] < M["knn"]["fpr95"] <= M["csd_on_base"]["fpr95"]
            L.append(f"Expected ordering CSD(ALPA) < KNN(base) <= CSD(base) in avg FPR95: "
                     f"{M['mode']['fpr95']:.2f} / {M['knn']['fpr95']:.2f} / {M['csd_on_base']['fpr95']:.2f}: "
                     f"**{'holds' if ok else 'does not hold'}**.")
    L += ["", "## Throughput", "",
          "| method | train images/s | scoring queries/s (region-queries for CSD) |", "|---|---|---|"]
    for m in order:
        e = M[m]
        L.append(f"| {m} | {fmt(e['train_images_per_s'], digits=0)} | {fmt(e['queries_per_s'], digits=0)} |")
    t = r.get("throughput")
    if t:
        L += ["", f"Lightning vs a bare PyTorch loop (backbone {t['backbone']}, batch {t['batch_size']}, "
              f"{t['image_size']} px, {t['precision']}, {t['steps']} timed steps, {t['device']}): "
              f"bare {t['bare_images_per_s']:.0f} images/s, Lightning {t['lightning_images_per_s']:.0f} images/s, "
              f"ratio **{t['ratio']:.3f}** (goal ≥ 0.9)."]
    kb = r.get("knn_bench")
    if kb:
        L += ["", "kNN scoring on random unit data: " + "; ".join(
            f"{p}: {v['queries_per_s']:.0f} queries/s, max |Δ| vs fp32 {v['max_abs_diff_vs_fp32']:.2e}"
            for p, v in kb.items())]
    L += ["", "## Metrics", ""] + [f"- `{k}`: {v}" for k, v in r["metrics"].items()]
    L += ["", "Plots: `fpr95.png`, `auroc.png` (per set, error bars = std over seeds), `roc_knn.png`, "
          "`roc_mode.png`, `scores_knn.png`, `scores_mode.png` (first seed).", ""]
    return "\n".join(L)
