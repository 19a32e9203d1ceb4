"""``python -m zoo.predict CKPT IMAGE_OR_FOLDER... [--batch-size N] [--json]``.

Loads any zoo checkpoint with ``zoo.load`` (nothing but the checkpoint is needed), preprocesses
the images exactly like the test stage (the transform spec stored in the checkpoint), and prints
one line per image. For MODE: the predicted class, the OOD score S (higher = more ID) and the
ID/OOD decision at the threshold fixed on ID validation data at 95% TPR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zoo.common.errors import ZooError, run_cli

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def collect_images(paths: list[str]) -> list[Path]:
    """Files as given, folders expanded recursively to their images (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())
            if not found:
                raise ZooError(f"{p}: folder has no images ({', '.join(sorted(IMAGE_EXTS))})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ZooError(f"{p}: no such file or folder")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.predict", description=__doc__.split("\n\n")[1])
    p.add_argument("ckpt", help="a checkpoint written by python -m zoo.fit")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    args = p.parse_args(argv)
    rows: list[dict] = []
    rc = run_cli(lambda: rows.extend(predict(args.ckpt, args.images, args.batch_size)))
    if rc:
        return rc
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        w = max(len(r["image"]) for r in rows)
        print(f"{'image':<{w}}  {'class':<12} {'score':>8}  decision")
        for r in rows:
            print(f"{r['image']:<{w}}  {r['class']:<12} {r['score']:>8.4f}  {r['decision']}")
        print(f"(score: higher = more ID; ID if score >= {rows[0]['threshold']:.4f}, the 95%-TPR threshold "
              "on ID validation data)")
    return 0


def predict(ckpt: str, images: list[str], batch_size: int = 64) -> list[dict]:
    """Predictions for ``images`` (files or folders) with the model in ``ckpt``."""
    import torch

    import zoo
    from datamodules.ood.base import eval_transform
    from datamodules.ood.real import load_rgb

    files = collect_images(images)
    model = zoo.load(ckpt)
    spec = model.transform_spec
    if not spec:
        raise ZooError(f"{ckpt}: checkpoint has no transform spec (was it trained with python -m zoo.fit?)")
    if not hasattr(model, "predict_images"):
        raise ZooError(f"{ckpt}: model {type(model).__name__} has no image prediction")
    tf = eval_transform(spec)
    classes = spec.get("classes") or []
    rows = []
    for i in range(0, len(files), batch_size):
        chunk = files[i:i + batch_size]
        x = torch.stack([tf(load_rgb(f)) for f in chunk])
        out = model.predict_images(x)
        for f, c, s, d in zip(chunk, out["pred"].tolist(), out["score"].tolist(), out["is_id"].tolist()):
            rows.append({"image": str(f), "class": classes[c] if c < len(classes) else str(c), "score": s,
                         "decision": "ID" if d else "OOD", "threshold": float(model.threshold)})
    return rows


if __name__ == "__main__":
    sys.exit(main())
