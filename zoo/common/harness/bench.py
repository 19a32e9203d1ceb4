"""The bench harness: every paper's ``python -m zoo.bench <model>`` runs through :func:`run_bench`.

A paper's bench is a :class:`Bench` subclass that *declares* what to compare; the harness does the
common work:

1. for every setting (one by default; e.g. a dataset or a sweep point) and every seed, train each
   :class:`Variant` through the same LightningCLI path as ``python -m zoo.fit`` (identical data,
   splits and seed across variants), timing the fit and the model's throughput unit;
2. let the bench score the final weights into report *rows* (``Bench.evaluate``);
3. summarise every row over seeds (mean ± std of every metric), compute paired per-seed deltas of
   each declared method against its baseline, and the pass/fail lines of the paper's claims;
4. record the environment (git commit, package versions, device, precision, threads);
5. write ``report.md``, ``report.json`` and the plots (the harness's paired per-seed bars, plus the
   bench's own, e.g. overlaid ROC curves) into a temporary folder and move them into place at once:
   a failed or interrupted bench never replaces a complete report by a partial one.

Paths in reports are relative to the repository.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from zoo.common.harness.report import environment, fmt, rel, summarise
from zoo.core import registry
from zoo.core.errors import ZooError
from zoo.core.io import write_folder_atomically


@dataclass
class Setting:
    """One block of the report: the same variants trained under ``overrides`` (a dataset, a sweep
    point). ``info`` is free-form metadata shown in the report."""

    name: str
    overrides: list[str] = field(default_factory=list)
    label: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Variant:
    """A trained model of the bench.

    Attributes:
        name: short id (run folders are ``<out>/runs/[<setting>/]<name>-s<seed>``).
        description: what the training is, shown in the report.
        overrides: CLI overrides, or a function ``(ctx) -> overrides`` for variants built from
            earlier ones (``ctx.run_dir(other, seed)`` names their folders).
        entry: registry name of the model to train (default: the bench's model).
        config: config path (default: the method config).
    """

    name: str
    description: str
    overrides: list[str] | Callable[["Context"], list[str]] = field(default_factory=list)
    entry: str | None = None
    config: str | None = None


@dataclass
class Fitted:
    """A trained variant handed to :meth:`Bench.evaluate`."""

    variant: Variant
    setting: Setting
    seed: int
    model: Any
    datamodule: Any
    trainer: Any
    seconds: float
    units_per_s: float
    unit: str
    run_dir: Path


@dataclass
class Context:
    """Where a variant is trained; passed to callable overrides."""

    out: Path
    setting: Setting
    seed: int
    multi_setting: bool

    def run_dir(self, variant: str, seed: int | None = None) -> Path:
        base = self.out / "runs"
        if self.multi_setting:
            base = base / self.setting.name
        return base / f"{variant}-s{self.seed if seed is None else seed}"


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two rows: ``method - baseline`` per seed on ``metrics``."""

    method: str
    baseline: str
    metrics: tuple[str, ...]


class Bench:
    """Base class of a paper's bench. Subclasses set the class attributes and override the hooks.

    Class attributes:
        title: the report's heading (``"MODE bench"``).
        conventions: how the metrics are computed, written at the top of every report.
        metrics: metric name -> description (direction, unit).
        comparisons: the paired deltas to report (method row vs baseline row).
    """

    title: ClassVar[str] = ""
    conventions: ClassVar[str] = ""
    metrics: ClassVar[dict[str, str]] = {}
    comparisons: ClassVar[tuple[Comparison, ...]] = ()
    claims_heading: ClassVar[str] = "Claims"

    def __init__(self, entry: registry.ZooEntry, args: argparse.Namespace) -> None:
        self.entry, self.args = entry, args
        self.config = args.config or str(entry.config("default"))
        if not Path(self.config).is_file():
            raise ZooError(f"--config {self.config}: file not found")
        self.baseline_config = getattr(args, "baseline_config", None)
        if self.baseline_config is not None and not Path(self.baseline_config).is_file():
            raise ZooError(f"--baseline-config {self.baseline_config}: file not found")
        self.out = Path(args.out or Path("bench", entry.name))
        import torch

        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    # ---------------------------------------------------------------- declared by the paper
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The paper's own options (added to ``python -m zoo.bench <model>``)."""

    def settings(self) -> list[Setting]:
        """The report's blocks (default: one, unnamed)."""
        return [Setting(name="default")]

    def variants(self, setting: Setting) -> list[Variant]:
        """The models to train for ``setting``, in training order (later ones may use earlier ones)."""
        raise NotImplementedError

    def evaluate(self, fitted: Fitted) -> dict[str, dict[str, Any]]:
        """Score a trained variant: ``{row name: {metric: value, ...}}`` (one seed). Values are
        numbers, nested dicts of numbers, or strings; raw arrays for plots go in ``self.raw``."""
        raise NotImplementedError

    def rows(self, setting: Setting) -> dict[str, str]:
        """Row name -> display label, in report order (rows not listed follow in arrival order)."""
        return {}

    def derive(self, row: dict[str, Any]) -> None:
        """Add metrics computed from a row's seed means (e.g. H of the mean base and new)."""

    def claims(self, setting: Setting, block: dict[str, Any]) -> dict[str, bool]:
        """The paper's claims on this block as ``{statement: holds}``."""
        return {}

    def describe(self, setting: Setting, fitted: Fitted) -> dict[str, Any]:
        """Block metadata from the first trained model of the setting (classes, chance, ...)."""
        return {}

    def finish(self, report: dict[str, Any]) -> None:
        """Add whole-report extras (throughput, cross-setting averages) before writing."""

    def markdown(self, report: dict[str, Any], block: dict[str, Any]) -> list[str]:
        """The block's own tables (the harness adds header, deltas, claims and plot list)."""
        return []

    def plots(self, report: dict[str, Any], folder: Path) -> list[str]:
        """Write the paper's own plots into ``folder``; return their file names."""
        return []

    # ---------------------------------------------------------------- the harness
    def run(self) -> dict[str, Any]:
        from zoo.core.training import fit_quietly

        t_start = time.perf_counter()
        self.raw: dict[str, Any] = {}
        settings = self.settings()
        multi = len(settings) > 1
        blocks: dict[str, dict[str, Any]] = {}
        for setting in settings:
            per_row: dict[str, list[dict[str, Any]]] = {}
            meta: dict[str, dict[str, str]] = {}
            info: dict[str, Any] = dict(setting.info)
            variants = self.variants(setting)
            for seed in self.args.seeds:
                ctx = Context(self.out, setting, seed, multi)
                for v in variants:
                    where = f"{setting.name}, " if multi else ""
                    print(f"[bench {self.entry.name}] {where}seed {seed}: training {v.name} ({v.description}) ...",
                          flush=True)
                    entry = registry.get(v.entry) if v.entry else self.entry
                    ov = v.overrides(ctx) if callable(v.overrides) else list(v.overrides)
                    cli, secs, ups = fit_quietly(entry, v.config or self.config, seed, ctx.run_dir(v.name),
                                                 [*setting.overrides, *ov, *self.args.override])
                    unit = getattr(cli.model, "throughput_unit", "images")
                    fitted = Fitted(v, setting, seed, cli.model, cli.datamodule, cli.trainer, secs, ups, unit,
                                    ctx.run_dir(v.name))
                    if not info.get("_described"):
                        described = self.describe(setting, fitted)
                        info.update(described)
                        info["_described"] = bool(described)
                    rows = self.evaluate(fitted)
                    for rname, metrics in rows.items():
                        if metrics.get("train_seconds", 0.0) is None:  # an untrained row (e.g. zero-shot)
                            metrics.pop("train_seconds")
                        else:
                            metrics.setdefault("train_seconds", secs)
                            metrics.setdefault(f"train_{unit}_per_s", ups)
                        metrics["seed"] = seed
                        per_row.setdefault(rname, []).append(metrics)
                        meta.setdefault(rname, {"variant": v.name, "training": v.description})
                    print(f"[bench {self.entry.name}] {where}seed {seed}: {v.name} trained in {secs:.0f} s "
                          f"({ups:.0f} {unit}/s); " + "; ".join(self._brief(r) for r in rows.items()), flush=True)
            info.pop("_described", None)
            blocks[setting.name] = self._block(setting, per_row, meta, info)
        report = {
            "model": self.entry.name, "paper": self.entry.paper, "title": self.title,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": "python -m zoo.bench " + " ".join(getattr(self.args, "argv", None) or [self.entry.name]),
            "config": rel(self.config), "baseline_config": rel(self.baseline_config), "seeds": list(self.args.seeds),
            "conventions": self.conventions, "metrics": dict(self.metrics), "settings": blocks,
            "environment": environment(self.device),
        }
        self.finish(report)
        report["wall_time_s"] = time.perf_counter() - t_start
        return report

    def _brief(self, item: tuple[str, dict[str, Any]]) -> str:
        name, m = item
        shown = [k for k in self.metrics if isinstance(m.get(k), (int, float))][:3]
        return f"{name} " + " ".join(f"{k} {m[k]:.2f}" for k in shown)

    def _block(self, setting: Setting, per_row: dict[str, list[dict]], meta: dict[str, dict[str, str]],
               info: dict[str, Any]) -> dict[str, Any]:
        order = [r for r in self.rows(setting) if r in per_row] + [r for r in per_row if r not in self.rows(setting)]
        labels = self.rows(setting)
        methods: dict[str, Any] = {}
        for r in order:
            row = {"label": labels.get(r, r), **meta[r], **summarise(per_row[r]), "per_seed": per_row[r]}
            row.pop("seed", None), row.pop("seed_std", None)
            self.derive(row)
            methods[r] = row
        deltas = {}
        for c in self.comparisons:
            if c.method in methods and c.baseline in methods:
                a, b = methods[c.method], methods[c.baseline]
                d: dict[str, Any] = {"method": c.method, "baseline": c.baseline}
                for m in c.metrics:
                    d[m] = a[m] - b[m]
                    d[f"{m}_per_seed"] = [x[m] - y[m] for x, y in zip(a["per_seed"], b["per_seed"])]
                deltas[f"{c.method} - {c.baseline}"] = d
        block = {"name": setting.name, "label": setting.label or setting.name, **info, "methods": methods,
                 "deltas": deltas}
        block["claims"] = self.claims(setting, block)
        return block

    # ---------------------------------------------------------------- writing
    def write(self, report: dict[str, Any]) -> None:
        from zoo.common.harness.plots import plot_paired_seeds

        def fill(tmp: Path) -> None:
            pngs: list[str] = []
            multi = len(report["settings"]) > 1
            for name, block in report["settings"].items():
                for key, d in block["deltas"].items():
                    a, b = block["methods"][d["method"]], block["methods"][d["baseline"]]
                    metrics = [m for m in self.metrics if f"{m}_per_seed" in d]
                    fn = f"paired_{d['method']}_vs_{d['baseline']}" + (f"_{name}" if multi else "") + ".png"
                    plot_paired_seeds({m: ([p[m] for p in a["per_seed"]], [p[m] for p in b["per_seed"]])
                                       for m in metrics}, report["seeds"], a["label"], b["label"], tmp / fn,
                                      title=(f"{block['label']}: " if multi else "") + f"{a['label']} vs {b['label']}, per seed")
                    pngs.append(fn)
            pngs += self.plots(report, tmp)
            report["plots"] = pngs
            (tmp / "report.json").write_text(json.dumps(report, indent=2, default=float))
            (tmp / "report.md").write_text(self.render(report))

        write_folder_atomically(self.out, fill)
        print((self.out / "report.md").read_text())
        print(f"[bench {self.entry.name}] wrote {rel(self.out)}/report.md, report.json and plots")

    def render(self, r: dict[str, Any]) -> str:
        env = r["environment"]
        L = [f"# {r['title']}: {r['paper']}", "",
             f"- created {r['created']} by `{r['command']}`; wall time {r['wall_time_s'] / 60:.1f} min",
             f"- method config `{r['config']}`, baseline config `{r['baseline_config'] or '(derived)'}`; "
             f"seeds {r['seeds']}",
             f"- environment: commit `{env['git_commit']}`, {env['device_name']}, {env['precision']}, "
             f"{env['cpu_threads']} threads; torch {env['torch']}, lightning {env['lightning']}, python {env['python']}",
             f"- {r['conventions']}", ""]
        multi = len(r["settings"]) > 1
        for name, block in r["settings"].items():
            if multi:
                L += [f"## {block['label']}", ""]
            L += self.markdown(r, block)
            for key, d in block["deltas"].items():
                a, b = block["methods"][d["method"]]["label"], block["methods"][d["baseline"]]["label"]
                ms = [m for m in self.metrics if f"{m}_per_seed" in d]
                L += ["", f"Paired deltas, **{a} − {b}** (per seed: {', '.join(map(str, r['seeds']))}):", "",
                      "| metric | mean delta | per seed |", "|---|---|---|"]
                L += [f"| {m} | {d[m]:+.2f} | {', '.join(f'{x:+.2f}' for x in d[f'{m}_per_seed'])} |" for m in ms]
            if block["claims"]:
                L += ["", f"{self.claims_heading}:"] + [f"- {k}: **{'PASS' if v else 'FAIL'}**"
                                                        for k, v in block["claims"].items()]
            L.append("")
        L += self.markdown_tail(r)
        L += ["## Metrics", ""] + [f"- `{k}`: {v}" for k, v in r["metrics"].items()]
        L += ["", "Plots: " + ", ".join(f"`{p}`" for p in r.get("plots", [])), ""]
        return "\n".join(L)

    def markdown_tail(self, report: dict[str, Any]) -> list[str]:
        """Whole-report sections after the blocks (throughput, averages)."""
        return []


def main_parser(models: list[str]) -> argparse.ArgumentParser:
    """The shared options of ``python -m zoo.bench`` (each model's bench adds its own)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--config", default=None, help="method config (default: configs/<model>/default.yaml)")
    p.add_argument("--baseline-config", default=None,
                   help="baseline config (default: derived from the method config, e.g. MODE without ALPA)")
    p.add_argument("--out", default=None, help="output folder (default: bench/<model>)")
    p.add_argument("--override", action="append", default=[], metavar="ARG=V",
                   help="extra CLI override applied to every run, e.g. --override=--trainer.max_epochs=2")
    p.add_argument("--device", default=None, help="device for scoring (default: cuda if available else cpu)")
    return p


def run_bench(entry: registry.ZooEntry, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``entry``'s bench with parsed ``args`` and write its report; returns the report."""
    if not entry.bench:
        benches = [e.name for e in registry.entries() if e.bench]
        raise ZooError(f"no bench for model {entry.name!r} yet; benches: {', '.join(benches)}")
    bench = registry.import_string(entry.bench)(entry, args)
    report = bench.run()
    bench.write(report)
    return report
