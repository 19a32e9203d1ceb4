"""Vision building blocks: backbones (timm) with strict local weights, CLIP (open_clip), kNN search."""
