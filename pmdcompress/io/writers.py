"""Streaming movie writers: append (n, Y, X) blocks, rename into place when complete.

A writer is opened with the final shape and dtype, receives frames in order
through :meth:`MovieWriter.write`, and only :meth:`MovieWriter.close` makes
the output appear under its real name (see :func:`..atomic.atomic_output`).
Any failure, or closing before every frame was written, leaves neither the
output nor its temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ..errors import InputError, PMDError
from ..options import frame_dtype_ok
from .atomic import atomic_output

__all__ = ["MovieWriter", "open_writer"]

WRITER_FORMATS = {".tif": "tiff", ".tiff": "tiff", ".btf": "tiff", ".zarr": "zarr", ".npy": "npy"}

# Classic TIFF addresses 4 GiB; stay clear of it to leave room for IFDs and metadata.
BIGTIFF_THRESHOLD = 3_900_000_000

# dtypes ImageJ can open; others are written as plain (tifffile "shaped") TIFF.
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

DEFAULT_ZARR_CHUNK_FRAMES = 64

#: The OME-Zarr (NGFF) version written on Zarr output: 0.5 is the one for Zarr v3.
NGFF_VERSION = "0.5"
#: Where the movie array lives inside a Zarr output (NGFF's full-resolution level).
ZARR_ARRAY_PATH = "0"


def ngff_image_metadata(name: str, frame_rate: float | None, pixel_size_um=None) -> dict:
    """The ``"ome"`` attributes of an NGFF 0.5 image: axes t, y, x and one scale level.

    The time scale is ``1 / frame_rate`` seconds; with the rate unknown it is 1 with no unit
    (one frame per step) rather than a guessed rate.  Pixels are 1 unless ``pixel_size_um``
    (y, x) says otherwise, in micrometers.
    """
    t_axis = {"name": "t", "type": "time"}
    t_scale = 1.0
    if frame_rate:
        t_axis["unit"] = "second"
        t_scale = 1.0 / float(frame_rate)
    y_axis, x_axis = {"name": "y", "type": "space"}, {"name": "x", "type": "space"}
    yx = [1.0, 1.0]
    if pixel_size_um is not None:
        yx = [float(v) for v in pixel_size_um]
        y_axis["unit"] = x_axis["unit"] = "micrometer"
    return {
        "version": NGFF_VERSION,
        "multiscales": [{
            "name": name,
            "axes": [t_axis, y_axis, x_axis],
            "datasets": [{"path": ZARR_ARRAY_PATH,
                          "coordinateTransformations": [{"type": "scale", "scale": [t_scale, *yx]}]}],
        }],
    }


class _WriterAborted(Exception):
    """Thrown into ``atomic_output`` to make it delete the temporary output."""


class MovieWriter:
    """Append frames of a (T, Y, X) movie to a file; publish it on ``close``.

    Create with :func:`open_writer`.  Use as a context manager: leaving the
    block normally closes (and publishes) the output, leaving it with an
    exception discards the partial output.

    Attributes
    ----------
    path : pathlib.Path
        Final output path (the file appears there only after ``close``).
    shape : tuple of int
        Declared ``(T, Y, X)``.
    dtype : numpy.dtype
        Dtype stored in the file.
    format : str
        ``"tiff"``, ``"zarr"`` or ``"npy"``.
    frames_written : int
        Frames appended so far.
    """

    format: str

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        *,
        overwrite: bool,
        chunk_frames: int | None,
        metadata: dict[str, Any],
        bigtiff: bool | None,
        inputs=(),
    ):
        self.path = path
        self.shape = shape
        self.dtype = dtype
        self.frames_written = 0
        self._chunk_frames = chunk_frames
        self._metadata = metadata
        self._bigtiff = bigtiff
        self._closed = False
        # Entering here checks the output path (OutputExistsError) before anything is created.
        self._atomic = atomic_output(path, overwrite=overwrite, inputs=inputs, folder=self.format == "zarr")
        self._tmp = self._atomic.__enter__()
        try:
            self._open(self._tmp)
        except BaseException as exc:
            self._closed = True
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise

    # Backend hooks -------------------------------------------------------
    def _open(self, tmp: Path) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _write(self, block: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _finish(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _discard(self) -> None:
        """Release handles without finishing; the temporary output is deleted after."""

    # Public API ------------------------------------------------------------
    def write(self, block: np.ndarray) -> None:
        """Append frames.

        Parameters
        ----------
        block : ndarray, shape (n, Y, X)
            Next ``n`` frames.  Its dtype must cast safely to the writer's
            dtype (float to a narrower float is allowed); round and clip
            before writing floats to an integer file.

        Raises
        ------
        ValueError
            Wrong frame shape, more frames than declared, or writer closed.
        TypeError
            The block's dtype cannot be cast safely.
        """
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        block = np.asarray(block)
        if block.ndim != 3 or block.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path}: block of shape {block.shape}; need (n, {self.shape[1]}, {self.shape[2]})")
        n = block.shape[0]
        if self.frames_written + n > self.shape[0]:
            raise ValueError(f"{self.path}: {self.frames_written} + {n} frames exceed the {self.shape[0]} declared")
        if block.dtype != self.dtype:
            both_float = block.dtype.kind == "f" and self.dtype.kind == "f"
            if not np.can_cast(block.dtype, self.dtype, "same_kind" if both_float else "safe"):
                raise TypeError(
                    f"{self.path}: cannot write {block.dtype} frames to a {self.dtype} file without"
                    " loss; convert (round/clip) first"
                )
            block = block.astype(self.dtype)
        if n == 0:
            return
        self._write(np.ascontiguousarray(block))
        self.frames_written += n

    def close(self) -> None:
        """Finish the file and rename it into place.

        Raises
        ------
        PMDError
            Fewer frames than declared were written; the partial output is removed.
        """
        if self._closed:
            return
        if self.frames_written < self.shape[0]:
            self.abort()
            raise PMDError(
                f"{self.path}: only {self.frames_written} of {self.shape[0]} frames were written;"
                " partial output removed"
            )
        self._closed = True
        try:
            self._finish()
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Discard the partial output; the final path is left as it was."""
        if self._closed:
            return
        self._closed = True
        try:
            self._discard()
        finally:
            exc = _WriterAborted(str(self.path))
            self._atomic.__exit__(_WriterAborted, exc, None)

    def __enter__(self) -> MovieWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __repr__(self) -> str:
        return (
            f"<MovieWriter {str(self.path)!r} shape={self.shape} dtype={self.dtype} "
            f"format={self.format} written={self.frames_written}>"
        )


