"""Baselines and dF/F: a running low percentile over a window given in seconds."""

from __future__ import annotations

import numpy as np


def running_percentile(x: np.ndarray, window: int, q: float) -> np.ndarray:
    """Running ``q``-th percentile of each row of ``x`` (n, T) over a centred window of ``window`` frames.

    For speed the exact percentile is taken only every ``step = window // 20``
    frames (over the full window there, clipped at the ends) and interpolated
    linearly in between.  With ``window >= T`` every frame gets the percentile of
    the whole row.
    """
    x = np.asarray(x, np.float64)
    n, t = x.shape
    if t == 0 or n == 0:
        return np.zeros_like(x)
    window = int(max(window, 1))
    if window >= t:
        return np.repeat(np.percentile(x, q, axis=1)[:, None], t, axis=1)
    step = max(1, window // 20)
    half = window // 2
    centers = np.unique(np.concatenate([np.arange(0, t, step), [t - 1]]))
    samples = np.empty((n, centers.size))
    for i, c in enumerate(centers):
        samples[:, i] = np.percentile(x[:, max(0, c - half) : c + half + 1], q, axis=1)
    frames = np.arange(t)
    return np.stack([np.interp(frames, centers, row) for row in samples])


def delta_f_over_f(raw: np.ndarray, baseline: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """``(raw - baseline) / max(baseline, floor)`` row by row (``floor``: (n,) positive)."""
    den = np.maximum(baseline, np.asarray(floor, np.float64)[:, None])
    return (raw - baseline) / den
