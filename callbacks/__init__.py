"""Callbacks shared by the zoo models: last.ckpt every epoch, exact-resume RNG states, throughput."""

from callbacks.checkpoint import LastCheckpoint
from callbacks.rng import RNGState
from callbacks.throughput import TrainThroughput

__all__ = ["LastCheckpoint", "RNGState", "TrainThroughput"]
