"""Callbacks shared by the zoo models (throughput measurement, ...)."""

from callbacks.throughput import TrainThroughput

__all__ = ["TrainThroughput"]
