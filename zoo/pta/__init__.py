"""PTA / COPA: collaborative object- and patch-text alignment with a text-aware patch detector
(Jiang et al., arXiv:2308.03475). Registers ``pta``."""

from zoo.core.registry import ZooEntry, register

register(ZooEntry(
    name="pta",
    module="zoo.pta.lightning_model:PTA",
    datamodule="datamodules.vlp.procedural:ShapesClutter",
    summary="Vision-language pre-training with a text-aware patch detector (ITC + ITM + MLM + PTA), ViT pruned to r",
    paper="Jiang et al., COPA: Efficient Vision-Language Pre-training Through Collaborative Object- and "
          "Patch-Text Alignment, ACM MM 2023, arXiv:2308.03475",
    baselines=("full_vit",),
    bench="zoo.pta.bench:PTABench",
))
