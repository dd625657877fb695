"""Temporal penalty on the re-fitted factors (trend filtering within the noise budget)."""

from __future__ import annotations

import numpy as np

from .penalties import constrained_trend_filter


def robust_noise_std(rows: np.ndarray) -> np.ndarray:
    """Per-row white-noise std: 1.4826 * median(|diff|) / sqrt(2), shape (k,)."""
    d = np.diff(np.asarray(rows, np.float64), axis=1)
    return 1.4826 * np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1) / np.sqrt(2.0)


def trend_filter_rows(rows: np.ndarray) -> np.ndarray:
    """Trend-filter each temporal factor within its own noise budget.

    Each row ``v~`` (a patch component's time course on the full movie) is
    replaced by the smoothest ``v`` in ``||D^2 v||_1`` with
    ``||v~ - v||^2 <= T * s^2``, ``s`` the row's noise level from the median
    absolute first difference (robust to calcium transients, whose sharp rises
    would inflate a spectral estimate and make the filter remove signal):
    the penalized temporal step of PMD applied to the re-fitted factors, so
    that the noise left in the component's time course is removed too.

    Parameters
    ----------
    rows : ndarray, shape (k, T)

    Returns
    -------
    ndarray, shape (k, T), float32
    """
    out = np.array(rows, dtype=np.float32, copy=True)
    n = rows.shape[1]
    if n < 8:
        return out
    sigma = robust_noise_std(rows)
    lam = None  # rows are in noise units, so one row's penalty is a good start for the next
    for i in range(rows.shape[0]):
        if sigma[i] > 0:
            out[i], lam_i = constrained_trend_filter(rows[i].astype(np.float64), n * sigma[i] ** 2, rtol=5e-2,
                                                     lam0=lam)
            lam = lam_i if lam_i > 0 else lam
    return out
