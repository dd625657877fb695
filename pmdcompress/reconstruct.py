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

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._numba import jit
from .formats.store import read_store
from .indexing import lazy_getitem
from .options import frame_dtype_ok
from .preprocess import trend_basis
from .store.zarr_store import describe, directory_bytes, store_frame_rate


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

    def __post_init__(self):
        k = self.components
        # A cell covered by one patch, or by horizontal neighbours (consecutive patches), has consecutive rows.
        self._rows = slice(int(k[0]), int(k[-1]) + 1) if k.size and int(k[-1]) - int(k[0]) == k.size - 1 else k

    @property
    def rows(self) -> slice | np.ndarray:
        """The temporal rows of the cell: a slice when they are consecutive (a view, no gather), else indices."""
        return self._rows


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
def _epilogue_round_kernel(product, mean, out, lo, hi):
    # Integer output: out = clip(floor(product + mean + 0.5), lo, hi), in float32
    # arithmetic (exact for every integer up to 2**24, which covers uint16/int16).
    # Written straight into the (strided) output region: a temporary and a second
    # copy cost more than the short inner rows lose.
    n, h, w = out.shape
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    half = np.float32(0.5)
    for t in range(n):
        for i in range(h):
            for j in range(w):
                k = i * w + j
                out[t, i, j] = np.floor(min(max(product[t, k] + mean[k] + half, lo32), hi32))


@jit
def _epilogue_float_kernel(product, mean, out):
    n, h, w = out.shape
    for t in range(n):
        for i in range(h):
            for j in range(w):
                k = i * w + j
                out[t, i, j] = product[t, k] + mean[k]


# The same epilogues into the rectangle [y0:y0+h, x0:x0+w] of a whole C-contiguous output (n, Y, X), every index
# unsigned: numba tests a signed index for a negative value (to wrap it around) at every element, and with that
# test in the loop a row of 9-24 pixels (a cell's width) costs about twice its arithmetic.  Unsigned, on the real
# stores' cells: 1.16 -> 0.83 ns per pixel (neurofinder_dev, widths 9-23), 1.37 -> 0.54 (optinist_mouse2p,
# widths 8-24), the same values.
@jit
def _epilogue_round_into_kernel(product, mean, out, y0, x0, h, w, lo, hi):
    n = out.shape[0]
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    half = np.float32(0.5)
    first = np.uint64(x0)
    width = np.uint64(w)
    for t in range(n):
        frame = out[t]
        values = product[t]
        for i in range(h):
            row = frame[y0 + i]
            start = np.uint64(i * w)
            for j in range(width):
                row[first + j] = np.floor(min(max(values[start + j] + mean[start + j] + half, lo32), hi32))


@jit
def _epilogue_float_into_kernel(product, mean, out, y0, x0, h, w):
    n = out.shape[0]
    first = np.uint64(x0)
    width = np.uint64(w)
    for t in range(n):
        frame = out[t]
        values = product[t]
        for i in range(h):
            row = frame[y0 + i]
            start = np.uint64(i * w)
            for j in range(width):
                row[first + j] = values[start + j] + mean[start + j]


def epilogue(product, mean, out, lo, hi, do_round):
    """Add the mean to a cell's product and write it into ``out`` (n, h, w), any dtype.

    ``product``: (n, h*w) float32; ``mean``: (h*w,) float32.  Integer outputs are
    rounded to nearest and clipped to [lo, hi]; all arithmetic is float32.
    """
    if do_round:
        _epilogue_round_kernel(product, mean, out, lo, hi)
    else:
        _epilogue_float_kernel(product, mean, out)


def epilogue_into(product, mean, out, y0, x0, h, w, lo, hi, do_round):
    """:func:`epilogue` into ``out[:, y0:y0+h, x0:x0+w]`` of a C-contiguous ``out`` (n, Y, X)."""
    if do_round:
        _epilogue_round_into_kernel(product, mean, out, y0, x0, h, w, lo, hi)
    else:
        _epilogue_float_into_kernel(product, mean, out, y0, x0, h, w)


