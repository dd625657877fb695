"""Photon transfer: frame-pair differences against the mean give the gain and offset of the camera
(a robust line fit).  The report section is :func:`pmdcompress.report.summary.summarize_photon_transfer`.
"""

from __future__ import annotations

import numpy as np


def integer_range(dtype) -> tuple[int, int] | None:
    """(min, max) of an integer dtype of at most 16 bits (photon counting needs a histogram), else None."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return None
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def photon_pairs(y: np.ndarray, n_pairs: int, lo: int, out=None):
    """Frame-pair sums for the photon-transfer curve from one block of integer frames.

    For ``n_pairs`` consecutive pairs spread over the block, bins by
    ``k = y_t + y_{t+1} - 2 lo`` (twice the pair mean) the count and the sum of
    ``v = (y_t - y_{t+1})^2 / 2``.

    Returns
    -------
    ndarray of float64, shape (2, K)
        Counts and sums of ``v`` for each ``k``.
    """
    n = y.shape[0]
    if out is None:
        raise ValueError("out is required")
    if n < 2:
        return out
    starts = np.unique(np.round(np.linspace(0, n - 2, min(n_pairs, n - 1))).astype(np.int64))
    size = out.shape[1]
    for t in starts:
        a = y[t].astype(np.int32).ravel()
        b = y[t + 1].astype(np.int32).ravel()
        k = a + b - 2 * lo
        diff = (a - b).astype(np.float64)
        out[0] += np.bincount(k, minlength=size)[:size]
        out[1] += np.bincount(k, weights=0.5 * diff * diff, minlength=size)[:size]
    return out


def fit_photon_transfer(sums: np.ndarray, lo: int, *, min_levels: int = 100, n_bins: int = 128) -> dict:
    """Robust line through the binned variance-versus-mean of frame pairs.

    ``var = g (mean - z)``: ``g`` is the camera gain (ADU per detected photon;
    for photomultipliers it includes the excess-noise factor), ``z`` the ADU at
    zero photons (read noise folded in).

    Parameters
    ----------
    sums : ndarray, shape (2, K)
        Output of :func:`photon_pairs`.
    lo : int
        Lowest value of the integer dtype.
    min_levels : int
        Fewest distinct intensity levels (ADU) spanned by usable bins.
    n_bins : int
        Bins of the curve.

    Returns
    -------
    dict
        ``ok`` and ``reason``; when ok: ``gain``, ``offset``, ``levels``, and the
        binned curve ``mean``, ``variance``, ``count``, ``used``.
    """
    count, sum_v = sums
    total = count.sum()
    if total == 0:
        return {"ok": False, "reason": "no frame pairs"}
    k = np.arange(count.size)
    cum = np.cumsum(count) / total
    k_lo = int(np.searchsorted(cum, 0.001))
    k_hi = int(np.searchsorted(cum, 0.999))
    levels = (k_hi - k_lo) / 2
    if levels < min_levels:
        return {"ok": False, "reason": f"the pair means span {levels:.0f} ADU levels, fewer than {min_levels}"}
    edges = np.unique(np.round(np.linspace(k_lo, k_hi + 1, n_bins + 1)).astype(np.int64))
    c = np.add.reduceat(count[k_lo : k_hi + 1], edges[:-1] - k_lo)
    sv = np.add.reduceat(sum_v[k_lo : k_hi + 1], edges[:-1] - k_lo)
    sm = np.add.reduceat((count * k)[k_lo : k_hi + 1], edges[:-1] - k_lo)
    ok = c > max(100, 0.01 * c.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (sm / c) / 2 + lo
        v = sv / c
    # The darkest 3 % of the range is distorted by clipping and read noise.
    ok &= m > m[ok].min() + 0.03 * (m[ok].max() - m[ok].min()) if ok.any() else ok
    # Shot noise only grows with the mean: past the peak of the variance the detector
    # saturates (clipped values), so those bins are dropped.
    if ok.sum() >= 5:
        idx = np.flatnonzero(ok)
        peak = idx[int(np.argmax(v[idx]))]
        if v[idx[-1]] < 0.8 * v[peak]:
            ok[peak + 1 :] = False
    if ok.sum() < 5:
        return {"ok": False, "reason": "fewer than 5 well-populated intensity bins"}
    x, yv, n = m[ok], v[ok], c[ok]
    weight = n / np.maximum(yv, 1e-12) ** 2  # 1 / var(mean of v) up to a constant
    slope, intercept = _huber_line(x, yv, weight)
    result = {
        "mean": m.tolist(), "variance": v.tolist(), "count": c.tolist(), "used": ok.tolist(),
        "levels": float(levels),
    }
    if not slope > 0:
        return dict(result, ok=False, reason=f"variance does not grow with the mean (slope {slope:.3g})")
    return dict(result, ok=True, reason="", gain=float(slope), offset=float(-intercept / slope))


def _huber_line(x, y, weight, c: float = 1.345, n_iter: int = 50):
    """Weighted Huber regression y = a x + b by iteratively reweighted least squares."""
    w = weight / weight.mean()
    a, b = np.polyfit(x, y, 1, w=np.sqrt(w))
    for _ in range(n_iter):
        res = (y - (a * x + b)) * np.sqrt(w)
        scale = 1.4826 * np.median(np.abs(res - np.median(res))) or 1.0
        u = np.abs(res) / (c * scale)
        h = np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-12))
        a_new, b_new = np.polyfit(x, y, 1, w=np.sqrt(w * h))
        if abs(a_new - a) <= 1e-10 * abs(a) and abs(b_new - b) <= 1e-10 * (abs(b) + 1):
            a, b = a_new, b_new
            break
        a, b = a_new, b_new
    return float(a), float(b)