class _TiffWriter(MovieWriter):
    """Pages written one by one into one contiguous series.

    Uncompressed and contiguous, so the result is memory-mappable by our own
    reader.  ImageJ-compatible for uint8/uint16/float32 classic TIFF; other
    dtypes and BigTIFF get tifffile's JSON ("shaped") description.  The
    description holds the final shape, so it is rewritten at close.
    """

    format = "tiff"

    def _open(self, tmp: Path) -> None:
        import tifffile

        nbytes = math.prod(self.shape) * self.dtype.itemsize
        bigtiff = self._bigtiff
        if bigtiff is None:
            bigtiff = nbytes > BIGTIFF_THRESHOLD
        self.bigtiff = bool(bigtiff)
        self.imagej = not self.bigtiff and self.dtype in _IMAGEJ_DTYPES
        self._tw = tifffile.TiffWriter(tmp, bigtiff=self.bigtiff, imagej=self.imagej)
        self._pages = 0

    def _write(self, block: np.ndarray) -> None:
        for frame in block:
            # tifffile appends to a contiguous series only frame by frame (2-D writes);
            # metadata={} on the first page reserves the ImageDescription tag.
            self._tw.write(
                frame,
                contiguous=True,
                photometric="minisblack",
                metadata={} if self._pages == 0 else None,
            )
            self._pages += 1

    def _finish(self) -> None:
        import tifffile

        if self.imagej:
            extra = {"Info": json.dumps(self._metadata)} if self._metadata else {}
            if self._metadata.get("frame_rate"):
                extra["finterval"] = 1.0 / float(self._metadata["frame_rate"])  # ImageJ's and Fiji's frame interval
            description = tifffile.imagej_description(self.shape, axes="TYX", **extra)
        else:
            description = json.dumps({"shape": list(self.shape), "axes": "TYX", **self._metadata})
        self._tw.overwrite_description(description)
        self._tw.close()

    def _discard(self) -> None:
        # The file is deleted next; a failure to finish it does not matter.
        with contextlib.suppress(Exception):
            self._tw.close()


class _ZarrWriter(MovieWriter):
    """An OME-Zarr (NGFF 0.5) image: a Zarr v3 group whose array ``0`` holds the movie.

    The array is chunked along time, (c, Y, X), default codecs (zstd), with
    ``dimension_names`` t, y, x; the group's ``"ome"`` attributes give the axes
    and the time scale (1 / frame rate, from ``metadata["frame_rate"]``), so
    NGFF viewers (napari with napari-ome-zarr, ...) show it in seconds.

    Frames are buffered up to a whole chunk so every chunk is written once;
    writing part of a chunk would make zarr read it back and rewrite it.
    """

    format = "zarr"

    def _open(self, tmp: Path) -> None:
        import zarr

        c = min(self.shape[0], self._chunk_frames or DEFAULT_ZARR_CHUNK_FRAMES)
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        group.attrs["ome"] = ngff_image_metadata(
            self.path.name, self._metadata.get("frame_rate"), self._metadata.get("pixel_size_um"))
        self._arr = group.create_array(
            ZARR_ARRAY_PATH,
            shape=self.shape,
            chunks=(c, *self.shape[1:]),
            dtype=self.dtype,
            fill_value=0,
            attributes=self._metadata,
            dimension_names=("t", "y", "x"),
        )
        self._c = c
        self._buf = np.empty((c, *self.shape[1:]), self.dtype)
        self._nbuf = 0
        self._t = 0  # frames already stored in the array

    def _flush(self) -> None:
        if self._nbuf:
            self._arr[self._t : self._t + self._nbuf] = self._buf[: self._nbuf]
            self._t += self._nbuf
            self._nbuf = 0

    def _write(self, block: np.ndarray) -> None:
        pos, n, c = 0, len(block), self._c
        while pos < n:
            if self._nbuf == 0 and n - pos >= c:
                # Whole chunks straight from the block, no buffering.
                m = (n - pos) // c * c
                self._arr[self._t : self._t + m] = block[pos : pos + m]
                self._t += m
                pos += m
                continue
            k = min(c - self._nbuf, n - pos)
            self._buf[self._nbuf : self._nbuf + k] = block[pos : pos + k]
            self._nbuf += k
            pos += k
            if self._nbuf == c:
                self._flush()

    def _finish(self) -> None:
        self._flush()
        self._arr = None
        self._buf = None


