"""``python -m zoo.predict CKPT IMAGE_OR_FOLDER... [--batch-size N] [--json]``.

Loads any zoo checkpoint with ``zoo.load`` (nothing but the checkpoint is needed), preprocesses
the images exactly like the test stage (the transform spec stored in the checkpoint), and prints
one line per image. MODE: the predicted class, the OOD score S (higher = more ID) and the ID/OOD
decision at the threshold fixed on ID validation data at 95% TPR. DePT/CoOp: the class and its
probability, against the training classes (DePT: fused ITM + CAT head) or, with
``--classes "a,b,c"``, against any class names (ITM only, prompts built with the learned context).
"""

from __future__ import annotations

import argparse
import inspect
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
    p.add_argument("--classes", default=None, metavar='"a,b,c"',
                   help="prompt-tuning models (dept, coop): classify against these class names (comma-separated; "
                        "ITM only with the learned context) instead of the training classes")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    args = p.parse_args(argv)
    rows: list[dict] = []
    legend: list[str] = []
    rc = run_cli(lambda: rows.extend(predict(args.ckpt, args.images, args.batch_size, args.classes, legend)))
    if rc:
        return rc
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    cols = [k for k in rows[0] if k != "image"]
    w = max(len(r["image"]) for r in rows)
    widths = {c: max(len(c), *(len(_cell(r[c])) for r in rows)) for c in cols}
    print(f"{'image':<{w}}  " + "  ".join(f"{c:<{widths[c]}}" for c in cols))
    for r in rows:
        print(f"{r['image']:<{w}}  " + "  ".join(f"{_cell(r[c]):<{widths[c]}}" for c in cols))
    if legend:
        print(legend[0])
    return 0


def _cell(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def predict(ckpt: str, images: list[str], batch_size: int = 64, classes: str | None = None,
            legend: list[str] | None = None) -> list[dict]:
    """Predictions for ``images`` (files or folders) with the model in ``ckpt``.

    Each model supplies ``predict_rows(images, **kw) -> list[dict]`` (one dict per image) and
    ``predict_legend(**kw) -> str``; ``classes`` (comma-separated names) is passed to models that
    classify against free-form class names.
    """
    import torch

    import zoo
    from datamodules.ood.base import eval_transform
    from datamodules.ood.real import load_rgb

    files = collect_images(images)
    model = zoo.load(ckpt)
    spec = model.transform_spec
    if not spec:
        raise ZooError(f"{ckpt}: checkpoint has no transform spec (was it trained with python -m zoo.fit?)")
    if not hasattr(model, "predict_rows"):
        raise ZooError(f"{ckpt}: model {type(model).__name__} has no image prediction")
    kw = {}
    if classes is not None:
        if "classes" not in inspect.signature(model.predict_rows).parameters:
            raise ZooError(f"--classes: model {model.zoo_name!r} classifies only its training classes")
        from datamodules.fewshot.real import class_names_from_arg

        kw["classes"] = class_names_from_arg(classes)
    tf = eval_transform(spec)
    rows = []
    for i in range(0, len(files), batch_size):
        chunk = files[i:i + batch_size]
        x = torch.stack([tf(load_rgb(f)) for f in chunk])
        for f, row in zip(chunk, model.predict_rows(x, **kw)):
            rows.append({"image": str(f), **row})
    if legend is not None:
        legend.append(model.predict_legend(**kw))
    return rows


if __name__ == "__main__":
    sys.exit(main())
