"""Base-to-new evaluation shared by the test stage, the bench and the zero-shot baseline."""

from __future__ import annotations

import torch
from torch import nn

from zoo.dept.torch_model import hand_prompt_features, itm_logits


@torch.no_grad()
def zero_shot(clip: nn.Module, tokenizer, dm, device: torch.device | str = "cpu") -> dict[str, float]:
    """Zero-shot CLIP with the dataset's hand prompt (``dm.template``) on each test set of ``dm``.

    Ref: CLIP zero-shot classification with CoOp's per-dataset templates (DePT, arXiv:2309.07439v2, Sec. 4.1).

    Returns:
        ``{"<set>_acc": accuracy (fraction)}`` for every ``dm.test_set_names`` (``base``, ``new``).
    """
    clip = clip.to(device).eval()
    out: dict[str, float] = {}
    for name, loader in zip(dm.test_set_names, dm.test_dataloader()):
        text = hand_prompt_features(clip, tokenizer, dm.classnames[name], dm.template)
        hits, n = 0, 0
        for batch in loader:
            x = batch["image"].to(device)
            pred = itm_logits(clip.encode_image(x), text, clip.logit_scale).argmax(1).cpu()
            hits += int((pred == batch["label"]).sum())
            n += len(pred)
        out[f"{name}_acc"] = hits / max(1, n)
    return out
