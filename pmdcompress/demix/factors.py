"""The denoised movie in factor space: ``Y = mean + U @ V`` with a sparse global ``U``.

:func:`load_factors` folds the noise, the overlap weights and the per-patch
spatial components of a store into one sparse matrix ``U`` (pixels x K, pixel
index ``y * X + x``), so that for every frame ``t``::

    movie[t].ravel() = mean.ravel() + U @ V[:, t]

Nothing here forms the movie; :func:`render_tile` expands a small rectangle of
pixels at a time for the steps that need pixel values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class Factors:
    """Sparse spatial and dense temporal factors of a denoised movie.

    Attributes
    ----------
    U : scipy.sparse.csr_matrix, shape (Y*X, K), float32
        Global spatial factors with noise and weights folded in.
    V : ndarray, shape (K, T), float32
        Temporal factors, centred (each row has mean zero).
    mean : ndarray, shape (Y, X), float32
        Per-pixel temporal mean of the movie.
    dims : tuple of int
        ``(Y, X)``.
    """

    U: sp.csr_matrix
    V: np.ndarray
    mean: np.ndarray
    dims: tuple[int, int]

    @property
    def n_frames(self) -> int:
        return self.V.shape[1]

    @property
    def n_pixels(self) -> int:
        return self.dims[0] * self.dims[1]


def global_spatial(store) -> sp.csr_matrix:
    """Sparse ``U`` (pixels x K) of a store: ``noise * W_p * U_p`` placed in the frame."""
    height, width = store.shape[1:]
    ph, pw = store.patch_shape
    rows, cols, vals = [], [], []
    offsets = store.component_offsets
    for p, (y0, x0) in enumerate(store.patch_origins):
        k0, k1 = int(offsets[p]), int(offsets[p + 1])
        if k1 == k0:
            continue
        yy = np.arange(y0, y0 + ph)
        xx = np.arange(x0, x0 + pw)
        pix = (yy[:, None] * width + xx[None, :]).ravel()
        w = (store.weights_y[p][:, None] * store.weights_x[p][None, :]).ravel()
        w = w * store.noise[y0 : y0 + ph, x0 : x0 + pw].ravel()
        block = store.spatial[:, k0:k1] * w[:, None]
        keep = w > 0
        r, c = np.nonzero(np.broadcast_to(keep[:, None], block.shape))
        rows.append(pix[r])
        cols.append(c + k0)
        vals.append(block[r, c])
    k = int(offsets[-1])
    if rows:
        u = sp.coo_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(height * width, k),
        )
    else:
        u = sp.coo_matrix((height * width, k), dtype=np.float32)
    u = u.tocsr()
    u.sum_duplicates()
    return u


def load_factors(store, *, chunk_frames: int = 4096) -> Factors:
    """Read a store's factors into memory (``V`` in float32, centred)."""
    t = store.shape[0]
    k = int(store.component_offsets[-1])
    v = np.empty((k, t), np.float32)
    for t0 in range(0, t, chunk_frames):
        v[:, t0 : t0 + chunk_frames] = store.temporal[:, t0 : t0 + chunk_frames]
    mean_v = v.mean(axis=1, keepdims=True, dtype=np.float64)
    u = global_spatial(store)
    # The temporal mean of the factors belongs to the mean image.
    mean = store.mean.astype(np.float64).ravel() + u @ mean_v[:, 0]
    v -= mean_v.astype(np.float32)
    return Factors(U=u, V=v, mean=mean.reshape(store.shape[1:]).astype(np.float32), dims=tuple(store.shape[1:]))


