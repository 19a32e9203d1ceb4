"""Vision-encoder speed of the text-aware patch detector (PTA spec, "Speed protocol").

Same weights, batch, device and precision; only the keep ratio r changes (r = 1 = the full
sequence). Timed: ViT blocks 1..L plus the TPD (scores, top-k, fusion) for one text per image,
the way a retrieval candidate pair runs it; the no-TPD baseline is blocks 1..L alone. GPU: 20
warm-up iterations, ``torch.cuda.synchronize``, median of 50; CPU: fixed threads, median.

Analytic MACs per block: ``n * 12 D^2 + 2 n^2 D`` (qkv + projection + 4x MLP, plus attention)
with n = N + 1 up to block k and K + 2 after it, plus the TPD MLP ``N (2D * D/2 + D/2)``; the ideal
ratio is ``MACs(no TPD) / MACs(r)``.

    python -m zoo.pta.speed --vit vit_base_patch16_224 --image-size 224 --after 4 --device cuda \
        --precision bf16 --batch 64          # the GPU check of the issue (random weights)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from typing import Any

import torch

from zoo.core.errors import ZooError, run_cli
from zoo.pta.torch_model import PatchDetector, keep_count, select_tokens


def block_macs(n: int, d: int) -> int:
    """MACs of one ViT block on n tokens of width d: ``n 12 d^2 + 2 n^2 d``."""
    return n * 12 * d * d + 2 * n * n * d


def encoder_macs(n_patches: int, d: int, depth: int, after: int, r: float | None) -> int:
    """MACs of blocks 1..L (+ the TPD MLP when ``r`` is given; r = None is the no-TPD baseline)."""
    pre = after * block_macs(n_patches + 1, d)
    if r is None:
        return pre + (depth - after) * block_macs(n_patches + 1, d)
    k = keep_count(n_patches, r)
    n_after = n_patches + 1 if k >= n_patches else k + 2
    tpd = n_patches * (2 * d * (d // 2) + d // 2)
    return pre + tpd + (depth - after) * block_macs(n_after, d)


def _timer(device: torch.device, fn, warmup: int, iters: int) -> float:
    """Median seconds of ``fn()``."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def vision_speed(vit: torch.nn.Module, tpd: PatchDetector, text_dim: int, after: int, ratios: list[float],
                 batch: int = 64, device: str = "cpu", precision: str = "32", warmup: int | None = None,
                 iters: int | None = None) -> dict[str, Any]:
    """Images/s of the encoder with the TPD at each r and without it, and the analytic ratios.

    Returns:
        ``{"baseline": {...}, "r=<r>": {"images_per_s", "speedup", "ideal", "of_ideal", "macs"}}``;
        speedup = t_baseline / t_r, ideal = MACs ratio, of_ideal = speedup / ideal.
    """
    dev = torch.device(device)
    vit, tpd = vit.to(dev).eval(), tpd.to(dev).eval()
    warmup = warmup if warmup is not None else (20 if dev.type == "cuda" else 3)
    iters = iters if iters is not None else (50 if dev.type == "cuda" else 10)
    size = vit.patch_embed.img_size
    x0 = torch.randn(batch, 3, *size, device=dev)
    t_cls = torch.randn(batch, text_dim, device=dev)
    n, d, depth = vit.patch_embed.num_patches, vit.embed_dim, len(vit.blocks)
    ctx = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())

    def prefix():
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x0))))
        for blk in vit.blocks[:after]:
            x = blk(x)
        return x

    def tail(x):
        for blk in vit.blocks[after:]:
            x = blk(x)
        return vit.norm(x)

    def base():
        with ctx:
            return tail(prefix())

    def pruned(k):
        def f():
            with ctx:
                x = prefix()
                tokens, _ = select_tokens(x, tpd(x[:, 1:], t_cls), k)
                return tail(tokens)
        return f

    t_base = _timer(dev, base, warmup, iters)
    m_base = encoder_macs(n, d, depth, after, None)
    out: dict[str, Any] = {"baseline": {"images_per_s": batch / t_base, "macs": m_base}}
    for r in ratios:
        t = _timer(dev, pruned(keep_count(n, r)), warmup, iters)
        m = encoder_macs(n, d, depth, after, r)
        sp, ideal = t_base / t, m_base / m
        out[f"r={r}"] = {"images_per_s": batch / t, "speedup": sp, "ideal": ideal, "of_ideal": sp / ideal, "macs": m,
                         "kept": keep_count(n, r)}
    out["conditions"] = {"device": str(dev), "precision": precision, "batch": batch, "tokens": n + 1, "width": d,
                         "depth": depth, "after": after, "threads": torch.get_num_threads(), "iters": iters,
                         "warmup": warmup}
    return out


def main(argv: list[str] | None = None) -> None:
    import timm

    p = argparse.ArgumentParser(prog="python -m zoo.pta.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--vit", default="vit_base_patch16_224", help="timm ViT name (random weights)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--after", type=int, default=4, help="TPD after this block")
    p.add_argument("--ratios", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["32", "bf16"], default="32")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (fixed)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        vit = timm.create_model(a.vit, pretrained=False, num_classes=0, img_size=a.image_size)
    except Exception as e:  # noqa: BLE001
        raise ZooError(f"--vit {a.vit!r}: timm cannot build it ({str(e).splitlines()[0][:120]})") from e
    if not 1 <= a.after < len(vit.blocks):
        raise ZooError(f"--after must be in 1..{len(vit.blocks) - 1}, got {a.after}")
    tpd = PatchDetector(vit.embed_dim, vit.embed_dim)
    print(json.dumps(vision_speed(vit, tpd, vit.embed_dim, a.after, a.ratios, a.batch, a.device, a.precision),
                     indent=2))


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