class _NpyWriter(MovieWriter):
    """A ``.npy`` file written block by block; ``metadata`` is not stored.

    The whole file is reserved on disk first (``posix_fallocate``), so a disk
    too small fails at once with ENOSPC.  Plain writes, not a memory map: a map
    turns a full disk into a SIGBUS that kills the process.
    """

    format = "npy"

    def _open(self, tmp: Path) -> None:
        self._file = open(tmp, "wb")  # noqa: SIM115 - closed in _finish / _discard
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        try:
            np.lib.format.write_array_header_1_0(self._file, header)
        except ValueError:  # a header over 64 KiB (never for a 3-D shape, but as numpy does)
            np.lib.format.write_array_header_2_0(self._file, header)
        self._file.flush()
        total = self._file.tell() + math.prod(self.shape) * self.dtype.itemsize
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(self._file.fileno(), 0, total)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise

    def _write(self, block: np.ndarray) -> None:
        self._file.write(memoryview(block).cast("B"))

    def _finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


_WRITERS = {"tiff": _TiffWriter, "zarr": _ZarrWriter, "npy": _NpyWriter}


def open_writer(
    path: str | os.PathLike,
    shape: tuple[int, int, int],
    dtype: DTypeLike,
    *,
    overwrite: bool = False,
    chunk_frames: int | None = None,
    metadata: dict[str, Any] | None = None,
    bigtiff: bool | None = None,
    inputs=(),
) -> MovieWriter:
    """Open a streaming writer for a (T, Y, X) movie; the format follows the extension.

    Parameters
    ----------
    path : str or PathLike
        Output path ending in ``.tif``/``.tiff``/``.btf`` (TIFF), ``.zarr``
        (zarr v3 folder) or ``.npy``.
    shape : tuple of int
        Final ``(T, Y, X)``; exactly ``T`` frames must be written.
    dtype : dtype-like
        Integer or float dtype stored in the file.
    overwrite : bool
        Replace an existing output (only when the new one is complete).
    chunk_frames : int, optional
        Zarr chunk length along time (default ``min(T, 64)``); ignored by
        the other formats.
    metadata : dict, optional
        JSON-serialisable attributes: zarr array attributes; merged into the
        TIFF JSON description (or ImageJ ``Info``); not stored in ``.npy``.
        ``frame_rate`` (Hz) also sets the OME-Zarr time scale and ImageJ's
        ``finterval``; ``pixel_size_um`` (y, x) the OME-Zarr pixel scale.
        Zarr output is an OME-Zarr group with the movie in its array ``0``.
    bigtiff : bool, optional
        Force BigTIFF on or off; by default it is used when the data exceed
        about 3.9 GB.
    inputs : sequence of paths, optional
        The run's inputs: an output that is, holds or lies inside one is refused.

    Returns
    -------
    MovieWriter

    Raises
    ------
    InputError
        Unknown extension or unsupported dtype.
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, or its folder is missing.
    ValueError
        Invalid ``shape`` or ``chunk_frames``.
    TypeError
        ``metadata`` is not JSON-serialisable.
    """
    path = Path(path)
    fmt = WRITER_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unknown output format {path.suffix or '(no extension)'!r}; use one of {', '.join(WRITER_FORMATS)}"
        )
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: shape must be (T, Y, X) integers, got {shape!r}") from exc
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{path}: shape must be (T, Y, X) with every length >= 1, got {shape}")
    dtype = np.dtype(dtype)
    if not frame_dtype_ok(dtype):
        raise InputError(f"{path}: unsupported output dtype {dtype}; need an integer or float dtype of at most 64 bits")
    dtype = dtype.newbyteorder("=")
    if chunk_frames is not None and int(chunk_frames) < 1:
        raise ValueError(f"{path}: chunk_frames must be >= 1, got {chunk_frames}")
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{path}: metadata must be JSON-serialisable ({exc})") from exc
    if fmt == "tiff" and {"shape", "axes"} & metadata.keys():
        raise ValueError(f"{path}: metadata keys 'shape' and 'axes' are reserved in TIFF output")
    return _WRITERS[fmt](
        path,
        shape,
        dtype,
        overwrite=overwrite,
        chunk_frames=None if chunk_frames is None else int(chunk_frames),
        metadata=metadata,
        bigtiff=bigtiff,
        inputs=inputs,
    )
