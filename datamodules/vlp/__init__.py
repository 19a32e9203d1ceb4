"""Vision-language pre-training data (PTA / COPA).

- :mod:`~datamodules.vlp.records`: the zoo record (image, id, captions, objects with boxes, mentions).
- :mod:`~datamodules.vlp.labels`: box -> patch labels and the box transforms.
- :mod:`~datamodules.vlp.base`: pair / image datasets, collates, the LightningDataModule base.
- :mod:`~datamodules.vlp.shapes`, :mod:`~datamodules.vlp.procedural`: the embedded world (shapes on clutter).
- :mod:`~datamodules.vlp.readers`, :mod:`~datamodules.vlp.captions`: COCO / Flickr30k Karpathy, COCO
  instances, Visual Genome and ALBEF JSON readers, and their datamodule.
"""
