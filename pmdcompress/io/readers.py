"""Lazy, streaming readers for calcium-imaging movies.

Every reader returns a :class:`Movie`: shape, dtype and frame slicing without
reading the data.  Only :meth:`Movie.read` touches pixel data, and only the
frames it is asked for, so a movie larger than memory can be streamed in
chunks.  Reads return the native dtype of the file (uint16 stays uint16);
casting to a working dtype is the pipeline's job.

Supported sources
-----------------
TIFF (``.tif``, ``.tiff``, ``.btf``; classic, BigTIFF, ImageJ hyperstacks,
ScanImage with its planes, channels and flyback frames), Zarr v3 or v2 array
folders (or a group holding one array), ``.npy`` files, HDF5 files (``.h5``,
``.hdf5``; needs the ``hdf5`` extra), suite2p's registered ``data.bin``, CaImAn's
``.mmap``, NWB ``TwoPhotonSeries``/``OnePhotonSeries`` (``.nwb``; needs the ``nwb``
extra), Miniscope ``.avi`` videos or recording folders (needs the ``miniscope``
extra), and in-memory numpy or zarr arrays.

Inputs must already be motion-corrected (registered): PMD finds low-rank
structure in pixels that stay put, and motion smears it.

The frame rate comes from the file's metadata where it has one (ScanImage,
ImageJ, OME, NWB, suite2p's ops, pmdcompress's own TIFFs) and is
``Movie.frame_rate``; None when unknown.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..indexing import lazy_getitem
from ..options import parse_crop, parse_range
from .miniscope import open_miniscope
from .nwb import open_nwb_series
from .registered import open_caiman_mmap, open_suite2p_binary
from .tiff_metadata import ngff_frame_rate, scanimage_frame_data, scanimage_layout, tiff_frame_rate

__all__ = ["Movie", "open_movie"]

logger = logging.getLogger("pmdcompress")

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
NPY_SUFFIXES = (".npy",)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
ZARR_SUFFIXES = (".zarr",)
SUITE2P_SUFFIXES = (".bin",)
CAIMAN_SUFFIXES = (".mmap",)
NWB_SUFFIXES = (".nwb",)
MINISCOPE_SUFFIXES = (".avi",)
HDF5_DEFAULT_DATASETS = ("mov", "data")

# Magic numbers, used when the extension says nothing.
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_NPY_MAGIC = b"\x93NUMPY"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# tifffile reports damaged files through its logger and then carries on with
# whatever it could parse (a cut file may come back as a single 2-D page).
# These messages mean the structure is broken, not merely unusual metadata.
_TIFF_CORRUPT_RE = re.compile(
    r"invalid page offset|corrupt|failed to reshape|missing data|missing ByteCounts"
    r"|incorrect Strip|TiffTag\.fromfile|incompletely written|is missing \d+"
    r"|expected \d+ frames",
    re.IGNORECASE,
)


def _oneline(obj: object, limit: int = 200) -> str:
    """Collapse an exception or text to one short line for error messages."""
    text = " ".join(str(obj).split())
    if not text and isinstance(obj, BaseException):
        text = type(obj).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """Return ``dtype`` in native byte order; refuse anything but int/uint/float."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        raise InputError(f"{name}: unsupported dtype {dtype}; need an unsigned/signed integer or float movie")
    return dtype.newbyteorder("=")


def _check_movie_shape(shape: tuple[int, ...], name: str, what: str = "array") -> None:
    """Refuse anything that is not a non-empty 3-D (T, Y, X) array."""
    if len(shape) == 2:
        raise InputError(f"{name}: a single 2-D image (Y, X); need a movie (T, Y, X)")
    if len(shape) != 3:
        raise InputError(
            f"{name}: {len(shape)}-D {what} with shape {tuple(shape)}; need a 3-D movie (T, Y, X)"
            " ({plane}/{channel} select from TIFF hyperstacks only)", "plane", "channel"
        )
    if min(shape) < 1:
        raise InputError(f"{name}: empty {what} with shape {tuple(shape)}")


def _squeeze_singletons(array: Any, name: str) -> Any:
    """A 4-D or 5-D array with only three axes longer than 1, seen as the (T, Y, X) movie it holds.

    Arrays saved as (T, Y, X, 1) (a trailing channel), (1, T, Y, X) (a leading batch or plane) or
    (T, 1, Y, X) are common; their axes of length 1 carry nothing, so dropping them cannot misread the
    movie.  Anything else is left for ``_check_movie_shape`` to refuse.  A 3-D (A, B, 1) array is
    kept as A frames of B x 1 pixels, with a warning: it may be one image with a channel axis.
    """
    shape = tuple(int(n) for n in array.shape)
    if len(shape) == 3 and shape[2] == 1 and shape[1] > 1:
        # (T, Y, 1) or one (Y, X) image with a channel axis of one?  Read as saved, and say so.
        logger.warning("%s: shape %s read as %d frames of %dx1 pixels; if it is one image with a channel axis,"
                       " it is not a movie", name, shape, shape[0], shape[1])
    if len(shape) <= 3 or sum(n > 1 for n in shape) != 3:
        return array
    index = tuple(0 if n == 1 else slice(None) for n in shape)
    kept = tuple(n for n in shape if n > 1)
    logger.info("%s: read the %d-D array of shape %s as a (T, Y, X) movie of shape %s (axes of length 1 dropped)",
                name, len(shape), shape, kept)
    if isinstance(array, np.ndarray):
        return array[index]  # a view (a memmap stays a memmap), still C-contiguous
    return _Squeezed(array, index, kept)


class _Squeezed:
    """A lazy array (h5py, zarr) with its axes of length 1 fixed at 0; sliced along time only."""

    def __init__(self, array: Any, index: tuple, shape: tuple[int, ...]):
        self._array, self._index, self.shape, self.dtype = array, index, shape, array.dtype
        self._time_axis = next(i for i, ix in enumerate(index) if isinstance(ix, slice))

    def __getitem__(self, key: slice) -> np.ndarray:
        index = list(self._index)
        index[self._time_axis] = key
        return self._array[tuple(index)]


# ---------------------------------------------------------------------------
# Sources: each knows how to read frames [t0, t1) of the full (T, Y, X) movie.
# ---------------------------------------------------------------------------


class _PreadFrames:
    """Read whole frames of a C-ordered memory-mapped file with ``os.preadv``.

    Reading through the mapping would leave every touched page mapped in the
    process, so a streaming pass over a long movie would show a resident set
    growing with T.  ``preadv`` copies from the page cache into a reused
    per-thread buffer instead: no lock, no mapping, flat memory.
    """

    def __init__(self, mm: np.memmap, stride: int = 1):
        self.ok = (
            isinstance(mm, np.memmap)
            and mm.filename is not None
            and mm.flags.c_contiguous
            and mm.dtype.isnative
            and stride == 1
            and hasattr(os, "preadv")
        )
        if self.ok:
            self.fd = os.open(mm.filename, os.O_RDONLY)
            self.offset = int(mm.offset)
            self.frame_shape = mm.shape[1:]
            self.dtype = mm.dtype
            self.frame_bytes = int(np.prod(self.frame_shape)) * mm.dtype.itemsize
            self.local = threading.local()

    def read(self, t0: int, t1: int, name: str) -> np.ndarray:
        n = t1 - t0
        buf = getattr(self.local, "buf", None)
        if buf is None or buf.shape[0] < n:
            buf = self.local.buf = np.empty((max(n, 1), *self.frame_shape), self.dtype)
        out = buf[:n]
        want = n * self.frame_bytes
        got = os.preadv(self.fd, [memoryview(out).cast("B")], self.offset + t0 * self.frame_bytes)
        if got != want:
            raise InputError(f"{name}: frames {t0}:{t1} are cut short ({got} of {want} bytes in the file)")
        return out

    def close(self) -> None:
        if self.ok:
            os.close(self.fd)
            self.ok = False


