"""Histogram buckets and label sets shared by the metric definitions."""

from __future__ import annotations

LATENCY = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
DIFF = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0)
# The first bound is 0, not negative, so that _sum (mean = _sum / _count) is exported; le="0" counts
# the shadows pointing away from the primary.
COSINE = (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1.0)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
ERROR = (0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
MV = ("model", "version")
MVV = ("model", "version", "variant")
