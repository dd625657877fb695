"""Roughness statistics of candidate components (the rank test of PMD).

A component is kept when it is smoother, in space or in time, than what the
same pipeline finds in pure noise.  Smaller is smoother.
"""

from __future__ import annotations

import numpy as np

from .._numba import jit


@jit
def _spatial_roughness_kernel(u: np.ndarray, h: int, w: int) -> np.ndarray:
    # u: (h*w, k) C-order images in columns.
    k = u.shape[1]
    out = np.empty(k, dtype=np.float64)
    n_edges = h * (w - 1) + w * (h - 1)
    for c in range(k):
        tv = 0.0
        l1 = 0.0
        for i in range(h):
            for j in range(w):
                a = u[i * w + j, c]
                l1 += abs(a)
                if j + 1 < w:
                    tv += abs(a - u[i * w + j + 1, c])
                if i + 1 < h:
                    tv += abs(a - u[(i + 1) * w + j, c])
        if l1 == 0.0 or n_edges == 0:
            out[c] = np.inf
        else:
            out[c] = (tv / n_edges) / (l1 / (h * w))
    return out


@jit
def _temporal_roughness_kernel(v: np.ndarray) -> np.ndarray:
    # v: (T, k) time series in columns.
    t_len, k = v.shape
    out = np.empty(k, dtype=np.float64)
    for c in range(k):
        l1 = 0.0
        for t in range(t_len):
            l1 += abs(v[t, c])
        d2 = 0.0
        for t in range(1, t_len - 1):
            d2 += abs(v[t - 1, c] - 2.0 * v[t, c] + v[t + 1, c])
        out[c] = np.inf if (l1 == 0.0 or t_len < 3) else d2 / l1
    return out


def spatial_roughness(u: np.ndarray, patch_shape: tuple[int, int]) -> np.ndarray:
    """Mean absolute 4-neighbour difference over mean absolute value, per column.

    Parameters
    ----------
    u : ndarray, shape (h*w, k)
        Spatial components, each a C-order (h, w) image.
    patch_shape : (int, int)

    Returns
    -------
    ndarray, shape (k,)
        ``inf`` for an all-zero component or a 1x1 patch.
    """
    h, w = patch_shape
    return _spatial_roughness_kernel(np.ascontiguousarray(u, dtype=np.float64), int(h), int(w))


def temporal_roughness(v: np.ndarray) -> np.ndarray:
    """Sum of absolute second differences over sum of absolute values, per column.

    Parameters
    ----------
    v : ndarray, shape (T, k)

    Returns
    -------
    ndarray, shape (k,)
        ``inf`` for an all-zero component or fewer than 3 frames.
    """
    return _temporal_roughness_kernel(np.ascontiguousarray(v, dtype=np.float64))
