"""Loaders of the reasoning benchmarks in their distributed formats, returning zoo records.

Nothing is downloaded: every loader takes a local path. Each returns zoo records
(:mod:`datamodules.reasoning.records`) in file order; the repo splits of MCC-KD
(arXiv:2310.14747, github.com/homzer/MCC-KD ``data/``) are explicit functions applied afterwards.

=================  ==========================================  ======  ==========================
format             file                                        kind    rationales
=================  ==========================================  ======  ==========================
``gsm8k``          ``train.jsonl`` / ``test.jsonl``            number  the gold solution (one)
``svamp``          ``SVAMP.json``                              number  none
``asdiv``          ``ASDiv.xml``                               number  none
``csqa``           ``{train,dev}_rand_split.jsonl``            choice  none
``strategyqa``     ``strategyqa_train.json``                   yesno   none
``mcckd``          the official repo's JSON list               any     ``output`` (str or list)
``zoo``            zoo JSONL records                           any     as stored
=================  ==========================================  ======  ==========================

Details of each format are in the loaders' docstrings; :func:`load_dataset_file` picks a loader
from the file name (or an explicit ``fmt``).
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datamodules.reasoning.records import json_lines, read_jsonl, validate_record
from zoo.common.lm.answers import normalize_number
from zoo.core.errors import ZooError

__all__ = [
    "FORMATS",
    "REAL_ANSWER_SENTENCE",
    "csqa_prompt",
    "detect_format",
    "gsm8k_rationale",
    "load_asdiv",
    "load_csqa",
    "load_dataset_file",
    "load_gsm8k",
    "load_mcckd_json",
    "load_strategyqa",
    "load_svamp",
    "split_asdiv",
    "split_gsm8k_test",
    "split_svamp",
]

log = logging.getLogger(__name__)

#: The answer sentence appended to real-data rationales (``{answer}`` = the normalised gold).
REAL_ANSWER_SENTENCE = "Therefore, the answer is {answer}."

_CALC_TAG = re.compile(r"<<[^<>]*>>")
_NUMERIC = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ZooError(f"{path}: no such file (expected {what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ZooError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _need(obj: dict[str, Any], key: str, where: str, hint: str = "") -> Any:
    if key not in obj:
        raise ZooError(f"{where}: no key {key!r}{hint}")
    return obj[key]


def _number_text(x: Any) -> str:
    """A JSON number (or numeric string) as normalised answer text: ``18.0 -> "18"``."""
    if isinstance(x, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() else normalize_number(repr(x))
    return normalize_number(str(x))


def _record(id_: str, question: str, answer: str, rationales: list[str], kind: str, where: str) -> dict[str, Any]:
    return validate_record(
        {"id": id_, "question": question, "answer": answer, "rationales": rationales, "kind": kind}, where
    )


# ----------------------------------------------------------------------------------------- GSM8K


def gsm8k_rationale(solution: str, answer: str, answer_sentence: str = REAL_ANSWER_SENTENCE) -> str:
    """A GSM8K gold solution as a rationale: calculator tags ``<<48/2=24>>`` and the ``####`` line
    removed, the remaining lines stripped and joined with newlines, then the answer sentence on its
    own line.

    Args:
        solution: the ``answer`` field of a GSM8K line.
        answer: the normalised gold answer.
        answer_sentence: template with ``{answer}``.
    """
    lines = [_CALC_TAG.sub("", ln).strip() for ln in solution.splitlines() if not ln.strip().startswith("####")]
    body = "\n".join(ln for ln in lines if ln)
    sentence = answer_sentence.format(answer=answer)
    return f"{body}\n{sentence}" if body else sentence


def load_gsm8k(path: str | Path, answer_sentence: str = REAL_ANSWER_SENTENCE) -> list[dict[str, Any]]:
    """GSM8K ``train.jsonl`` / ``test.jsonl``: lines ``{"question", "answer"}``.

    The ``answer`` field is a worked solution with ``<<a*b=c>>`` calculator tags whose last line is
    ``#### 1,234``. Gold = the text after ``####`` with commas removed (normalised); the solution
    becomes one rationale (:func:`gsm8k_rationale`).

    Args:
        path: the JSONL file.
        answer_sentence: the sentence appended to the rationale.

    Returns:
        Zoo records with ids ``gsm8k/<file stem>/<i>`` (0-based), kind ``"number"``.
    """
    path = Path(path)
    out = []
    for i, (lineno, obj) in enumerate(json_lines(path, "GSM8K JSONL lines {'question', 'answer'}")):
        where = f"{path} line {lineno}"
        question = _need(obj, "question", where)
        solution = _need(obj, "answer", where)
        if not isinstance(question, str) or not isinstance(solution, str):
            raise ZooError(f"{where}: 'question' and 'answer' must be strings")
        marks = [ln for ln in solution.splitlines() if ln.strip().startswith("####")]
        if not marks:
            raise ZooError(f"{where}: the 'answer' has no final '#### <number>' line (is this GSM8K?)")
        gold = normalize_number(marks[-1].strip()[4:])
        if not gold:
            raise ZooError(f"{where}: the '####' line holds no answer")
        rationale = gsm8k_rationale(solution, gold, answer_sentence)
        out.append(_record(f"gsm8k/{path.stem}/{i}", question.strip(), gold, [rationale], "number", where))
    return out


def split_gsm8k_test(records: Sequence[dict[str, Any]], n_dev: int = 660) -> tuple[list[dict], list[dict]]:
    """The repo split of GSM8K's 1319-question test set: the first ``n_dev`` are dev, the rest test.

    Args:
        records: the records of ``test.jsonl`` in file order (:func:`load_gsm8k`).
        n_dev: dev size (660 in the repo, leaving 659 for test).

    Returns:
        (dev, test).
    """
    if len(records) <= n_dev:
        raise ZooError(f"GSM8K test set: {len(records)} records, need more than n_dev={n_dev} to leave a test split")
    return list(records[:n_dev]), list(records[n_dev:])


# ----------------------------------------------------------------------------------------- SVAMP


def load_svamp(path: str | Path) -> list[dict[str, Any]]:
    """SVAMP ``SVAMP.json``: a list of ``{"ID", "Body", "Question", "Equation", "Answer": float,
    "Type"}``. Question = Body + " " + Question; answer = the normalised ``Answer`` (``18.0 -> "18"``).

    Returns:
        Zoo records (id = ``ID``), kind ``"number"``, no rationales.
    """
    path = Path(path)
    data = _read_json(path, "the SVAMP JSON list")
    if not isinstance(data, list):
        raise ZooError(f"{path}: expected a JSON list of SVAMP problems, got {type(data).__name__}")
    out = []
    for i, obj in enumerate(data):
        where = f"{path} item {i}"
        if not isinstance(obj, dict):
            raise ZooError(f"{where}: expected an object")
        body, q = str(_need(obj, "Body", where)).strip(), str(_need(obj, "Question", where)).strip()
        try:
            gold = _number_text(_need(obj, "Answer", where))
        except ValueError:
            raise ZooError(f"{where}: 'Answer' must be a number, got {obj['Answer']!r}") from None
        question = f"{body} {q}".strip()
        out.append(_record(str(obj.get("ID", f"svamp/{i}")), question, gold, [], "number", where))
    return out


def split_svamp(records: Sequence[dict[str, Any]], n_train: int = 700, n_dev: int = 150
                ) -> tuple[list[dict], list[dict], list[dict]]:
    """The repo split of SVAMP's 1000 problems in file order: train 700, dev 150, test the rest (150).

    Returns:
        (train, dev, test).
    """
    if len(records) <= n_train + n_dev:
        raise ZooError(f"SVAMP: {len(records)} records, need more than n_train + n_dev = {n_train + n_dev}")
    return list(records[:n_train]), list(records[n_train:n_train + n_dev]), list(records[n_train + n_dev:])


# ----------------------------------------------------------------------------------------- ASDiv


def _leading_number(answer: str) -> str | None:
    """``"9 (apples)" -> "9"``, ``"2.5 (hours)" -> "2.5"``; None when the first token is not a
    plain number (``"3:4 (ratio)"``, ``"1/2 (cup)"``, ``"yes"``)."""
    head = answer.strip().split("(", 1)[0].split()
    if not head or not _NUMERIC.fullmatch(head[0]):
        return None
    return normalize_number(head[0])


def load_asdiv(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """ASDiv ``ASDiv.xml``: ``<Machine-Reading-Corpus-File><ProblemSet><Problem ID Grade Source>``
    with ``<Body/><Question/><Solution-Type/><Answer>9 (apples)</Answer><Formula/>``.

    Question = Body + " " + Question; gold = the leading number of ``Answer``. Problems whose
    answer does not start with a plain number (ratios ``3:4``, fractions ``1/2``, several values
    ``3;4``, text) are skipped and counted (also logged).

    Returns:
        (zoo records with id = the ``ID`` attribute, kind ``"number"``, no rationales; the number
        of skipped problems).
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"{path}: no such file (expected ASDiv.xml)")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ZooError(f"{path}: malformed XML ({e})") from None
    problems = root.findall(".//Problem")
    if not problems:
        raise ZooError(f"{path}: no <Problem> elements (expected ASDiv.xml)")
    out, skipped = [], 0
    for i, p in enumerate(problems):
        pid = p.get("ID") or f"asdiv/{i}"
        where = f"{path} problem {pid}"
        body = (p.findtext("Body") or "").strip()
        q = (p.findtext("Question") or "").strip()
        answer = p.findtext("Answer")
        if answer is None:
            raise ZooError(f"{where}: no <Answer>")
        gold = _leading_number(answer)
        if gold is None:
            skipped += 1
            continue
        out.append(_record(pid, f"{body} {q}".strip(), gold, [], "number", where))
    if skipped:
        log.warning("%s: skipped %d problem(s) with a non-numeric answer", path, skipped)
    return out, skipped


