"""Ring-model background for one-photon data, in factor space.

The fluctuating background at pixel ``i`` is a weighted sum of the residual
``X = Y - A C`` at the pixels of a ring of radius ``ring_radius`` around ``i``
(CNMF-E's model, our own code)::

    B = W X,   W (pixels x pixels) sparse, ring-shaped rows

The weights are fitted by ridge-regularised least squares on a coarse version of
the residual: pixels averaged in ``ssub x ssub`` blocks (the low-resolution grid,
matrix ``D``), frames averaged to at most ``max_frames``.  Every full-resolution
pixel takes the background of its block (``Up``, one non-zero per row), so

    B = Up Wl D (U V - A C) = Up (G V - H C),   G = Wl D U,  H = Wl D A

and nothing of size pixels x frames is formed.  With ``W`` fixed, the
background-subtracted movie ``Y - B`` is again a factorisation
``[U, Up] @ [V; -(G V - H C_old)]`` (the binned background ``G V - H C_old`` is a
dense (low-res pixels x binned frames) block), so the HALS rounds run unchanged on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .factors import bin_frames
from .hals import Footprints


@dataclass
class Ring:
    """Fitted ring weights on the low-resolution grid."""

    weights: sp.csr_matrix  # Wl, (Nl x Nl)
    down: sp.csr_matrix  # D, (Nl x pixels), block means
    up: sp.csr_matrix  # Up, (pixels x Nl), one 1 per row
    low_dims: tuple[int, int]


def grid_matrices(dims, ssub: int):
    """``D`` (block means, Nl x N) and ``Up`` (block of each pixel, N x Nl) for ``ssub x ssub`` blocks."""
    height, width = dims
    lh, lw = -(-height // ssub), -(-width // ssub)
    yy, xx = np.mgrid[:height, :width]
    parent = ((yy // ssub) * lw + xx // ssub).ravel()
    n = height * width
    up = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), parent)), shape=(n, lh * lw))
    counts = np.bincount(parent, minlength=lh * lw).astype(np.float32)
    down = sp.csr_matrix(((1.0 / counts[parent]).astype(np.float32), (parent, np.arange(n))), shape=(lh * lw, n))
    return down, up, (lh, lw)


def ring_offsets(radius: float) -> np.ndarray:
    """Integer offsets (dy, dx) with ``radius <= |d| < radius + 1`` (a one-pixel-wide ring)."""
    r = int(np.ceil(radius + 1))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.hypot(dy, dx)
    keep = (d >= radius) & (d < radius + 1)
    return np.stack([dy[keep], dx[keep]], axis=1)


def fit_ring_weights(x: np.ndarray, dims, radius: float, *, ridge: float = 1e-2, chunk: int = 1024) -> sp.csr_matrix:
    """Per-pixel ridge regression of ``x[i]`` on ``x`` at the ring around ``i``.

    ``x`` (pixels x T, pixel index ``y * X + x``); returns ``W`` (pixels x pixels)
    minimising ``|x_i - w_i x_ring(i)|^2 + ridge * mean(diag G_i) |w_i|^2`` for each row.
    """
    height, width = dims
    n, t = x.shape
    offs = ring_offsets(radius)
    m = len(offs)
    xz = np.vstack([x.astype(np.float64), np.zeros((1, t))])  # row n: zero (outside the frame)
    yy, xx = np.divmod(np.arange(n), width)
    ry = yy[:, None] + offs[None, :, 0]
    rx = xx[:, None] + offs[None, :, 1]
    inside = (ry >= 0) & (ry < height) & (rx >= 0) & (rx < width)
    idx = np.where(inside, ry * width + rx, n)
    vals = np.zeros((n, m))
    eye = np.eye(m)
    for i0 in range(0, n, chunk):
        sl = slice(i0, min(i0 + chunk, n))
        xr = xz[idx[sl]]  # (c, m, T)
        g = np.matmul(xr, xr.transpose(0, 2, 1))  # (c, m, m)
        rhs = np.einsum("cmt,ct->cm", xr, xz[i0 : sl.stop])
        scale = np.einsum("cii->c", g) / max(m, 1)
        lam = ridge * np.maximum(scale, 1e-12)
        g += lam[:, None, None] * eye
        vals[sl] = np.linalg.solve(g, rhs[..., None])[..., 0]
    vals[~inside] = 0.0
    rows = np.repeat(np.arange(n), m)
    w = sp.csr_matrix((vals.ravel(), (rows, idx.ravel())), shape=(n, n + 1))[:, :n]
    w.eliminate_zeros()
    return w.tocsr()


def fit_ring(u, v, fp: Footprints, c, radius: float, *, ssub: int = 2, max_frames: int = 250,
             ridge: float = 1e-2) -> Ring:
    """Fit the ring weights to the residual ``U V - A C`` (``v``, ``c`` at the same frame rate)."""
    down, up, low_dims = grid_matrices(fp.dims, ssub)
    factor = max(1, int(np.ceil(v.shape[1] / max_frames)))
    vr = bin_frames(np.asarray(v, np.float64), factor)
    cr = bin_frames(np.asarray(c, np.float64), factor) if fp.n else np.zeros((0, vr.shape[1]))
    du = (down @ u).tocsr()
    x = np.asarray(du @ vr)
    if fp.n:
        x -= np.asarray((down @ fp.to_sparse()) @ cr)
    x -= x.mean(axis=1, keepdims=True)
    w = fit_ring_weights(x, low_dims, radius / ssub, ridge=ridge)
    return Ring(w.astype(np.float32), down, up, low_dims)


def background_low(ring: Ring, u, v, fp: Footprints, c) -> np.ndarray:
    """The background ``Wl D (U v - A c)`` on the low-res grid, dense (Nl x T), float32."""
    g = (ring.weights @ (ring.down @ u)).tocsr()
    b = np.asarray(g @ np.asarray(v, np.float32), dtype=np.float32)
    if fp.n:
        h = (ring.weights @ (ring.down @ fp.to_sparse())).tocsr()
        b -= np.asarray(h @ np.asarray(c, np.float32), dtype=np.float32)
    return b


def subtracted_factors(ring: Ring, u, v, fp: Footprints, c):
    """Factors of ``Y - B`` with ``B`` fixed at the current ``A``, ``c``: ``([U, Up], [v; -B_low])``."""
    b = background_low(ring, u, v, fp, c)
    u2 = sp.hstack([u, ring.up]).tocsr().astype(np.float32)
    v2 = np.vstack([np.asarray(v, np.float32), -b])
    return u2, v2


def solve_traces_ring(ring: Ring, u, v, fp: Footprints, *, ridge: float = 1e-6) -> np.ndarray:
    """Traces consistent with the ring model: least squares of ``(I - W) (U V) ~ (I - W) A C``.

    ``W = Up Wl D``; ``(I - W) U`` is never formed: ``A'^T (I - W) U = A'^T U - (A'^T Up) (Wl D U)``
    with ``A' = (I - W) A``.
    """
    if fp.n == 0:
        return np.zeros((0, v.shape[1]))
    a = fp.to_sparse().astype(np.float64)
    wd = (ring.weights @ ring.down).tocsr().astype(np.float64)
    ap = (a - ring.up @ (wd @ a)).tocsc()  # (I - W) A, sparse
    g = (wd @ u).tocsr()  # Wl D U (Nl x K)
    proj = np.asarray((ap.T @ u).todense()) - np.asarray(((ap.T @ ring.up) @ g).todense())
    gram = np.asarray((ap.T @ ap).todense())
    reg = gram + np.diag(ridge * np.maximum(np.diag(gram), 1e-12) + 1e-12)
    rhs = proj @ v
    try:
        return np.linalg.solve(reg, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(reg, rhs, rcond=None)[0]
