"""Scratch arrays that the compression's tasks write and read themselves, so that no process holds them whole.

Two arrays of one compression live in a scratch folder beside the store's
temporary (``.partial``) folder, on the same (shared) file system, and are
removed when the compression ends:

- the **fit buffer** (:class:`FitBuffer`): the statistics tasks write their
  rows of binned frames, raw; each fit task reads its own patch and
  standardises it.  Laid out by patch tiles (tile-major: every tile's rows are
  contiguous), so that a patch is a few large reads;
- the **temporal factors before the trend filter** (:class:`RowBlocks`): the
  re-fit tasks write their time chunks, the filter tasks read and rewrite their
  blocks of 16 rows (all frames), and the copy tasks read time chunks again
  into the store.

Both are :class:`Blocks`: a raw file of ``(n_blocks, length, width)`` values,
where every task writes whole, disjoint byte ranges with ``pwrite`` (no
read-modify-write of shared chunks, so tasks never conflict, and a retried
task rewrites the same bytes).  A Zarr array of small chunks was measured at
about 120 us per chunk read (zarr 3.1), 35 ms per 32 x 32 patch of a long
movie's buffer, against a few large ``pread`` calls here.  Without a folder
(an in-memory compression) the same classes keep a numpy array, and only this
process's threads use them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.positional import read_exactly, write_all

#: Rows per block of the temporal scratch: the trend filter's fixed slices of 16 rows (each warm-starts its
#: penalty search afresh), so that a filter task owns whole blocks and the result does not depend on the tasks.
FILTER_ROWS = 16


class Blocks:
    """``(n_blocks, length, width)`` values of one dtype: a raw file (``path``) or, without one, a numpy array.

    Written and read as ``[block, start:stop, :]`` ranges, each contiguous on
    disk.  Pickles as its path (workers open the file themselves); the
    in-memory form is for this process only.
    """

    def __init__(self, shape, dtype, path: str | os.PathLike | None = None):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.path = None if path is None else str(path)
        self._array = None
        if self.path is None:
            self._array = np.zeros(self.shape, self.dtype)
        else:
            with open(self.path, "wb") as f:  # sparse: blocks nobody writes cost no disk
                f.truncate(int(np.prod(self.shape)) * self.dtype.itemsize)

    def __getstate__(self):
        if self._array is not None:
            raise TypeError("an in-memory scratch array cannot leave this process")
        return self.__dict__

    def _offset(self, block: int, start: int) -> int:
        return ((block * self.shape[1]) + start) * self.shape[2] * self.dtype.itemsize

    def write(self, parts) -> None:
        """Write ``(block, start, values (n, width))`` for each of PARTS."""
        if self._array is not None:
            for block, start, values in parts:
                self._array[block, start : start + len(values)] = values
            return
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for block, start, values in parts:
                data = memoryview(np.ascontiguousarray(values, self.dtype)).cast("B")
                write_all(fd, data, self._offset(block, start))
        finally:
            os.close(fd)

    def read(self, ranges) -> list[np.ndarray]:
        """``[values[block, start:stop]]`` (each ``(stop - start, width)``) for each ``(block, start, stop)``."""
        if self._array is not None:
            return [self._array[block, start:stop] for block, start, stop in ranges]
        out = []
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for block, start, stop in ranges:
                values = np.empty((stop - start, self.shape[2]), self.dtype)
                read_exactly(fd, memoryview(values).cast("B"), self._offset(block, start), self.path)
                out.append(values)
        finally:
            os.close(fd)
        return out

    def gather(self, rows) -> np.ndarray:
        """``values[:, rows]`` of every block, ``(n_blocks, len(rows), width)``: rows scattered over the whole
        array (the neighbour correlation's frames).  One ``pread`` per block and run of consecutive rows, each
        straight into its place in the output (reading them as :meth:`read` ranges and copying each into place
        cost ~30 us a range: 0.5 CPU-s for 64 frames of a 512 x 512 buffer).  Not through a mapping: the
        kernel maps the pages around each touched one, and the process's resident size grew by the whole file."""
        rows = np.asarray(rows, np.int64)
        if self._array is not None:
            return self._array[:, rows]
        out = np.empty((self.shape[0], len(rows), self.shape[2]), self.dtype)
        if not out.size:
            return out
        runs = np.split(np.arange(len(rows)), np.flatnonzero(np.diff(rows) != 1) + 1)
        row_bytes = self.shape[2] * self.dtype.itemsize
        flat = memoryview(out.reshape(-1)).cast("B")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for block in range(self.shape[0]):
                for run in runs:
                    start = (block * len(rows) + int(run[0])) * row_bytes
                    read_exactly(fd, flat[start : start + len(run) * row_bytes],
                                 self._offset(block, int(rows[run[0]])), self.path)
        finally:
            os.close(fd)
        return out


def float32_holds(dtype) -> bool:
    """Whether ``dtype`` is an integer type whose every value float32 holds exactly (at most 16 bits): a fit
    buffer may keep such a movie's frames as read."""
    dtype = np.dtype(dtype)
    return dtype.kind in "ui" and dtype.itemsize <= 2


@dataclass
class FitBuffer:
    """The fit buffer, ``(fit frames, Y, X)``, stored raw by patch tiles; read back standardised.

    ``raw`` holds ``(tiles, fit frames, tile pixels)``: tile ``(i, j)`` covers
    rows ``i*ty:(i+1)*ty`` and columns ``j*tx:(j+1)*tx`` (padded at the
    edges), in float32, or in the movie's own integer type where each fit
    frame is one frame of the movie (:meth:`create`'s ``dtype``; read back as
    float32, the same values).  Standardising is ``(x - trend - mean) / scale`` element by element,
    with the trend's product ``basis @ trend`` taken over the patch's own
    columns, so a patch read here is the same floats wherever it is read.
    """

    raw: Blocks
    frame_shape: tuple
    tile: tuple
    mean: np.ndarray | None = None  # (Y, X) float32
    scale: np.ndarray | None = None  # (Y, X) float32
    trend: np.ndarray | None = None  # (knots, Y, X) float32
    basis: np.ndarray | None = None  # (fit frames, knots) float32

    @classmethod
    def create(cls, n_rows: int, frame_shape, tile, folder: Path | None, dtype=np.float32) -> FitBuffer:
        """An empty buffer; ``dtype``: float32, or an integer type that float32 holds exactly (a movie's frames
        kept as read: half the bytes of uint16 to write and to read back, 0.1 CPU-s on neurofinder_dev)."""
        dtype = np.dtype(dtype)
        if dtype != np.float32 and not float32_holds(dtype):
            raise ValueError(f"a fit buffer holds float32 or integers of at most 16 bits, not {dtype}")
        ty, tx = (min(int(t), int(s)) for t, s in zip(tile, frame_shape, strict=True))
        grid = (-(-frame_shape[0] // ty), -(-frame_shape[1] // tx))
        path = None if folder is None else Path(folder) / "fit-buffer.raw"
        return cls(Blocks((grid[0] * grid[1], n_rows, ty * tx), dtype, path), tuple(frame_shape), (ty, tx))

    @property
    def n_rows(self) -> int:
        return self.raw.shape[1]

    @property
    def grid(self) -> tuple[int, int]:
        ty, tx = self.tile
        return -(-self.frame_shape[0] // ty), -(-self.frame_shape[1] // tx)

    def without_values(self) -> FitBuffer:
        """This buffer without its standardisation (what the statistics tasks need)."""
        return FitBuffer(self.raw, self.frame_shape, self.tile)

    def write_rows(self, first: int, rows: np.ndarray) -> None:
        """Store fit rows ``first : first + len(rows)``, each a flattened frame (``Y * X``), in the buffer's type."""
        if not len(rows):
            return
        (height, width), (ty, tx), (gy, gx) = self.frame_shape, self.tile, self.grid
        frames = rows.reshape(len(rows), height, width)
        dtype = self.raw.dtype

        def tile(i, j):  # each tile copied once from the frames (no padded copy of them), zeros past the edge
            part = frames[:, i * ty : (i + 1) * ty, j * tx : (j + 1) * tx]
            if part.shape[1:] == (ty, tx):
                return np.ascontiguousarray(part, dtype).reshape(len(rows), ty * tx)
            padded = np.zeros((len(rows), ty, tx), dtype)  # np.pad's values, without its overhead
            padded[:, : part.shape[1], : part.shape[2]] = part
            return padded.reshape(len(rows), ty * tx)

        self.raw.write((i * gx + j, first, tile(i, j)) for i in range(gy) for j in range(gx))

    def _region(self, ys: slice, xs: slice, rows=None) -> np.ndarray:
        """Raw values ``[rows, ys, xs]`` (all rows by default), float32, C-contiguous."""
        (ty, tx), (_, gx) = self.tile, self.grid
        i0, i1, j0, j1 = ys.start // ty, (ys.stop - 1) // ty + 1, xs.start // tx, (xs.stop - 1) // tx + 1
        if rows is None:
            runs = [(0, self.n_rows)]
        else:  # runs of consecutive rows, one read each
            runs = [(int(r[0]), int(r[-1]) + 1) for r in np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)]
        ranges = [(i * gx + j, a, b) for i in range(i0, i1) for j in range(j0, j1) for a, b in runs]
        parts = iter(self.raw.read(ranges))
        n = self.n_rows if rows is None else len(rows)
        region = np.empty((n, ys.stop - ys.start, xs.stop - xs.start), np.float32)
        for i in range(i0, i1):
            # the rows (y) of tile row i inside the region, in tile and in region coordinates
            y0, y1 = max(ys.start, i * ty), min(ys.stop, (i + 1) * ty)
            for j in range(j0, j1):
                x0, x1 = max(xs.start, j * tx), min(xs.stop, (j + 1) * tx)
                start = 0
                for a, b in runs:  # each run's tile values straight into place: no intermediate copies
                    tile = next(parts).reshape(b - a, ty, tx)
                    region[start : start + b - a, y0 - ys.start : y1 - ys.start, x0 - xs.start : x1 - xs.start] = \
                        tile[:, y0 - i * ty : y1 - i * ty, x0 - j * tx : x1 - j * tx]
                    start += b - a
        return region

    def _standardise(self, values: np.ndarray, ys: slice, xs: slice, rows=None) -> np.ndarray:
        flat = np.ascontiguousarray(values).reshape(len(values), -1)
        if self.trend is not None:
            basis = self.basis if rows is None else self.basis[rows]
            flat -= basis @ np.ascontiguousarray(self.trend[:, ys, xs]).reshape(len(self.trend), -1)
        flat -= self.mean[ys, xs].reshape(-1)
        flat /= self.scale[ys, xs].reshape(-1)
        return flat

    def patch(self, ys: slice, xs: slice) -> np.ndarray:
        """The standardised fit data of one patch, ``(fit frames, h * w)`` float32."""
        return self._standardise(self._region(ys, xs), ys, xs)

    def frames(self, rows) -> np.ndarray:
        """Standardised fit rows ROWS (sorted or not), ``(len(rows), Y, X)`` float32."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        (height, width), (ty, tx), (gy, gx) = self.frame_shape, self.tile, self.grid
        whole = (slice(0, height), slice(0, width))
        # every tile at these rows in one gather, reassembled into frames (the same values as _region's)
        tiles = self.raw.gather(rows[order]).reshape(gy, gx, len(rows), ty, tx)
        raw = tiles.transpose(2, 0, 3, 1, 4).reshape(len(rows), gy * ty, gx * tx)[:, :height, :width]
        values = self._standardise(np.ascontiguousarray(raw, np.float32), *whole, rows=rows[order])
        out = np.empty_like(values)
        out[order] = values
        return out.reshape(len(rows), *self.frame_shape)


class LazyFrames:
    """The standardised fit buffer as ``frames[idx]`` reads (for :func:`noise_neighbour_correlation`); with
    ``bounds`` (``(top, bottom, left, right)``, :func:`pmdcompress.tiling.tissue_bounds`) that part of each frame."""

    def __init__(self, buffer: FitBuffer, bounds=None):
        self.buffer = buffer
        height, width = buffer.frame_shape
        top, bottom, left, right = bounds if bounds is not None else (0, height, 0, width)
        self.crop = (slice(None), slice(top, bottom), slice(left, right))
        self.shape = (buffer.n_rows, bottom - top, right - left)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        return self.buffer.frames(rows)[self.crop]  # a view; the whole frame's slices keep it contiguous


class RowBlocks:
    """A ``(rows, frames)`` array stored as blocks of :data:`FILTER_ROWS` rows, each ``(frames, 16)``.

    Time chunks (``[:, t0:t1]``, the re-fit and the copy into the store) are
    one contiguous range per block; a block of rows is one contiguous range.
    ``like``, a store's temporal factors, lends its rounding steps (``scale``)
    and name (``where``) for the values kept here.
    """

    def __init__(self, n_rows: int, n_frames: int, dtype, folder: Path | None, like=None):
        self.n_rows, self.n_frames = int(n_rows), int(n_frames)
        self.scale = None if like is None else np.array(like.scale, np.float32)
        self.where = "scratch" if like is None else like.where
        n_blocks = -(-self.n_rows // FILTER_ROWS)
        path = None if folder is None else Path(folder) / "temporal.raw"
        self.blocks = Blocks((n_blocks, self.n_frames, FILTER_ROWS), dtype, path)

    def write_columns(self, t0: int, values: np.ndarray) -> None:
        """``[:, t0 : t0 + n] = values`` (all rows)."""
        padded = np.zeros((self.blocks.shape[0] * FILTER_ROWS, values.shape[1]), self.blocks.dtype)
        padded[: self.n_rows] = values
        self.blocks.write((b, t0, padded[b * FILTER_ROWS : (b + 1) * FILTER_ROWS].T)
                          for b in range(self.blocks.shape[0]))

    def read_columns(self, t0: int, t1: int) -> np.ndarray:
        """``[:, t0:t1]``."""
        parts = self.blocks.read((b, t0, t1) for b in range(self.blocks.shape[0]))
        return np.concatenate([p.T for p in parts])[: self.n_rows]

    def read_block(self, block: int) -> np.ndarray:
        """Rows of BLOCK, all frames: ``(rows in the block, frames)``."""
        values = self.blocks.read([(block, 0, self.n_frames)])[0].T
        return values[: min(FILTER_ROWS, self.n_rows - block * FILTER_ROWS)]

    def write_block(self, block: int, values: np.ndarray) -> None:
        padded = np.zeros((FILTER_ROWS, self.n_frames), self.blocks.dtype)
        padded[: len(values)] = values
        self.blocks.write([(block, 0, padded.T)])

    @property
    def n_blocks(self) -> int:
        return self.blocks.shape[0]
