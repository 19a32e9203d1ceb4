"""The training harness: LightningCLI objects built from the registry, and quiet fits for benches.

``python -m zoo.fit`` is a thin wrapper around :func:`run`; benches and the tiny-CLIP cache call
:func:`build_cli` / :func:`fit_quietly`. Each run gets its own folder ``runs/<model>/<timestamp>/``
holding ``config.yaml``, ``checkpoints/`` (best by the config's monitor, and ``last.ckpt``),
``plots/`` and the logger's files.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from zoo.core import registry
from zoo.core.errors import ZooError


def _find_last(name: str) -> Path:
    cands = sorted(Path("runs", name).glob("*/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not cands:
        raise ZooError(f"--ckpt_path last: no last.ckpt under runs/{name}/*/checkpoints/; train a run first")
    return cands[-1]


def _is_class(node: Any, suffix: str) -> bool:
    cp = getattr(node, "class_path", None) or (node.get("class_path") if isinstance(node, dict) else None)
    return isinstance(cp, str) and cp.endswith(suffix)


def _init_args(node: Any) -> Any:
    return node["init_args"] if isinstance(node, dict) else node.init_args


def build_cli(entry: registry.ZooEntry, args: list[str]):
    """Parse ``args`` for ``entry`` and instantiate model, datamodule and trainer (no fitting)."""
    import torch
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.cli import LightningCLI

    class ZooCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument(
                "--ckpt_path", type=str | None, default=None,
                help="Resume from this checkpoint, or 'last' for the newest run of this model.")
            parser.add_argument(
                "--test_after_fit", type=bool, default=True,
                help="Run the test stage on the final weights after fitting (metrics, plots).")
            parser.add_argument("--run_dir", type=str | None, default=None,
                                help="Run folder (default runs/<model>/<timestamp>).")

        def before_instantiate_classes(self) -> None:
            cfg = self.config
            tr = cfg["trainer"]
            # Precision: bf16-mixed where a GPU supports it, 32-bit otherwise, unless the user chose.
            if tr.get("precision") is None:
                on_gpu = tr.get("accelerator") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
                tr["precision"] = "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"
            ckpt = cfg.get("ckpt_path")
            if ckpt == "last":
                ckpt = str(_find_last(entry.name))
                cfg["ckpt_path"] = ckpt
                if cfg.get("run_dir") is None:
                    cfg["run_dir"] = str(Path(ckpt).parent.parent)
            elif ckpt is not None and not Path(ckpt).is_file():
                raise ZooError(f"--ckpt_path {ckpt}: file not found")
            run_dir = cfg.get("run_dir") or tr.get("default_root_dir")
            if not run_dir:
                run_dir = str(Path("runs", entry.name, time.strftime("%Y%m%d-%H%M%S")))
                while Path(run_dir).exists():  # never reuse (and overwrite) an earlier run folder
                    time.sleep(1)
                    run_dir = str(Path("runs", entry.name, time.strftime("%Y%m%d-%H%M%S")))
            cfg["run_dir"] = run_dir
            tr["default_root_dir"] = run_dir
            loggers = tr.get("logger")
            for lg in loggers if isinstance(loggers, list) else [loggers]:
                if lg is not None and not isinstance(lg, bool):
                    ia = _init_args(lg)
                    if ia.get("save_dir") in (None, ".", ""):
                        ia["save_dir"] = run_dir
            for cb in tr.get("callbacks") or []:
                if _is_class(cb, "Checkpoint"):
                    ia = _init_args(cb)
                    if ia.get("dirpath") is None:
                        ia["dirpath"] = str(Path(run_dir, "checkpoints"))

    model_cls = registry.import_string(entry.module)
    argv0, sys.argv = sys.argv, [f"python -m zoo.fit {entry.name}"]  # the CLI reads `args`, not sys.argv
    try:
        cli = _make(ZooCLI, model_cls, LightningDataModule, entry, args)
    except (ValueError, TypeError) as e:  # jsonargparse wraps a constructor's ZooError: surface its line
        zoo_err = _zoo_error_in(e)
        if zoo_err is None:
            raise
        raise zoo_err from None
    finally:
        sys.argv = argv0
    from callbacks.rng import RNGState  # lazy: callbacks stand beside the core

    if not any(isinstance(cb, RNGState) for cb in cli.trainer.callbacks):
        cli.trainer.callbacks.append(RNGState())  # exact resume: the random streams travel with the checkpoint
    return cli


def _zoo_error_in(err: BaseException) -> ZooError | None:
    """The ZooError behind ``err`` (its cause chain, or a ``- <message>`` line of a jsonargparse
    "Does not validate against any of the Union subtypes" error), if any."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, ZooError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    if "Does not validate against any of the Union subtypes" in str(err):
        for line in str(err).splitlines():
            line = line.strip()
            if line.startswith("- ") and not line.startswith("- Expected a"):
                return ZooError(line[2:])
    return None


