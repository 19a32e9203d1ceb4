"""Answer extraction from generated (or teacher) chain-of-thought text, and answer comparison.

The rules follow the MCC-KD spec's Inference section (arXiv:2310.14747; the official repo's
evaluators), shared by every LM paper that grades free-form answers:

- **numeric** (:func:`extract_number`): scan the text line by line. Inside a line, numbers found in
  sentences that start with ``Therefore`` or ``So`` are preferred; otherwise the line's last number
  counts. The last line that yields a number wins. The words ``one`` .. ``twelve`` (whole words, any
  case) count as numbers. Sentences end at ``.``/``!``/``?`` followed by whitespace, so the
  embedded world's spaced punctuation (``Therefore , the answer is 12 .``) and ordinary prose
  (``Therefore, the answer is 12.``) both work.
- **multiple choice** (:func:`extract_choice`): the last standalone capital letter among the
  choices (``\\b[A-E]\\b``).
- **yes/no** (:func:`extract_yes_no`): the last whole word ``yes`` or ``no``, any case.

Numbers are matched by ``-?\\d+(?:,\\d{3})*(?:\\.\\d+)?``. This is the spec's
``-?\\d+(,?\\d+)?(\\.\\d+)?`` with two changes: a thousands group must have exactly three digits
and may repeat (``1,234,567`` is one number, not ``1,234`` then ``567``), and a minus sign only
counts when no letter or digit comes right before it (``pages 10-12`` yields ``10`` and ``12``, not
``-12``; ``= -3`` yields ``-3``). :func:`normalize_number` then removes commas, ``$``, ``%``, a
leading ``+`` and trailing fractional zeros, and :func:`answers_match` compares the normalised
strings, falling back to :func:`math.isclose` on their float values.
"""

from __future__ import annotations

import math
import re

from zoo.core.errors import ZooError

__all__ = [
    "KINDS",
    "NUMBER_WORDS",
    "answers_match",
    "extract",
    "extract_choice",
    "extract_number",
    "extract_yes_no",
    "normalize_number",
]

#: The answer kinds of a zoo record (``record["kind"]``).
KINDS: tuple[str, ...] = ("number", "choice", "yesno")

#: Number words that count as digits in :func:`extract_number`.
NUMBER_WORDS: dict[str, int] = {
    w: i + 1
    for i, w in enumerate(
        ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    )
}

_NUMBER = re.compile(
    r"(?P<num>(?:(?<![\w.])-)?\d+(?:,\d{3})*(?:\.\d+)?)|(?P<word>\b(?:" + "|".join(NUMBER_WORDS) + r")\b)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CONCLUSION = re.compile(r"(?:therefore|so)\b", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_FRACTION_ZEROS = re.compile(r"^(-?\d*)\.(\d*?)0*$")


def normalize_number(s: str) -> str:
    """Canonical text of a number: no commas, ``$``, ``%``, leading ``+`` or trailing ``.0+``.

    ``"18.0" -> "18"``, ``"1,000" -> "1000"``, ``"-3.50" -> "-3.5"``, ``"$5" -> "5"``,
    ``"+7" -> "7"``, ``"12." -> "12"``, ``"-0.0" -> "0"``. Text that is not a number comes back
    stripped with the same characters removed (``"yes" -> "yes"``).

    Args:
        s: the answer text.

    Returns:
        The normalised string.
    """
    t = str(s).strip().replace(",", "").replace("$", "").replace("%", "").strip()
    if t.startswith("+"):
        t = t[1:].lstrip()
    m = _FRACTION_ZEROS.match(t)
    if m and (m.group(1).lstrip("-") or m.group(2)):
        whole, frac = m.group(1), m.group(2)
        if whole in ("", "-"):
            whole += "0"
        t = f"{whole}.{frac}" if frac else whole
    if re.fullmatch(r"-0+(\.0+)?", t):
        t = "0"
    return t


def _value(m: re.Match[str]) -> str:
    if m.group("num") is not None:
        return normalize_number(m.group("num"))
    return str(NUMBER_WORDS[m.group("word").lower()])


def _line_number(line: str) -> str | None:
    """The number a line yields: the last one in its Therefore/So sentences, else its last one."""
    preferred: str | None = None
    last: str | None = None
    for sentence in _SENTENCE_END.split(line.strip()):
        found = [_value(m) for m in _NUMBER.finditer(sentence)]
        if not found:
            continue
        last = found[-1]
        if _CONCLUSION.match(sentence.lstrip()):
            preferred = found[-1]
    return preferred if preferred is not None else last


def extract_number(text: str) -> str | None:
    """The numeric answer of a chain-of-thought text (rules in the module docstring).

    Examples: ``"5 + 3 = 8 . Therefore , the answer is 8 ."`` -> ``"8"``;
    ``"So she has 1,200 left. That is 12 boxes."`` -> ``"1200"``;
    ``"He needs five more."`` -> ``"5"``; ``"no digits here"`` -> None.

    Args:
        text: generated text (may span several lines).

    Returns:
        The normalised number (:func:`normalize_number`), or None when no line has a number.
    """
    answer: str | None = None
    for line in str(text).splitlines():
        found = _line_number(line)
        if found is not None:
            answer = found
    return answer


def extract_choice(text: str, choices: str = "ABCDE") -> str | None:
    """The last standalone choice letter (``\\b[A-E]\\b``, capitals only) of ``text``, or None.

    Args:
        text: generated text.
        choices: the allowed letters, e.g. ``"ABCDE"`` for CommonsenseQA.
    """
    if not choices or not all(c.isalpha() and len(c) == 1 for c in choices):
        raise ZooError(f"choices must be a string of letters such as 'ABCDE', got {choices!r}")
    found = re.findall(r"\b([" + re.escape(choices) + r"])\b", str(text))
    return found[-1] if found else None


def extract_yes_no(text: str) -> str | None:
    """The last whole word ``yes`` or ``no`` (any case) of ``text``, lower-cased, or None."""
    found = _YES_NO.findall(str(text))
    return found[-1].lower() if found else None


def extract(text: str, kind: str) -> str | None:
    """Extract the answer of ``kind`` from ``text``.

    Args:
        text: generated text.
        kind: ``"number"`` (:func:`extract_number`), ``"choice"`` (:func:`extract_choice`) or
            ``"yesno"`` (:func:`extract_yes_no`).

    Returns:
        The extracted answer, or None (counted as *missing* by the metrics).
    """
    if kind == "number":
        return extract_number(text)
    if kind == "choice":
        return extract_choice(text)
    if kind == "yesno":
        return extract_yes_no(text)
    raise ZooError(f"answer kind must be one of {list(KINDS)}, got {kind!r}")


def answers_match(pred: str | None, gold: str | None) -> bool:
    """Whether a predicted answer equals the gold one.

    Both sides are normalised (:func:`normalize_number`, then lower-cased) and compared as strings;
    if they differ, both are parsed as floats and compared with :func:`math.isclose` (default
    tolerances). A missing side (None) or an empty string never matches.

    Args:
        pred: extracted answer or None.
        gold: gold answer.
    """
    if pred is None or gold is None:
        return False
    a, b = normalize_number(str(pred)).lower(), normalize_number(str(gold)).lower()
    if not a or not b:
        return False
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isfinite(x) and math.isfinite(y) and math.isclose(x, y)
