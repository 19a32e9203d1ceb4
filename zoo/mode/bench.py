"""The MODE bench: MODE-F (CSD) against the KNN baseline, plus the spec's ablation grid.

Every variant is trained through the bench harness (:mod:`zoo.common.harness`), i.e. the same
LightningCLI path as ``python -m zoo.fit mode`` with the same data, splits and seed per row; then the
*final* weights are scored with every test-time score: KNN on the global feature (at the baseline's
k and at 50) and CSD at CSD's k (MODE, arXiv:2308.10239v1, Sec. 3.3 and Eq. 9). Checkpoint
selection plays no part (no OOD data is used for selection).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from zoo.common.harness import Bench, Comparison, Context, Fitted, Setting, Variant
from zoo.common.harness.report import device_name, fmt
from zoo.common.metrics.ood import CONVENTION, ood_metrics, roc_curve
from zoo.core.errors import ZooError
from zoo.core.registry import ZooEntry

#: ablation variants of ``--grid``: name -> (description, overrides on the method config)
GRID = {
    "ce+alpa_t": ("CE + ALPA jointly (MODE-T, CE)",
                  ["--model.objective=ce+alpa", "--model.pretrain_epochs=0", "--model.lr=0.1"]),
    "supcon": ("SupCon only", ["--model.objective=supcon", "--model.pretrain_epochs=0", "--model.lr=0.1"]),
    "supcon+alpa_t": ("SupCon + ALPA jointly (MODE-T, SupCon)",
                      ["--model.objective=supcon+alpa", "--model.pretrain_epochs=0", "--model.lr=0.1"]),
    "supcon+alpa_f": ("SupCon, then ALPA alone (MODE-F, SupCon)", ["--model.pretrain_objective=supcon"]),
}
#: report rows: name -> (variant, score, k or None for the run's own k)
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


def evaluate_scores(model, dm, device: torch.device, scores: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """Score a trained MODE/KNN model's final weights on ``dm``'s test sets with every score in
    ``scores`` (name -> (method, k)): per-set FPR95/AUROC/AUPR-In, ID accuracy, queries/s, raw scores."""
    from zoo.common.vision.knn import knn_vote
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


class MODEBench(Bench):
    """MODE-F (CSD) vs KNN on identical data; ``--grid`` adds the spec's objective x score ablation."""

    title = "MODE bench"
    conventions = CONVENTION
    metrics = METRIC_DOC
    claims_heading = "Spec success criteria (embedded world)"
    comparisons = (Comparison("mode", "knn", ("fpr95", "auroc", "id_acc")),
                   Comparison("mode_from_base", "knn", ("fpr95", "auroc", "id_acc")))

    @classmethod
    def add_arguments(cls, parser) -> None:
        g = parser.add_argument_group("MODE options")
        g.add_argument("--grid", action="store_true", help="also train the ablation grid (objectives x scores)")
        g.add_argument("--throughput-steps", type=int, default=30,
                       help="training steps timed for the Lightning-vs-bare-PyTorch throughput row (0 = skip)")
        g.add_argument("--knn-bench", nargs="?", const=DEFAULT_KNN_SPEC, default=None, metavar="QxMxC[@k],...",
                       help="also time exact kNN search on random unit data, per shape (k defaults to 10): the zoo "
                            "against faiss IndexFlatIP on the CPU (queries/s, ratio, max |diff|), and on a GPU "
                            "the fp32 and bf16_rerank paths; without a value: " + DEFAULT_KNN_SPEC)

    def __init__(self, entry: ZooEntry, args) -> None:
        super().__init__(entry, args)
        if args.knn_bench is not None:
            _parse_knn_spec(args.knn_bench)  # fail before training, not after

    def variants(self, setting: Setting) -> list[Variant]:
        cfg, base_cfg = self.config, self.baseline_config
        base = (Variant("ce", "CE only (baseline model)", config=base_cfg) if base_cfg else
                Variant("ce", "CE only (baseline model)", baseline_overrides(cfg)))

        def from_base(ctx: Context) -> list[str]:
            return from_base_overrides(cfg, ctx.run_dir("ce") / "checkpoints" / "last.ckpt")

        out = [base, Variant("ce+alpa_f", "CE, then ALPA alone (MODE-F)"),
               # the paper's MODE-F protocol: ALPA alone on top of the *converged* baseline (extra compute)
               Variant("base+alpa_f", "baseline, then ALPA alone (MODE-F from the converged baseline; extra epochs)",
                       from_base)]
        if self.args.grid:
            out += [Variant(n, d, ov) for n, (d, ov) in GRID.items()]
        return out

    def rows(self, setting: Setting) -> dict[str, str]:
        names = list(METHODS)
        if self.args.grid:
            names += [f"{v}/{sc}" for v in GRID for sc in ("knn", "csd")]
        return {n: n for n in names}

    def describe(self, setting: Setting, fitted: Fitted) -> dict[str, Any]:
        dm = fitted.datamodule
        return {"average_over": list(dm.average_names), "test_sets": list(dm.test_set_names)}

    def evaluate(self, fitted: Fitted) -> dict[str, dict[str, Any]]:
        model, dm, v = fitted.model, fitted.datamodule, fitted.variant.name
        k_run = int(model.hparams.k)
        scores = {"knn": ("knn", k_run), "csd": ("csd", k_run)}
        if len(dm.bank_dataloader().dataset) >= 50:
            scores["knn@50"] = ("knn", 50)
        ev = evaluate_scores(model, dm, self.device, scores)
        wanted = {r: (sc, k) for r, (var, sc, k) in METHODS.items() if var == v}
        if v in GRID:
            wanted = {f"{v}/knn": ("knn", None), f"{v}/csd": ("csd", None)}
        average = list(dm.average_names)
        rows: dict[str, dict[str, Any]] = {}
        for r, (sc, k) in wanted.items():
            key = sc if k is None else f"{sc}@{k}"
            if key not in ev["scores"]:
                continue
            s = ev["scores"][key]
            avg = {m: statistics.fmean(s["per_set"][n][m] for n in average) for m in ("fpr95", "auroc")}
            rows[r] = {"score": sc, "k": s["k"], **avg, "id_acc": ev["id_acc"], "acc_fc": ev["acc_fc"],
                       "acc_knn": ev["acc_knn"], "queries_per_s": s["queries_per_s"], "per_set": s["per_set"],
                       "epochs": model.trainer.max_epochs}
            if fitted.seed == self.args.seeds[0]:
                self.raw[r] = (s["id_scores"], s["ood_scores"])
        return rows

    def claims(self, setting: Setting, block: dict[str, Any]) -> dict[str, bool]:
        M = block["methods"]
        if "mode" not in M or "knn" not in M:
            return {}
        d = {m: M["mode"][m] - M["knn"][m] for m in ("fpr95", "auroc", "id_acc")}
        out = {"MODE FPR95 at least 5 points below KNN": d["fpr95"] <= -5,
               "MODE AUROC above KNN": d["auroc"] > 0,
               "MODE ID accuracy within 2 points of KNN": abs(d["id_acc"]) <= 2}
        if "csd_on_base" in M:
            out["ordering CSD(ALPA) < KNN(base) <= CSD(base) in avg FPR95"] = (
                M["mode"]["fpr95"] < M["knn"]["fpr95"] <= M["csd_on_base"]["fpr95"])
        return out

    def finish(self, report: dict[str, Any]) -> None:
        if self.args.throughput_steps:
            print("[bench mode] timing Lightning vs a bare PyTorch loop ...", flush=True)
            report["throughput"] = lightning_vs_bare(self.entry, self.config, self.args.throughput_steps, self.device)
        if self.args.knn_bench:
            report["knn_bench"] = _knn_bench(self.args.knn_bench, self.device)

    # ------------------------------------------------------------------ report
    def markdown(self, r: dict[str, Any], block: dict[str, Any]) -> list[str]:
        M = block["methods"]
        sets, avg = block["test_sets"], block["average_over"]
        L = [f"- headline average over: {', '.join(avg)}; other sets are diagnostics. Mean ± std over seeds; "
             "every row is scored on the *final* weights of its run (no checkpoint selection).", "",
             "## Headline", "",
             "| method | training | score | " + " | ".join(f"{n} FPR95 ↓ | {n} AUROC ↑" for n in sets)
             + " | avg FPR95 ↓ | avg AUROC ↑ | ID acc | train s |",
             "|---|---|---|" + "---|---|" * len(sets) + "---|---|---|---|"]
        for m, e in M.items():
            cells = " | ".join(f"{fmt(e['per_set'][n]['fpr95'], e['per_set'][n]['fpr95_std'])} | "
                               f"{fmt(e['per_set'][n]['auroc'], e['per_set'][n]['auroc_std'])}" for n in sets)
            L.append(f"| **{m}** | {e['training']} | {e['score'].upper()} k={e['k']:.0f} | {cells} | "
                     f"{fmt(e['fpr95'], e['fpr95_std'])} | {fmt(e['auroc'], e['auroc_std'])} | "
                     f"{fmt(e['id_acc'], e['id_acc_std'])} | {e['train_seconds']:.0f} |")
        d = block["deltas"].get("mode - knn")
        if d:
            L += ["", f"**MODE − KNN** (avg over {', '.join(avg)}): FPR95 {d['fpr95']:+.2f} points "
                  f"(per seed: {', '.join(f'{x:+.2f}' for x in d['fpr95_per_seed'])}), AUROC {d['auroc']:+.2f}, "
                  f"ID acc {d['id_acc']:+.2f}."]
        fb = block["deltas"].get("mode_from_base - knn")
        if fb:
            L.append(f"MODE-F from the converged baseline (paper protocol, +{M['mode_from_base']['train_seconds']:.0f} s "
                     f"of ALPA on top of the baseline's training) − KNN: FPR95 {fb['fpr95']:+.2f}, "
                     f"AUROC {fb['auroc']:+.2f}, ID acc {fb['id_acc']:+.2f}.")
        L += ["", "## Throughput", "",
              "| method | train images/s | scoring queries/s (region-queries for CSD) |", "|---|---|---|"]
        for m, e in M.items():
            L.append(f"| {m} | {fmt(e.get('train_images_per_s'), digits=0)} | {fmt(e['queries_per_s'], digits=0)} |")
        return L

    def markdown_tail(self, r: dict[str, Any]) -> list[str]:
        L: list[str] = []
        t = r.get("throughput")
        if t:
            L += [f"Lightning vs a bare PyTorch loop (backbone {t['backbone']}, batch {t['batch_size']}, "
                  f"{t['image_size']} px, {t['precision']}, {t['steps']} timed steps, {t['device']}): "
                  f"bare {t['bare_images_per_s']:.0f} images/s, Lightning {t['lightning_images_per_s']:.0f} images/s, "
                  f"ratio **{t['ratio']:.3f}** (goal ≥ 0.9).", ""]
        kb = r.get("knn_bench")
        if kb:
            L += _knn_bench_markdown(kb)
        return L

    def plots(self, report: dict[str, Any], folder: Path) -> list[str]:
        from zoo.common.harness.plots import plot_bars, plot_roc, plot_roc_overlay, plot_score_hist

        block = next(iter(report["settings"].values()))
        methods, sets = block["methods"], block["test_sets"]
        head = [m for m in ("knn", "csd_on_base", "knn_on_mode", "mode", "mode_from_base") if m in methods]
        out = []
        for metric, label in (("fpr95", "FPR95 (%) ↓"), ("auroc", "AUROC (%) ↑")):
            groups = {n: {m: (methods[m]["per_set"][n][metric], methods[m]["per_set"][n][f"{metric}_std"])
                          for m in head} for n in sets}
            plot_bars(groups, folder / f"{metric}.png", label, f"{label[:-2]} per OOD set (mean ± std over seeds)")
            out.append(f"{metric}.png")
        seed = report["seeds"][0]
        overlay: dict[str, dict[str, tuple]] = {}
        for mname in ("knn", "mode"):
            if mname not in self.raw:
                continue
            id_s, ood = self.raw[mname]
            curves = {}
            for n, o in ood.items():
                fpr, tpr, _ = roc_curve(id_s, o)
                curves[n] = (fpr.numpy(), tpr.numpy(), ood_metrics(id_s, o)["auroc"])
                overlay.setdefault(n, {})[mname] = curves[n]
            plot_roc(curves, folder / f"roc_{mname}.png", title=f"ROC, {mname} (seed {seed})")
            thr = ood_metrics(id_s, next(iter(ood.values())))["threshold"]
            plot_score_hist(id_s.numpy(), {n: o.numpy() for n, o in ood.items()}, folder / f"scores_{mname}.png",
                            threshold=thr, title=f"{mname} scores, seed {seed} (higher = more ID)")
            out += [f"roc_{mname}.png", f"scores_{mname}.png"]
        if overlay and all(len(v) == 2 for v in overlay.values()):
            plot_roc_overlay(overlay, folder / "roc_mode_vs_knn.png", title=f"MODE (CSD) vs KNN, seed {seed}")
            out.append("roc_mode_vs_knn.png")
        return out


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
    lit = meter.per_s
    return {"batch_size": bs, "image_size": size, "precision": precision, "steps": steps,
            "bare_images_per_s": bare, "lightning_images_per_s": lit, "ratio": lit / bare,
            "backbone": hp["backbone"], "device": device_name(device)}


