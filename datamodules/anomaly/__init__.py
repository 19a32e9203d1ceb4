"""Anomaly-segmentation data (MGCDA): the embedded road world (``procedural.RoadWorld``) and the
real setting (``real.CityscapesOE`` with Cityscapes, COCO OE masks, Fishyscapes, Road Anomaly).
See :mod:`datamodules.anomaly.base` for the batch contract."""
