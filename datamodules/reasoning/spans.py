"""Where the final answer sits in a tokenised rationale, and how two rationales' spans are paired.

MCC-KD (arXiv:2310.14747, Sec. 3.3; :mod:`zoo.mcc_kd`) compares the student's distributions over the *answer span*
of two rationales of one question. The spans are found after tokenisation (SentencePiece can split
the same answer differently after different left context), from character offsets:

1. :func:`answer_char_span`: in the rationale text, the gold answer value of the last
   ``... answer is X .`` sentence plus its closing ``.``, and the final sentence around it.
2. :func:`token_span`: the target tokens whose character offsets overlap them.
3. :func:`align_pair`: both spans must hold identical token ids (compared position by position);
   otherwise the longest common token suffix of the two final sentences is used; if that is empty,
   or truncation cut either span, the pair is masked (KL = 0) and counted as invalid.
4. :func:`label_positions`: target-token indices to label space, where ``logits[:, p]`` predicts the
   token: ``prompt_len + j - 1`` for a causal LM (BOS + prompt tokens come first), ``j`` for a
   seq2seq decoder. ``coords="official"`` adds one, reproducing the official Dec-2023 code's slice,
   which compares the distributions one past the answer tokens (see the spec's Pitfalls); the zoo's
   default is ``"label"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANSWER_IS = re.compile(r"answer is\s+", re.IGNORECASE)


@dataclass(frozen=True)
class CharSpan:
    """Character ranges in a rationale: the answer value + closing period, and its final sentence."""

    start: int
    end: int
    sentence_start: int


def answer_char_span(text: str) -> CharSpan | None:
    """The answer span of the last ``answer is X .`` sentence of ``text`` (None if there is none).

    The value runs from after ``answer is`` to the sentence's closing ``.`` (included), or to the
    end of the text when it has no closing period. The final sentence starts after the previous
    ``.``/newline before the match.
    """
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    start = m.end()
    rest = text[start:]
    stripped = rest.rstrip()
    if not stripped:
        return None
    end = start + len(stripped)
    if stripped.endswith(".") and len(stripped.rstrip(". ")) == 0:
        return None
    prev = max(text.rfind(".", 0, m.start()), text.rfind("\n", 0, m.start()))
    sentence_start = prev + 1
    while sentence_start < m.start() and text[sentence_start].isspace():
        sentence_start += 1
    return CharSpan(start=start, end=end, sentence_start=sentence_start)


def token_span(offsets: list[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens whose (non-empty) character offsets overlap ``[start, end)``."""
    return [j for j, (s, e) in enumerate(offsets) if e > s and e > start and s < end]


@dataclass(frozen=True)
class TargetSpans:
    """One tokenised rationale's answer span and final sentence, as target-token indices."""

    span: tuple[int, ...]
    sentence: tuple[int, ...]


def target_spans(text: str, offsets: list[tuple[int, int]]) -> TargetSpans | None:
    """:class:`TargetSpans` of a rationale from its tokens' character offsets (None: no answer)."""
    cs = answer_char_span(text)
    if cs is None:
        return None
    span = token_span(offsets, cs.start, cs.end)
    sent = token_span(offsets, cs.sentence_start, cs.end)
    if not span:
        return None
    return TargetSpans(tuple(span), tuple(sent))


def align_pair(ids_a: list[int], spans_a: TargetSpans | None, len_a: int,
               ids_b: list[int], spans_b: TargetSpans | None, len_b: int) -> tuple[list[int], list[int]] | None:
    """Matched target-token indices of two rationales' answer spans, or None (invalid pair).

    Args:
        ids_a, ids_b: the full (untruncated) target token ids of the two rationales.
        spans_a, spans_b: their :class:`TargetSpans` (None when no answer sentence was found).
        len_a, len_b: how many target tokens survived truncation.

    Returns:
        Two equal-length index lists such that ``ids_a[i] == ids_b[j]`` position by position.
    """
    if spans_a is None or spans_b is None:
        return None
    sa = [ids_a[j] for j in spans_a.span]
    sb = [ids_b[j] for j in spans_b.span]
    if sa == sb:
        pa, pb = list(spans_a.span), list(spans_b.span)
    else:  # longest common token suffix of the two final sentences
        ta, tb = list(spans_a.sentence), list(spans_b.sentence)
        n = 0
        while n < min(len(ta), len(tb)) and ids_a[ta[-1 - n]] == ids_b[tb[-1 - n]]:
            n += 1
        if n == 0:
            return None
        pa, pb = ta[len(ta) - n:], tb[len(tb) - n:]
    if max(pa) >= len_a or max(pb) >= len_b:  # truncation cut a span
        return None
    return pa, pb


def label_positions(indices: list[int], prompt_len: int, kind: str, coords: str = "label") -> list[int]:
    """Target-token indices -> label-space positions (see the module docstring).

    Args:
        indices: target-token indices (0 = first rationale token).
        prompt_len: tokens before the target in the causal input (BOS + prompt); unused for seq2seq.
        kind: ``"causal"`` or ``"seq2seq"``.
        coords: ``"label"`` (the distribution that predicts the token) or ``"official"`` (one past).
    """
    shift = 1 if coords == "official" else 0
    base = prompt_len - 1 if kind == "causal" else 0
    return [base + j + shift for j in indices]
