"""The zoo's core layer: errors, the registry, :class:`ZooModule` and checkpoint loading, the
training harness, the cache root and atomic writes, strict weight loading and the LR schedule.

It imports nothing above it (no paper, no world, no entry point), so every paper and every shared
building block can stand on it.
"""

#: the zoo's version, written into every checkpoint's ``zoo`` block.
VERSION = "0.1.0"
