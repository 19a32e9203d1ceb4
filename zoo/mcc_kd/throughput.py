"""Training tokens/s of the MCC-KD LightningModule against a bare ``transformers`` loop.

The model card's GPU goal: Lightning within 0.9x of a bare loop on the same student, batches,
optimiser and precision. Both loops run the same MCC-KD step (one forward over the 2B pair batch,
:func:`zoo.mcc_kd.losses.mcc_kd_loss`, AdamW) over the same in-memory collated batches of the
embedded world; tokens are the non-padding input tokens (as ``MCCKD.count_units``).

    python -m zoo.mcc_kd.throughput --steps 30            # CPU here; on a GPU bf16-mixed is used
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch


def _batches(dm, n: int) -> list[dict[str, torch.Tensor]]:
    out: list[dict[str, torch.Tensor]] = []
    while len(out) < n:
        out += list(dm.train_dataloader())
    return out[:n]


def lightning_vs_bare(config: str, steps: int = 30, device: str | None = None, warmup: int = 5) -> dict[str, Any]:
    """Tokens/s of both loops and their ratio (Lightning / bare) on ``config``'s student and data."""
    import lightning as L
    from torch.utils.data import DataLoader

    from callbacks.throughput import TrainThroughput
    from zoo.core import registry
    from zoo.core.training import build_cli
    from zoo.mcc_kd.losses import mcc_kd_loss

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    cli = build_cli(registry.get("mcc_kd"), ["--config", config, "--trainer.logger=false",
                                             "--trainer.enable_progress_bar=false", "--test_after_fit=false",
                                             "--run_dir=/tmp/zoo-mcc-throughput"])
    dm, model = cli.datamodule, cli.model
    dm.setup("fit")
    model._build(dm.tokenizer_dir)
    batches = _batches(dm, min(steps + warmup, 40))

    def tokens(b) -> int:
        return int(b["attention_mask"].sum())

    # bare loop: the same HF model class, loss and optimiser, no Lightning
    torch.manual_seed(0)
    bare_model = type(model)(**{k: v for k, v in model.hparams.items() if not k.startswith("_")})
    bare_model._build(dm.tokenizer_dir)
    net = bare_model.net.to(dev).train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=model.hparams.lr, weight_decay=0.0)
    n_tok, t0 = 0, 0.0
    for i in range(steps + warmup):
        b = {k: v.to(dev, non_blocking=True) for k, v in batches[i % len(batches)].items()}
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            z = net.lm(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
        nb = b["span_a"].shape[0]
        loss = mcc_kd_loss(z[:nb], b["labels"][:nb], z[nb:], b["labels"][nb:], b["span_a"], b["span_b"],
                           b["span_mask"], b["pair_valid"], alpha=model.hparams.alpha,
                           temperature=model.hparams.temperature)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if i >= warmup:
            n_tok += tokens(b)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    bare = n_tok / (time.perf_counter() - t0)

    # Lightning: the zoo's module on the same batches
    torch.manual_seed(0)
    lit = type(model)(**{k: v for k, v in model.hparams.items() if not k.startswith("_")})
    lit._build(dm.tokenizer_dir)
    meter = TrainThroughput(warmup=warmup)
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    trainer = L.Trainer(accelerator=dev.type, devices=1, precision="bf16-mixed" if bf16 else "32-true",
                        max_steps=steps + warmup, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[meter])
    trainer.fit(lit, train_dataloaders=loader)
    return {"bare_tokens_per_s": bare, "lightning_tokens_per_s": meter.per_s, "ratio": meter.per_s / bare,
            "steps": steps, "precision": "bf16-mixed" if bf16 else "32-true", "device": str(dev),
            "threads": torch.get_num_threads(), "batch_questions": int(batches[0]["span_a"].shape[0])}


def main(argv: list[str] | None = None) -> int:
    from zoo.core import registry

    p = argparse.ArgumentParser(prog="python -m zoo.mcc_kd.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(registry.get("mcc_kd").config("default")))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    r = lightning_vs_bare(a.config, a.steps, a.device)
    print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
