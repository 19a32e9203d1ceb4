"""Data building blocks shared by every family: image reading, transforms and in-memory datasets,
and the procedural worlds' per-sample RNG, rasterisation helpers and cache location."""