#: ``--knn-bench`` without a value: the shapes of zoo issue 8 (MODE's world size, a 300k bank, a wide bank)
DEFAULT_KNN_SPEC = "6000x24000x128@10,6000x300000x128@10,6000x60000x512@50"


def _parse_knn_spec(spec: str) -> list[tuple[int, int, int, int]]:
    """``"QxMxC[@k],..."`` -> [(Q, M, C, k), ...]; k defaults to 10 and must not exceed M."""
    out = []
    for part in spec.lower().replace(" ", "").split(","):
        try:
            sizes, _, kk = part.partition("@")
            q, mrows, c = (int(x) for x in sizes.split("x"))
            k = int(kk) if kk else 10
        except ValueError:
            raise ZooError(f"--knn-bench {spec!r}: expected QxMxC[@k] shapes separated by commas, "
                           "e.g. 60000x300000x512 or 6000x24000x128@10,6000x60000x512@50") from None
        if min(q, mrows, c, k) < 1:
            raise ZooError(f"--knn-bench {spec!r}: every size and k must be >= 1")
        if k > mrows:
            raise ZooError(f"--knn-bench {spec!r}: k={k} is larger than the bank ({mrows} rows)")
        out.append((q, mrows, c, k))
    return out


def _knn_bench(spec: str, device: torch.device) -> dict[str, Any]:
    """Per shape of ``spec``: the zoo's exact CPU search (default backend and torch backend) against
    faiss ``IndexFlatIP`` at ``torch.get_num_threads()`` threads, best of 3 interleaved rounds, with the
    query count lowered so one search takes about a second; on a GPU also ``benchmark_knn`` in fp32
    and bf16_rerank with all Q queries."""
    from zoo.common.vision.knn import benchmark_knn, benchmark_knn_vs_faiss

    shapes = []
    for q, mrows, c, k in _parse_knn_spec(spec):
        print(f"[bench mode] kNN {q}x{mrows}x{c} k={k}: zoo vs faiss on the CPU ...", flush=True)
        row: dict[str, Any] = {"spec": f"{q}x{mrows}x{c}@{k}",
                               "cpu": benchmark_knn_vs_faiss(q, mrows, c, k, backends=("auto", "torch"))}
        if device.type != "cpu":
            row["device"] = {prec: benchmark_knn(num_queries=q, bank_rows=mrows, dim=c, k=k, device=str(device),
                                                 precision=prec) for prec in ("fp32", "bf16_rerank")}
        shapes.append(row)
    return {"threads": torch.get_num_threads(), "shapes": shapes}


