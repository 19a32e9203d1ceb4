"""Preparing teacher rationales for MCC-KD: correctness filter, de-duplication, diverse selection.

MCC-KD (arXiv:2310.14747; the zoo spec's Data steps 1-4) trains on several *correct* and *diverse*
rationales per question. :func:`prepare_rationales` turns raw teacher samples into them:

1. **Correctness.** A rationale is kept only if its extracted answer
   (:func:`zoo.common.lm.answers.extract` for the record's ``kind``) equals the gold
   (:func:`~zoo.common.lm.answers.answers_match`). If its last sentence is not an answer sentence
   (``... answer is X``), one is appended (:func:`ensure_answer_sentence`), because the answer span
   the KL compares is located in that sentence.
2. **De-duplication** of exact strings, keeping the first occurrence.
3. **Diversity** (``select="jaccard"``): word n-gram Jaccard similarity
   ``J(A, B) = |A ∩ B| / |A ∪ B|`` over the sets of word n-grams (n = 3), and greedy max-min
   selection (:func:`select_diverse`): start from the first survivor, then repeatedly add the
   candidate whose largest J to the already selected ones is smallest (ties: the earliest), until K.
   An optional ``tau`` drops every candidate whose largest J exceeds it. ``select="random"`` (the
   "MCC-KD without diversity" baseline) takes K survivors at random (seeded per question),
   ``select="first"`` the first K.
4. **Routing.** Questions left with at least two rationales go to the MCC file; a question with a
   single one goes to the baseline-only file (single-rationale CoT distillation trains on both
   files, taking each question's first rationale); a question with none is dropped. Every
   decision is counted in the returned stats.

``python -m zoo.prepare mcc_kd --input raw.jsonl --output mcc.jsonl --baseline-output base.jsonl``
runs it on files (:func:`main`).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from datamodules.reasoning.real import FORMATS, REAL_ANSWER_SENTENCE, load_dataset_file
from datamodules.reasoning.records import validate_record
from zoo.common.lm.answers import answers_match, extract
from zoo.core.errors import ZooError

__all__ = [
    "REAL_ANSWER_SENTENCE",
    "SELECT_MODES",
    "WORLD_ANSWER_SENTENCE",
    "ensure_answer_sentence",
    "has_answer_sentence",
    "jaccard",
    "main",
    "prepare_files",
    "prepare_rationales",
    "select_diverse",
    "select_diverse_indices",
    "word_ngrams",
]

#: The embedded world's answer sentence (spaced punctuation).
WORLD_ANSWER_SENTENCE = "Therefore , the answer is {answer} ."
SELECT_MODES: tuple[str, ...] = ("jaccard", "random", "first")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ANSWER_IS = re.compile(r"\banswer is\b", re.IGNORECASE)


# ------------------------------------------------------------------------------------ similarity


def word_ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """The set of word n-grams of ``text`` (words = whitespace-separated tokens, case kept).

    A text with fewer than ``n`` (but at least one) words has the single n-gram of all its words,
    so short texts still compare; an empty text has none.
    """
    if n < 1:
        raise ZooError(f"ngram must be >= 1, got {n}")
    words = text.split()
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str, n: int = 3) -> float:
    """Word n-gram Jaccard similarity ``|A ∩ B| / |A ∪ B|`` (the diversity filter of MCC-KD,
    arXiv:2310.14747; zoo spec Data step 3; equation number not checked).

    Example (n = 3): ``"a b c d"`` has {abc, bcd}, ``"a b c e"`` has {abc, bce}: J = 1/3.
    Two texts without any n-gram (both empty) count as identical (J = 1).

    Args:
        a, b: the two texts.
        n: n-gram length in words.

    Returns:
        J in [0, 1].
    """
    sa, sb = word_ngrams(a, n), word_ngrams(b, n)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def select_diverse_indices(rationales: Sequence[str], k: int, n: int = 3, tau: float | None = None) -> list[int]:
    """Indices chosen by greedy max-min Jaccard selection, in selection order.

    Start from index 0; then, while fewer than ``k`` are chosen, compute for every remaining
    candidate ``c`` its largest similarity ``max_s J(c, s)`` to the chosen ones, drop the
    candidates whose largest similarity exceeds ``tau`` (when given), and add the one with the
    smallest value (ties: the lowest index).

    Args:
        rationales: candidate texts (already correct and de-duplicated).
        k: how many to choose (>= 1).
        n: n-gram length.
        tau: optional similarity ceiling in [0, 1].

    Returns:
        Up to ``k`` indices; fewer when candidates run out (or ``tau`` removed them).
    """
    if k < 1:
        raise ZooError(f"k must be >= 1, got {k}")
    if tau is not None and not 0.0 <= tau <= 1.0:
        raise ZooError(f"tau must be in [0, 1], got {tau}")
    if not rationales:
        return []
    grams = [word_ngrams(r, n) for r in rationales]

    def sim(i: int, j: int) -> float:
        union = grams[i] | grams[j]
        return len(grams[i] & grams[j]) / len(union) if union else 1.0

    chosen = [0]
    worst = {c: sim(c, 0) for c in range(1, len(rationales))}  # candidate -> max J to the chosen
    while len(chosen) < k and worst:
        if tau is not None:
            worst = {c: v for c, v in worst.items() if v <= tau}
            if not worst:
                break
        best = min(worst, key=lambda c: (worst[c], c))
        chosen.append(best)
        del worst[best]
        for c in worst:
            worst[c] = max(worst[c], sim(c, best))
    return chosen


def select_diverse(rationales: Sequence[str], k: int, n: int = 3, tau: float | None = None) -> list[str]:
    """The rationales chosen by :func:`select_diverse_indices`, in selection order."""
    return [rationales[i] for i in select_diverse_indices(rationales, k, n, tau)]


# ---------------------------------------------------------------------------- answer sentences


def _last_sentence(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    parts = [s for s in _SENTENCE_END.split(lines[-1].strip()) if s.strip()]
    return parts[-1] if parts else ""


def has_answer_sentence(text: str, answer: str, kind: str = "number") -> bool:
    """Whether the last sentence of ``text`` says ``... answer is X`` with X equal to ``answer``."""
    last = _last_sentence(text)
    return bool(_ANSWER_IS.search(last)) and answers_match(extract(last, kind), answer)


def ensure_answer_sentence(text: str, answer: str, kind: str = "number",
                           template: str | None = None) -> tuple[str, bool]:
    """``text`` with an answer sentence at the end (appended when the last sentence is not one).

    Args:
        text: a rationale whose extracted answer already equals ``answer``.
        answer: the normalised gold answer.
        kind: the answer kind (for :func:`has_answer_sentence`).
        template: the sentence with ``{answer}``; None picks :data:`WORLD_ANSWER_SENTENCE` when
            the text ends with a spaced ``" ."`` (the embedded world's style) and
            :data:`REAL_ANSWER_SENTENCE` otherwise. It is joined with a newline when the text spans
            several lines, else with a space.

    Returns:
        (the text, whether a sentence was appended).
    """
    if has_answer_sentence(text, answer, kind):
        return text, False
    body = text.rstrip()
    if template is None:
        template = WORLD_ANSWER_SENTENCE if body.endswith(" .") else REAL_ANSWER_SENTENCE
    if "{answer}" not in template:
        raise ZooError(f"answer sentence template must contain '{{answer}}', got {template!r}")
    sentence = template.format(answer=answer)
    if not body:
        return sentence, True
    sep = "\n" if "\n" in body else " "
    return f"{body}{sep}{sentence}", True


# ------------------------------------------------------------------------------------ preparation


def prepare_rationales(
    records: Sequence[dict[str, Any]],
    *,
    k: int = 3,
    tau: float | None = None,
    ngram: int = 3,
    select: Literal["jaccard", "random", "first"] = "jaccard",
    seed: int = 0,
    answer_sentence: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Filter, de-duplicate and select rationales (module docstring, steps 1-4).

    Args:
        records: zoo records whose ``rationales`` are raw teacher samples.
        k: rationales kept per question (>= 2).
        tau: optional Jaccard ceiling for ``select="jaccard"`` (ignored otherwise).
        ngram: word n-gram length of the Jaccard similarity.
        select: ``"jaccard"`` (greedy max-min), ``"random"`` (K random survivors, seeded by
            ``seed`` and the record id, in their original order) or ``"first"`` (the first K).
        seed: seed of ``select="random"``.
        answer_sentence: template of the appended answer sentence (``{answer}``); None chooses
            per rationale (:func:`ensure_answer_sentence`).

    Returns:
        (MCC records with 2..k rationales, baseline-only records with exactly 1, stats). Records
        keep every other key. The stats count: ``questions_in``, ``rationales_in``, ``no_answer``
        (nothing extractable), ``wrong_answer``, ``kept_correct``, ``answer_sentences_appended``,
        ``duplicates_removed``, ``kept_after_dedupe``, ``dropped_by_tau`` (survivors not selected whose
        largest J to a selected one exceeds ``tau``), ``selected`` (in the MCC
        file), ``questions_mcc``, ``questions_baseline_only``, ``questions_dropped`` (no correct
        rationale), and ``keep_rate`` = kept_correct / rationales_in.
    """
    if k < 2:
        raise ZooError(f"k must be >= 2 (MCC-KD pairs two different rationales), got {k}")
    if select not in SELECT_MODES:
        raise ZooError(f"select must be one of {list(SELECT_MODES)}, got {select!r}")
    if tau is not None and not 0.0 <= tau <= 1.0:
        raise ZooError(f"tau must be in [0, 1], got {tau}")
    if ngram < 1:
        raise ZooError(f"ngram must be >= 1, got {ngram}")
    keys = ("questions_in", "rationales_in", "no_answer", "wrong_answer", "kept_correct",
            "answer_sentences_appended", "duplicates_removed", "kept_after_dedupe", "dropped_by_tau",
            "selected", "questions_mcc", "questions_baseline_only", "questions_dropped")
    stats: dict[str, Any] = dict.fromkeys(keys, 0)
    mcc: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        validate_record(rec, f"record {i} (id {rec.get('id')!r})" if isinstance(rec, dict) else f"record {i}")
        stats["questions_in"] += 1
        kind, gold = rec["kind"], rec["answer"]
        correct = []
        for r in rec["rationales"]:
            stats["rationales_in"] += 1
            pred = extract(r, kind)
            if pred is None:
                stats["no_answer"] += 1
                continue
            if not answers_match(pred, gold):
                stats["wrong_answer"] += 1
                continue
            text, appended = ensure_answer_sentence(r, gold, kind, answer_sentence)
            stats["answer_sentences_appended"] += int(appended)
            correct.append(text)
        stats["kept_correct"] += len(correct)
        unique = list(dict.fromkeys(correct))
        stats["duplicates_removed"] += len(correct) - len(unique)
        stats["kept_after_dedupe"] += len(unique)
        if not unique:
            stats["questions_dropped"] += 1
            continue
        if select == "jaccard":
            idx = select_diverse_indices(unique, k, ngram, tau)
            if tau is not None:
                stats["dropped_by_tau"] += _count_tau_drops(unique, idx, ngram, tau)
        elif select == "random":
            rng = random.Random(f"{seed}/{rec['id']}")
            idx = sorted(rng.sample(range(len(unique)), min(k, len(unique))))
        else:
            idx = list(range(min(k, len(unique))))
        chosen = [unique[j] for j in idx]
        if len(chosen) >= 2:
            mcc.append({**rec, "rationales": chosen})
            stats["questions_mcc"] += 1
            stats["selected"] += len(chosen)
        else:
            baseline.append({**rec, "rationales": chosen[:1]})
            stats["questions_baseline_only"] += 1
    stats["keep_rate"] = stats["kept_correct"] / stats["rationales_in"] if stats["rationales_in"] else 0.0
    return mcc, baseline, stats


def _count_tau_drops(unique: list[str], idx: list[int], n: int, tau: float) -> int:
    """The survivors not chosen whose largest J to a chosen one exceeds ``tau``."""
    grams = [word_ngrams(r, n) for r in unique]
    rest = [c for c in range(len(unique)) if c not in idx]

    def sim(i: int, j: int) -> float:
        union = grams[i] | grams[j]
        return len(grams[i] & grams[j]) / len(union) if union else 1.0

    return sum(1 for c in rest if max(sim(c, s) for s in idx) > tau)


# ------------------------------------------------------------------------------------------ CLI


def _write_both(pairs: list[tuple[Path, list[dict[str, Any]]]]) -> None:
    """Write every file to a temporary sibling first, then move them all into place."""
    import json

    staged: list[tuple[str, Path]] = []
    try:
        for path, recs in pairs:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for rec in recs:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.remove(tmp)


def prepare_files(
    input: str | Path,
    output: str | Path,
    baseline_output: str | Path,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`prepare_rationales` from a file to the MCC and baseline-only JSONL files.

    Args:
        input: raw records (any format of :data:`datamodules.reasoning.real.FORMATS`).
        output: the MCC JSONL file.
        baseline_output: the baseline-only JSONL file.
        fmt: the input format; None detects it from the name.
        overwrite: replace existing outputs (otherwise an existing output is an error).
        **kwargs: passed to :func:`prepare_rationales`.

    Returns:
        The stats. Both files are written only after everything succeeded.
    """
    src, out, base = Path(input), Path(output), Path(baseline_output)
    if out.resolve() == base.resolve():
        raise ZooError(f"--output and --baseline-output are the same file ({out})")
    for p, flag in ((out, "--output"), (base, "--baseline-output")):
        if p.resolve() == src.resolve():
            raise ZooError(f"{flag} {p} is the input file; choose another path")
        if p.exists() and not overwrite:
            raise ZooError(f"{flag} {p} exists; pass --overwrite to replace it")
    records = load_dataset_file(src, fmt)
    mcc, baseline, stats = prepare_rationales(records, **kwargs)
    _write_both([(out, mcc), (base, baseline)])
    return stats


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m zoo.prepare mcc_kd",
        description="Filter teacher rationales by answer correctness, drop exact duplicates and keep K "
                    "diverse ones per question (greedy max-min word n-gram Jaccard). Questions with one "
                    "usable rationale go to --baseline-output; questions with none are dropped and counted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m zoo.prepare mcc_kd --input raw.jsonl --output mcc.jsonl "
               "--baseline-output baseline.jsonl --k 3",
    )
    p.add_argument("--input", required=True, help="raw records: zoo JSONL, or any supported dataset file")
    p.add_argument("--format", dest="fmt", choices=sorted(FORMATS), default=None,
                   help="input format (default: from the file name)")
    p.add_argument("--output", required=True, help="MCC JSONL output (questions with >= 2 rationales)")
    p.add_argument("--baseline-output", required=True,
                   help="JSONL output of the questions with exactly one usable rationale")
    p.add_argument("--k", type=int, default=3, help="rationales kept per question (default 3, >= 2)")
    p.add_argument("--tau", type=float, default=None,
                   help="drop candidates whose Jaccard similarity to a kept one exceeds TAU (default: none)")
    p.add_argument("--ngram", type=int, default=3, help="word n-gram length of the similarity (default 3)")
    p.add_argument("--select", choices=SELECT_MODES, default="jaccard",
                   help="jaccard (diverse, default), random (the no-diversity baseline) or first")
    p.add_argument("--seed", type=int, default=0, help="seed of --select random (default 0)")
    p.add_argument("--answer-sentence", default=None,
                   help="template of an appended answer sentence, with {answer} (default: "
                        f"{WORLD_ANSWER_SENTENCE!r} after spaced punctuation, else {REAL_ANSWER_SENTENCE!r})")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zoo.prepare mcc_kd ...``: run :func:`prepare_files` and print the stats.

    Bad input raises :class:`~zoo.core.errors.ZooError` (wrap the call in
    :func:`zoo.core.errors.run_cli` for the one-line message and exit status 2).

    Returns:
        0.
    """
    args = _parser().parse_args(None if argv is None else list(argv))
    stats = prepare_files(args.input, args.output, args.baseline_output, fmt=args.fmt, overwrite=args.overwrite,
                          k=args.k, tau=args.tau, ngram=args.ngram, select=args.select, seed=args.seed,
                          answer_sentence=args.answer_sentence)
    width = max(len(key) for key in stats)
    for key, value in stats.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    print(f"wrote {args.output} ({stats['questions_mcc']} questions) and "
          f"{args.baseline_output} ({stats['questions_baseline_only']} questions)")
    return 0
