"""The zoo's rationale record and its JSONL files.

One record per line::

    {"id": "gsm8k/train/0", "question": "...", "answer": "72",
     "rationales": ["... Therefore, the answer is 72."], "kind": "number"}

- ``id`` (str): unique within a file.
- ``question`` (str): the prompt the student reads.
- ``answer`` (str): the normalised gold answer (:func:`zoo.common.lm.answers.normalize_number` for
  numbers, ``A``..``E`` for choices, ``yes``/``no``).
- ``rationales`` (list of str): chain-of-thought texts, each ending with its answer sentence; may be
  empty (test sets).
- ``kind`` (str): ``"number"``, ``"choice"`` or ``"yesno"`` (:data:`zoo.common.lm.answers.KINDS`),
  which selects the answer extractor.

Extra keys (e.g. the embedded world's ``meta``) are allowed and kept as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from zoo.common.lm.answers import KINDS
from zoo.core.errors import ZooError
from zoo.core.io import atomic_write_text

__all__ = ["RECORD_KEYS", "read_jsonl", "validate_record", "write_jsonl"]

#: The keys every zoo record has.
RECORD_KEYS: tuple[str, ...] = ("id", "question", "answer", "rationales", "kind")


def validate_record(rec: Any, where: str) -> dict[str, Any]:
    """Check one zoo record and return it.

    Args:
        rec: the decoded JSON value.
        where: where it came from, for the message (``"data.jsonl line 3"``).

    Returns:
        ``rec`` itself.

    Raises:
        ZooError: ``rec`` is not an object, lacks a key of :data:`RECORD_KEYS`, or has a value of
            the wrong type (or an unknown ``kind``); the message names ``where`` and the key.
    """
    if not isinstance(rec, Mapping):
        raise ZooError(f"{where}: expected a JSON object (a zoo record), got {type(rec).__name__}")
    for key in RECORD_KEYS:
        if key not in rec:
            raise ZooError(f"{where}: record has no key {key!r} (a zoo record needs {', '.join(RECORD_KEYS)})")
    for key in ("id", "question", "answer"):
        if not isinstance(rec[key], str):
            raise ZooError(f"{where}: key {key!r} must be a string, got {type(rec[key]).__name__}")
    if not rec["question"].strip():
        raise ZooError(f"{where}: key 'question' is empty")
    rationales = rec["rationales"]
    if not isinstance(rationales, list) or not all(isinstance(r, str) for r in rationales):
        raise ZooError(f"{where}: key 'rationales' must be a list of strings")
    if rec["kind"] not in KINDS:
        raise ZooError(f"{where}: key 'kind' must be one of {list(KINDS)}, got {rec['kind']!r}")
    return rec  # type: ignore[return-value]


def read_jsonl(path: str | Path, validate: bool = True) -> list[dict[str, Any]]:
    """Read a JSONL file of zoo records (blank lines are skipped).

    Args:
        path: the file.
        validate: check every record with :func:`validate_record` (False: any JSON objects).

    Returns:
        The records, in file order.

    Raises:
        ZooError: the file is missing, a line is not valid JSON (the message names the file and
            the 1-based line number), or a record is invalid (file, line and key).
    """
    records: list[dict[str, Any]] = []
    for lineno, rec in json_lines(path, "a JSONL file of zoo records", objects_only=not validate):
        if validate:
            validate_record(rec, f"{path} line {lineno}")
        records.append(rec)
    return records


def json_lines(path: str | Path, what: str, objects_only: bool = True) -> list[tuple[int, Any]]:
    """``(1-based line number, parsed JSON)`` of every non-blank line of a JSONL file.

    Raises:
        ZooError: the file is missing (naming ``what`` was expected), a line is not valid JSON, or
            (``objects_only``) a line is not a JSON object; each message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"{path}: no such file (expected {what})")
    rows: list[tuple[int, Any]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ZooError(f"{path} line {lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            if objects_only and not isinstance(obj, dict):
                raise ZooError(f"{path} line {lineno}: expected a JSON object, got {type(obj).__name__}")
            rows.append((lineno, obj))
    return rows


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]], validate: bool = True) -> Path:
    """Write records as JSONL (UTF-8, one object per line), atomically.

    Args:
        path: the output file (parents are created; an existing file is replaced only once the
            new one is complete).
        records: zoo records.
        validate: check every record with :func:`validate_record` first.

    Returns:
        ``path``.
    """
    lines = []
    for i, rec in enumerate(records):
        if validate:
            validate_record(rec, f"record {i} for {path}")
        lines.append(json.dumps(rec, ensure_ascii=False))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
