"""Generating the arithmetic world: problems, questions, rationale styles and the simulated teacher.

Determinism:
    Draw ``j`` of split ``s`` uses ``random.Random(f"arith_world/{seed}/{s}/{j}")`` for the problem
    and ``.../{j}/teacher`` for its rationales (string seeds hash with SHA-512, so the streams are
    the same on every platform and Python run). Splits are generated in the order of
    :data:`~datamodules.reasoning.world.config.SPLITS` (held-out first) with one shared set of
    seen question strings: a draw whose question already appeared anywhere is skipped, so no
    question text repeats within or across splits.

Problems:
    A start amount, then 2-3 (ID) or 4-5 (OOD-steps) operations among ``+b`` (buys/finds/gets),
    ``-b`` (gives away/loses/sells), ``x2`` (doubles) and ``x3`` (triples). Each operation is drawn
    uniformly among those that keep the next amount inside the value range, then ``b`` uniformly
    among the allowed ones. Tokens are separated by spaces, punctuation included::

        Tom has 5 apples . Then Tom buys 3 more apples . Then Tom doubles the apples .
        How many apples does Tom have now ?

Rationale styles (every one ends with ``Therefore , the answer is N .``; ``r_k`` is the amount
after step k):

- ``verbose``: ``Tom starts with 5 apples . After buying 3 more , Tom has 5 + 3 = 8 .``
- ``equations``: ``5 + 3 = 8 . 8 x 2 = 16 .``
- ``commuted``: ``3 + 5 = 8 . 2 x 8 = 16 .`` (operands of + and x swapped; only when that changes
  the text)
- ``grouped``: each run of two or more adjacent +/- steps is summed first:
  ``In all , Tom gains 3 + 4 = 7 and loses 2 . 5 + 7 - 2 = 10 .`` (only when such a run exists)
- ``implicit``: every step but the last is computed; the last is only stated,
  ``Last , apply x 2 to 8 .``, and the answer sentence follows. The final number appears nowhere
  before the answer sentence (the style is skipped for a question where it would), so the answer
  tokens cannot be copied from the rationale: this is what gives the answer span real
  uncertainty for MCC-KD's consistency term.

Simulated teacher:
    ``teacher_candidates`` (6) rationales per training question, each in a style drawn by
    ``style_weights`` among those that apply. With probability ``slip_prob`` (0.15) a candidate
    has a slip: the amount after a uniformly drawn step is off by a non-zero ``d`` in
    ``[-slip_max, slip_max]`` and every later step computes from it, so the stated answer is
    ``gold + d * (product of the later factors)``, never the gold. Held-out splits carry
    ``eval_rationales`` (2) gold rationales of distinct styles, the first always ``verbose``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from datamodules.reasoning.world.config import (
    ADD_VERBS,
    EVAL_SPLITS,
    ITEMS,
    MUL_VERBS,
    NAMES,
    SPLITS,
    STYLES,
    SUB_VERBS,
    WORLD_NAME,
    ArithWorldConfig,
)
from zoo.core.errors import ZooError

__all__ = [
    "Problem",
    "Step",
    "available_styles",
    "draw_problem",
    "eval_rationales",
    "generate_split",
    "generate_world",
    "render_question",
    "render_rationale",
    "teacher_candidates",
    "trace",
]

ANSWER_SENTENCE = "Therefore , the answer is {answer} ."
_SYMBOL = {"add": "+", "sub": "-", "mul": "x"}


@dataclass(frozen=True)
class Step:
    """One operation: ``op`` in {"add", "sub", "mul"}, ``amount`` = b or the factor (2, 3)."""

    op: str
    amount: int
    verb: str
    gerund: str

    def apply(self, v: int) -> int:
        """The amount after this step, from ``v``."""
        if self.op == "add":
            return v + self.amount
        if self.op == "sub":
            return v - self.amount
        return v * self.amount


@dataclass(frozen=True)
class Problem:
    """A word problem: who, what, the start amount and the steps."""

    name: str
    item: str
    start: int
    steps: tuple[Step, ...]

    @property
    def values(self) -> list[int]:
        """The amounts ``[start, r_1, ..., r_n]`` (n = number of steps)."""
        return trace(self)

    @property
    def answer(self) -> int:
        """The final amount."""
        return self.values[-1]


def trace(problem: Problem, slip: tuple[int, int] | None = None) -> list[int]:
    """The amounts after each step, ``[start, r_1, ..., r_n]``.

    Args:
        problem: the problem.
        slip: ``(k, d)``: the amount after step ``k`` (0-based) is off by ``d`` and later steps
            compute from it (the teacher's slip); None for the correct trace.
    """
    vals = [problem.start]
    for k, step in enumerate(problem.steps):
        v = step.apply(vals[-1])
        if slip is not None and slip[0] == k:
            v += slip[1]
        vals.append(v)
    return vals


# ------------------------------------------------------------------------------------- problems


def _ranges(cfg: ArithWorldConfig, split: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(op-count, start, b, value) ranges of a split."""
    ops = (cfg.ood_ops_min, cfg.ood_ops_max) if split == "ood_steps" else (cfg.ops_min, cfg.ops_max)
    if split == "ood_numbers":
        return ops, (cfg.start_min, cfg.ood_start_max), (cfg.b_min, cfg.ood_b_max), (cfg.value_min, cfg.ood_value_max)
    return ops, (cfg.start_min, cfg.start_max), (cfg.b_min, cfg.b_max), (cfg.value_min, cfg.value_max)


def draw_problem(rng: random.Random, cfg: ArithWorldConfig, split: str) -> Problem | None:
    """One problem of ``split`` from ``rng``, or None when the draw is rejected (a dead end of the
    value range, or an OOD-numbers problem that stays inside the ID range)."""
    (ops_lo, ops_hi), (s_lo, s_hi), (b_lo, b_hi), (v_lo, v_hi) = _ranges(cfg, split)
    n_ops = rng.randint(ops_lo, ops_hi)
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    v = rng.randint(s_lo, s_hi)
    start, peak, steps = v, v, []
    for _ in range(n_ops):
        options = {
            "add": [b for b in range(b_lo, b_hi + 1) if v + b <= v_hi],
            "sub": [b for b in range(b_lo, b_hi + 1) if v - b >= v_lo],
            "x2": [2] if v * 2 <= v_hi else [],
            "x3": [3] if v * 3 <= v_hi else [],
        }
        kinds = [k for k in ("add", "sub", "x2", "x3") if options[k]]
        if not kinds:
            return None
        kind = rng.choice(kinds)
        amount = rng.choice(options[kind])
        if kind == "add":
            verb, gerund = rng.choice(ADD_VERBS)
            step = Step("add", amount, verb, gerund)
        elif kind == "sub":
            verb, gerund = rng.choice(SUB_VERBS)
            step = Step("sub", amount, verb, gerund)
        else:
            verb, gerund = MUL_VERBS[amount]
            step = Step("mul", amount, verb, gerund)
        steps.append(step)
        v = step.apply(v)
        peak = max(peak, v)
    if split == "ood_numbers" and peak <= cfg.value_max:
        return None
    return Problem(name=name, item=item, start=start, steps=tuple(steps))


def render_question(problem: Problem) -> str:
    """The question text (space-separated tokens, punctuation included)."""
    p = problem
    parts = [f"{p.name} has {p.start} {p.item} ."]
    for s in p.steps:
        if s.op == "add":
            parts.append(f"Then {p.name} {s.verb} {s.amount} more {p.item} .")
        elif s.op == "sub":
            parts.append(f"Then {p.name} {s.verb} {s.amount} {p.item} .")
        else:
            parts.append(f"Then {p.name} {s.verb} the {p.item} .")
    parts.append(f"How many {p.item} does {p.name} have now ?")
    return " ".join(parts)


# ------------------------------------------------------------------------------------ rationales


def _equation(step: Step, before: int, after: int, commuted: bool = False) -> str:
    sym = _SYMBOL[step.op]
    if commuted and step.op in ("add", "mul"):
        return f"{step.amount} {sym} {before} = {after} ."
    return f"{before} {sym} {step.amount} = {after} ."


def _verbose(p: Problem, vals: list[int]) -> list[str]:
    out = [f"{p.name} starts with {p.start} {p.item} ."]
    for k, s in enumerate(p.steps):
        before, after = vals[k], vals[k + 1]
        if s.op == "add":
            out.append(f"After {s.gerund} {s.amount} more , {p.name} has {before} + {s.amount} = {after} .")
        elif s.op == "sub":
            out.append(f"After {s.gerund} {s.amount} , {p.name} has {before} - {s.amount} = {after} .")
        else:
            out.append(f"After {s.gerund} , {p.name} has {before} x {s.amount} = {after} .")
    return out


def _runs(p: Problem) -> list[tuple[int, int]]:
    """Maximal runs ``[i, j)`` of two or more adjacent +/- steps."""
    runs, i, n = [], 0, len(p.steps)
    while i < n:
        j = i
        while j < n and p.steps[j].op in ("add", "sub"):
            j += 1
        if j - i >= 2:
            runs.append((i, j))
        i = max(j, i + 1)
    return runs


def _sum_text(amounts: list[int]) -> str:
    return " + ".join(map(str, amounts)) + (f" = {sum(amounts)}" if len(amounts) > 1 else "")


def _grouped(p: Problem, vals: list[int]) -> list[str]:
    starts = dict(_runs(p))
    out, k = [], 0
    while k < len(p.steps):
        if k in starts:
            j = starts[k]
            gains = [s.amount for s in p.steps[k:j] if s.op == "add"]
            losses = [s.amount for s in p.steps[k:j] if s.op == "sub"]
            said = []
            if gains:
                said.append(f"gains {_sum_text(gains)}")
            if losses:
                said.append(f"loses {_sum_text(losses)}")
            out.append(f"In all , {p.name} {' and '.join(said)} .")
            expr = str(vals[k]) + (f" + {sum(gains)}" if gains else "") + (f" - {sum(losses)}" if losses else "")
            out.append(f"{expr} = {vals[j]} .")
            k = j
        else:
            out.append(_equation(p.steps[k], vals[k], vals[k + 1]))
            k += 1
    return out


def _body(p: Problem, style: str, vals: list[int]) -> list[str]:
    if style == "verbose":
        return _verbose(p, vals)
    if style in ("equations", "commuted"):
        return [_equation(s, vals[k], vals[k + 1], commuted=style == "commuted") for k, s in enumerate(p.steps)]
    if style == "grouped":
        return _grouped(p, vals)
    if style == "implicit":
        out = [_equation(s, vals[k], vals[k + 1]) for k, s in enumerate(p.steps[:-1])]
        last = p.steps[-1]
        out.append(f"Last , apply {_SYMBOL[last.op]} {last.amount} to {vals[-2]} .")
        return out
    raise ZooError(f"unknown rationale style {style!r}; expected one of {list(STYLES)}")


def render_rationale(problem: Problem, style: str, vals: list[int] | None = None) -> str:
    """A rationale of ``style`` for ``problem``, ending with ``Therefore , the answer is N .``.

    Args:
        problem: the problem.
        style: one of :data:`~datamodules.reasoning.world.config.STYLES`.
        vals: the amounts to state (:func:`trace`; a slipped trace for a wrong rationale); None
            uses the correct ones. N is ``vals[-1]``.
    """
    vals = trace(problem) if vals is None else vals
    body = _body(problem, style, vals)
    return " ".join([*body, ANSWER_SENTENCE.format(answer=vals[-1])])


def available_styles(problem: Problem, vals: list[int] | None = None) -> list[str]:
    """The styles that apply to ``problem`` (with amounts ``vals``), in :data:`STYLES` order:
    ``commuted`` only when it differs from ``equations``, ``grouped`` only with a run of two or more
    +/- steps, ``implicit`` only when the final number is not a word of its text before the answer
    sentence."""
    vals = trace(problem) if vals is None else vals
    out = ["verbose", "equations"]
    if " ".join(_body(problem, "commuted", vals)) != " ".join(_body(problem, "equations", vals)):
        out.append("commuted")
    if _runs(problem):
        out.append("grouped")
    words = " ".join(_body(problem, "implicit", vals)).split()
    if str(vals[-1]) not in words:
        out.append("implicit")
    return out


def _weighted(rng: random.Random, styles: list[str], cfg: ArithWorldConfig) -> str:
    weights = [float(cfg.style_weights.get(s, 0.0)) for s in styles]
    if sum(weights) <= 0:  # no applicable style has weight: fall back to uniform
        return rng.choice(styles)
    return rng.choices(styles, weights=weights, k=1)[0]


def teacher_candidates(problem: Problem, rng: random.Random, cfg: ArithWorldConfig
                       ) -> list[tuple[str, str, bool]]:
    """The simulated teacher's raw rationales for a training question.

    Returns:
        ``cfg.teacher_candidates`` tuples (text, style, slipped); a slipped text states a wrong
        answer (module docstring).
    """
    deltas = [d for d in range(-cfg.slip_max, cfg.slip_max + 1) if d != 0]
    out = []
    for _ in range(cfg.teacher_candidates):
        slip = None
        if rng.random() < cfg.slip_prob:
            slip = (rng.randrange(len(problem.steps)), rng.choice(deltas))
        vals = trace(problem, slip)
        style = _weighted(rng, available_styles(problem, vals), cfg)
        out.append((render_rationale(problem, style, vals), style, slip is not None))
    return out


def eval_rationales(problem: Problem, rng: random.Random, cfg: ArithWorldConfig) -> list[tuple[str, str]]:
    """Gold rationales of a held-out question: ``verbose``, then ``cfg.eval_rationales - 1`` other
    distinct styles drawn by weight among those that apply (fewer if fewer apply).

    Returns:
        (text, style) pairs.
    """
    styles = ["verbose"]
    rest = [s for s in available_styles(problem) if s != "verbose"]
    while len(styles) < cfg.eval_rationales and rest:
        s = _weighted(rng, rest, cfg)
        styles.append(s)
        rest.remove(s)
    return [(render_rationale(problem, s), s) for s in styles]


# ----------------------------------------------------------------------------------------- splits


def _record(split: str, i: int, problem: Problem, question: str, rationales: list[str], styles: list[str],
            slipped: list[bool]) -> dict[str, Any]:
    ops = [f"{_SYMBOL[s.op]}{s.amount}" for s in problem.steps]
    return {
        "id": f"{split}-{i:05d}",
        "question": question,
        "answer": str(problem.answer),
        "rationales": rationales,
        "kind": "number",
        "meta": {"split": split, "n_ops": len(problem.steps), "ops": ops, "values": problem.values,
                 "styles": styles, "slipped": slipped},
    }


def generate_split(cfg: ArithWorldConfig, split: str, seen: set[str] | None = None) -> list[dict[str, Any]]:
    """The zoo records of one split (``cfg.size(split)`` questions).

    Training records hold the teacher's raw candidates; held-out ones their gold rationales.
    Every record carries ``meta``: ``split``, ``n_ops``, ``ops`` (``"+3"``, ``"-2"``, ``"x2"``),
    ``values`` (the correct amounts, start first), and per rationale its ``styles`` and
    ``slipped`` flags.

    Args:
        cfg: world knobs.
        split: a split of :data:`~datamodules.reasoning.world.config.SPLITS`.
        seen: question strings to avoid (updated in place with this split's questions).
    """
    n = cfg.size(split)
    seen = set() if seen is None else seen
    out: list[dict[str, Any]] = []
    attempt = failures = 0
    while len(out) < n:
        rng = random.Random(f"{WORLD_NAME}/{cfg.seed}/{split}/{attempt}")
        problem = draw_problem(rng, cfg, split)
        question = render_question(problem) if problem is not None else None
        if problem is None or question in seen:
            attempt += 1
            failures += 1
            if failures > cfg.max_attempts:
                raise ZooError(f"arith world: only {len(out)} of {n} distinct {split!r} questions after "
                               f"{cfg.max_attempts} failed draws in a row; lower n_{split} or widen the value ranges")
            continue
        failures = 0
        seen.add(question)
        trng = random.Random(f"{WORLD_NAME}/{cfg.seed}/{split}/{attempt}/teacher")
        if split in EVAL_SPLITS:
            pairs = eval_rationales(problem, trng, cfg)
            rec = _record(split, len(out), problem, question, [t for t, _ in pairs], [s for _, s in pairs],
                          [False] * len(pairs))
        else:
            cands = teacher_candidates(problem, trng, cfg)
            rec = _record(split, len(out), problem, question, [t for t, _, _ in cands], [s for _, s, _ in cands],
                          [b for _, _, b in cands])
        out.append(rec)
        attempt += 1
    return out


def generate_world(cfg: ArithWorldConfig | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every split, in :data:`~datamodules.reasoning.world.config.SPLITS` order with one shared
    set of questions (no question repeats anywhere).

    Returns:
        ``{split: records}``.
    """
    cfg = cfg or ArithWorldConfig()
    seen: set[str] = set()
    return {split: generate_split(cfg, split, seen) for split in SPLITS}
