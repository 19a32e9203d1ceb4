"""The arithmetic world: seeded procedural word problems for CoT distillation (MCC-KD's embedded
default, arXiv:2310.14747; stdlib only).

``Tom has 5 apples . Then Tom buys 3 more apples . Then Tom doubles the apples . How many apples
does Tom have now ?``: a start amount and 2-3 operations (+b, -b, x2, x3) with every amount in
1..30 for the ID splits (``train``, ``dev``, ``test``); 4-5 operations in the same range for
``ood_steps`` (the main OOD split); values up to 99 for ``ood_numbers`` (a sanity check).

Rationales come in five styles (verbose, equations, commuted, grouped, implicit), all correct and
ending in ``Therefore , the answer is N .``. The *implicit* style states the last operation
without computing it, so the answer tokens cannot be copied and the answer span carries real
uncertainty. A simulated teacher writes 6 candidates per training question, 15% of them with an
arithmetic slip that makes the answer wrong (work for the correctness filter); held-out questions
carry two gold rationales of different styles (the held-out answer-span KL diagnostic).

Modules:
    * :mod:`~datamodules.reasoning.world.config`: the splits, styles, vocabulary and
      :class:`ArithWorldConfig` (every knob, validated).
    * :mod:`~datamodules.reasoning.world.generate`: problems, questions, styles, the teacher and
      whole splits (:func:`generate_world`); the determinism rules.
    * :mod:`~datamodules.reasoning.world.store`: the on-disk cache (:func:`build_world`,
      :func:`load_split`).

Every public name is re-exported here: ``from datamodules.reasoning import world as W`` then
``W.build_world(W.ArithWorldConfig(n_train=500))``.
"""

from __future__ import annotations

from datamodules.reasoning.world.config import (
    EVAL_SPLITS,
    SPLITS,
    STYLES,
    WORLD_NAME,
    WORLD_VERSION,
    ArithWorldConfig,
)
from datamodules.reasoning.world.generate import (
    Problem,
    Step,
    available_styles,
    draw_problem,
    eval_rationales,
    generate_split,
    generate_world,
    render_question,
    render_rationale,
    teacher_candidates,
    trace,
)
from datamodules.reasoning.world.store import FILES, build_world, load_split, world_dir

__all__ = [
    "EVAL_SPLITS",
    "FILES",
    "SPLITS",
    "STYLES",
    "WORLD_NAME",
    "WORLD_VERSION",
    "ArithWorldConfig",
    "Problem",
    "Step",
    "available_styles",
    "build_world",
    "draw_problem",
    "eval_rationales",
    "generate_split",
    "generate_world",
    "load_split",
    "render_question",
    "render_rationale",
    "teacher_candidates",
    "trace",
    "world_dir",
]