def split_asdiv(records: Sequence[dict[str, Any]], n_dev: int = 313, n_test: int = 314
                ) -> tuple[list[dict], list[dict], list[dict]]:
    """The repo split of ASDiv in file order: dev the first 313, test the next 314, train the rest
    (possibly empty).

    Returns:
        (train, dev, test).
    """
    if len(records) < n_dev + n_test:
        raise ZooError(f"ASDiv: {len(records)} numeric records, need at least n_dev + n_test = {n_dev + n_test}")
    return list(records[n_dev + n_test:]), list(records[:n_dev]), list(records[n_dev:n_dev + n_test])


# ----------------------------------------------------------------------------------- CommonsenseQA


def csqa_prompt(stem: str, choices: Sequence[dict[str, Any]]) -> str:
    """``"{stem} Answer Choices:\\nA. text\\n...E. text\\n"`` (the repo's CSQA prompt)."""
    return f"{stem} Answer Choices:\n" + "".join(f"{c['label']}. {c['text']}\n" for c in choices)


def load_csqa(path: str | Path) -> list[dict[str, Any]]:
    """CommonsenseQA ``{train,dev}_rand_split.jsonl``: lines ``{"id", "answerKey", "question":
    {"stem", "question_concept", "choices": [{"label", "text"} x 5]}}``.

    The prompt is :func:`csqa_prompt`; the answer is ``answerKey``. The public test file has no
    ``answerKey`` and is refused (no labels).

    Returns:
        Zoo records (id = ``id``), kind ``"choice"``, no rationales.
    """
    path = Path(path)
    out = []
    for lineno, obj in json_lines(path, "CommonsenseQA JSONL lines"):
        where = f"{path} line {lineno}"
        key = _need(obj, "answerKey", where,
                    " (the public CommonsenseQA test file is unlabelled; use train/dev_rand_split.jsonl)")
        q = _need(obj, "question", where)
        if not isinstance(q, dict):
            raise ZooError(f"{where}: 'question' must be an object with 'stem' and 'choices'")
        stem, choices = _need(q, "stem", where), _need(q, "choices", where)
        if not isinstance(choices, list) or not choices or not all(
            isinstance(c, dict) and "label" in c and "text" in c for c in choices
        ):
            raise ZooError(f"{where}: 'choices' must be a list of {{'label', 'text'}} objects")
        labels = [str(c["label"]) for c in choices]
        if key not in labels:
            raise ZooError(f"{where}: answerKey {key!r} is not one of the choice labels {labels}")
        out.append(_record(str(_need(obj, "id", where)), csqa_prompt(str(stem).strip(), choices), str(key), [],
                           "choice", where))
    return out


