"""Image transforms and in-memory image datasets shared by every data family.

The eval transform is built from a *spec* dict stored in every vision checkpoint (its input
contract), so that ``zoo.predict`` preprocesses exactly like the test stage.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

Augment = Literal["none", "ce", "contrastive"]


def eval_transform(spec: dict[str, Any]) -> Callable:
    """Eval transform from a spec dict: Resize(resize) -> CenterCrop(crop) -> float -> Normalize.

    The spec is stored in every checkpoint so that ``zoo.predict`` preprocesses exactly like test.
    An optional ``spec["interpolation"]`` (``"bilinear"``, the default, or ``"bicubic"``) sets the
    resize interpolation.
    """
    modes = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}
    interpolation = spec.get("interpolation", "bilinear")
    if interpolation not in modes:
        raise ValueError(f"eval transform spec: interpolation must be one of {sorted(modes)}, got {interpolation!r}")
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(spec["resize"], interpolation=modes[interpolation], antialias=True),
        v2.CenterCrop(spec["crop"]),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(spec["mean"], spec["std"]),
    ])


def train_transform(size: int, augment: Augment, mean: Sequence[float], std: Sequence[float],
                    crop_scale: tuple[float, float] = (0.2, 1.0), crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    hflip: bool = True) -> Callable:
    """Training augmentation of the spec (official SupContrast/MODE recipe).

    ``ce``: RandomResizedCrop + HFlip. ``contrastive``: additionally ColorJitter(.4,.4,.4,.1) p=.8
    and Grayscale p=.2. ``none``: resize only.
    """
    ops: list = [v2.ToImage()]
    if augment == "none":
        ops.append(v2.Resize((size, size), antialias=True))
    else:
        ops.append(v2.RandomResizedCrop(size, scale=tuple(crop_scale), ratio=tuple(crop_ratio), antialias=True))
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
        if augment == "contrastive":
            ops += [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def fewshot_train_transform(size: int, crop_scale: tuple[float, float] = (0.08, 1.0), hflip: bool = True,
                            mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> Callable:
    """CoOp's training augmentation: bicubic RandomResizedCrop, horizontal flip, CLIP normalisation.

    Args:
        size: output side.
        crop_scale: RandomResizedCrop area range.
        hflip: random horizontal flips.
        mean, std: normalisation statistics.

    Returns:
        A transform from a PIL image (or uint8 tensor) to a float ``[3, size, size]`` tensor.
    """
    ops: list = [v2.ToImage(),
                 v2.RandomResizedCrop(size, scale=tuple(crop_scale), interpolation=v2.InterpolationMode.BICUBIC,
                                      antialias=True)]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def fewshot_eval_spec(size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> dict[str, Any]:
    """The eval-transform spec (bicubic resize to ``size``, centre crop ``size``, CLIP normalisation)."""
    return {"resize": size, "crop": size, "mean": list(mean), "std": list(std), "interpolation": "bicubic"}


class ArrayDataset(Dataset):
    """uint8 (N,H,W,3) images + int labels -> ``{"image": uint8 CHW tensor, "label": int}``."""

    def __init__(self, images, labels) -> None:
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "label": int(self.labels[i])}


class TransformedArrays(Dataset):
    """Already-transformed float images (N,3,H,W) + labels, yielding the batch schema."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "label": int(self.labels[i])}
