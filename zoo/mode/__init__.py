"""MODE: multi-scale OOD detection (Zhang et al., arXiv:2308.10239v1). Registers ``mode``."""

from zoo.core.registry import ZooEntry, register

register(ZooEntry(
    name="mode",
    module="zoo.mode.lightning_model:MODE",
    datamodule="datamodules.ood.procedural:ClutterGlyphs",
    summary="Multi-scale OOD detection: ALPA training + CSD region-level kNN score (KNN baseline)",
    paper="Zhang et al., From Global to Local: Multi-scale OOD Detection, arXiv:2308.10239v1",
    baselines=("knn",),
    bench="zoo.mode.bench:MODEBench",
))