# -------------------------------------------------------------------------------------- StrategyQA


def load_strategyqa(path: str | Path) -> list[dict[str, Any]]:
    """StrategyQA ``strategyqa_train.json``: a list of ``{"qid", "term", "description",
    "question", "answer": bool, "facts", "decomposition", "evidence"}``; the label is ``yes``/``no``.

    The official test split has no labels and is refused.

    Returns:
        Zoo records (id = ``qid``), kind ``"yesno"``, no rationales.
    """
    path = Path(path)
    data = _read_json(path, "the StrategyQA JSON list")
    if not isinstance(data, list):
        raise ZooError(f"{path}: expected a JSON list of StrategyQA questions, got {type(data).__name__}")
    out = []
    for i, obj in enumerate(data):
        where = f"{path} item {i}"
        if not isinstance(obj, dict):
            raise ZooError(f"{where}: expected an object")
        answer = _need(obj, "answer", where, " (the StrategyQA test split is unlabelled; use strategyqa_train.json)")
        if not isinstance(answer, bool):
            raise ZooError(f"{where}: 'answer' must be true/false, got {answer!r}")
        out.append(_record(str(obj.get("qid", f"strategyqa/{i}")), str(_need(obj, "question", where)).strip(),
                           "yes" if answer else "no", [], "yesno", where))
    return out


# ----------------------------------------------------------------------------- the repo's JSON list


