"""``python -m zoo.predict CKPT INPUT... [--batch-size N] [--json] [model options]``.

Loads any zoo checkpoint with ``zoo.load`` (nothing but the checkpoint is needed) and prints one
line per input. What an input is depends on the model's input contract (stored in the
checkpoint): image models take image files or folders (searched recursively) and preprocess them
exactly like the test stage; text models take texts, or ``@file.txt`` for one text per line.
Each model adds its own options (``python -m zoo.predict CKPT --help`` lists them) and supplies
its own rows: MODE prints the class, the OOD score S (higher = more ID) and the ID/OOD decision;
DePT/CoOp the class and its probability (``--classes "a,b,c"`` classifies against any names).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from zoo.core.errors import ZooError, run_cli

GENERIC = ("ckpt", "inputs", "batch_size", "json")


def _parser(model_cls: Any = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.predict", description=__doc__.split("\n\n")[1])
    p.add_argument("ckpt", help="a checkpoint written by python -m zoo.fit")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image models: image files or folders; text models: texts, or @FILE for one text per line")
    p.add_argument("--batch-size", type=int, default=64, help="inputs per forward pass (default 64)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    if model_cls is not None:
        model_cls.add_predict_arguments(p.add_argument_group(f"options of the {model_cls.zoo_name!r} model"))
    else:
        p.epilog = "Model-specific options: python -m zoo.predict CKPT --help"
    return p


def collect_images(paths: list[str]) -> list[Path]:
    """Files as given, folders expanded recursively to their images (sorted)."""
    from datamodules.common.images import IMAGE_EXTENSIONS, list_images

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [p / r for r in list_images(p)]
            if not found:
                raise ZooError(f"{p}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ZooError(f"{p}: no such file or folder")
    return out


def collect_texts(args: list[str]) -> list[str]:
    """Texts as given; ``@FILE`` expands to the file's non-empty lines."""
    out: list[str] = []
    for a in args:
        if a.startswith("@"):
            f = Path(a[1:])
            if not f.is_file():
                raise ZooError(f"{a}: no such file (texts are given as arguments or as @FILE, one per line)")
            out += [ln for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
        else:
            out.append(a)
    if not out:
        raise ZooError("no input texts given")
    return out


def predict(ckpt: str, inputs: list[str], batch_size: int = 64, model: Any = None,
            **options: Any) -> tuple[list[dict], str]:
    """Rows (one dict per input, in input order) and the legend line of ``model.predict_legend``.

    The model's ``predict_rows(batches, **options)`` consumes an iterator of batches (image
    tensors or lists of strings) and yields one row per input, so per-call work (class text
    features, a prompt prefix) is done once, not once per batch.
    """
    import zoo

    if batch_size < 1:
        raise ZooError(f"--batch-size must be >= 1, got {batch_size}")
    model = model if model is not None else zoo.load(ckpt)
    if model.input_kind == "image":
        import torch

        from datamodules.common.images import load_rgb
        from datamodules.common.transforms import eval_transform

        if not inputs:
            raise ZooError("no input images given")
        names = collect_images(inputs)
        if not model.transform_spec:
            raise ZooError(f"{ckpt}: checkpoint has no image transform (was it trained with python -m zoo.fit?)")
        tf = eval_transform(model.transform_spec)

        def batches() -> Iterator[Any]:
            for i in range(0, len(names), batch_size):
                yield torch.stack([tf(load_rgb(f)) for f in names[i:i + batch_size]])
        labels = [str(f) for f in names]
    elif model.input_kind == "text":
        texts = collect_texts(list(inputs) + model.predict_inputs(options))

        def batches() -> Iterator[Any]:
            for i in range(0, len(texts), batch_size):
                yield texts[i:i + batch_size]
        labels = texts
    else:
        raise ZooError(f"{ckpt}: model input kind {model.input_kind!r} has no prediction CLI")
    rows = [{"input": lab, **row} for lab, row in zip(labels, model.predict_rows(batches(), **options))]
    if len(rows) != len(labels):
        raise ZooError(f"{ckpt}: the model returned {len(rows)} rows for {len(labels)} inputs")
    return rows, model.predict_legend(**options)


def _run(argv: list[str], out: list) -> None:
    import zoo

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("ckpt", nargs="?")
    known, _ = pre.parse_known_args(argv)
    model = None
    if known.ckpt and not known.ckpt.startswith("-") and Path(known.ckpt).is_file():
        model = zoo.load(known.ckpt)
    args = _parser(type(model) if model is not None else None).parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in GENERIC}
    out.append(predict(args.ckpt, args.inputs, args.batch_size, model=model, **options))
    out.append(args.json)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    out: list = []
    rc = run_cli(_run, argv, out)
    if rc:
        return rc
    (rows, legend), as_json = out
    if as_json:
        for r in rows:
            print(json.dumps(r))
        return 0
    cols = [k for k in rows[0] if k != "input"]
    w = max(len("input"), *(len(r["input"]) for r in rows))
    widths = {c: max(len(c), *(len(_cell(r[c])) for r in rows)) for c in cols}
    print(f"{'input':<{w}}  " + "  ".join(f"{c:<{widths[c]}}" for c in cols))
    for r in rows:
        print(f"{r['input']:<{w}}  " + "  ".join(f"{_cell(r[c]):<{widths[c]}}" for c in cols))
    if legend:
        print(legend)
    return 0


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
