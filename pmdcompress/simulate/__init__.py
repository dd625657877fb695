"""Simulated movies with known truth, and the metrics that score a result against that truth.

A side package: tests, benchmarks and ``pmd evaluate`` use it; the compression core never imports it.
``movie`` writes a simulated movie and its truth; ``groundtruth`` scores a denoised movie against the truth.
"""

from __future__ import annotations

from .movie import (
    DEFAULT_GAIN,
    DEFAULT_OFFSET,
    DEFAULT_READ_NOISE,
    FORMAT_VERSION,
    KINDS,
    Truth,
    load_truth,
    simulate_movie,
    truth_path,
)

__all__ = [
    "DEFAULT_GAIN",
    "DEFAULT_OFFSET",
    "DEFAULT_READ_NOISE",
    "FORMAT_VERSION",
    "KINDS",
    "Truth",
    "load_truth",
    "simulate_movie",
    "truth_path",
]
