"""The rationale-distillation datamodule of MCC-KD (and any CoT-distillation model).

Input: zoo records (JSONL, :mod:`datamodules.reasoning.records`): ``{"id", "question", "answer",
"rationales": [...], "kind"}``, or any distributed format :func:`datamodules.reasoning.real.load_dataset_file`
reads. Every rationale ends with its answer sentence (``Therefore, the answer is X.``).

Training modes:

- ``pairs`` (MCC-KD, and multi-rationale CE with alpha = 0): each item is one question and two
  *different* rationales drawn uniformly, fresh each epoch, as a pure function of the run's seed,
  the epoch and the question (a resumed run draws the same pairs). Questions with fewer than two
  rationales are skipped and counted (the preparation step routes them to the baseline file).
- ``single`` (Std-CoT / Fine-tune-CoT): each item is one question with its first rationale.

Tokenisation (:func:`zoo.common.lm.text.encode_pair`, the spec's causal layout):
``BOS + enc(question)`` then ``enc(rationale) + EOS``, encoded separately and concatenated; labels
are -100 on the question and padding, truncation cuts the rationale's tail to ``max_length``.
Seq2seq: the encoder reads the question, the decoder labels are ``enc(rationale) + EOS``. Labels
are stored in *label space* (``logits[:, p]`` predicts ``labels[:, p]``), and so are the answer-span
positions (:mod:`datamodules.reasoning.spans`).

Batches (training, ``pairs``): ``input_ids``/``attention_mask``/``labels`` of 2B rows (side a, then
side b), ``decoder_input_ids`` for seq2seq, ``span_a``/``span_b``/``span_mask`` (B, M) and
``pair_valid`` (B,). ``single`` batches have B rows and no span keys. Evaluation batches hold
``question``, ``answer`` (lists), ``index`` (B,) and, over the rows whose record has two gold
rationales (``pair_rows``), the pair tensors of its first two (the held-out answer-span KL).
"""

from __future__ import annotations

import hashlib
from functools import partial
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.common.sampling import SeededShuffle
from datamodules.reasoning.real import load_dataset_file
from datamodules.reasoning.spans import TargetSpans, align_pair, label_positions, target_spans
from zoo.core.errors import ZooError


@dataclass
class Side:
    """One tokenised (question, rationale) sequence."""

    input_ids: list[int]
    labels: list[int]              # label space
    decoder_input_ids: list[int] | None
    prompt_len: int
    target_ids: list[int]          # the rationale's tokens (no EOS), untruncated
    kept: int                      # rationale tokens that survived truncation
    spans: TargetSpans | None
    truncated: bool


