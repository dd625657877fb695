"""Movies of the photon split kept on disk and read back by ranges of frames, so that no array of the split is
held whole.

The report's photon split (:mod:`.photon_split`) works on a crop of up to
:data:`~.photon_split.REPORT_FRAMES` frames: the raw frames, their counts, the
halves ``A`` and ``B`` and the denoised ``A``.  Held in memory, each of them is
the size of the crop (up to :data:`~.photon_split.REPORT_BYTES`), and the
report's peak memory was about ten of them (3.2 GB for a 256 x 256 movie).  Every
step of the split reads its movies a chunk of frames at a time, so they can live
in files: :class:`FrameFile` (a ``.npy`` file written and read with
``pwrite``/``pread``: nothing is mapped, so the process's resident size does
not grow with what it reads) and :class:`Frames` (any ``read(t0, t1)``, e.g. a
store's reconstruction, cropped and mapped lazily).  Both are indexed along time
like the arrays they stand for (``x[t0:t1]``, ``x[indices]``, ``x[:, ys, xs]``)
and give the same values, so every number computed from them is the same float.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io.positional import read_exactly, write_all

__all__ = ["FrameFile", "Frames", "Scratch", "empty"]


class Frames:
    """Read-only ``(T, h, w)`` frames fetched by ranges: ``read(t0, t1)`` gives frames ``[t0, t1)`` whole.

    ``crop`` ``(ys, xs)`` (slices of the frames ``read`` gives) and ``transform`` (applied to each block read,
    elementwise) are applied lazily.  Indexing: a slice of frames (step 1; returns the cropped view of a fresh
    block, as slicing a cropped array would), an array of frame indices (a C-ordered copy, as numpy's fancy
    indexing), or a tuple ``(slice(None), ys, xs)`` (a further crop).
    """

    def __init__(self, read, shape, dtype, *, crop=None, transform=None):
        self._read = read
        self._full = tuple(int(s) for s in shape)
        self._crop = crop if crop is not None else (slice(0, self._full[1]), slice(0, self._full[2]))
        self._transform = transform
        ys, xs = self._crop
        self.shape = (self._full[0], len(range(*ys.indices(self._full[1]))), len(range(*xs.indices(self._full[2]))))
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Frames ``[t0, t1)``, cropped and transformed."""
        block = self._read(t0, t1)
        if self._transform is not None:
            block = self._transform(block)
        ys, xs = self._crop
        if (ys.start, ys.stop, xs.start, xs.stop) == (0, self._full[1], 0, self._full[2]):
            return block
        return block[:, ys, xs]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            t, *space = key
            if t != slice(None) or len(space) != 2 or not all(isinstance(s, slice) and s.step in (None, 1)
                                                                for s in space):
                raise TypeError("frames are cropped as x[:, y0:y1, x0:x1]")
            ys, xs = self._crop
            (y0, y1, _), (x0, x1, _) = (s.indices(n) for s, n in zip(space, self.shape[1:], strict=True))
            crop = (slice(ys.start + y0, ys.start + y1), slice(xs.start + x0, xs.start + x1))
            return Frames(self._read, self._full, self.dtype, crop=crop, transform=self._transform)
        if isinstance(key, slice):
            t0, t1, step = key.indices(self.shape[0])
            if step != 1:
                raise TypeError("frames are read by ranges (step 1)")
            return self.read(t0, max(t0, t1))
        index = np.asarray(key)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise TypeError("frames are read by a slice or a 1-D array of frame indices")
        index = np.where(index < 0, index + self.shape[0], index)
        if index.size == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)
        runs = np.split(index, np.flatnonzero(np.diff(index) != 1) + 1)
        return np.ascontiguousarray(np.concatenate([self.read(int(r[0]), int(r[-1]) + 1) for r in runs]))

    def __array__(self, dtype=None, copy=None):
        out = self.read(0, self.shape[0])
        return out if dtype is None else out.astype(dtype, copy=False)

    def map(self, transform, dtype) -> Frames:
        """These frames with ``transform`` applied to every block read (elementwise; ``dtype``: its result's)."""
        inner = self._transform

        def both(block):
            return transform(block if inner is None else inner(block))

        return Frames(self._read, self._full, dtype, crop=self._crop, transform=both)


class FrameFile(Frames):
    """A ``(T, h, w)`` movie in a ``.npy`` file at ``path``, written by ranges of frames and read back as
    :class:`Frames` (``pread``: no mapping, so reading it does not grow the resident size).  :meth:`memmap`
    opens it as a movie for a compression (whose reader uses ``pread`` too)."""

    def __init__(self, path, shape, dtype):
        self.path = Path(path)
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        with open(self.path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                     "fortran_order": False, "shape": shape})
            self._offset = f.tell()
            f.truncate(self._offset + int(np.prod(shape)) * dtype.itemsize)
        self._frame_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        super().__init__(self._read_frames, shape, dtype)

    def _read_frames(self, t0: int, t1: int) -> np.ndarray:
        out = np.empty((t1 - t0, *self._full[1:]), self.dtype)
        view = memoryview(out.reshape(-1)).cast("B")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            read_exactly(fd, view, self._offset + t0 * self._frame_bytes, self.path)
        finally:
            os.close(fd)
        return out

    def __setitem__(self, key, values) -> None:
        if not isinstance(key, slice):
            raise TypeError("a frame file is written by ranges of frames")
        t0, t1, step = key.indices(self._full[0])
        values = np.ascontiguousarray(values, self.dtype)
        if step != 1 or values.shape != (max(t1 - t0, 0), *self._full[1:]):
            raise ValueError(f"frames {t0}:{t1} of {self.path.name} take shape {(t1 - t0, *self._full[1:])}, "
                             f"not {values.shape}")
        view = memoryview(values.reshape(-1)).cast("B")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            write_all(fd, view, self._offset + t0 * self._frame_bytes)
        finally:
            os.close(fd)

    def memmap(self) -> np.memmap:
        """The file as a read-only ``numpy.memmap`` (for a reader that reads it with ``pread``)."""
        return np.load(self.path, mmap_mode="r")


class Scratch:
    """A folder that the split's movies are written to (:class:`FrameFile`), each under a name of its own."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._count = 0

    def empty(self, shape, dtype, name: str = "frames") -> FrameFile:
        self._count += 1
        return FrameFile(self.folder / f"{self._count:02d}-{name}.npy", shape, dtype)

    def remove(self, frames) -> None:
        """Delete ``frames``'s file (a :class:`FrameFile` of this scratch; anything else is left alone)."""
        if isinstance(frames, FrameFile) and frames.path.parent == self.folder:
            frames.path.unlink(missing_ok=True)


def empty(scratch: Scratch | None, shape, dtype, name: str = "frames"):
    """An uninitialised ``(T, h, w)`` movie: a numpy array without ``scratch``, else a file in it."""
    return np.empty(shape, dtype) if scratch is None else scratch.empty(shape, dtype, name)
