"""The zoo's tiny CLIP (Radford et al., arXiv:2103.00020v1), pretrained on an embedded world to
serve as DePT's frozen CLIP. Registers ``clip``."""

from zoo.core.registry import ZooEntry, register

register(ZooEntry(
    name="clip",
    module="zoo.clip.lightning_model:TinyCLIP",
    datamodule="datamodules.fewshot.procedural:ShapesCaptions",
    summary="Contrastive pretraining of the zoo's tiny CLIP on the ShapesB2N captions (DePT's frozen CLIP)",
    paper="Radford et al., Learning Transferable Visual Models From Natural Language Supervision, arXiv:2103.00020v1",
))