def _output_dtype(dtype) -> np.dtype:
    """``dtype`` when frames can be written in it: integers and floats of at most 64 bits."""
    dtype = np.dtype(dtype)
    if not frame_dtype_ok(dtype):
        raise TypeError(f"cannot reconstruct frames as {dtype}: need an integer or float dtype of at most 64 bits")
    return dtype


def dtype_limits(dtype) -> tuple[float, float, bool]:
    """(low, high, round?) for writing float values into ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max), True
    return -np.inf, np.inf, False


def render(cells: list[Cell], temporal_block: np.ndarray, out: np.ndarray, y0: int, x0: int,
           trend_basis: np.ndarray | None = None, row_positions: np.ndarray | None = None) -> None:
    """Write frames into ``out`` (n, h, w) for a crop whose top-left is (y0, x0).

    ``temporal_block``: (K, n) float32 temporal factors of these frames, or with ``row_positions`` (K,) only some
    rows of them, row ``k`` of the factors at ``temporal_block[row_positions[k]]``;
    ``trend_basis``: (n, n_knots) interpolation weights of these frames, when the
    store has a trend.
    """
    lo, hi, do_round = dtype_limits(out.dtype)
    n = out.shape[0]
    whole = out.flags.c_contiguous  # else (a strided view given as out) the strided epilogue
    # The kernels are called directly (not through epilogue()/epilogue_into()): a short read of many small cells
    # (20 frames, 189 cells on sima_ca1_example) spends as much in the Python around each cell as in its work.
    if do_round:
        into_kernel, strided_kernel, limits = _epilogue_round_into_kernel, _epilogue_round_kernel, (lo, hi)
    else:
        into_kernel, strided_kernel, limits = _epilogue_float_into_kernel, _epilogue_float_kernel, ()
    # One product buffer for every cell (reused: no allocation, and its pages stay in cache).
    buffer = np.empty(n * max((cell.mean.size for cell in cells), default=0), np.float32)
    for cell in cells:
        size = cell.mean.size
        product = buffer[: n * size].reshape(n, size)
        if cell.components.size:
            # (K_c, n) rows: a view when consecutive; their transpose is F-ordered, which BLAS takes as is
            rows = cell._rows if row_positions is None else _as_rows(row_positions[cell.components])
            np.matmul(temporal_block[rows].T, cell.left, out=product)
        else:
            product[...] = 0.0
        if cell.trend is not None and trend_basis is not None:
            product += trend_basis @ cell.trend
        if whole:
            into_kernel(product, cell.mean, out, cell.y0 - y0, cell.x0 - x0, cell.y1 - cell.y0, cell.x1 - cell.x0,
                        *limits)
        else:
            strided_kernel(product, cell.mean, out[:, cell.y0 - y0 : cell.y1 - y0, cell.x0 - x0 : cell.x1 - x0],
                           *limits)


def _as_rows(positions: np.ndarray) -> slice | np.ndarray:
    """Row positions as a slice where they are consecutive (a view of the block, as :attr:`Cell.rows`)."""
    if positions.size and int(positions[-1]) - int(positions[0]) == positions.size - 1:
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions


#: Frames :meth:`PMDStore.read` makes at a time.
RENDER_FRAMES = 256

#: Default chunks of :meth:`PMDStore.to_dask`: (frames, pixels, pixels).
DASK_CHUNK_FRAMES = 256
DASK_CHUNK_PIXELS = 64

class PMDStore:
    """A compressed movie: a lazy (T, Y, X) float32 array reconstructed on demand.

    ``store[t0:t1, y0:y1, x0:x1]`` reconstructs only what is asked;
    :meth:`read` does the same with an output dtype; :meth:`to_dask` wraps it.
    """

    def __init__(self, path):
        # None: an open group, or a store still being written under its temporary name.
        self.path = Path(path) if isinstance(path, str | os.PathLike) else None
        contents = read_store(path)
        self.metadata = contents.metadata
        self.mean = contents.mean
        self.noise = contents.noise
        self.patch_origins = contents.patch_origins
        self.patch_ranks = contents.patch_ranks
        self.weights_y = contents.weights_y
        self.weights_x = contents.weights_x
        self.spatial = contents.spatial
        self.spatial_scale = contents.spatial_scale  # (K,) rounding step of each spatial column; None: version 1
        self.temporal_df = contents.temporal_df  # (K,) degrees of freedom of the filtered factors, or None
        self.temporal = contents.temporal
        self.trend = contents.trend
        self.trend_frames = contents.trend_frames
        self._contents = contents
        self.component_offsets = np.concatenate([[0], np.cumsum(self.patch_ranks)])
        self._cells_cache: dict = {}
        self._temporal_cache = None

    # -- array protocol -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.metadata.shape)

    @property
    def patch_shape(self) -> tuple[int, int]:
        return tuple(self.metadata.patch_shape)

    @property
    def dtype(self):
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        t, y, x = self.shape
        where = self.path or "in memory"
        return f"<PMDStore {where}: {t}x{y}x{x}, {self.metadata.method}, rank {self.metadata.total_rank}>"

    def __getitem__(self, key):
        """numpy's basic and advanced indexing, with numpy's result (the float32 frames of :meth:`read`).

        Only what is asked is reconstructed: the frames selected (``store[::100]`` of a 20000-frame movie makes
        200 frames, not 20000) and, in space, the rectangle that holds the rows and columns selected
        (:func:`pmdcompress.indexing.lazy_getitem`).
        """
        return lazy_getitem(self.shape, np.float32, key,
                            lambda t0, t1, rows, columns, out: self.read(t0, t1, rows, columns, out=out))

    def __array_function__(self, func, types, args, kwargs):
        """numpy functions take the store as its frames (``np.mean(store)``, ``np.percentile(store, 99)``): the
        store's own ``mean`` (the mean image) would otherwise be taken for a ``mean`` method and fail."""

        if func in (np.shape, np.ndim, np.size) and args and args[0] is self and len(args) == 1 and not kwargs:
            return {np.shape: self.shape, np.ndim: 3, np.size: int(np.prod(self.shape))}[func]  # no frames needed

        def frames(value):
            if isinstance(value, PMDStore):
                return np.asarray(value)
            if isinstance(value, list | tuple):
                return type(value)(frames(v) for v in value)
            return value

        return func(*frames(args), **{k: frames(v) for k, v in kwargs.items()})

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(store)``: the whole movie in one read (numpy would otherwise index it frame by frame, at
        twice the time); a ``dtype`` casts the float32 frames as numpy casts (for rounded and clipped integers,
        :meth:`read` with that dtype)."""
        if copy is False:
            raise ValueError("a PMDStore is reconstructed on demand: there is no array to view without a copy")
        frames = self.read()
        return frames if dtype is None else frames.astype(dtype, copy=False)

    # -- reconstruction -------------------------------------------------------
    def cells(self, crop_y, crop_x):
        key = (tuple(crop_y), tuple(crop_x))
        if key not in self._cells_cache:
            if len(self._cells_cache) > 8:
                self._cells_cache.clear()
            self._cells_cache[key] = build_cells(self, *crop_y, *crop_x)
        return self._cells_cache[key]

    def temporal_block(self, t0: int, t1: int) -> np.ndarray:
        """Temporal factors of frames [t0, t1), shape (K, t1 - t0), float32.

        The time chunks read are kept (one or two of them): consecutive reads of fewer
        frames than a chunk holds, the usual pattern, then decode each chunk once.
        """
        chunk = getattr(self.temporal, "chunks", (0, 0))[1]
        if not chunk or t1 <= t0:
            return np.ascontiguousarray(self.temporal[:, t0:t1], dtype=np.float32)
        c0, c1 = t0 // chunk * chunk, min(-(-t1 // chunk) * chunk, self.shape[0])
        cached = self._temporal_cache  # (first frame, last frame, factors): replaced whole, so thread safe
        if cached is None or not cached[0] <= t0 < t1 <= cached[1]:
            if c1 - c0 > 2 * chunk:  # a long read: no reuse to expect, nothing kept
                return np.ascontiguousarray(self.temporal[:, t0:t1], dtype=np.float32)
            cached = (c0, c1, np.ascontiguousarray(self.temporal[:, c0:c1], dtype=np.float32))
            self._temporal_cache = cached
        return np.ascontiguousarray(cached[2][:, t0 - cached[0] : t1 - cached[0]])

    def read(self, t0=0, t1=None, crop_y=None, crop_x=None, *, dtype=np.float32, out=None) -> np.ndarray:
        """Reconstruct frames [t0, t1) of the crop (``crop_y``, ``crop_x``: ``(start, stop)`` pairs or slices) into
        a new (or given) array.

        Integer ``dtype``s round to nearest and clip to the dtype's range; ``out``, when given, must have the
        shape asked for, and its dtype is the one written.
        """
        t_len, y_len, x_len = self.shape
        t1 = t_len if t1 is None else t1
        crop_y = (0, y_len) if crop_y is None else _bounds(crop_y, y_len, "rows")
        crop_x = (0, x_len) if crop_x is None else _bounds(crop_x, x_len, "columns")
        for what, (a, b), n in (("frames", (t0, t1), t_len), ("rows", crop_y, y_len), ("columns", crop_x, x_len)):
            if not 0 <= a <= b <= n:  # a bound outside the movie used to surface as BLAS's shape error
                raise IndexError(f"{what} {a}:{b} are outside the store's {n} {what} (0:{n})")
        shape = (t1 - t0, crop_y[1] - crop_y[0], crop_x[1] - crop_x[0])
        if out is None:
            out = np.empty(shape, dtype=_output_dtype(dtype))
        else:
            _output_dtype(out.dtype)
            if out.shape != shape:
                raise ValueError(f"out has shape {out.shape}; frames {t0}:{t1} of rows {crop_y[0]}:{crop_y[1]} and "
                                 f"columns {crop_x[0]}:{crop_x[1]} need {shape}")
        if min(shape) == 0:
            return out
        basis = trend_basis(np.arange(t0, t1), self.trend_frames) if self.trend is not None else None
        # The kernels write integers and float32/float64; float16 (which numba cannot write) is made in float32
        # and rounded once, as numpy's cast rounds.
        target = out if out.dtype.kind in "iu" or out.dtype.itemsize >= 4 else np.empty(shape, np.float32)
        cells = self.cells(crop_y, crop_x)
        chunk = getattr(self.temporal, "chunks", (0, 0))[1]
        rows = self._rows_of(cells) if chunk and t1 - t0 > 2 * chunk else None
        factors = positions = None
        if rows is not None:
            # A long read of a small crop (a pixel's or a region's trace): only the rows its cells use, decoded a
            # time chunk at a time, instead of every row of every frame (378 MB for 20000 frames at rank 4725).
            factors, positions = self._temporal_rows(rows, t0, t1), self._row_positions(rows)
        # Made RENDER_FRAMES at a time: a cell's product buffer then stays in cache (one read of 6000 frames of
        # 128 x 128 ran at 0.78 GB/s against 1.26 in blocks of 256), and the decoded time chunks are reused.
        for a in range(t0, t1, RENDER_FRAMES):
            b = min(a + RENDER_FRAMES, t1)
            block = (self.temporal_block(a, b) if factors is None
                     else np.ascontiguousarray(factors[:, a - t0 : b - t0]))
            render(cells, block, target[a - t0 : b - t0], crop_y[0], crop_x[0],
                   None if basis is None else basis[a - t0 : b - t0], row_positions=positions)
        if target is not out:
            out[...] = target
        return out

    def _rows_of(self, cells) -> np.ndarray | None:
        """The temporal rows ``cells`` (of a crop) use, sorted; None when they are more than half the rows (the
        whole factors are then read as they are)."""
        used = np.unique(np.concatenate([c.components for c in cells] or [np.zeros(0, np.int64)]))
        return used if used.size <= self.temporal.shape[0] // 2 else None

    def _row_positions(self, rows: np.ndarray) -> np.ndarray:
        positions = np.full(self.temporal.shape[0], -1, np.int64)
        positions[rows] = np.arange(rows.size)
        return positions

    def _temporal_rows(self, rows: np.ndarray, t0: int, t1: int) -> np.ndarray:
        """Rows ``rows`` of the temporal factors of frames [t0, t1), (len(rows), t1 - t0) float32, decoded one
        time chunk at a time (the same values as :meth:`temporal_block`)."""
        chunk = self.temporal.chunks[1]
        out = np.empty((rows.size, t1 - t0), np.float32)
        for c0 in range(t0 // chunk * chunk, t1, chunk):
            a, b = max(c0, t0), min(c0 + chunk, t1)
            out[:, a - t0 : b - t0] = self.temporal[:, a:b][rows]
        return out

    @property
    def frame_rate(self) -> float | None:
        """Frames per second of the input; None when unknown (never assumed)."""
        return store_frame_rate(self.metadata)

    def to_dask(self, chunks=None):
        """A dask array over the reconstruction, each chunk reconstructed when computed.

        Default chunks are (256 frames, 64, 64 pixels): dask does not narrow a
        chunk's read to the slice asked of it, so chunks small in space keep crops
        cheap (a 10x10 crop over 3000 frames costs a few 64x64 tiles, not whole
        frames), and 256 frames keep single frames cheap.  Pass ``chunks`` (e.g.
        ``(8, Y, X)`` for a viewer that shows whole frames) to choose otherwise.
        """
        import dask.array as da  # dask loads only for users who ask for it

        if chunks is None:
            t, y, x = self.shape
            chunks = (max(1, min(t, DASK_CHUNK_FRAMES)), max(1, min(y, DASK_CHUNK_PIXELS)),
                      max(1, min(x, DASK_CHUNK_PIXELS)))
        try:
            return da.from_array(self, chunks=chunks, asarray=False, fancy=False, name=f"pmd-{id(self)}")
        except ZeroDivisionError:  # dask's own words for a chunk of 0
            raise ValueError(f"chunks {chunks!r}: a chunk holds at least one frame and one pixel each way (-1: the"
                             " whole axis)") from None

    # -- information ----------------------------------------------------------
    @property
    def bytes_on_disk(self) -> int | None:
        return directory_bytes(self.path) if self.path is not None else None

    def info(self) -> dict:
        """Shape, ranks, sizes, ratios, timings and parameters as a JSON-able dict."""
        return describe(self._contents, self.path)


def _bounds(crop, n: int, what: str) -> tuple[int, int]:
    """A crop of :meth:`PMDStore.read`: a ``(start, stop)`` pair as given (checked there), or a slice of step 1,
    resolved as Python resolves it (clipped to the ``n`` rows or columns, negative from the end)."""
    if isinstance(crop, slice):
        start, stop, step = crop.indices(n)
        if step != 1:
            raise ValueError(f"a crop of {what} takes every one: slice {crop} has step {crop.step}; index the "
                             "result, or the store (store[:, ::2]), for a step")
        return start, max(start, stop)
    return crop


def open_store(path: str | os.PathLike) -> PMDStore:
    """Open a pmdcompress store (a ``*.pmd.zarr`` folder) as a lazy movie."""
    return PMDStore(path)
