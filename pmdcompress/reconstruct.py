"""Reconstruction of movie frames from the factors.

The model (docs/format.md)::

    movie[t, y, x] = mean[y, x] + noise[y, x] * sum_p W_p[y, x] * (U_p V_p)[pixel(y, x), t]

The field of view is cut into *cells*: rectangles covered by the same set of
patches.  Inside a cell the model is one dense product ``U_cell @ V_cell`` whose
left factor already holds ``noise * W_p * U_p`` for every covering patch, so each
output pixel is written exactly once: a BLAS product into a small, cache-resident
buffer, then a fused numba epilogue that adds the mean, rounds, clips, casts and
scatters into the output frame block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._numba import jit


@dataclass
class Cell:
    """A rectangle of the output covered by a fixed set of patches."""

    y0: int
    y1: int
    x0: int
    x1: int
    components: np.ndarray  # indices into the temporal factor rows, shape (K_c,)
    left: np.ndarray  # (K_c, n_pixels) float32: folded spatial factors, transposed
    mean: np.ndarray  # (n_pixels,) float32
    trend: np.ndarray | None = None  # (n_knots, n_pixels) float32, when the store has a trend


def _cuts(starts, size, lo, hi):
    points = {lo, hi}
    for s in starts:
        for p in (s, s + size):
            if lo < p < hi:
                points.add(int(p))
    return sorted(points)


def build_cells(factors, y0: int, y1: int, x0: int, x1: int) -> list[Cell]:
    """Cells of the crop [y0:y1, x0:x1] with their folded spatial factors.

    ``factors`` provides ``mean``, ``noise`` (Y, X), ``patch_origins`` (n, 2),
    ``patch_shape``, ``weights_y``/``weights_x`` (n, py)/(n, px), ``spatial``
    (py*px, K) and ``component_offsets`` (n + 1,).
    """
    py, px = factors.patch_shape
    origins = factors.patch_origins
    offsets = factors.component_offsets
    spatial = factors.spatial
    ys = _cuts(np.unique(origins[:, 0]), py, y0, y1)
    xs = _cuts(np.unique(origins[:, 1]), px, x0, x1)
    cells = []
    for cy0, cy1 in zip(ys[:-1], ys[1:], strict=True):
        for cx0, cx1 in zip(xs[:-1], xs[1:], strict=True):
            covering = np.flatnonzero(
                (origins[:, 0] <= cy0) & (origins[:, 0] + py >= cy1)
                & (origins[:, 1] <= cx0) & (origins[:, 1] + px >= cx1)
            )
            noise = factors.noise[cy0:cy1, cx0:cx1]
            blocks, comps = [], []
            for p in covering:
                k0, k1 = offsets[p], offsets[p + 1]
                if k1 == k0:
                    continue
                oy, ox = origins[p]
                ry = np.arange(cy0 - oy, cy1 - oy)
                rx = np.arange(cx0 - ox, cx1 - ox)
                pix = (ry[:, None] * px + rx[None, :]).ravel()
                w = (factors.weights_y[p, ry][:, None] * factors.weights_x[p, rx][None, :]) * noise
                blocks.append((spatial[pix, k0:k1] * w.reshape(-1, 1)).T)
                comps.append(np.arange(k0, k1))
            n_pix = (cy1 - cy0) * (cx1 - cx0)
            left = (np.concatenate(blocks, axis=0) if blocks else np.zeros((0, n_pix))).astype(np.float32)
            components = np.concatenate(comps) if comps else np.zeros(0, np.int64)
            mean = np.ascontiguousarray(factors.mean[cy0:cy1, cx0:cx1], dtype=np.float32).ravel()
            trend = getattr(factors, "trend", None)
            if trend is not None:
                trend = np.ascontiguousarray(trend[:, cy0:cy1, cx0:cx1].reshape(len(trend), -1), np.float32)
            cells.append(Cell(cy0, cy1, cx0, cx1, components, np.ascontiguousarray(left), mean, trend))
    return cells


@jit
def _epilogue_round_kernel(product, mean, flat, lo, hi):
    # Integer output: flat = clip(floor(product + mean + 0.5), lo, hi), in float32
    # arithmetic (exact for every integer up to 2**24, which covers uint16/int16).
    # One long contiguous loop per frame vectorises; the scatter into the
    # (strided) output region is left to numpy's copy.
    n, m = product.shape
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    half = np.float32(0.5)
    for t in range(n):
        for j in range(m):
            flat[t, j] = np.floor(min(max(product[t, j] + mean[j] + half, lo32), hi32))


@jit
def _epilogue_float_kernel(product, mean, flat):
    n, m = product.shape
    for t in range(n):
        for j in range(m):
            flat[t, j] = product[t, j] + mean[j]


def epilogue(product, mean, out, lo, hi, do_round):
    """Add the mean to a cell's product and write it into ``out`` (n, h, w), any dtype.

    ``product``: (n, h*w) float32; ``mean``: (h*w,) float32.  Integer outputs are
    rounded to nearest and clipped to [lo, hi]; all arithmetic is float32.
    """
    n, h, w = out.shape
    direct = out.flags.c_contiguous
    flat = out.reshape(n, h * w) if direct else np.empty((n, h * w), out.dtype)
    if do_round:
        _epilogue_round_kernel(product, mean, flat, lo, hi)
    else:
        _epilogue_float_kernel(product, mean, flat)
    if not direct:
        out[...] = flat.reshape(n, h, w)


def dtype_limits(dtype) -> tuple[float, float, bool]:
    """(low, high, round?) for writing float values into ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max), True
    return -np.inf, np.inf, False


def render(cells: list[Cell], temporal_block: np.ndarray, out: np.ndarray, y0: int, x0: int,
           trend_basis: np.ndarray | None = None) -> None:
    """Write frames into ``out`` (n, h, w) for a crop whose top-left is (y0, x0).

    ``temporal_block``: (K, n) float32 temporal factors of these frames;
    ``trend_basis``: (n, n_knots) interpolation weights of these frames, when the
    store has a trend.
    """
    lo, hi, do_round = dtype_limits(out.dtype)
    n = out.shape[0]
    for cell in cells:
        region = out[:, cell.y0 - y0 : cell.y1 - y0, cell.x0 - x0 : cell.x1 - x0]
        if cell.components.size:
            product = temporal_block[cell.components].T @ cell.left
        else:
            product = np.zeros((n, cell.mean.size), np.float32)
        if cell.trend is not None and trend_basis is not None:
            product += trend_basis @ cell.trend
        epilogue(product, cell.mean, region, lo, hi, do_round)
