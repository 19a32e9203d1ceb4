"""The splits, the vocabulary and every knob of the arithmetic world (:class:`ArithWorldConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from zoo.core.errors import ZooError

__all__ = [
    "ADD_VERBS",
    "ArithWorldConfig",
    "EVAL_SPLITS",
    "ITEMS",
    "MUL_VERBS",
    "NAMES",
    "SPLITS",
    "STYLES",
    "SUB_VERBS",
    "WORLD_NAME",
    "WORLD_VERSION",
]

WORLD_NAME = "arith_world"
#: Bump when generation changes so old caches are not reused.
WORLD_VERSION = 1

#: Every split, in the order they are generated (held-out splits first, so that training
#: questions that repeat a held-out question are the ones skipped).
SPLITS: tuple[str, ...] = ("test", "dev", "ood_steps", "ood_numbers", "train")
#: The held-out splits (two gold rationales each).
EVAL_SPLITS: tuple[str, ...] = ("dev", "test", "ood_steps", "ood_numbers")

#: Rationale styles (see :mod:`datamodules.reasoning.world.generate`).
STYLES: tuple[str, ...] = ("verbose", "equations", "commuted", "grouped", "implicit")

NAMES: tuple[str, ...] = ("Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Max", "Zoe", "Leo", "Ella", "Omar", "Nina")
ITEMS: tuple[str, ...] = ("apples", "marbles", "stickers", "coins", "books", "pencils", "cookies", "cards",
                          "shells", "stamps", "balloons", "beads")
#: (question verb, gerund) of the +b operation.
ADD_VERBS: tuple[tuple[str, str], ...] = (("buys", "buying"), ("finds", "finding"), ("gets", "getting"))
#: (question verb, gerund) of the -b operation.
SUB_VERBS: tuple[tuple[str, str], ...] = (("gives away", "giving away"), ("loses", "losing"), ("sells", "selling"))
#: factor -> (question verb, gerund) of the x2 / x3 operations.
MUL_VERBS: dict[int, tuple[str, str]] = {2: ("doubles", "doubling"), 3: ("triples", "tripling")}


def _default_style_weights() -> dict[str, float]:
    return dict.fromkeys(STYLES, 1.0)


@dataclass
class ArithWorldConfig:
    """Every knob of the arithmetic world (the MCC-KD spec's "Embedded default").

    Args:
        seed: world seed (>= 0); every question and teacher sample is a pure function of it.
        n_train: training questions (each with ``teacher_candidates`` raw rationales).
        n_dev: dev questions (ID).
        n_test: ID test questions.
        n_ood_steps: OOD-steps questions (``ood_ops_min``..``ood_ops_max`` operations).
        n_ood_numbers: OOD-numbers questions (values up to ``ood_value_max``; a sanity check).
        ops_min: fewest operations of an ID question.
        ops_max: most operations of an ID question.
        ood_ops_min: fewest operations of an OOD-steps question.
        ood_ops_max: most operations of an OOD-steps question.
        start_min: smallest starting amount (ID and OOD-steps).
        start_max: largest starting amount.
        b_min: smallest amount added or removed.
        b_max: largest amount added or removed.
        value_min: smallest allowed value of every intermediate amount (ID and OOD-steps).
        value_max: largest allowed value of every intermediate amount.
        ood_start_max: largest starting amount of OOD-numbers.
        ood_b_max: largest amount added or removed in OOD-numbers.
        ood_value_max: largest intermediate amount of OOD-numbers (at least one value exceeds
            ``value_max``, so the split is really out of range).
        teacher_candidates: raw rationales per training question (the simulated teacher).
        slip_prob: probability that a candidate has an arithmetic slip (+-1 or +-2 at a random step,
            propagated to the answer).
        slip_max: largest slip magnitude.
        eval_rationales: gold rationales per held-out question, of distinct styles (the first is
            always ``verbose``); 2 feeds the held-out answer-span KL diagnostic.
        style_weights: sampling weight of each style of :data:`STYLES` (a style that does not
            apply to a question, e.g. ``grouped`` without two adjacent +/- steps, is skipped).
        max_attempts: attempts per question before generation gives up (value constraints and
            de-duplication reject some draws).
    """

    seed: int = 0
    n_train: int = 2000
    n_dev: int = 300
    n_test: int = 300
    n_ood_steps: int = 300
    n_ood_numbers: int = 300
    ops_min: int = 2
    ops_max: int = 3
    ood_ops_min: int = 4
    ood_ops_max: int = 5
    start_min: int = 1
    start_max: int = 15
    b_min: int = 1
    b_max: int = 9
    value_min: int = 1
    value_max: int = 30
    ood_start_max: int = 50
    ood_b_max: int = 20
    ood_value_max: int = 99
    teacher_candidates: int = 6
    slip_prob: float = 0.15
    slip_max: int = 2
    eval_rationales: int = 2
    style_weights: dict[str, float] = field(default_factory=_default_style_weights)
    max_attempts: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(v, int) or isinstance(v, bool)):
                raise ZooError(f"ArithWorldConfig.{f.name} must be an integer, got {v!r}")
        nonneg = ("seed", "n_train", "n_dev", "n_test", "n_ood_steps", "n_ood_numbers")
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ZooError(f"ArithWorldConfig.{name} must be >= 0, got {getattr(self, name)}")
        positive = ("ops_min", "ood_ops_min", "start_min", "b_min", "value_min", "teacher_candidates",
                    "slip_max", "eval_rationales", "max_attempts")
        for name in positive:
            if getattr(self, name) < 1:
                raise ZooError(f"ArithWorldConfig.{name} must be >= 1, got {getattr(self, name)}")
        for lo, hi in (("ops_min", "ops_max"), ("ood_ops_min", "ood_ops_max"), ("start_min", "start_max"),
                       ("b_min", "b_max"), ("value_min", "value_max"), ("start_min", "ood_start_max"),
                       ("b_min", "ood_b_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise ZooError(f"ArithWorldConfig.{lo}={getattr(self, lo)} > {hi}={getattr(self, hi)}")
        if not (self.value_min <= self.start_min and self.start_max <= self.value_max):
            raise ZooError(f"ArithWorldConfig.start_min..start_max ({self.start_min}..{self.start_max}) must lie "
                           f"in value_min..value_max ({self.value_min}..{self.value_max})")
        if self.ood_value_max <= self.value_max:
            raise ZooError(f"ArithWorldConfig.ood_value_max={self.ood_value_max} must exceed value_max={self.value_max}")
        if self.ood_start_max > self.ood_value_max:
            raise ZooError(f"ArithWorldConfig.ood_start_max={self.ood_start_max} > ood_value_max={self.ood_value_max}")
        if not isinstance(self.slip_prob, (int, float)) or not 0.0 <= self.slip_prob <= 1.0:
            raise ZooError(f"ArithWorldConfig.slip_prob must be in [0, 1], got {self.slip_prob!r}")
        if self.eval_rationales > len(STYLES):
            raise ZooError(f"ArithWorldConfig.eval_rationales must be <= {len(STYLES)}, got {self.eval_rationales}")
        if not isinstance(self.style_weights, dict):
            raise ZooError("ArithWorldConfig.style_weights must be a dict {style: weight}")
        unknown = sorted(set(self.style_weights) - set(STYLES))
        if unknown:
            raise ZooError(f"ArithWorldConfig.style_weights has unknown styles {unknown}; expected {list(STYLES)}")
        for style, w in self.style_weights.items():
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise ZooError(f"ArithWorldConfig.style_weights[{style!r}] must be a number >= 0, got {w!r}")
        if not any(self.style_weights.get(s, 0.0) > 0 for s in STYLES):
            raise ZooError("ArithWorldConfig.style_weights must give some style a positive weight")

    def size(self, split: str) -> int:
        """Number of questions of ``split``."""
        if split not in SPLITS:
            raise ZooError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        return int(getattr(self, f"n_{split}"))
