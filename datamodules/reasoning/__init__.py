"""Reasoning data for chain-of-thought distillation (MCC-KD and later LM papers).

- :mod:`~datamodules.reasoning.records`: the zoo record (``id``, ``question``, ``answer``,
  ``rationales``, ``kind``) and its JSONL files.
- :mod:`~datamodules.reasoning.real`: loaders of GSM8K, SVAMP, ASDiv, CommonsenseQA, StrategyQA and
  the official MCC-KD repo format, in their distributed layouts (local paths only), and the repo
  splits.
- :mod:`~datamodules.reasoning.rationales`: correctness filtering, de-duplication and diverse
  (n-gram Jaccard) selection of teacher rationales, and the ``python -m zoo.prepare mcc_kd`` command.
- :mod:`~datamodules.reasoning.world`: the embedded arithmetic world (procedural word problems,
  several rationale styles, a simulated teacher with slips, ID and OOD-steps splits).
- :mod:`~datamodules.reasoning.base`: the LightningDataModule.
"""
