"""The bench harness shared by every paper: seeds x variants on identical data, mean ± std,
paired per-seed deltas, claims, the environment block, plots and an atomic report."""

from zoo.common.harness.bench import Bench, Comparison, Context, Fitted, Setting, Variant, run_bench

__all__ = ["Bench", "Comparison", "Context", "Fitted", "Setting", "Variant", "run_bench"]
