"""Shared building blocks: backbones, metrics, kNN search, errors, the ZooModule base."""
