"""The zoo's record of one image-text item for vision-language pre-training (PTA / COPA).

Every reader (COCO / Flickr30k Karpathy JSON, COCO instances, Visual Genome, ALBEF-style JSON) and
the embedded world produce :class:`ImageRecord` lists; the datasets in :mod:`datamodules.vlp.base`
turn them into tensors. Boxes are ``[x1, y1, x2, y2]`` in pixels of the *original* image
(converted from COCO/VG ``[x, y, w, h]`` by the readers).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VLPObject:
    """One object of an image: its name (category / VG name) and its box ``[x1, y1, x2, y2]``."""

    name: str
    box: tuple[float, float, float, float]


@dataclass
class ImageRecord:
    """One image with its captions.

    Attributes:
        image: the image path (absolute, or relative to the dataset root), or for the embedded world
            a ``"world:<split>/<index>"`` key.
        image_id: an integer id unique within the dataset.
        captions: the image's captions (non-empty strings).
        objects: the image's annotated objects; empty when the image has no boxes.
        mentions: per caption, the indices into ``objects`` of the objects that caption mentions
            (the PTA positives); ``len(mentions) == len(captions)`` whenever ``objects`` is non-empty.
        width, height: the original image size in pixels (0 = unknown until the image is read).
    """

    image: str
    image_id: int
    captions: list[str]
    objects: list[VLPObject] = field(default_factory=list)
    mentions: list[list[int]] = field(default_factory=list)
    width: int = 0
    height: int = 0

    @property
    def has_boxes(self) -> bool:
        """Whether the image carries object boxes (the PTA term applies to its pairs)."""
        return bool(self.objects)
