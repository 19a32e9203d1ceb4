"""One way to train a registered model's tiny config in tests (no logger, CPU, own run folder)."""

from __future__ import annotations

from pathlib import Path

from zoo.core import registry
from zoo.core.training import build_cli


def tiny_config(name: str) -> str:
    return str(registry.get(name).config("tiny"))


def fit_tiny(name: str, run_dir: Path, *extra: str):
    """``python -m zoo.fit <name> --config configs/<name>/tiny.yaml`` without the test stage;
    returns the LightningCLI (model, datamodule, trainer)."""
    cli = build_cli(registry.get(name), ["--config", tiny_config(name), f"--run_dir={run_dir}", *extra])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli
