"""Feature extraction and OOD scoring for MODE and its KNN baseline (shared by the LightningModule,
``zoo.predict`` and ``zoo.bench``).

Ref: MODE, arXiv:2308.10239v1, Sec. 3.3 (CSD); Sun et al., ICML'22 (KNN). Features are taken in
fp32 with BN in eval mode (spec: "CSD test-time procedure", step 1), autocast disabled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from zoo.mode.torch_model import csd_score, knn_score


@dataclass
class Features:
    """Region features of a set of images.

    Attributes:
        regions: (N, 6, C) float32, each region L2-normalised (q00, q01, q10, q11, global, centre).
        logits: (N, K) float32 CE-head logits.
        labels: (N,) int64 (-1 for OOD).
    """

    regions: Tensor
    logits: Tensor
    labels: Tensor

    @property
    def global_(self) -> Tensor:
        return self.regions[:, 4]

    @classmethod
    def from_output(cls, out: dict[str, Tensor], labels: Tensor) -> "Features":
        """Features of one :class:`MODEModel` output: unit-norm fp32 regions and logits, on CPU."""
        return cls(F.normalize(out["regions"].float(), dim=-1).cpu(), out["logits"].float().cpu(), labels.cpu())

    @classmethod
    def cat(cls, parts: list["Features"]) -> "Features":
        return cls(torch.cat([f.regions for f in parts]), torch.cat([f.logits for f in parts]),
                   torch.cat([f.labels for f in parts]))


@torch.no_grad()
def extract(net: torch.nn.Module, loader, device: torch.device | str = "cpu", progress: bool = False,
            desc: str = "features") -> Features:
    """Run ``net`` (a :class:`MODEModel`) over ``loader`` in eval mode and fp32."""
    was_training = net.training
    net.eval()
    dev = torch.device(device)
    parts = []
    try:
        with torch.autocast(device_type=dev.type, enabled=False):
            for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
                out = net(batch["image"].to(dev, non_blocking=True).float())
                parts.append(Features.from_output(out, batch["label"]))
    finally:
        net.train(was_training)
    return Features.cat(parts)


def score(method: str, feats: Features, bank: Tensor, k: int, device: torch.device | str = "cpu",
          chunk_size: int = 1024, precision: str = "fp32", progress: bool = False) -> Tensor:
    """OOD score S (higher = more ID) of every image.

    Args:
        method: ``csd`` (max over the 6 regions of -d_k against the pooled 6N-region bank) or
            ``knn`` (global feature, -d_k against the N global bank rows: the baseline).
        feats: features of the images to score.
        bank: (M, 6, C) unit-norm region bank of the ID training images (any float dtype).
        k: the k of the k-th nearest neighbour.
    """
    dev = torch.device(device)
    kw = dict(chunk_size=chunk_size, device=dev, precision=precision, progress=progress)
    if method == "csd":
        return csd_score(feats.regions.to(dev), bank.reshape(-1, bank.shape[-1]), k=k, **kw).cpu()
    if method == "knn":
        return knn_score(feats.global_.to(dev), bank[:, 4], k=k, **kw).cpu()
    raise ValueError(f"unknown score {method!r}; expected 'csd' or 'knn'")


def timed_score(method: str, feats: Features, bank: Tensor, k: int, **kw) -> tuple[Tensor, float]:
    """:func:`score` plus its throughput in region-queries per second (CSD: 6 per image)."""
    dev = torch.device(kw.get("device", "cpu"))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    s = score(method, feats, bank, k, **kw)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t0
    nq = feats.regions.shape[0] * (6 if method == "csd" else 1)
    return s, nq / max(dt, 1e-9)
