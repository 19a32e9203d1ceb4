"""zoo.core: cache root, atomic writes, the warm-up + cosine rule, the tokenizer input contract."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from zoo.core.contract import fingerprint_folder, restore_tokenizer, tokenizer_contract
from zoo.core.errors import ZooError
from zoo.core.io import atomic_save, atomic_write, atomic_write_text, build_folder_atomically, cache_root, \
    write_folder_atomically
from zoo.core.schedule import warmup_cosine


def test_cache_root_ignores_an_empty_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", "")
    assert cache_root() == Path.home() / ".cache" / "zoo"
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    assert cache_root() == tmp_path


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "f.txt", "old")
    with pytest.raises(RuntimeError):
        atomic_write(p, lambda f: (f.write(b"partial"), (_ for _ in ()).throw(RuntimeError("boom"))))
    assert p.read_text() == "old" and sorted(x.name for x in p.parent.iterdir()) == ["f.txt"]
    atomic_save({"x": torch.ones(2)}, tmp_path / "t.pt")
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True)["x"], torch.ones(2))


def test_folder_writes_are_all_or_nothing(tmp_path):
    out = tmp_path / "report"
    write_folder_atomically(out, lambda d: (d / "report.md").write_text("v1"))

    def fail(d: Path) -> None:
        (d / "report.md").write_text("partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_folder_atomically(out, fail)
    assert (out / "report.md").read_text() == "v1" and [p.name for p in out.iterdir()] == ["report.md"]


def test_build_folder_rebuilds_an_incomplete_one(tmp_path):
    root = tmp_path / "world"
    root.mkdir()
    (root / "half").write_text("left by a killed run")
    calls = []

    def build(d: Path) -> None:
        calls.append(d)
        (d / "done").write_text("ok")

    def done(r: Path) -> bool:
        return (r / "done").is_file()

    assert build_folder_atomically(root, build, done) == root
    assert sorted(p.name for p in root.iterdir()) == ["done"]
    build_folder_atomically(root, build, done)
    assert len(calls) == 1  # complete: not rebuilt


def test_warmup_cosine_by_hand():
    # plain cosine over 10 epochs: half-way is the mean of base and eta_min
    assert warmup_cosine(5, 10, base=1.0, eta_min=0.2) == pytest.approx(0.6)
    assert warmup_cosine(0, 10) == 1.0 and warmup_cosine(10, 10) == pytest.approx(0.0)
    # DePT/Dassl: constant 1e-5 in epoch 0, then 1/2 (1 + cos(pi (e - 1) / 10)); e = 1 -> 1, e = 6 -> 1/2
    kw = dict(warmup_kind="constant", warmup_start=1e-5, cosine_length=10)
    assert warmup_cosine(0, 10, 1, **kw) == 1e-5
    assert warmup_cosine(1, 10, 1, **kw) == 1.0 and warmup_cosine(6, 10, 1, **kw) == pytest.approx(0.5)
    # CLIP: (t + 1) / warmup, then cosine over the rest: 4 warm-up steps of 20
    assert [warmup_cosine(t, 20, 4, warmup_inclusive=True) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(12, 20, 4, warmup_inclusive=True) == pytest.approx(0.5)
    # MODE/SupContrast: the linear warm-up bends onto a cosine that starts at 0
    target = 0.1 * (1 + math.cos(math.pi * 1 / 10)) / 2
    got = warmup_cosine(0.5, 10, 1, base=0.1, warmup_start=0.01, cosine_from="start")
    assert got == pytest.approx(0.01 + 0.5 * (target - 0.01))


def _tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "tokenizer.json").write_text('{"model": "word-level"}')
    (folder / "tokenizer_config.json").write_text('{"pad_token": "<pad>"}')
    return folder


def test_embedded_tokenizer_survives_a_weights_only_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    tok = _tokenizer(tmp_path / "tok")
    contract = tokenizer_contract(tok)
    assert contract["kind"] == "text" and set(contract["tokenizer"]["files"]) == {"tokenizer.json", "tokenizer_config.json"}
    torch.save({"zoo": {"inputs": contract}}, tmp_path / "c.ckpt")
    back = torch.load(tmp_path / "c.ckpt", weights_only=True)["zoo"]["inputs"]
    folder = restore_tokenizer(back)
    assert fingerprint_folder(folder) == fingerprint_folder(tok) == contract["tokenizer"]["fingerprint"]


def test_referenced_tokenizer_is_checked_against_its_fingerprint(tmp_path):
    tok = _tokenizer(tmp_path / "tok")
    contract = tokenizer_contract(tok, embed=False)
    assert restore_tokenizer(contract) == tok.resolve()
    (tok / "tokenizer.json").write_text('{"model": "changed"}')
    with pytest.raises(ZooError, match="differs from the one the checkpoint was trained with"):
        restore_tokenizer(contract)
    with pytest.raises(ZooError, match="tokenizer folder not found"):
        tokenizer_contract(tmp_path / "missing")
