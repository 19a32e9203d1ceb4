"""MODE's ``--knn-bench``: shape parsing and the side-by-side table against faiss."""

from __future__ import annotations

import pytest
import torch

from zoo.core.errors import ZooError

# ---------------------------------------------------------------- MODE's --knn-bench (zoo/mode/bench.py)


def test_knn_bench_spec_and_table() -> None:
    from zoo.mode.bench import DEFAULT_KNN_SPEC, _knn_bench, _knn_bench_markdown, _parse_knn_spec

    assert _parse_knn_spec("60000x300000x512") == [(60000, 300000, 512, 10)]
    assert _parse_knn_spec(DEFAULT_KNN_SPEC) == [(6000, 24000, 128, 10), (6000, 300000, 128, 10),
                                                 (6000, 60000, 512, 50)]
    for bad, msg in (("60000x300000", "expected QxMxC"), ("8x8x8@0", ">= 1"), ("8x8x8@9", "larger than the bank"),
                     ("8x8x8@3,", "expected QxMxC")):
        with pytest.raises(ZooError, match=msg):
            _parse_knn_spec(bad)
    kb = _knn_bench("40x300x8@3,20x100x4", torch.device("cpu"))
    assert [r["spec"] for r in kb["shapes"]] == ["40x300x8@3", "20x100x4@10"] and kb["threads"] >= 1
    md = "\n".join(_knn_bench_markdown(kb))
    assert "| 40 × 300 × 8 | 3 | 40 |" in md and "| 20 × 100 × 4 | 10 | 20 |" in md
    assert ("zoo / faiss" in md) and md.count("\n|") == 4  # header, rule, two shapes