def _knn_bench_markdown(kb: dict[str, Any]) -> list[str]:
    """The ``report["knn_bench"]`` block as a markdown table (CPU) plus one line per shape (GPU)."""
    def sci(x: float | None) -> str:
        return "-" if x is None else f"{x:.1e}"

    first = kb["shapes"][0]["cpu"]
    ref = f"faiss {first['faiss']} `IndexFlatIP.search`" if first["faiss"] else "faiss (not installed)"
    L = [f"kNN search on random unit vectors on the CPU, {kb['threads']} threads, best of {first['repeats']} "
         f"interleaved rounds: the zoo's `knn_search` (default backend, here '{first['backend_of']['auto']}', and "
         f"the torch backend) against {ref}.", "",
         "| Q × M × C | k | queries timed | zoo queries/s | zoo torch queries/s | faiss queries/s | zoo / faiss "
         "| torch / faiss | max abs Δ sim vs faiss (zoo, torch) |",
         "|---|---|---|---|---|---|---|---|---|"]
    for row in kb["shapes"]:
        c = row["cpu"]
        qps, ratio, diff = c["queries_per_s"], c.get("ratio_vs_faiss", {}), c.get("max_abs_diff_vs_faiss", {})
        L.append(f"| {row['spec'].split('@')[0].replace('x', ' × ')} | {c['k']} | {c['num_queries']} | "
                 f"{qps['auto']:.0f} | {qps['torch']:.0f} | {fmt(qps.get('faiss_indexflatip'), digits=0)} | "
                 f"{fmt(ratio.get('auto'))} | {fmt(ratio.get('torch'))} | "
                 f"{sci(diff.get('auto'))}, {sci(diff.get('torch'))} |")
    for row in kb["shapes"]:
        if "device" in row:
            L.append(f"- {row['spec']} on {row['device']['fp32']['device_name']}: " + "; ".join(
                f"{p}: {v['queries_per_s']:.0f} queries/s, max |Δ| vs fp32 {v['max_abs_diff_vs_fp32']:.2e}"
                for p, v in row["device"].items()))
    return L + [""]
