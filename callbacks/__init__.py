"""Callbacks shared by the zoo models (throughput measurement, ...)."""

from callbacks.checkpoint import LastCheckpoint
from callbacks.throughput import TrainThroughput

__all__ = ["LastCheckpoint", "TrainThroughput"]
