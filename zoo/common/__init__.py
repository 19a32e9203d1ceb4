"""Shared building blocks, below the papers and never importing them: ``vision`` (backbones, CLIP,
kNN), ``metrics`` (OOD, classification) and ``harness`` (the bench harness, reports and plots).
Language-model papers add ``lm`` beside ``vision``."""
