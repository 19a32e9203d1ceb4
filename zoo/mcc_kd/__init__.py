"""MCC-KD: multi-CoT consistent knowledge distillation (Chen et al., arXiv:2310.14747). Registers ``mcc_kd``."""

from zoo.core.registry import ZooEntry, register

register(ZooEntry(
    name="mcc_kd",
    module="zoo.mcc_kd.lightning_model:MCCKD",
    datamodule="datamodules.reasoning.procedural:ArithWorld",
    summary="Multi-rationale CoT distillation with answer-span KL consistency (Std-CoT, multi-CoT CE baselines)",
    paper="Chen et al., MCC-KD: Multi-CoT Consistent Knowledge Distillation, Findings of EMNLP 2023, arXiv:2310.14747",
    baselines=("std_cot", "multi_cot_ce", "mcc_kd_random"),
    bench="zoo.mcc_kd.bench:MCCKDBench",
    prepare="zoo.mcc_kd.prepare:main",
))