def _make(ZooCLI, model_cls, LightningDataModule, entry, args):
    return ZooCLI(
        model_cls,
        LightningDataModule,
        subclass_mode_data=True,
        run=False,
        args=args,
        auto_configure_optimizers=False,
        seed_everything_default=0,
        parser_kwargs={"default_config_files": [str(entry.config("default"))]},
        save_config_kwargs={"overwrite": True},
    )


def run(entry: registry.ZooEntry, args: list[str]) -> dict[str, float]:
    """Fit (and by default test) ``entry`` with CLI ``args``; returns the test metrics."""
    cli = build_cli(entry, args)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    cfg = cli.config
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
        results: dict[str, float] = {}
        if cfg.get("test_after_fit") and not trainer.interrupted and not trainer.fast_dev_run:
            out = trainer.test(model, datamodule=dm, verbose=False)
            results = {k: float(v) for k, v in (out[0] if out else {}).items()}
            _print_summary(entry.name, results, trainer, cfg["run_dir"], getattr(model, "metrics_note", ""))
        return results
    finally:
        _finish_wandb()


def fit_quietly(entry: registry.ZooEntry, config: str, seed: int, run_dir: str | Path, extra: list[str]):
    """Fit ``entry`` as the benches do: ``config`` + ``extra`` overrides, seeded, no logger, no
    progress bar, no test stage, in ``run_dir``; training throughput (the model's unit per second) measured by TrainThroughput.

    Returns:
        ``(cli, seconds, units_per_s)``: the LightningCLI (model, datamodule, trainer), the
        wall time of ``trainer.fit`` and the measured training throughput.
    """
    from callbacks.throughput import TrainThroughput  # lazy: callbacks stand beside the core

    args = ["--config", config, f"--seed_everything={seed}", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--test_after_fit=false", f"--run_dir={run_dir}", *extra]
    cli = build_cli(entry, args)
    meter = TrainThroughput()
    cli.trainer.callbacks.append(meter)
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli, time.perf_counter() - t0, meter.per_s


def _print_summary(name: str, results: dict[str, float], trainer, run_dir: str, note: str = "") -> None:
    keys = [k for k in results if k.count("/") == 1]
    print(f"\n{name}: test metrics" + (f" ({note})" if note else ""))
    for k in sorted(keys):
        print(f"  {k:<24} {results[k]:.4f}")
    for ck in trainer.checkpoint_callbacks:
        if ck.monitor is None and ck.best_model_path:
            print(f"  last checkpoint: {ck.best_model_path}")
        elif ck.best_model_path:
            print(f"  best checkpoint: {ck.best_model_path} ({ck.monitor} = {float(ck.best_model_score):.4f})")
    print(f"  run folder: {run_dir}")


def _finish_wandb() -> None:
    mod = sys.modules.get("wandb")
    if mod is not None and getattr(mod, "run", None) is not None:
        mod.finish()