class _Source:
    """Raw access to one (T, Y, X) movie; the frame selection lives in ``Movie``."""

    format: str
    access: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    frame_rate: float | None = None
    frame_rate_source: str | None = None
    dataset: str | None = None  # the HDF5 dataset read, where the file may hold several

    def read(self, t0: int, t1: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def view(self, t0: int, t1: int) -> np.ndarray:
        """Frames [t0, t1) without a copy where the backend allows it (read-only use)."""
        return self.read(t0, t1)

    def size_bytes(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ArraySource(_Source):
    """Anything sliceable along axis 0: numpy (memmap), zarr and h5py arrays.

    Parameters
    ----------
    array : array-like, shape (T, Y, X)
        Object with ``shape``, ``dtype`` and ``__getitem__`` on slices.
    fmt : str
        Format name reported by ``Movie.format``.
    closer : callable or None
        Called by ``close`` (closes an HDF5 file, drops a memmap).
    size : int or None
        Bytes on disk; defaults to the array's ``nbytes``.
    fresh : bool
        The backend returns a new array on every slice (zarr, h5py), so no copy
        is needed; numpy views must be copied before handing them out.
    """

    def __init__(self, array: Any, fmt: str, name: str, *, closer=None, size=None, fresh=False):
        array = _squeeze_singletons(array, name)
        self._array = array
        self.format = fmt
        self.access = "memmap" if isinstance(array, np.memmap) else "array"
        self.shape = tuple(int(n) for n in array.shape)
        _check_movie_shape(self.shape, name)
        self.dtype = _check_dtype(array.dtype, name)
        self._closer = closer
        self._size = size
        self._fresh = fresh
        self._pread = None
        self._name = name

    def read(self, t0: int, t1: int) -> np.ndarray:
        try:
            block = np.asarray(self._array[t0:t1])
        except (OSError, RuntimeError, ValueError) as exc:
            # h5py and zarr raise these for data they cannot decode or reach (a damaged chunk, an external
            # raw file that is gone) mid-run; a disk's own errors (with an errno) keep their meaning
            if isinstance(exc, OSError) and exc.errno is not None:
                raise
            raise InputError(f"{self._name}: frames {t0}-{t1 - 1} cannot be read ({type(exc).__name__}: "
                             f"{_oneline(exc)})") from exc
        if self._fresh and block.flags.writeable:
            # Already our own array; convert only if layout or byte order differ.
            return np.ascontiguousarray(block, dtype=self.dtype)
        return np.array(block, dtype=self.dtype, order="C", copy=True)

    def view(self, t0: int, t1: int) -> np.ndarray:
        if self._pread is None and isinstance(self._array, np.memmap):
            self._pread = _PreadFrames(self._array)
        if self._pread is not None and self._pread.ok:
            return self._pread.read(t0, t1, self.format)
        if isinstance(self._array, np.ndarray):
            block = np.asarray(self._array[t0:t1])
            if block.dtype == self.dtype and block.flags.c_contiguous:
                return block
        return self.read(t0, t1)

    def size_bytes(self) -> int:
        if self._size is not None:
            return int(self._size)
        return int(math.prod(self.shape) * np.dtype(self._array.dtype).itemsize)

    def close(self) -> None:
        if self._pread is not None:
            self._pread.close()
        if self._closer is not None:
            self._closer()
            self._closer = None
        self._array = None


class _TiffSource(_Source):
    """A TIFF series viewed as (T, Y, X), read by the cheapest available route.

    Three access routes, chosen once at open:

    ``"memmap"``
        The whole series is uncompressed and stored contiguously (tifffile and
        ImageJ writers do this, including ImageJ files over 4 GB that hold only
        one IFD).  One ``numpy.memmap``; a read is a strided slice plus a copy.
    ``"direct"``
        Each page is uncompressed and contiguous but pages are interleaved
        with their IFDs.  Each page is read straight into the output array
        with one ``readinto`` at its data offset; nothing is decoded.
    ``"decode"``
        Compressed, tiled, predicted or bit-packed pages: tifffile decodes
        just the requested pages (multithreaded) from the open ``TiffFile``.

    A frame of the movie is one page of the series; when the series has Z or
    C axes, page ``base + t * stride`` is frame ``t`` of the chosen plane and
    channel.
    """

    format = "tiff"

    def __init__(self, path: Path, name: str, *, plane: int | None, channel: int | None, image_is_frame=False):
        import tifffile

        self._name = name
        self._lock = threading.Lock()
        self._tif = None
        self._raw = None
        self._mm = None
        self._pread = None
        self._packbits = False
        self._local = threading.local()  # the PackBits route's buffers, per thread
        self._file_size = path.stat().st_size
        with _capture_tifffile_log() as records:
            try:
                tif = tifffile.TiffFile(path)
            except tifffile.TiffFileError as exc:
                raise InputError(f"{name}: not a TIFF file ({_oneline(exc)})") from exc
            except Exception as exc:  # struct.error, OSError, ... from a mangled header
                raise InputError(f"{name}: corrupt TIFF, cannot parse header ({_oneline(exc)})") from exc
            self._one_by_one = _frames_written_one_by_one(tif)
            if self._one_by_one:
                # tifffile writes each write() call as its own "shaped" series: a movie saved frame by frame
                # is many 2-D series.  Without the shaped metadata its pages form one series again.
                tif.close()
                tif = tifffile.TiffFile(path, is_shaped=False)
            self._tif = tif
            try:
                self._setup(tif, records, plane=plane, channel=channel, image_is_frame=image_is_frame)
            except BaseException:
                self.close()
                raise

    def _setup(self, tif, records, *, plane, channel, image_is_frame) -> None:
        name = self._name
        try:
            series_list = tif.series
            if not series_list:
                raise InputError(f"{name}: TIFF file contains no images")
            series = series_list[0]
            # Walk the whole IFD chain (offsets only, no tags) so that a file cut
            # inside its trailing IFDs is noticed even when series 0 did not need them.
            n_ifds = len(tif.pages)
            axes, shape = series.axes, tuple(int(n) for n in series.shape)
            keyframe = series.keyframe
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{name}: corrupt TIFF ({_oneline(exc)})") from exc
        corrupt = [r for r in records if _TIFF_CORRUPT_RE.search(r.getMessage())]
        missing = [f for f in ome_series_files(tif) if not f.is_file()] if series.is_multifile else []
        if missing:
            raise InputError(f"{name}: {len(missing)} of the files of its OME-TIFF series are missing ("
                             f"{', '.join(f.name for f in missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                             "need every file of the series in its folder")
        if corrupt:
            # Drop tifffile's object reprs ("<tifffile.TiffPages @8>"); the file is named already.
            msg = _oneline(re.sub(r"<tifffile\.[^>]*>\s*", "", corrupt[0].getMessage()))
            raise InputError(f"{name}: truncated or corrupt TIFF ({msg})")
        for record in records:
            logger.warning("%s: tifffile: %s", name, _oneline(record.getMessage()))
        others = [s for s in series_list[1:] if len(s.shape) >= 3 and s.shape[0] > 1]
        if others and not self._one_by_one:
            # several positions or fields of view (an OME-TIFF from a multi-position acquisition): only the
            # first is read, and the user must know it
            shapes = ", ".join("x".join(map(str, s.shape)) for s in series_list[: 4]) + (
                ", ..." if len(series_list) > 4 else "")
            logger.warning("%s: the file holds %d image series (%s); only the first is read", name,
                           len(series_list), shapes)

        if "S" in axes or keyframe.samplesperpixel > 1:
            raise InputError(
                f"{name}: RGB/multi-sample image ({keyframe.samplesperpixel} samples per pixel,"
                f" axes {axes}); need single-channel grayscale frames"
            )
        while len(shape) > 2 and shape[-1] == 1 and not axes.endswith("YX"):
            # an array written as (T, Y, X, 1) (a trailing channel of one) keeps that axis in tifffile's shaped
            # series; each page still holds one (Y, X) frame.  A 3-D (A, B, 1) array is one page of A x B: a
            # single image, refused below as such.
            axes, shape = axes[:-1], shape[:-1]
        dtype = series.dtype
        if dtype is None:
            raise InputError(f"{name}: unsupported TIFF sample format")
        self.dtype = _check_dtype(dtype, name)
        if len(shape) < 2 or not axes.endswith("YX"):
            raise InputError(f"{name}: unsupported TIFF axes {axes!r} with shape {shape}")
        ny, nx = shape[-2:]
        if int(np.prod(keyframe.shape)) != ny * nx:
            raise InputError(f"{name}: TIFF pages of shape {keyframe.shape} do not hold one (Y, X) frame each")
        n_pages = int(math.prod(shape[:-2]))
        frame_data = scanimage_frame_data(tif)
        if frame_data is not None:
            n_pages = n_ifds  # tifffile's ScanImage series shape may count pages that were never written
        self._frame_bytes = ny * nx * self.dtype.itemsize
        if self._one_by_one and n_pages < n_ifds:
            other = tif.pages[n_pages]
            raise InputError(f"{name}: pages of different shapes or types: pages 0-{n_pages - 1} are {ny}x{nx} "
                             f"{self.dtype}, page {n_pages} is {'x'.join(map(str, other.shape))} {other.dtype}; "
                             "need one movie of equal frames")
        if not series.is_multifile and 1 < n_ifds < n_pages:
            raise InputError(f"{name}: truncated TIFF: found {n_ifds} of {n_pages} pages")
        self._check_truncation(series, n_pages)
        if frame_data is not None:
            # ScanImage interleaves channels, slices and flyback frames page by page; its own
            # metadata say how (tifffile's generic series cannot tell slices from time).
            layout = scanimage_layout(frame_data, n_pages, name, plane=plane, channel=channel)
            n_t, self._base, self._stride = layout.n_frames, layout.base, layout.stride
            self.plane, self.channel = layout.plane, layout.channel
            self.frame_rate, self.frame_rate_source = layout.frame_rate, layout.frame_rate_source
            self.layout_description = layout.description
            logger.info("%s: %s", name, layout.description)
        else:
            if tif.is_scanimage:
                logger.warning("%s: a ScanImage TIFF without readable SI.* metadata (ScanImage before 2016?);"
                               " planes and channels cannot be told apart, pages are read in order", name)
            n_t, self._base, self._stride, self.plane, self.channel = _tiff_layout(
                axes, shape, name, plane=plane, channel=channel, image_is_frame=image_is_frame
            )
            self.frame_rate, self.frame_rate_source = tiff_frame_rate(tif)
        self.shape = (n_t, ny, nx)
        self._series = series
        self.axes = axes
        files = ome_series_files(tif) if series.is_multifile else []
        if files:
            # an OME-TIFF series spread over files (Bruker/Prairie, Micro-Manager): its pixels are in all of them
            self._file_size = sum(f.stat().st_size for f in files if f.is_file()) or self._file_size
            logger.info("%s: one OME-TIFF series in %d files (%s ... %s)", name, len(files), files[0].name,
                        files[-1].name)
        # Pages come back in file byte order on the raw routes; convert on copy.
        self._file_dtype = self.dtype.newbyteorder(tif.byteorder)

        if series.is_multifile:
            self.access = "decode"
        elif series.dataoffset is not None and keyframe.is_final:
            self.access = "memmap"
            self._mm = np.memmap(
                tif.filehandle.path,
                dtype=self._file_dtype,
                mode="r",
                offset=series.dataoffset,
                shape=(n_pages, ny, nx),
            )
        elif keyframe.is_final:
            self.access = "direct"
            self._raw = open(tif.filehandle.path, "rb", buffering=0)  # closed in close()
        else:
            self.access = "decode"
            if _packbits_strips(keyframe, self.dtype):
                # PackBits strips (optinist's sample movie): the chunk's bytes in one read and each page decoded
                # by one imagecodecs call, without tifffile's per-page machinery (65 -> ~20 ms per 2000 frames of
                # 128 x 128); the same bytes as tifffile decodes
                self._packbits = True
                self._raw = open(tif.filehandle.path, "rb", buffering=0)  # closed in close()

    def _check_truncation(self, series, n_pages: int) -> None:
        """Refuse a file whose image data end beyond the end of the file.

        Checking the last page is enough for files cut short, the common
        damage (an interrupted copy or acquisition); middle pages are checked
        when read.
        """
        name, size = self._name, self._file_size
        if series.dataoffset is not None:
            end = series.dataoffset + n_pages * self._frame_bytes
            if end > size:
                raise InputError(f"{name}: truncated TIFF: image data end at byte {end} but the file has {size} bytes")
            return
        if not series.is_truncated and len(series) < n_pages:
            raise InputError(f"{name}: truncated TIFF: found {len(series)} of {n_pages} pages")
        try:
            last = series[len(series) - 1]
        except Exception as exc:
            raise InputError(f"{name}: truncated or corrupt TIFF ({_oneline(exc)})") from exc
        if last is None or last.parent is not self._tif:
            return
        ends = [o + c for o, c in zip(last.dataoffsets, last.databytecounts, strict=False)]
        if not ends:
            raise InputError(f"{name}: corrupt TIFF: last page has no image data")
        if max(ends) > size:
            raise InputError(
                f"{name}: truncated TIFF: last page (page {last.index}) data end at byte"
                f" {max(ends)} but the file has {size} bytes"
            )

    def _pages(self, t0: int, t1: int) -> range:
        return range(self._base + t0 * self._stride, self._base + t1 * self._stride, self._stride)

    def read(self, t0: int, t1: int) -> np.ndarray:
        n = t1 - t0
        ny, nx = self.shape[1:]
        if n <= 0:
            return np.empty((0, ny, nx), self.dtype)
        with self._lock:
            if self.access == "memmap":
                pages = self._pages(t0, t1)
                view = self._mm[pages.start : pages[-1] + 1 : pages.step]
                return np.array(view, dtype=self.dtype, order="C", copy=True)
            if self.access == "direct":
                return self._read_direct(t0, t1)
            return self._read_decode(t0, t1)

    def view(self, t0: int, t1: int) -> np.ndarray:
        if self.access == "memmap" and t1 > t0:
            if self._pread is None:
                self._pread = _PreadFrames(self._mm, self._stride)
            if self._pread.ok:
                pages = self._pages(t0, t1)
                return self._pread.read(pages.start, pages.start + (t1 - t0), self._name)
        if self._packbits and t1 > t0:
            with self._lock:
                out = self._read_packbits(t0, t1, reuse=True)
            if out is not None:
                return out
        return self.read(t0, t1)

    def _read_direct(self, t0: int, t1: int) -> np.ndarray:
        out = np.empty((t1 - t0, *self.shape[1:]), self._file_dtype)
        for k, (t, i) in enumerate(zip(range(t0, t1), self._pages(t0, t1), strict=True)):
            page = self._series[i]
            if page is None:  # missing page in a sparse series: tifffile reads it as zeros
                out[k] = 0
                continue
            buf = memoryview(out[k]).cast("B")
            self._raw.seek(page.dataoffsets[0])
            got = 0
            while got < len(buf):
                chunk = self._raw.readinto(buf[got:])
                if not chunk:
                    raise InputError(
                        f"{self._name}: frame {t} (page {page.index}) is truncated:"
                        f" {got} of {len(buf)} bytes in the file"
                    )
                got += chunk
        if self._file_dtype != self.dtype:
            return out.astype(self.dtype)
        return out

    def _buffer(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """This thread's buffer NAME, at least SHAPE[0] long (grown, never shrunk): reused from read to read, so that
        a streaming pass does not fault in fresh pages for every chunk."""
        buf = getattr(self._local, name, None)
        if buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:] or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            setattr(self._local, name, buf)
        return buf[: shape[0]]

    def _read_packbits(self, t0: int, t1: int, reuse: bool = False) -> np.ndarray | None:
        """Frames [t0, t1) of PackBits-compressed strip pages, or None where a page is missing, has its strips apart
        or does not decode to one frame (tifffile's route then reads them, and names what is wrong).  ``reuse``:
        into this thread's buffer (:meth:`view`), else a new array."""
        import imagecodecs

        pages = [self._series[i] for i in self._pages(t0, t1)]
        spans = []
        for page in pages:
            if page is None:
                return None
            offsets, counts = page.dataoffsets, page.databytecounts
            if any(offsets[k] + counts[k] != offsets[k + 1] for k in range(len(offsets) - 1)):
                return None
            spans.append((offsets[0], offsets[0] + sum(counts)))
        start, end = min(a for a, _ in spans), max(b for _, b in spans)
        if end - start > 4 * (t1 - t0) * self._frame_bytes + (1 << 20):
            return None  # pages scattered over the file: one read would take much more than their bytes
        view = memoryview(self._buffer("packed", (end - start,), np.uint8))
        got = 0
        while got < len(view):
            n = os.preadv(self._raw.fileno(), [view[got:]], start + got)
            if n == 0:
                return None
            got += n
        shape = (t1 - t0, *self.shape[1:])
        out = self._buffer("frames", shape, self._file_dtype) if reuse else np.empty(shape, self._file_dtype)
        for k, (a, b) in enumerate(spans):
            frame = memoryview(out[k]).cast("B")
            try:
                decoded = imagecodecs.packbits_decode(view[a - start : b - start], out=frame)
            except Exception:
                return None
            if len(decoded) != self._frame_bytes:
                return None
        return out.astype(self.dtype) if self._file_dtype != self.dtype else out

    def _read_decode(self, t0: int, t1: int) -> np.ndarray:
        if self._packbits:
            out = self._read_packbits(t0, t1)
            if out is not None:
                return out
        keys = list(self._pages(t0, t1))
        try:
            data = self._tif.asarray(key=keys, series=self._series)
        except Exception as exc:
            self._raise_decode_error(t0, keys, exc)
        data = data.reshape((t1 - t0, *self.shape[1:]))
        return np.ascontiguousarray(data, dtype=self.dtype)

    def _raise_decode_error(self, t0: int, keys: list[int], exc: Exception):
        """Find the first page that fails to decode and name it in the error."""
        for t, i in enumerate(keys, start=t0):
            try:
                page = self._series[i]
                if page is not None:
                    page.asarray()
            except Exception as page_exc:
                raise InputError(
                    f"{self._name}: frame {t} (page {i}) cannot be decoded: {_oneline(page_exc)}"
                ) from page_exc
        raise InputError(f"{self._name}: frames {t0}:{t0 + len(keys)} cannot be decoded: {_oneline(exc)}") from exc

    def size_bytes(self) -> int:
        return self._file_size

    def close(self) -> None:
        # Drop the memmap first: its mapping keeps the file open.
        if self._pread is not None:
            self._pread.close()
        self._mm = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._tif is not None:
            self._tif.close()
            self._tif = None


def _packbits_strips(keyframe, dtype: np.dtype) -> bool:
    """Whether pages like KEYFRAME hold one frame of DTYPE as PackBits-compressed strips of whole samples, which
    :meth:`_TiffSource._read_packbits` decodes itself."""
    try:
        return (int(keyframe.compression) == 32773 and int(keyframe.predictor) == 1 and int(keyframe.fillorder) == 1
                and keyframe.samplesperpixel == 1 and not keyframe.is_tiled
                and keyframe.bitspersample == 8 * dtype.itemsize and dtype.kind in "uif"
                and int(keyframe.planarconfig) == 1 and keyframe.imagedepth == 1)
    except (AttributeError, TypeError, ValueError):
        return False


def _tiff_files(folder: Path) -> list[Path]:
    """The TIFF files of a folder in natural name order (frame2 before frame10); hidden files left out."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")
             and p.is_file()]
    return sorted(files, key=lambda p: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", p.name)])


class _TiffFolderSource(_Source):
    """A folder of TIFF files read as one movie: an image sequence (one frame per file, as cameras and
    Micro-Manager save them) or an acquisition split into files (ScanImage, long recordings).

    The files, in natural name order, are opened once to count their frames (the same plane and channel
    picked from each) and check that every frame has the same size and type; a read then opens only the
    files it needs, one at a time, so that a folder of 100,000 frames holds no file open between reads and
    threads can read at once.  The frame rate is the first file's.
    """

    format = "tiff"
    access = "decode"

    def __init__(self, path: Path, name: str, *, plane: int | None, channel: int | None):
        self._name = name
        self._files = _tiff_files(path)
        self._plane, self._channel = plane, channel
        starts = [0]
        for f in self._files:
            src = _TiffSource(f, str(f), plane=plane, channel=channel, image_is_frame=True)
            try:
                if len(starts) == 1:
                    self.frame_rate, self.frame_rate_source = src.frame_rate, src.frame_rate_source
                    self.plane, self.channel = src.plane, src.channel
                    self.shape, self.dtype = src.shape, src.dtype
                elif (src.shape[1:], src.dtype) != (self.shape[1:], self.dtype):
                    frame, other = ("x".join(map(str, shape[1:])) for shape in (src.shape, self.shape))
                    raise InputError(f"{name}: {f.name} holds {frame} {src.dtype} frames but {self._files[0].name}"
                                     f" {other} {self.dtype}; the files of a folder must be one movie of equal frames")
                starts.append(starts[-1] + src.shape[0])
            finally:
                src.close()
        self._starts = starts
        self.shape = (starts[-1], *self.shape[1:])
        self._size = sum(f.stat().st_size for f in self._files)
        # An image sequence (a frame per file) is one movie by construction; files of many frames may be one
        # acquisition split into parts (ScanImage) or separate recordings, which only the user knows: say which.
        multi_page = len(self._files) > 1 and max(np.diff(starts)) > 1
        (logger.warning if multi_page else logger.info)(
            "%s: %d TIFF files read as one movie of %d frames, in name order (%s ... %s)%s", name, len(self._files),
            starts[-1], self._files[0].name, self._files[-1].name,
            "; if they are separate recordings, give the files instead (pmd batch 'FOLDER/*.tif' takes each as a "
            "movie)" if multi_page else "")

    def read(self, t0: int, t1: int) -> np.ndarray:
        out = np.empty((t1 - t0, *self.shape[1:]), self.dtype)
        i = int(np.searchsorted(self._starts, t0, side="right")) - 1
        t = t0
        while t < t1:
            start, stop = self._starts[i], self._starts[i + 1]
            a, b = t - start, min(t1, stop) - start
            src = _TiffSource(self._files[i], str(self._files[i]), plane=self._plane, channel=self._channel,
                              image_is_frame=True)
            try:
                out[t - t0 : t - t0 + b - a] = src.read(a, b)
            finally:
                src.close()
            t, i = start + b, i + 1
        return out

    def size_bytes(self) -> int:
        return self._size


def _open_tiff_folder(path: Path, name: str, *, plane: int | None, channel: int | None) -> _Source:
    """A folder of TIFFs: one multi-file OME-TIFF series (Bruker/Prairie T-series, Micro-Manager), read by its
    first file's OME-XML, which orders its files by time, plane and channel; else the files in name order.

    Read file by file, each file of such a series would hold the whole series (tifffile follows the XML), and a
    folder with both channels' files (``..._Ch1_000001.ome.tif``, ``..._Ch2_...``) would be one movie of both.
    """
    import tifffile

    files = _tiff_files(path)
    try:
        with tifffile.TiffFile(files[0]) as tif:
            listed = ome_series_files(tif) if tif.is_ome else []
    except Exception:  # noqa: BLE001 - not a readable TIFF: the folder reader names the file
        listed = []
    if len(listed) < 2 or files[0].resolve() not in listed:
        return _TiffFolderSource(path, name, plane=plane, channel=channel)
    left_out = len({f.resolve() for f in files} - set(listed))
    if left_out:
        logger.warning("%s: %d of its %d TIFF files are one OME-TIFF series (read from %s); the %d others are not"
                       " part of it and are left out", name, len(files) - left_out, len(files), files[0].name,
                       left_out)
    return _TiffSource(files[0], name, plane=plane, channel=channel)


def ome_series_files(tif) -> list[Path]:
    """The files of the OME-TIFF series ``tif`` belongs to, in the order its OME-XML lists them (TiffData
    UUID FileName, relative to the file's folder); [] when the XML names no other file."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(tif.ome_metadata or "")
    except (ET.ParseError, TypeError, ValueError):
        return []
    folder = Path(tif.filehandle.path).resolve().parent
    seen: dict[Path, None] = {}
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "UUID" and el.get("FileName"):
            seen.setdefault((folder / el.get("FileName")).resolve(), None)
    return list(seen) if len(seen) > 1 else []


def _frames_written_one_by_one(tif) -> bool:
    """Whether ``tif`` holds several single-image "shaped" series (tifffile's write() called once per frame)."""
    try:
        series = tif.series
        return bool(tif.is_shaped and len(series) > 1 and all(len(s.shape) == 2 for s in series[:2]))
    except Exception:  # noqa: BLE001 - a damaged file is diagnosed by _setup
        return False


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _capture_tifffile_log():
    """Collect tifffile's warnings while a file is opened.

    tifffile logs structural damage and keeps going; we turn the damaging ones
    into errors and pass the rest on to the pmdcompress logger.
    """
    tlog = logging.getLogger("tifffile")
    handler = _LogCollector()
    # The CLI quiets tifffile's logger (its lines would come before ours); a logger's level filters records
    # before any handler sees them, so open it up here or the damage goes unnoticed.  Nothing propagates
    # meanwhile: what is not damage is passed on through the pmdcompress logger.
    level, propagate = tlog.level, tlog.propagate
    tlog.addHandler(handler)
    tlog.setLevel(logging.WARNING)
    tlog.propagate = False
    try:
        yield handler.records
    finally:
        tlog.removeHandler(handler)
        tlog.setLevel(level)
        tlog.propagate = propagate


def _tiff_layout(axes: str, shape: tuple[int, ...], name: str, *, plane, channel, image_is_frame=False):
    """Map a squeezed TIFF series layout to (T, base page, page stride, plane, channel).

    A 3-D series is (T, Y, X) whatever its first axis is called (I, Q, T, or
    the Z of a stack saved without frames, with a warning), except C: a few
    channels of one image are not a movie.  In 4-D and 5-D series the Z and C
    axes must be picked with ``plane``/``channel``; the one remaining axis is
    time.  A 2-D image is refused, or is one frame (``image_is_frame``: a file of an image sequence).
    """
    ndim = len(shape)
    if ndim == 2 and image_is_frame:
        return 1, 0, 1, None, None
    if ndim == 2:
        raise InputError(f"{name}: a single 2-D image (Y, X); need a movie (T, Y, X)")
    lead, lshape = axes[:-2], shape[:-2]
    zi, ci = lead.find("Z"), lead.find("C")
    if ndim == 3:
        if lead == "C":
            raise InputError(f"{name}: one image of {lshape[0]} channels (axes {axes}, shape {shape}), no time axis;"
                             " need a movie (T, Y, X): if those are frames, save them as T")
        if lead == "Z":
            # ImageJ calls a plain stack's images slices, and converters (bfconvert) write them as OME's Z:
            # a movie saved that way is common, a z-stack given to a movie compressor rare.  Say so once.
            logger.warning("%s: its only axis besides Y, X is Z (%d slices), no T; read as %d frames of a movie"
                           " (a z-stack is not a movie)", name, lshape[0], lshape[0])
        zi = ci = -1  # the only axis is time, whatever its letter
        ti = 0
    else:
        others = [i for i, ax in enumerate(lead) if ax not in "ZC"]
        if len(others) != 1:
            raise InputError(
                f"{name}: {ndim}-D series with axes {axes} and shape {shape}: cannot tell which"
                " axis is time (need exactly one axis besides Z, C, Y, X)"
            )
        ti = others[0]
    missing = []
    for idx, value, what, option in ((zi, plane, "plane", "{plane}"), (ci, channel, "channel", "{channel}")):
        if idx >= 0 and value is None:
            n = lshape[idx]
            missing.append(f"its {lead[idx]} axis has {n} {what}s; pick one with {option} (0-{n - 1})")
    if missing:
        raise InputError(f"{name}: {ndim}-D series (axes {axes}, shape {shape}): " + " and ".join(missing),
                         "plane", "channel")
    index = [0] * len(lead)
    for idx, value, what, option in ((zi, plane, "plane", "{plane}"), (ci, channel, "channel", "{channel}")):
        n = lshape[idx] if idx >= 0 else 1
        if value is None:
            continue
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < n:
            raise InputError(
                f"{name}: {option} {value!r} out of range; the movie has {n} {what}{'s' if n != 1 else ''} (0-{n - 1})",
                what,
            )
        if idx >= 0:
            index[idx] = int(value)
    strides = [int(math.prod(lshape[i + 1 :])) for i in range(len(lshape))]
    base = sum(index[i] * strides[i] for i in range(len(lead)) if i != ti)
    return lshape[ti], base, strides[ti], plane, channel


# ---------------------------------------------------------------------------
# The public lazy movie.
# ---------------------------------------------------------------------------


#: Bytes of whole frames that indexing a :class:`Movie` reads at a time.
READ_BYTES = 64 * 2**20


class Movie:
    """A lazily read (T, Y, X) movie.

    Create with :func:`open_movie`.  Holds the file open until :meth:`close`
    (or the end of a ``with`` block); pixel data are read only by
    :meth:`read` and :meth:`iter_chunks`.

    Attributes
    ----------
    shape : tuple of int
        ``(T, Y, X)`` after frame, plane and channel selection.
    dtype : numpy.dtype
        Native dtype of the data in the file (native byte order).
    path : pathlib.Path or None
        File or folder read; None for in-memory arrays.
    name : str
        How messages refer to the movie (the path, or ``"<array>"``).
    format : str
        One of ``"tiff"``, ``"zarr"``, ``"npy"``, ``"hdf5"``, ``"suite2p"``, ``"caiman"``, ``"nwb"``, ``"miniscope"``,
        ``"array"``.
    access : str
        How frames are fetched: ``"memmap"`` (uncompressed, mapped),
        ``"direct"`` (uncompressed TIFF pages read in place), ``"decode"``
        (compressed TIFF pages) or ``"array"`` (zarr/HDF5/numpy slicing).
    frame_range : tuple of int
        ``(start, stop)`` of the selected frames in the source.
    crop : tuple or None
        ``((y0, y1), (x0, x1))`` of the file's frames kept, or None for whole frames.
    plane, channel : int or None
        Plane and channel picked from a TIFF hyperstack, ScanImage file or NWB volume.
    frame_rate : float or None
        Frames per second (for volumes: volumes per second), from the file's
        metadata or given to :func:`open_movie`; None when unknown.
    frame_rate_source : str or None
        Where ``frame_rate`` came from (e.g. ``"ScanImage SI.hRoiManager.scanFrameRate"``).
    """

    def __init__(self, source: _Source, *, path: Path | None, name: str, frames=None, crop=None,
                 open_args: dict | None = None, frame_rate: float | None = None):
        self._source = source
        self.path = path
        self.name = name
        self.format = source.format
        self.access = source.access
        start, stop = parse_range(frames, source.shape[0], "frames", source=name)
        self.frame_range = (start, stop)
        (y0, y1), (x0, x1) = parse_crop(crop, source.shape[1:], source=name)
        whole = (y0, y1, x0, x1) == (0, source.shape[1], 0, source.shape[2])
        self.crop = None if whole else ((y0, y1), (x0, x1))
        self.shape = (stop - start, y1 - y0, x1 - x0)
        # float16 samples are read as float32 (exactly): the kernels work in float32, and numba has no float16.
        self._widen = source.dtype == np.float16
        self.dtype = np.dtype(np.float32) if self._widen else source.dtype
        self.plane = getattr(source, "plane", None)
        self.channel = getattr(source, "channel", None)
        if frame_rate is not None:
            self.frame_rate, self.frame_rate_source = _check_rate(frame_rate, name), "given"
        else:
            self.frame_rate, self.frame_rate_source = source.frame_rate, source.frame_rate_source
        self._open_args = dict(open_args or {}, frame_rate=frame_rate,
                               crop=None if self.crop is None else [slice(*pair) for pair in self.crop])
        self._closed = False

    @property
    def is_float(self) -> bool:
        """True when the movie stores floating-point samples."""
        return self.dtype.kind == "f"

    @property
    def frames_per_chunk(self) -> int:
        """Frames decoded together by any read (an HDF5 or Zarr array chunked along time; 1 elsewhere): a read
        of one frame costs that many."""
        chunks = getattr(getattr(self._source, "_array", None), "chunks", None)
        return int(chunks[0]) if isinstance(chunks, tuple) and chunks and int(chunks[0]) > 1 else 1

    @property
    def nbytes(self) -> int:
        """Bytes of the selected frames once read into memory."""
        return int(math.prod(self.shape) * self.dtype.itemsize)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        """numpy's indexing of the (selected, cropped) frames, reading only the frames asked for
        (:func:`pmdcompress.indexing.lazy_getitem`): ``movie[::10]``, ``movie[[3, 7]]``, ``movie[:, mask]``."""

        # whole frames come from the file: a run of them is read in parts, so that a pixel's trace over a long
        # movie (movie[:, y, x]) holds a few frames at a time, not the movie
        step = max(1, READ_BYTES // max(self.shape[1] * self.shape[2] * self.dtype.itemsize, 1))

        def read_into(t0, t1, rows, columns, out):
            for a in range(t0, t1, step):
                b = min(a + step, t1)
                out[a - t0 : b - t0] = self.read(a, b)[:, rows[0] : rows[1], columns[0] : columns[1]]

        return lazy_getitem(self.shape, self.dtype, key, read_into)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """``np.asarray(movie)``: every selected frame in one read (a ``dtype`` casts as numpy casts)."""
        if copy is False:
            raise ValueError("a Movie is read from its file on demand: there is no array to view without a copy")
        frames = self.read(0, self.shape[0])
        return frames if dtype is None else frames.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<Movie {self.name!r} shape={self.shape} dtype={self.dtype} format={self.format} access={self.access}>"

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Read frames ``t0`` (inclusive) to ``t1`` (exclusive).

        Parameters
        ----------
        t0, t1 : int
            Frame range in movie coordinates, ``0 <= t0 <= t1 <= len(self)``.

        Returns
        -------
        ndarray, shape (t1 - t0, Y, X)
            A new C-contiguous array of ``self.dtype`` that the caller owns.

        Raises
        ------
        IndexError
            If the range is outside the movie.
        InputError
            If a page cannot be decoded or is cut short; the message gives the
            frame number in the file, not in the selection.
        """
        block = self._cropped(self._source.read(*self._file_range(t0, t1)))
        return block.astype(np.float32) if self._widen else block

    def _cropped(self, block: np.ndarray) -> np.ndarray:
        """The selected rows and columns of frames read whole (a new C-contiguous array where cropped)."""
        if self.crop is None:
            return block
        (y0, y1), (x0, x1) = self.crop
        return np.ascontiguousarray(block[:, y0:y1, x0:x1])

    def _file_range(self, t0: int, t1: int) -> tuple[int, int]:
        """Frames [t0, t1) of the selection as frames of the file, checked."""
        if self._closed:
            raise ValueError(f"{self.name}: movie is closed")
        t0, t1 = int(t0), int(t1)
        if not 0 <= t0 <= t1 <= self.shape[0]:
            raise IndexError(f"{self.name}: frames {t0}:{t1} outside 0:{self.shape[0]}")
        start = self.frame_range[0]
        return start + t0, start + t1

    def view(self, t0: int, t1: int) -> np.ndarray:
        """Frames [t0, t1) like :meth:`read`, but possibly a read-only view of the file.

        Memory-mapped and in-memory inputs return a view without copying (much
        faster in streaming passes); others return a fresh array.  Never write
        into the result; it may be reused by the next ``view`` call of the same
        thread.
        """
        block = self._cropped(self._source.view(*self._file_range(t0, t1)))
        return block.astype(np.float32) if self._widen else block

    def iter_chunks(self, chunk_frames: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(t0, block)`` covering every frame once, in order.

        Parameters
        ----------
        chunk_frames : int
            Frames per block; the last block may be shorter.

        Yields
        ------
        t0 : int
            First frame of the block, in movie coordinates.
        block : ndarray, shape (n, Y, X)
            As returned by :meth:`read`.
        """
        chunk_frames = int(chunk_frames)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        for t0 in range(0, self.shape[0], chunk_frames):
            yield t0, self.read(t0, min(t0 + chunk_frames, self.shape[0]))

    @property
    def file_shape(self) -> tuple[int, int, int]:
        """``(T, Y, X)`` of what the file holds (its plane and channel where one was picked) before ``frames`` and
        ``crop``: a ground truth of the whole file has this shape (:func:`pmdcompress.pipeline.report.open_truth`)."""
        return tuple(int(n) for n in self._source.shape[:3])

    def input_identity(self) -> dict[str, Any]:
        """Describe the input for provenance records (no hashing).

        Returns
        -------
        dict
            ``name`` (file name, or ``"<array>"``), ``size_bytes`` (on disk,
            or in memory for arrays), ``format``, ``shape`` (list, after
            selection), ``dtype`` (str), ``frame_rate`` (Hz or None) and
            ``frame_rate_source``; ``plane``/``channel`` when one was picked, ``frames`` ([start, stop] in the
            file) and ``crop`` ([[y0, y1], [x0, x1]]) when the movie is a part of the file.
        """
        d = {
            "name": self.path.name if self.path is not None else self.name,
            "size_bytes": self._source.size_bytes(),
            "format": self.format,
            "shape": [int(n) for n in self.shape],
            "dtype": str(self.dtype),
            "frame_rate": self.frame_rate,
            "frame_rate_source": self.frame_rate_source,
        }
        for key in ("plane", "channel"):
            if getattr(self, key) is not None:
                d[key] = int(getattr(self, key))
        if self.frame_range != (0, self._source.shape[0]):  # so that a report can read the same frames again
            d["frames"] = [int(n) for n in self.frame_range]
        if self.crop is not None:
            d["crop"] = [[int(n) for n in pair] for pair in self.crop]
        for key, attr in (("layout", "layout_description"), ("dataset", "dataset")):
            if getattr(self._source, attr, None):
                d[key] = getattr(self._source, attr)
        return d

    def close(self) -> None:
        """Release the file; further reads raise ``ValueError``."""
        if not self._closed:
            self._closed = True
            self._source.close()

    def __enter__(self) -> Movie:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __reduce__(self):
        # Workers in other processes reopen the file instead of receiving data.
        if self.path is None:
            source = self._source._array  # type: ignore[attr-defined]
        else:
            source = self.path
        return (_reopen, (source, slice(*self.frame_range), self._open_args))


def _reopen(source, frames, open_args):
    return open_movie(source, frames=frames, **open_args)


def _check_rate(value, name: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = float("nan")
    if not math.isfinite(rate) or rate <= 0:
        raise InputError(f"{name}: {{frame_rate}} {value!r}: expected a positive number of frames per second",
                         "frame_rate")  # the CLI names it by its flag, --fs
    return rate


# ---------------------------------------------------------------------------
# open_movie and per-format openers.
# ---------------------------------------------------------------------------


def open_movie(
    source: str | os.PathLike | np.ndarray | Any,
    *,
    frames: slice | str | None = None,
    plane: int | None = None,
    channel: int | None = None,
    dataset: str | None = None,
    frame_rate: float | None = None,
    frame_shape: tuple[int, int] | None = None,
    crop: str | tuple | None = None,
) -> Movie:
    """Open a movie lazily, without reading its pixel data.

    Parameters
    ----------
    source : str, PathLike, ndarray or zarr.Array
        A ``.tif``/``.tiff``/``.btf`` file (ScanImage included), a Zarr array
        or group folder, a ``.npy`` file, an ``.h5``/``.hdf5`` file, a suite2p
        ``.bin``, a CaImAn ``.mmap``, an ``.nwb`` file, or an in-memory array
        of shape (T, Y, X).  Files with other extensions are recognised by
        their first bytes.  Movies must be motion-corrected already.
    frames : slice or str, optional
        Frames to keep, as a slice or ``"start:stop"`` (bounds optional,
        negative counts from the end).  Frame 0 of the movie is ``start``.
    crop : str or pair of ranges, optional
        Rows and columns to keep, ``"y0:y1,x0:x1"`` (either range may be
        empty): a field without the zero-filled or NaN border that motion
        correction leaves.  Frames are read whole and cropped.
    plane, channel : int, optional
        Z plane and channel (0-based) to take from a 4-D/5-D TIFF series (an
        ImageJ hyperstack), a ScanImage file (its interleaved slices and saved
        channels), or a volumetric NWB series (plane only); required when
        there is more than one.
    dataset : str, optional
        Array inside a Zarr group or HDF5 file, or the imaging series of an
        NWB file.  HDF5 defaults to ``"mov"``, then ``"data"``; a Zarr group
        holding a single array, or an NWB file with one series, needs none.
    frame_rate : float, optional
        Frames per second; overrides the file's metadata.
    frame_shape : (int, int), optional
        (Ly, Lx) of a suite2p binary without its ``ops.npy`` beside it.

    Returns
    -------
    Movie

    Raises
    ------
    InputError
        Missing, unrecognised, truncated or corrupt file; not a 3-D movie;
        missing or out-of-range plane/channel; unsupported dtype; empty
        frame selection.
    ImportError
        Reading HDF5 without h5py installed.
    """
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), frames=frames, plane=plane, channel=channel, dataset=dataset,
                          frame_rate=frame_rate, frame_shape=frame_shape, crop=crop)
    name = "<array>"
    _refuse_options(name, "array", plane=plane, channel=channel, dataset=dataset, frame_shape=frame_shape)
    if isinstance(source, np.ndarray) or _is_zarr_array(source) or _is_array_like(source):
        fresh = not isinstance(source, np.ndarray)
        src = _ArraySource(source, "array", name, fresh=fresh)
        return Movie(src, path=None, name=name, frames=frames, crop=crop, frame_rate=frame_rate)
    raise TypeError(f"cannot open a movie from {type(source).__name__}; pass a path or an array")


def _is_zarr_array(obj: Any) -> bool:
    try:
        import zarr
    except ImportError:  # pragma: no cover - zarr is a core dependency
        return False
    return isinstance(obj, zarr.Array)


def _is_array_like(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("shape", "dtype", "__getitem__"))


def _refuse_options(name: str, fmt: str, *, plane=None, channel=None, dataset=None, frame_shape=None) -> None:
    """Reject options that do not apply to a format instead of ignoring them."""
    if plane is not None and fmt not in ("tiff", "nwb"):
        raise InputError(f"{name}: {{plane}} applies only to TIFF hyperstacks, ScanImage and NWB files,"
                         f" not {fmt} input",
                         "plane")
    if channel is not None and fmt != "tiff":
        raise InputError(f"{name}: {{channel}} applies only to TIFF hyperstacks and ScanImage files, not {fmt} input",
                         "channel")
    if dataset is not None and fmt not in ("zarr", "hdf5", "nwb"):
        raise InputError(f"{name}: {{dataset}} applies only to Zarr groups, HDF5 and NWB files, not {fmt} input",
                         "dataset")
    if frame_shape is not None and fmt != "suite2p":
        raise InputError(f"{name}: {{frame_shape}} applies only to raw binaries (suite2p .bin), not {fmt} input",
                         "frame_shape")


def _sniff(path: Path) -> str | None:
    """Guess a file's format from its first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head[:4] in _TIFF_MAGIC:
        return "tiff"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    return None


def _detect_format(path: Path, name: str) -> str:
    if path.is_dir():
        if any((path / f).exists() for f in ("zarr.json", ".zarray", ".zgroup")):
            return "zarr"
        if (path / "metaData.json").exists() and any(path.glob("*.avi")):
            return "miniscope"
        if _tiff_files(path):
            return "tiff"  # an image sequence, or an acquisition split into files
        raise InputError(f"{name}: a folder but not a Zarr array or group (no zarr.json or .zarray)")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in NPY_SUFFIXES:
        return "npy"
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in SUITE2P_SUFFIXES:
        return "suite2p"
    if suffix in CAIMAN_SUFFIXES:
        return "caiman"
    if suffix in NWB_SUFFIXES:
        return "nwb"
    if suffix in MINISCOPE_SUFFIXES:
        return "miniscope"
    if suffix in ZARR_SUFFIXES:
        raise InputError(f"{name}: a file, not a Zarr folder (zipped Zarr stores are not supported)")
    sniffed = _sniff(path)
    if sniffed is not None:
        return sniffed
    raise InputError(
        f"{name}: unknown format {suffix or '(no extension)'!r}; expected TIFF (.tif/.tiff/.btf),"
        " a Zarr folder, .npy, HDF5 (.h5/.hdf5), suite2p .bin, CaImAn .mmap, NWB (.nwb) or Miniscope .avi"
    )


def is_movie_path(path: Path) -> bool:
    """Whether some reader takes ``path`` by its name or first bytes (a glob over a recording's folder also
    matches its notes, logs and XML)."""
    try:
        _detect_format(Path(path), str(path))
    except InputError:
        return False
    return True


def _open_path(path: Path, *, frames, plane, channel, dataset, frame_rate=None, frame_shape=None,
               crop=None) -> Movie:
    name = str(path)
    if not path.exists():
        raise InputError(f"{name}: no such file")
    fmt = _detect_format(path, name)
    _refuse_options(name, fmt, plane=plane, channel=channel, dataset=dataset, frame_shape=frame_shape)
    open_args = {"plane": plane, "channel": channel, "dataset": dataset, "frame_shape": frame_shape}
    if fmt == "tiff" and path.is_dir():
        src: _Source = _open_tiff_folder(path, name, plane=plane, channel=channel)
    elif fmt == "tiff":
        src = _TiffSource(path, name, plane=plane, channel=channel)
    elif fmt == "npy":
        src = _open_npy(path, name)
    elif fmt == "hdf5":
        src = _open_hdf5(path, name, dataset)
    elif fmt == "suite2p":
        src = _open_suite2p(path, name, frame_shape)
    elif fmt == "caiman":
        src = _ArraySource(open_caiman_mmap(path, name), "caiman", name, size=path.stat().st_size)
    elif fmt == "nwb":
        src = _open_nwb(path, name, dataset, plane)
    elif fmt == "miniscope":
        src = _open_miniscope(path, name)
    else:
        src = _open_zarr(path, name, dataset)
    try:
        return Movie(src, path=path, name=name, frames=frames, crop=crop, open_args=open_args,
                     frame_rate=frame_rate)
    except BaseException:
        src.close()
        raise


def _open_suite2p(path: Path, name: str, frame_shape) -> _Source:
    mm, rate, rate_source = open_suite2p_binary(path, name, frame_shape=frame_shape)
    src = _ArraySource(mm, "suite2p", name, size=path.stat().st_size)
    src.frame_rate, src.frame_rate_source = rate, rate_source
    return src


def _open_miniscope(path: Path, name: str) -> _Source:
    frames, rate, rate_source = open_miniscope(path, name)
    try:
        size = path.stat().st_size if path.is_file() else _folder_size(path)
        src = _ArraySource(frames, "miniscope", name, closer=frames.close, size=size, fresh=True)
    except BaseException:
        frames.close()
        raise
    src.frame_rate, src.frame_rate_source = rate, rate_source
    return src


def _open_nwb(path: Path, name: str, series: str | None, plane: int | None) -> _Source:
    frames, rate, rate_source, closer, series = open_nwb_series(path, name, series=series, plane=plane)
    try:
        src = _ArraySource(frames, "nwb", f"{name}:{series}", closer=closer, size=path.stat().st_size, fresh=True)
    except BaseException:
        closer()
        raise
    src.frame_rate, src.frame_rate_source = rate, rate_source
    src.plane = plane
    src.dataset = series  # recorded in the store: the file may hold other series
    return src


def _open_npy(path: Path, name: str) -> _Source:
    if _sniff(path) != "npy":
        raise InputError(f"{name}: not a .npy file (no NUMPY header)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if any(k in str(exc) for k in ("pickle", "Object arrays", "Python objects")):
            raise InputError(f"{name}: unsupported dtype object; need an integer or float movie") from exc
        raise InputError(f"{name}: truncated or corrupt .npy file ({_oneline(exc)})") from exc
    except Exception as exc:
        raise InputError(f"{name}: cannot read .npy file ({_oneline(exc)})") from exc
    try:
        return _ArraySource(arr, "npy", name, size=path.stat().st_size)
    except BaseException:
        del arr
        raise


def _open_hdf5(path: Path, name: str, dataset: str | None) -> _Source:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(f"{name}: reading HDF5 needs h5py; install it with: pip install pmdcompress[hdf5]") from exc
    try:
        fh = h5py.File(path, "r")
    except Exception as exc:
        raise InputError(f"{name}: not a readable HDF5 file ({_oneline(exc)})") from exc
    try:
        obj = fh.get(dataset) if dataset is not None else _hdf5_movie_dataset(fh, h5py, name)
        if not isinstance(obj, h5py.Dataset):
            found = _hdf5_datasets(fh, h5py)
            wanted = " or ".join(repr(c) for c in ([dataset] if dataset is not None else HDF5_DEFAULT_DATASETS))
            listing = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "") if found else "none"
            raise InputError(f"{name}: no HDF5 dataset {wanted}; datasets found: {listing};"
                             " choose one with {dataset}",
                             "dataset")
        cache = _hdf5_chunk_cache(obj, name, fh.id.get_access_plist().get_cache()[2])
        if cache:
            key = obj.name
            fh.close()
            fh = h5py.File(path, "r", rdcc_nbytes=cache, rdcc_nslots=_HDF5_CACHE_SLOTS)
            obj = fh[key]
        src = _ArraySource(obj, "hdf5", f"{name}:{obj.name}", closer=fh.close, size=path.stat().st_size, fresh=True)
        src.dataset = obj.name  # recorded in the store: the file may hold other movies
        return src
    except BaseException:
        fh.close()
        raise


#: The most chunk cache given to a dataset (each process that reads the movie holds one), and its hash slots.
_HDF5_MAX_CACHE = 256 << 20
_HDF5_CACHE_SLOTS = 100_003


def _hdf5_chunk_cache(dataset, name: str, default: int) -> int:
    """Chunk-cache bytes that let frame blocks be read without decompressing a chunk twice (0: the file's
    ``default``).

    Frames are read in blocks along time; a chunk spans ``chunks[0]`` frames, so one block touches a whole
    time-row of chunks (every chunk across Y and X).  When that row exceeds the cache (1-8 MiB), each chunk
    is decompressed again for every block it spans: 16x the CPU on a 2000-frame movie chunked along all
    of time (16 x 16 pixels per chunk).  A cache holding the row reads each chunk once.
    """
    chunks = dataset.chunks
    if not chunks or len(chunks) < 2:
        return 0
    shape = dataset.shape
    per_row = math.prod(-(-int(n) // int(c)) for n, c in zip(shape[1:], chunks[1:], strict=True))
    row_bytes = per_row * math.prod(int(c) for c in chunks) * dataset.dtype.itemsize
    if row_bytes <= default:
        return 0
    if row_bytes > _HDF5_MAX_CACHE:
        logger.warning("%s: HDF5 chunks of %s frames x %s pixels: every block of frames decompresses %.0f MB of"
                       " chunks, read again for each block; rechunk along frames for speed (h5repack -l"
                       " DATASET:CHUNK=1xYxX)", name, chunks[0], "x".join(map(str, chunks[1:])), row_bytes / 1e6)
        return 0
    return int(row_bytes * 1.25)


def _hdf5_movie_dataset(fh, h5py, name: str):
    """The dataset of an HDF5 file that holds the movie, when none was named: ``mov``, then ``data`` (CaImAn,
    suite2p), skipping one that is no movie (a mean image saved as ``data``); else the file's only dataset of 3
    or more dimensions.  Other movie-shaped datasets left aside are named in a warning; None when nothing fits."""
    def movie_like(obj) -> bool:
        return isinstance(obj, h5py.Dataset) and sum(int(n) > 1 for n in obj.shape) >= 3

    movies = [key for key in _hdf5_datasets(fh, h5py) if movie_like(fh[key])]
    chosen = next((key for key in HDF5_DEFAULT_DATASETS if movie_like(fh.get(key))), None)
    if chosen is None:
        if len(movies) != 1:
            return fh.get(HDF5_DEFAULT_DATASETS[0]) or fh.get(HDF5_DEFAULT_DATASETS[1])  # refused by the caller
        chosen = movies[0]
    others = [key for key in movies if fh[key] != fh[chosen]]
    if others or chosen not in HDF5_DEFAULT_DATASETS:
        shape = "x".join(map(str, fh[chosen].shape))
        logger.warning("%s: read dataset '%s' (%s)%s; choose another with --dataset", name, chosen, shape,
                       f"; it also holds {', '.join(repr(k) for k in others[:5])}" if others else
                       ", its only dataset shaped like a movie")
    return fh[chosen]


def _hdf5_datasets(fh, h5py) -> list[str]:
    """Names of all datasets in an HDF5 file, for the 'choose one' message."""
    found: list[str] = []

    def visit(key: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(key)

    fh.visititems(visit)
    return found


def _open_zarr(path: Path, name: str, dataset: str | None) -> _Source:
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{name}: not a readable Zarr array or group ({_oneline(exc)})") from exc
    rate = rate_source = None
    key = None  # the array read from a group: recorded in the store, for a report to read it again
    if isinstance(node, zarr.Group):
        from ..formats.demix import ATTRS_KEY as DEMIX_KEY
        from ..formats.store import ATTRS_KEY as STORE_KEY

        # pmd's own outputs hold factors or traces, never a movie: --dataset would read one of their arrays as one
        if STORE_KEY in node.attrs:
            raise InputError(f"{name}: a pmd store (the compressed movie pmd compress wrote), not a movie; "
                             "read it with pmdcompress.open, or pmd decompress it to a movie file")
        if DEMIX_KEY in node.attrs:
            raise InputError(f"{name}: a demix result (pmd demix's output), not a movie")
        rate = ngff_frame_rate(dict(node.attrs))
        rate_source = "OME-Zarr time scale" if rate else None
        arrays = sorted(node.array_keys())
        if dataset is not None:
            try:
                node = node[dataset]
            except KeyError as exc:
                raise InputError(
                    f"{name}: no array {dataset!r} in the Zarr group; arrays: {', '.join(arrays) or 'none'}"
                ) from exc
            if not isinstance(node, zarr.Array):
                raise InputError(f"{name}: {dataset!r} is a Zarr group, not an array")
            key = dataset
        elif len(arrays) == 1:
            node, key = node[arrays[0]], arrays[0]
        else:
            raise InputError(
                f"{name}: Zarr group holds {len(arrays)} arrays ({', '.join(arrays) or 'none'});"
                " choose one with {dataset}", "dataset"
            )
    elif dataset is not None:
        raise InputError(f"{name}: {{dataset}} {dataset!r} given but the folder is a single Zarr array", "dataset")
    src = _ArraySource(node, "zarr", name, size=_folder_size(path), fresh=True)
    src.dataset = key
    if rate is None:
        attr = node.attrs.get("frame_rate")
        if isinstance(attr, int | float) and not isinstance(attr, bool) and math.isfinite(attr) and attr > 0:
            rate, rate_source = float(attr), "pmdcompress metadata"
    src.frame_rate, src.frame_rate_source = rate, rate_source
    return src


def _folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_size
    return total