def _label_and_kind(label: Any, kind: str | None, where: str) -> tuple[str, str]:
    if isinstance(label, bool):
        text = "yes" if label else "no"
    elif isinstance(label, (int, float)):
        text = _number_text(label)
    elif isinstance(label, str):
        text = label.strip()
    else:
        raise ZooError(f"{where}: 'label' must be a string or a number, got {type(label).__name__}")
    if kind is None:
        if re.fullmatch(r"[A-E]", text):
            kind = "choice"
        elif text.lower() in ("yes", "no"):
            kind = "yesno"
        elif _NUMERIC.fullmatch(text.replace("$", "").replace("%", "")):
            kind = "number"
        else:
            raise ZooError(f"{where}: cannot tell the answer kind of label {text!r}; pass kind=")
    if kind == "number":
        text = normalize_number(text)
    elif kind == "choice":
        text = text.upper()
    elif kind == "yesno":
        text = text.lower()
    return text, kind


def load_mcckd_json(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The official MCC-KD repo format: a JSON list of ``{"instruction", "output": str | [str],
    "label", "indices"?}``.

    question = ``instruction``, rationales = ``output`` as a list, answer = the normalised
    ``label``. Stored ``indices`` are ignored: answer spans are recomputed after tokenisation.

    Args:
        path: the JSON file (e.g. the repo's ``data/GSM8K/train.json``).
        kind: the answer kind; None infers it per record from the label (``A``-``E`` -> choice,
            yes/no -> yesno, a number -> number).

    Returns:
        Zoo records with ids ``<file stem>/<i>``.
    """
    path = Path(path)
    data = _read_json(path, "a JSON list of {'instruction', 'output', 'label'}")
    if not isinstance(data, list):
        raise ZooError(f"{path}: expected a JSON list of {{'instruction', 'output', 'label'}}, got {type(data).__name__}")
    out = []
    for i, obj in enumerate(data):
        where = f"{path} item {i}"
        if not isinstance(obj, dict):
            raise ZooError(f"{where}: expected an object")
        question = _need(obj, "instruction", where)
        output = _need(obj, "output", where)
        rationales = [output] if isinstance(output, str) else output
        if not isinstance(rationales, list) or not all(isinstance(r, str) for r in rationales):
            raise ZooError(f"{where}: 'output' must be a string or a list of strings")
        answer, k = _label_and_kind(_need(obj, "label", where), kind, where)
        out.append(_record(f"{path.stem}/{i}", str(question), answer, list(rationales), k, where))
    return out


# ------------------------------------------------------------------------------------- dispatching


def _load_asdiv_records(path: str | Path) -> list[dict[str, Any]]:
    return load_asdiv(path)[0]


#: ``fmt`` -> loader (path -> zoo records).
FORMATS: dict[str, Callable[[str | Path], list[dict[str, Any]]]] = {
    "zoo": read_jsonl,
    "gsm8k": load_gsm8k,
    "svamp": load_svamp,
    "asdiv": _load_asdiv_records,
    "csqa": load_csqa,
    "strategyqa": load_strategyqa,
    "mcckd": load_mcckd_json,
}


def _first_json_line(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    return obj if isinstance(obj, dict) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return None


def detect_format(path: str | Path) -> str:
    """The format of a file from its name (a key of :data:`FORMATS`).

    ``*.xml`` -> asdiv; ``*svamp*.json`` -> svamp; ``*rand_split*.jsonl`` -> csqa;
    ``*strategyqa*.json`` -> strategyqa; ``train.jsonl``/``test.jsonl``/``*gsm8k*.jsonl`` -> gsm8k
    unless its first line is a zoo record (has ``rationales``); other ``*.jsonl`` -> zoo; other
    ``*.json`` -> mcckd (the repo's list).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".xml"):
        return "asdiv"
    if name.endswith(".json"):
        if "svamp" in name:
            return "svamp"
        if "strategyqa" in name:
            return "strategyqa"
        return "mcckd"
    if name.endswith(".jsonl"):
        if "rand_split" in name:
            return "csqa"
        if name in ("train.jsonl", "test.jsonl") or "gsm8k" in name:
            first = _first_json_line(path)
            return "zoo" if first is not None and "rationales" in first else "gsm8k"
        return "zoo"
    raise ZooError(f"{path}: cannot tell the dataset format from the name; pass fmt= one of {sorted(FORMATS)}")


def load_dataset_file(path: str | Path, fmt: str | None = None) -> list[dict[str, Any]]:
    """Load any supported file as zoo records.

    Args:
        path: a local file.
        fmt: a key of :data:`FORMATS`; None picks one with :func:`detect_format`.

    Returns:
        Zoo records in file order (ASDiv: the numeric ones; the skipped count is logged).
    """
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ZooError(f"unknown dataset format {fmt!r} for {path}; expected one of {sorted(FORMATS)}")
    return FORMATS[fmt](path)