def bin_frames(v: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping groups of ``factor`` frames: (K, T) -> (K, T // factor)."""
    if factor <= 1:
        return v
    k, t = v.shape
    n = t // factor
    if n == 0:
        return v.mean(axis=1, keepdims=True)
    return v[:, : n * factor].reshape(k, n, factor).mean(axis=2)


def render_tile(u: sp.csr_matrix, v: np.ndarray, dims, y0, y1, x0, x1, *, pixel_major=False) -> np.ndarray:
    """Pixels of rectangle ``[y0:y1, x0:x1]`` of ``U @ V``, float32.

    Shape (T, y1-y0, x1-x0), or (y1-y0, x1-x0, T) with ``pixel_major``.
    """
    width = dims[1]
    yy = np.arange(y0, y1)
    pix = (yy[:, None] * width + np.arange(x0, x1)[None, :]).ravel()
    block = u[pix]
    cols = np.unique(block.indices)
    dense = block[:, cols].toarray().astype(np.float32, copy=False)
    if pixel_major:
        out = (dense @ v[cols]) if cols.size else np.zeros((pix.size, v.shape[1]), np.float32)
        return np.ascontiguousarray(out, dtype=np.float32).reshape(y1 - y0, x1 - x0, v.shape[1])
    out = (v[cols].T @ dense.T) if cols.size else np.zeros((v.shape[1], pix.size), np.float32)
    return np.ascontiguousarray(out, dtype=np.float32).reshape(v.shape[1], y1 - y0, x1 - x0)


def highpass_spatial(store, factors: Factors, sigma: float) -> sp.csr_matrix:
    """``U - gaussian(U)``: the spatial factors of the movie high-passed in space.

    Each patch's folded components are filtered on the patch grown by ``3 sigma``
    (clipped to the frame, reflected at its edges), so the result stays sparse.
    Filtering is linear, so ``highpass_spatial(...) @ V`` is the high-passed movie.
    """
    if sigma <= 0:
        return factors.U
    height, width = factors.dims
    ph, pw = store.patch_shape
    halo = 2 * (_box_size(sigma) // 2)
    offsets = store.component_offsets
    k = int(offsets[-1])

    def grown(y0, x0):
        return max(y0 - halo, 0), min(y0 + ph + halo, height), max(x0 - halo, 0), min(x0 + pw + halo, width)

    # Every patch's components over the patch grown by the halo, dense: the entries are counted first and
    # written into one set of int32 arrays (a list of pieces and their concatenation held three copies of
    # them: the peak of a demix at 1.5x zoom, 714 MiB, now about a third of that).
    patches = [p for p in range(len(store.patch_origins)) if offsets[p + 1] > offsets[p]]
    sizes = []
    for p in patches:
        a0, a1, b0, b1 = grown(*store.patch_origins[p])
        sizes.append(int(offsets[p + 1] - offsets[p]) * (a1 - a0) * (b1 - b0))
    if not patches:
        return sp.csr_matrix((height * width, k), dtype=np.float32)
    index_type = np.int32 if max(height * width, k) < 2**31 else np.int64
    rows = np.empty(sum(sizes), index_type)
    cols = np.empty(sum(sizes), index_type)
    vals = np.empty(sum(sizes), np.float32)
    start = 0
    for p, size in zip(patches, sizes, strict=True):
        y0, x0 = store.patch_origins[p]
        k0, k1 = int(offsets[p]), int(offsets[p + 1])
        a0, a1, b0, b1 = grown(y0, x0)
        w = store.weights_y[p][:, None] * store.weights_x[p][None, :] * store.noise[y0 : y0 + ph, x0 : x0 + pw]
        img = np.zeros((k1 - k0, a1 - a0, b1 - b0), np.float32)
        img[:, y0 - a0 : y0 - a0 + ph, x0 - b0 : x0 - b0 + pw] = (
            store.spatial[:, k0:k1].T.reshape(k1 - k0, ph, pw) * w
        )
        img -= _smooth(img, sigma)
        pix = (np.arange(a0, a1)[:, None] * width + np.arange(b0, b1)[None, :]).ravel()
        piece = slice(start, start + size)
        rows[piece].reshape(k1 - k0, pix.size)[:] = pix[None, :]
        cols[piece].reshape(k1 - k0, pix.size)[:] = np.arange(k0, k1)[:, None]
        vals[piece] = img.ravel()
        start += size
    u = sp.csr_matrix((vals, (rows, cols)), shape=(height * width, k), dtype=np.float32)
    del rows, cols, vals
    u.sum_duplicates()
    return u


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    """Two passes of a box filter along the last two axes: a cheap Gaussian of SD about ``sigma``."""
    from scipy import ndimage

    size = _box_size(sigma)
    out = img
    for axis in (-2, -1):
        for _ in range(2):
            out = ndimage.uniform_filter1d(out, size, axis=axis, mode="reflect")
    return out


def _box_size(sigma: float) -> int:
    """Odd width of a box filter that, applied twice, has standard deviation about ``sigma``."""
    return max(int(round(np.sqrt(6.0 * sigma * sigma + 1.0))) | 1, 1)
