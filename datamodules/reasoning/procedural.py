"""The embedded arithmetic world as MCC-KD data (spec mcckd.md, "Embedded default").

:class:`ArithWorld` builds (once, cached by its config) the world of
:mod:`datamodules.reasoning.world`: a simulated teacher's six candidate rationales per training
question, ID dev/test, OOD-steps and OOD-numbers splits with two gold rationales each. Then, as a
user would with ``python -m zoo.prepare mcc_kd``, it filters the candidates for correctness,
drops duplicates and keeps K diverse ones (:func:`datamodules.reasoning.rationales.prepare_rationales`),
and trains a word-level tokenizer on the world's text, saved as a ``PreTrainedTokenizerFast``
folder (the same local-path loader reads it as a real model's tokenizer). All three products sit
in the world's cache folder.

Training files by mode: ``pairs`` trains on the questions with at least two kept rationales;
``single`` (Std-CoT) on those plus the baseline-only questions, with the first kept rationale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from datamodules.reasoning.base import ReasoningDataModule
from zoo.core.errors import ZooError
from zoo.core.io import build_folder_atomically

#: held-out sets reported at test time (dev is the validation set).
TEST_SETS = ("test", "ood_steps", "ood_numbers")


class ArithWorld(ReasoningDataModule):
    """MCC-KD's embedded world.

    Args:
        world: overrides of :class:`datamodules.reasoning.world.ArithWorldConfig` (sizes, seed,
            op counts, value ranges, teacher slips, style weights).
        k: rationales kept per question (the spec's K = 3).
        select: ``jaccard`` (diverse, MCC-KD) or ``random`` (the no-diversity baseline) or ``first``.
        tau: optional Jaccard ceiling of the diversity filter.
        ngram: word n-gram length of the Jaccard similarity.
        test_sets: which held-out splits the test stage reports.
        cache_dir: cache root (default ``$ZOO_CACHE`` or ``~/.cache/zoo``).
        tokenizer: a local tokenizer folder to use instead of the world's own (e.g. a student
            model folder whose tokenizer covers the world's words).
        **kwargs: :class:`ReasoningDataModule` arguments (mode, batch sizes, max_length, ...).
    """

    def __init__(self, world: dict[str, Any] | None = None, k: int = 3,
                 select: Literal["jaccard", "random", "first"] = "jaccard", tau: float | None = None,
                 ngram: int = 3, test_sets: list[str] | None = None, cache_dir: str | None = None,
                 tokenizer: str | None = None,
                 mode: Literal["pairs", "single"] = "pairs", lm_kind: Literal["causal", "seq2seq"] = "causal",
                 max_length: int = 320, batch_size: int = 16, eval_batch_size: int = 100, num_workers: int = 0,
                 span_coords: Literal["label", "official"] = "label", eval_limit: int | None = None) -> None:
        super().__init__(tokenizer=tokenizer, mode=mode, lm_kind=lm_kind, max_length=max_length, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers, span_coords=span_coords,
                         eval_limit=eval_limit)
        from datamodules.reasoning.world import ArithWorldConfig

        try:
            self.world_cfg = ArithWorldConfig(**(world or {}))
        except TypeError as e:
            raise ZooError(f"--data.init_args.world: {e}") from None
        if not isinstance(k, int) or k < 2:
            raise ZooError(f"--data.init_args.k: expected an integer >= 2, got {k!r}")
        if ngram < 1:
            raise ZooError(f"--data.init_args.ngram: expected an integer >= 1, got {ngram!r}")
        if tau is not None and not 0 < tau <= 1:
            raise ZooError(f"--data.init_args.tau: expected a value in (0, 1] or null, got {tau!r}")
        if select not in ("jaccard", "random", "first"):
            raise ZooError(f"--data.init_args.select: expected jaccard, random or first, got {select!r}")
        sets = list(test_sets) if test_sets is not None else list(TEST_SETS)
        bad = [s for s in sets if s not in TEST_SETS + ("dev",)]
        if bad:
            raise ZooError(f"--data.init_args.test_sets: unknown split(s) {bad}; expected some of {list(TEST_SETS)}")
        self.k, self.select, self.tau, self.ngram, self.cache_dir = k, select, tau, ngram, cache_dir
        self._test_names = sets
        self.prep_stats: dict[str, Any] = {}

    def prepare_files(self) -> None:
        from datamodules.reasoning.records import write_jsonl
        from datamodules.reasoning.world import build_world, load_split

        root = build_world(self.world_cfg, self.cache_dir)
        seed = self.world_cfg.seed
        tag = f"k{self.k}-{self.select}-n{self.ngram}" + (f"-t{self.tau}" if self.tau is not None else "") + f"-s{seed}"
        prep = root / f"prepared-{tag}"

        def write(tmp: Path) -> None:
            from datamodules.reasoning.rationales import prepare_rationales

            mcc, base_only, stats = prepare_rationales(load_split(root, "train"), k=self.k, tau=self.tau,
                                                       ngram=self.ngram, select=self.select, seed=seed)
            write_jsonl(tmp / "mcc.jsonl", mcc)
            write_jsonl(tmp / "single.jsonl", mcc + base_only)
            (tmp / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=True))

        build_folder_atomically(prep, write, lambda p: (p / "stats.json").is_file())
        self.prep_stats = json.loads((prep / "stats.json").read_text())
        tok = root / "tokenizer"

        def write_tok(tmp: Path) -> None:
            from zoo.common.lm.tiny import train_tokenizer

            lines = (root / "corpus.txt").read_text().splitlines()
            train_tokenizer(lines, tmp, kind="word", split_digits=True)

        build_folder_atomically(tok, write_tok, lambda p: (p / "tokenizer.json").is_file())
        self.train_file = str(prep / ("mcc.jsonl" if self.mode == "pairs" else "single.jsonl"))
        self.dev_file = str(root / "dev.jsonl")
        self.test_files = {name: str(root / f"{name}.jsonl") for name in self._test_names}
        if self.tokenizer_dir is None:
            self.tokenizer_dir = str(tok)