class Encoder:
    """Tokenises (question, rationale) pairs the same way for training and evaluation.

    Args:
        tokenizer: a Hugging Face fast tokenizer (character offsets are needed for the spans).
        kind: ``"causal"`` or ``"seq2seq"``.
        max_length: the length budget of a causal sequence (prompt + target), or of the decoder.
        coords: answer-span coordinates, ``"label"`` (default) or ``"official"`` (one past).
    """

    def __init__(self, tokenizer, kind: str, max_length: int, coords: str = "label") -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ZooError(f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; MCC-KD needs character "
                           "offsets to find answer spans (save it as a PreTrainedTokenizerFast folder)")
        self.tok, self.kind, self.max_length, self.coords = tokenizer, kind, max_length, coords
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def side(self, question: str, rationale: str, where: str) -> Side:
        from zoo.common.lm.scoring import shift_for_causal
        from zoo.common.lm.text import encode_pair

        enc = encode_pair(self.tok, question, rationale, max_length=self.max_length, kind=self.kind)
        own = self.tok(rationale, add_special_tokens=False, return_offsets_mapping=True)
        target_ids, offsets = list(own["input_ids"]), [tuple(o) for o in own["offset_mapping"]]
        ids, labels, plen = list(enc["input_ids"]), list(enc["labels"]), int(enc["prompt_len"])
        if self.kind == "causal":
            if plen >= len(ids):
                raise ZooError(f"{where}: the question alone fills max_length={self.max_length} tokens")
            got = ids[plen:plen + len(target_ids)]
            labels_ls = shift_for_causal(torch.tensor([labels]))[0].tolist()
            dec = None
        else:
            got = labels[:len(target_ids)]
            labels_ls = labels
            start = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
            dec = [start] + labels[:-1]
        kept = sum(1 for a, b in zip(got, target_ids) if a == b)
        if got[:kept] != target_ids[:kept]:
            raise ZooError(f"{where}: the rationale's tokens differ when encoded alone (tokenizer is not "
                           "prefix-stable); expected encode_pair to encode the target separately")
        return Side(ids, labels_ls, dec, plen, target_ids, kept, target_spans(rationale, offsets),
                    bool(enc.get("truncated", False)))

    def pair(self, a: Side, b: Side) -> tuple[list[int], list[int]] | None:
        """Label-space span positions of a pair, or None (invalid: masked, KL = 0)."""
        got = align_pair(a.target_ids, a.spans, a.kept, b.target_ids, b.spans, b.kept)
        if got is None:
            return None
        pa = label_positions(got[0], a.prompt_len, self.kind, self.coords)
        pb = label_positions(got[1], b.prompt_len, self.kind, self.coords)
        if max(pa) >= len(a.labels) or max(pb) >= len(b.labels):  # "official" one-past slice ran off the end
            return None
        return pa, pb


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    n = max(len(r) for r in rows)
    out = torch.full((len(rows), n), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
    return out


def collate_sides(sides: Sequence[Side], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask``/``labels`` (+ ``decoder_input_ids``)."""
    ids = _pad([s.input_ids for s in sides], pad_id)
    out = {"input_ids": ids, "attention_mask": _pad([[1] * len(s.input_ids) for s in sides], 0),
           "labels": _pad([s.labels for s in sides], -100)}
    if sides[0].decoder_input_ids is not None:
        out["decoder_input_ids"] = _pad([s.decoder_input_ids for s in sides], pad_id)
    return out


def collate_pairs(pairs: Sequence[tuple[Side, Side, tuple[list[int], list[int]] | None]], pad_id: int) -> dict[str, Any]:
    """A pair batch: 2B rows (a then b) and the (B, M) span tensors."""
    out = collate_sides([p[0] for p in pairs] + [p[1] for p in pairs], pad_id)  # one padded length for a and b
    m = max([len(p[2][0]) for p in pairs if p[2] is not None] or [1])
    span_a = torch.zeros(len(pairs), m, dtype=torch.long)
    span_b = torch.zeros(len(pairs), m, dtype=torch.long)
    mask = torch.zeros(len(pairs), m, dtype=torch.bool)
    for i, p in enumerate(pairs):
        if p[2] is not None:
            k = len(p[2][0])
            span_a[i, :k], span_b[i, :k] = torch.tensor(p[2][0]), torch.tensor(p[2][1])
            mask[i, :k] = True
    out.update(span_a=span_a, span_b=span_b, span_mask=mask,
               pair_valid=torch.tensor([p[2] is not None for p in pairs], dtype=torch.bool))
    return out


def _draw_pair(n: int, seed: int, epoch: int, qid: str) -> tuple[int, int]:
    """Two distinct rationale indices in [0, n), uniform, a pure function of its arguments."""
    h = hashlib.sha256(f"{seed}:{epoch}:{qid}".encode()).digest()
    i = int.from_bytes(h[:8], "little") % n
    j = int.from_bytes(h[8:16], "little") % (n - 1)
    return i, j + (j >= i)


class EpochSampler(Sampler):
    """Shuffled question indices tagged with the epoch: yields ``(index, epoch)``.

    Lightning calls :meth:`set_epoch` before each training epoch; when something wraps the
    sampler and does not forward it (Lightning's DDP wrapper), the epoch is the number of earlier
    passes, which the datamodule saves with the checkpoint.
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator
        self.passes, self._epoch = 0, None

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self._epoch if self._epoch is not None else self.passes
        self.passes, self._epoch = epoch + 1, None
        for i in torch.randperm(self.n, generator=self.generator).tolist():
            yield i, epoch


class PairDataset(Dataset):
    """Training items: ``(index, epoch) -> (side a, side b, spans)`` or ``-> side`` (single mode)."""

    def __init__(self, records: list[dict], encoder: Encoder, mode: str, seed: int) -> None:
        self.records, self.encoder, self.mode, self.seed = records, encoder, mode, seed
        self._cache: dict[tuple[int, int], Side] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _side(self, i: int, r: int) -> Side:
        key = (i, r)
        if key not in self._cache:
            rec = self.records[i]
            self._cache[key] = self.encoder.side(rec["question"], rec["rationales"][r], f"record {rec['id']!r}")
        return self._cache[key]

    def __getitem__(self, item: tuple[int, int] | int):
        i, epoch = item if isinstance(item, tuple) else (item, 0)
        if self.mode == "single":
            return self._side(i, 0)
        ra, rb = _draw_pair(len(self.records[i]["rationales"]), self.seed, epoch, self.records[i]["id"])
        a, b = self._side(i, ra), self._side(i, rb)
        return a, b, self.encoder.pair(a, b)


class EvalDataset(Dataset):
    """Evaluation items: the question and gold answer, and the pair of its first two gold rationales."""

    def __init__(self, records: list[dict], encoder: Encoder) -> None:
        self.records, self.encoder = records, encoder

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        item: dict[str, Any] = {"question": rec["question"], "answer": rec["answer"], "index": i,
                                "kind": rec.get("kind", "number"), "pair": None}
        rats = rec.get("rationales") or []
        if len(rats) >= 2 and rats[0] != rats[1]:
            a = self.encoder.side(rec["question"], rats[0], f"record {rec['id']!r}")
            b = self.encoder.side(rec["question"], rats[1], f"record {rec['id']!r}")
            item["pair"] = (a, b, self.encoder.pair(a, b))
        return item


def collate_eval(items: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {"question": [it["question"] for it in items], "answer": [it["answer"] for it in items],
                           "kind": [it["kind"] for it in items],
                           "index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
    rows = [i for i, it in enumerate(items) if it["pair"] is not None]
    out["pair_rows"] = torch.tensor(rows, dtype=torch.long)
    if rows:
        out.update(collate_pairs([items[i]["pair"] for i in rows], pad_id))
    return out


class ReasoningDataModule(SeededShuffle, LightningDataModule):
    """Rationale files -> MCC-KD / CoT-distillation batches.

    Args:
        train: the training records (prepared rationales: ``python -m zoo.prepare mcc_kd``).
        dev: the dev records (``val/acc``); optional.
        test: test sets, name -> file (each reported as ``test/<name>/...``).
        tokenizer: a local tokenizer folder (a model folder works: the tokenizer files in it).
        mode: ``pairs`` (MCC-KD, multi-rationale CE) or ``single`` (Std-CoT, first rationale).
        lm_kind: the student's kind, ``causal`` or ``seq2seq`` (the model checks it matches).
        max_length: token budget of a training sequence.
        batch_size: questions per training batch (a pair batch runs 2x this many sequences).
        eval_batch_size: questions per evaluation batch (greedy generation).
        num_workers: DataLoader workers.
        span_coords: ``label`` (default) or ``official`` answer-span coordinates (spans module).
        eval_limit: evaluate on the first N questions of each dev/test set (None: all).
    """

    def __init__(self, train: str | None = None, dev: str | None = None, test: dict[str, str] | None = None,
                 tokenizer: str | None = None, mode: Literal["pairs", "single"] = "pairs",
                 lm_kind: Literal["causal", "seq2seq"] = "causal", max_length: int = 512, batch_size: int = 16,
                 eval_batch_size: int = 64, num_workers: int = 0, span_coords: Literal["label", "official"] = "label",
                 eval_limit: int | None = None) -> None:
        super().__init__()
        for name, v, lo in (("max_length", max_length, 8), ("batch_size", batch_size, 1),
                            ("eval_batch_size", eval_batch_size, 1), ("num_workers", num_workers, 0)):
            if not isinstance(v, int) or v < lo:
                raise ZooError(f"--data.init_args.{name}: expected an integer >= {lo}, got {v!r}")
        if eval_limit is not None and eval_limit < 1:
            raise ZooError(f"--data.init_args.eval_limit: expected an integer >= 1 or null, got {eval_limit!r}")
        if mode not in ("pairs", "single"):
            raise ZooError(f"--data.init_args.mode: expected 'pairs' or 'single', got {mode!r}")
        self.train_file, self.dev_file, self.test_files = train, dev, dict(test or {})
        self.tokenizer_dir = tokenizer
        self.mode, self.lm_kind, self.max_length = mode, lm_kind, max_length
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.span_coords, self.eval_limit = span_coords, eval_limit
        self._pair_seed: int | None = None
        self._sampler: EpochSampler | None = None
        self.skipped_single = 0

    # ------------------------------------------------------------------ helpers for subclasses
    def prepare_files(self) -> None:
        """Subclasses (embedded worlds) build their files here and set the file attributes."""

    def _records(self, path: str | None, what: str) -> list[dict]:
        if path is None:
            return []
        recs = load_dataset_file(path)
        return recs[: self.eval_limit] if (self.eval_limit and what != "train") else recs

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "_ready", False):
            return
        self.prepare_files()
        if self.tokenizer_dir is None:
            raise ZooError("--data.init_args.tokenizer: a local tokenizer folder is required for this data")
        from zoo.common.lm.loading import load_tokenizer

        self.tokenizer = load_tokenizer(self.tokenizer_dir)
        self.encoder = Encoder(self.tokenizer, self.lm_kind, self.max_length, self.span_coords)
        train = self._records(self.train_file, "train")
        if self.mode == "pairs":
            keep = [r for r in train if len(dict.fromkeys(r["rationales"])) >= 2]
            self.skipped_single = len(train) - len(keep)
            if self.skipped_single:
                warnings.warn(f"{self.train_file}: {self.skipped_single} of {len(train)} questions have fewer than two "
                              "different rationales and are skipped in pairs mode (train them with mode=single)",
                              stacklevel=2)
            train = [{**r, "rationales": list(dict.fromkeys(r["rationales"]))} for r in keep]
        else:
            keep = [r for r in train if r["rationales"]]
            self.skipped_single = len(train) - len(keep)
            train = keep
        if stage in (None, "fit") and self.train_file is not None and not train:
            raise ZooError(f"{self.train_file}: no usable training questions (mode={self.mode})")
        self.train_records = train
        self.dev_records = self._records(self.dev_file, "dev")
        self.test_records = {name: self._records(p, "test") for name, p in self.test_files.items()}
        if self._pair_seed is None:
            self._pair_seed = int(torch.initial_seed()) % (2**62)
        self._ready = True

    @property
    def test_set_names(self) -> list[str]:
        return list(self.test_files)

    def train_dataloader(self) -> DataLoader:
        ds = PairDataset(self.train_records, self.encoder, self.mode, self._pair_seed)
        if self._sampler is None:
            self._sampler = EpochSampler(len(ds), self.train_generator())
            self._sampler.passes = getattr(self, "_passes_to_restore", 0)
        pad = self.encoder.pad_id
        collate = partial(collate_sides if self.mode == "single" else collate_pairs, pad_id=pad)
        return DataLoader(ds, batch_size=self.batch_size, sampler=self._sampler, collate_fn=collate,
                          num_workers=self.num_workers, drop_last=False)

    def _eval_loader(self, recs: list[dict]) -> DataLoader:
        pad = self.encoder.pad_id
        return DataLoader(EvalDataset(recs, self.encoder), batch_size=self.eval_batch_size, shuffle=False,
                          collate_fn=partial(collate_eval, pad_id=pad), num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.dev_records) if self.dev_records else []

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(r) for r in self.test_records.values()]

    # ------------------------------------------------------------------ exact resume
    def state_dict(self) -> dict[str, Any]:
        st = super().state_dict()
        st["pair_seed"] = self._pair_seed
        st["sampler_passes"] = self._sampler.passes if self._sampler is not None else 0
        return st

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._pair_seed = state_dict.get("pair_seed", self._pair_seed)
        self._passes_to_restore = int(state_dict.get("sampler_passes", 0))
        if self._sampler is not None:
            self._sampler.passes = self._passes_to_restore

    def training_questions(self) -> int:
        return len(self.train_records)
