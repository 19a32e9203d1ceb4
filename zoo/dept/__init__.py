"""DePT: decoupled prompt tuning (Zhang et al., arXiv:2309.07439v2), and its host/baseline CoOp.
Registers ``dept`` and ``coop``."""

from zoo.core.registry import ZooEntry, register

register(ZooEntry(
    name="dept",
    module="zoo.dept.lightning_model:DePT",
    datamodule="datamodules.fewshot.procedural:ShapesFewShot",
    summary="Decoupled prompt tuning: CoOp + CAT head on a frozen CLIP, base-to-new (CoOp, zero-shot baselines)",
    paper="Zhang et al., DePT: Decoupled Prompt Tuning, arXiv:2309.07439v2 (CVPR 2024)",
    baselines=("coop", "zeroshot"),
    bench="zoo.dept.bench:DePTBench",
))

register(ZooEntry(
    name="coop",
    module="zoo.dept.lightning_model:CoOp",
    datamodule="datamodules.fewshot.procedural:ShapesFewShot",
    summary="CoOp prompt learning on a frozen CLIP (DePT's baseline and host)",
    paper="Zhou et al., Learning to Prompt for Vision-Language Models, arXiv:2109.01134v6 (IJCV 2022)",
))
