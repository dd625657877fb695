"""The PMD store (``*.pmd.zarr``): its metadata, arrays, writer and reader (docs/format.md).

This module is the only place that knows the store's layout.  The writer
creates the arrays and, last, the metadata attribute (a folder without it is
never read as a store); the reader checks every field and array against the
spec and returns a :class:`StoreContents` whose ``temporal`` factors stay lazy.

Version 2 stores the factors as integers with a per-component
scale, puts a CRC-32C checksum on every chunk of every array and records every
chunk file with its size in the metadata (``manifest``), so that a missing,
truncated or altered chunk is an error naming the store and the chunk instead
of a silently wrong movie (Zarr reads a missing chunk as its fill value).
Version 3 is version 2 with the spatial integers stored as zigzag
codes in the narrowest unsigned dtype (:func:`zigzag_encode`: smaller stores,
the same values).  Version 4 (written now) codes every large array
(:mod:`.store_codes`): the spatial components, the mean, the noise and the trend
as images predicted from their neighbours, the temporal factors as their
differences from frame to frame; the noise map is rounded to 8 bits of
mantissa before the movie is standardised by it, and the mean and trend are
rounded to a step from the noise, like the factors.  Versions 2 and 3 are
still read.
Version 1 (float factors, no checksums) is still read, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from ..errors import StoreFormatError
from ._version import FormatId, read_version
from .store_codes import (
    NOISE_MANTISSA_BITS,
    delta_codes,
    from_delta_codes,
    image_residuals,
    images_from_residuals,
    mean_step,
    noise_codes,
    noise_from_codes,
    round_noise,
    smoothed_mean_kept,
    zigzag_decode,
    zigzag_encode,
)

log = logging.getLogger("pmdcompress")

STORE = FormatId("pmdcompress-store", 4, (1, 2, 3, 4), "store")
FORMAT_NAME = STORE.name
FORMAT_VERSION = STORE.version
ATTRS_KEY = "pmdcompress"

# Arrays of a store: name -> (ndim, required), per version.
_ARRAYS_V1 = {
    "mean": (2, True),
    "noise": (2, True),
    "patch_origins": (2, True),
    "patch_ranks": (1, True),
    "weights_y": (2, True),
    "weights_x": (2, True),
    "spatial": (2, True),
    "temporal": (2, True),
    "trend": (3, False),
    "trend_frames": (1, False),
}
ARRAYS_BY_VERSION = {1: _ARRAYS_V1, 2: {**_ARRAYS_V1, "spatial_scale": (1, True), "temporal_scale": (1, True),
                                        "temporal_df": (1, False)}}
ARRAYS_BY_VERSION[3] = ARRAYS_BY_VERSION[2]  # version 3 changes how 'spatial' holds its integers (zigzag_encode)
ARRAYS_BY_VERSION[4] = ARRAYS_BY_VERSION[2]  # version 4 codes 'spatial', 'temporal', 'mean', 'noise', 'trend'
ARRAYS = ARRAYS_BY_VERSION[FORMAT_VERSION]

FACTOR_DTYPES_BY_VERSION = {1: ("float32", "float16"), 2: ("int32",), 3: ("int32",), 4: ("int32",)}
FACTOR_DTYPES = ("float32", "float16")  # what a compression may ask for (both are stored quantized in version 2)
QUANTIZED_DTYPE = "int32"
METHODS = ("svd", "pmd")

#: Rounding error that the quantization steps are chosen for, as a fraction of the noise each component
#: passes into the denoised movie (temporal and spatial rounding together; that noise is a lower bound of
#: the denoised movie's error), for each precision a compression may ask for (``CompressOptions.dtype``).
ROUNDING_ERROR = {"float32": 0.005, "float16": 0.08}
#: Coarsest step of a temporal factor (units of the noise std).
MAX_STEP = 0.5


def temporal_steps(kept: np.ndarray, rounding_error: float) -> np.ndarray:
    """Quantization step of each temporal factor, from the fraction of white noise it keeps.

    The factors are projections of the movie standardised by the per-pixel noise, so the noise of a
    re-fitted factor has std 1, and a factor that keeps a fraction ``kept`` of it (1 without the
    temporal filter; the filter's degrees of freedom over the frames with it) passes ``kept`` into
    the movie.  Rounding to a step ``s`` adds ``s**2 / 12`` (uniform error), and rounding the spatial
    column as much again (:func:`finish_store`), so ``s = sqrt(6 * rounding_error * kept)``.
    """
    kept = np.clip(np.asarray(kept, np.float64), 0.0, 1.0)
    return np.clip(np.sqrt(6.0 * rounding_error * kept), WORKING_STEP, MAX_STEP).astype(np.float32)


#: Step of the factors while the store is being written: the temporal filter reads the re-fitted
#: factors back, and must see them (nearly) exact (its constrained search can jump between
#: solutions for a tiny change of its input).  :func:`finish_store` rounds them to their final step.
WORKING_STEP = 1.0 / 4096

# Byte shuffle + zstd: the factors are noise-like floats, where shuffle is what
# lets the entropy coder find the redundant exponent bytes.  (Version 1 and the demix result.)
COMPRESSORS = [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")]
# Version 2: the same chain on integers (shuffle groups the mostly-constant high bytes), then a
# CRC-32C of every compressed chunk, checked by zarr on every read.
CHECKED_COMPRESSORS = [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"), Crc32cCodec()]
# Write every chunk, even one equal to the fill value, so that the manifest can require them all.
_ARRAY_CONFIG = {"write_empty_chunks": True}


def single_chunk(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks that hold a whole array of ``shape`` in one: an empty axis still gets 1 (zarr 3.4 refuses a chunk of
    0, which 3.1 took), a 0-d array ``(1,)``."""
    return tuple(max(n, 1) for n in shape) or (1,)

_warned_v1: set[str] = set()


@dataclass(frozen=True, kw_only=True)
class StoreMetadata:
    """Group attributes of a store (``zarr.json`` → ``attributes["pmdcompress"]``)."""

    shape: tuple[int, int, int]
    input_dtype: str
    factor_dtype: str
    method: str
    patch_shape: tuple[int, int]
    overlap: tuple[int, int]
    n_patches: int
    total_rank: int
    software_version: str
    input: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    created: str = ""
    #: Frames per second of the recording, when the input says (None: unknown; always None in version 1).
    frame_rate: float | None = None
    format: str = field(default=FORMAT_NAME, init=False)
    format_version: int = FORMAT_VERSION
    #: Every chunk file of every array with its size in bytes ({array: {"c/0/1": bytes}}); None in
    #: version 1 and for stores that never were on disk.
    manifest: dict | None = None
    #: Version 4: step of the mean and trend codes relative to each pixel's noise (:func:`mean_step`); None
    #: where they are stored as floats (and before version 4).
    mean_step: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["patch_shape"] = list(self.patch_shape)
        d["overlap"] = list(self.overlap)
        if self.format_version < 2:  # version 1 had neither field
            del d["frame_rate"], d["manifest"]
        if self.format_version < 4:  # nor had versions 2 and 3 this one
            del d["mean_step"]
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "store") -> StoreMetadata:
        if not isinstance(d, dict):
            raise StoreFormatError(f"{where}: not a pmdcompress store (no '{ATTRS_KEY}' attributes)")
        version = read_version(d, STORE, where)
        return cls(
            shape=_ints(d, "shape", 3, where),
            input_dtype=_str(d, "input_dtype", where),
            factor_dtype=_choice(d, "factor_dtype", FACTOR_DTYPES_BY_VERSION[version], where),
            method=_choice(d, "method", METHODS, where),
            patch_shape=_ints(d, "patch_shape", 2, where),
            overlap=_ints(d, "overlap", 2, where),
            n_patches=_ints(d, "n_patches", None, where),
            total_rank=_ints(d, "total_rank", None, where),
            software_version=_str(d, "software_version", where),
            input=_dict(d, "input", where),
            parameters=_dict(d, "parameters", where),
            timings=_dict(d, "timings", where),
            created=str(d.get("created", "")),
            frame_rate=_frame_rate(d, where) if version >= 2 else None,
            format_version=version,
            manifest=_manifest(d, where) if version >= 2 else None,
            mean_step=_mean_step(d, where) if version >= 4 else None,
        )


class TemporalFactors:
    """The temporal factors (K, T) as float32, however stored; written and read by blocks.

    Version 2 stores ``round(V / scale[k])`` as int32; version 4 stores those integers as the zigzag codes of
    their differences from frame to frame within each time chunk (:func:`delta_codes`, uint32), so it reads
    and writes whole time chunks (a write of part of one decodes and rewrites it).  Writing refuses
    non-finite values, reading names the chunk that cannot be decoded.  Picklable, so that cluster workers
    can write their time chunks straight into the store.
    """

    def __init__(self, array, scale: np.ndarray | None, where: str, df: np.ndarray | None = None,
                 rounding_error: float | None = None, delta: bool = False):
        self.array = array
        self.scale = scale
        self.where = where
        #: What :func:`finish_store` chooses the final steps for (see :data:`ROUNDING_ERROR`).
        self.rounding_error = rounding_error
        #: Degrees of freedom of each row as a piecewise-linear signal (:func:`piecewise_linear_df`),
        #: counted on the exact values of rows written whole (the temporal filter writes them so),
        #: since rounding hides the knots.  -1: not written whole.
        self.df = df
        #: Version 4: the array holds :func:`delta_codes` of each time chunk.
        self.delta = delta

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.array.shape)

    @property
    def chunks(self) -> tuple[int, int]:
        return tuple(self.array.chunks)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    ndim = 2
    dtype = np.dtype(np.float32)

    def _scale_of(self, key):
        return np.broadcast_to(self.scale[:, None], self.shape)[key]

    def __getitem__(self, key) -> np.ndarray:
        data = self.integers(key) if self.delta else read_array(self.array, key, self.where, "temporal")
        if self.scale is None:
            data = np.asarray(data, np.float32)
            if not np.isfinite(data).all():
                raise StoreFormatError(f"{self.where}: array 'temporal' holds non-finite values (the store is damaged)")
            return data
        # float32 arithmetic: exact for |integers| < 2**24, and within 6e-8 relative beyond.
        return np.multiply(data, self._scale_of(key), dtype=np.float32)

    def __setitem__(self, key, value) -> None:
        if self.scale is None:
            raise StoreFormatError(f"{self.where}: a version-1 store is read-only")
        rows = self._whole_rows(key)
        self.set_integers(key, quantize(value, self._scale_of(key), self.where, "temporal"))
        if rows is not None and rows.size:
            if self.df is None:
                self.df = np.full(self.shape[0], -1, np.int64)
            self.df[rows] = piecewise_linear_df(np.asarray(value, np.float64).reshape(rows.size, -1))

    def integers(self, key=...) -> np.ndarray:
        """The stored integers at ``key`` (numpy's indexing), decoded from the time chunks that hold them."""
        if not self.delta:
            return np.asarray(read_array(self.array, key, self.where, "temporal"), np.int64)
        k, t = self.shape
        rows, frames = _two_keys(key)
        if isinstance(frames, slice) and frames.indices(t)[2] == 1 or isinstance(frames, int | np.integer):
            selected = np.arange(t)[frames]  # IndexError as numpy's
            lo, hi = (int(selected.min()), int(selected.max()) + 1) if selected.size else (0, 0)
            sub = slice(0, hi - lo) if isinstance(frames, slice) else int(selected) - lo
        else:
            lo, hi, sub = 0, t, frames
        if isinstance(rows, int | np.integer):
            row = int(np.arange(k)[rows])
            block, pick = self._decode(slice(row, row + 1), lo, hi), 0
        elif isinstance(rows, slice):
            block, pick = self._decode(rows, lo, hi), slice(None)
        else:
            block, pick = self._decode(slice(None), lo, hi), rows
        return block[pick, sub]

    def _decode(self, rows: slice, lo: int, hi: int) -> np.ndarray:
        """Integers of ``rows`` at frames [lo, hi) (int64, 2-D), from the whole time chunks that hold them."""
        chunk, t = self.array.chunks[1], self.shape[1]
        c0, c1 = lo // chunk * chunk, min(-(-hi // chunk) * chunk, t)
        codes = np.asarray(read_array(self.array, (rows, slice(c0, c1)), self.where, "temporal"))
        out = np.empty((codes.shape[0], hi - lo), np.int64)
        for b0 in range(c0, c1, chunk):  # each chunk's running sums, up to the last frame asked for
            s0, s1 = max(lo, b0), min(hi, b0 + chunk)
            if s0 < s1:
                from_delta_codes(codes[:, b0 - c0 : s1 - c0], s0 - b0, out[:, s0 - lo : s1 - lo])
        return out

    def set_integers(self, key, integers) -> None:
        """Store ``integers`` (already rounded to this array's steps) at ``key``; in version 4 the time chunks
        that ``key`` covers only in part are decoded and written again whole."""
        if not self.delta:
            self.array[key] = integers
            return
        k, t = self.shape
        rows, frames = _two_keys(key)
        if not (isinstance(rows, slice) and isinstance(frames, slice) and frames.indices(t)[2] == 1):
            raise IndexError("a version-4 store's temporal factors are written by slices of rows and frames")
        lo, hi = frames.indices(t)[:2]
        chunk = self.array.chunks[1]
        c0, c1 = lo // chunk * chunk, min(-(-hi // chunk) * chunk, t)
        whole = np.arange(k)[rows].size == k and (lo, hi) == (c0, c1)
        block = np.empty((k, c1 - c0), np.int64) if whole else self._decode(slice(None), c0, c1)
        block[rows, lo - c0 : hi - c0] = integers
        for b0 in range(c0, c1, chunk):
            b1 = min(b0 + chunk, t)
            self.array[:, b0:b1] = delta_codes(block[:, b0 - c0 : b1 - c0])

    def _whole_rows(self, key):
        """The rows ``key`` selects when it selects every frame of them, else None."""
        if not isinstance(key, tuple) or len(key) != 2 or not all(isinstance(k, slice) for k in key):
            return None
        k, t = self.shape
        frames = np.arange(t)[key[1]]
        return np.arange(k)[key[0]] if frames.size == t and (frames == np.arange(t)).all() else None


def _two_keys(key) -> tuple:
    """``key`` into a 2-D array as (rows, frames) (an Ellipsis or a missing part is every index)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (3 - len(key)) + key[i + 1 :]
    key = key + (slice(None),) * (2 - len(key))
    if len(key) != 2:
        raise IndexError(f"too many indices for the temporal factors: {len(key)}")
    return key


def piecewise_linear_df(rows: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Degrees of freedom of each row as a piecewise-linear signal: its knots plus 2.

    A knot is a frame where the second difference is not zero, relative to ``tol``
    times the row's peak (the degrees of freedom of trend filtering, Tibshirani and
    Taylor 2011).  Shape (n_rows,), int64.
    """
    rows = np.atleast_2d(np.asarray(rows, np.float64))
    d2 = np.abs(np.diff(rows, 2, axis=1))
    peak = np.abs(rows).max(axis=1, keepdims=True) if rows.shape[1] else np.ones((len(rows), 1))
    return (d2 > tol * np.where(peak > 0, peak, 1.0)).sum(axis=1) + 2


@dataclass(frozen=True, eq=False)
class StoreContents:
    """Everything a store holds: the metadata, the small arrays in memory, ``temporal`` lazy."""

    metadata: StoreMetadata
    mean: np.ndarray  # (Y, X) float32
    noise: np.ndarray  # (Y, X) float32
    patch_origins: np.ndarray  # (P, 2) int64
    patch_ranks: np.ndarray  # (P,) int64
    weights_y: np.ndarray  # (P, h) float32
    weights_x: np.ndarray  # (P, w) float32
    spatial: np.ndarray  # (h*w, K) float32
    temporal: TemporalFactors  # (K, T) float32, read by time blocks
    spatial_scale: np.ndarray | None  # (K,) quantization step of each spatial column (None: version 1)
    trend: np.ndarray | None  # (N, Y, X) float32
    trend_frames: np.ndarray | None  # (N,) float64
    temporal_df: np.ndarray | None = None  # (K,) degrees of freedom of the filtered rows, when recorded


def quantize(values, scale, where: str, name: str) -> np.ndarray:
    """``round(values / scale)`` as int32; non-finite or out-of-range values are refused."""
    values = np.asarray(values, np.float64)
    if not np.isfinite(values).all():
        raise StoreFormatError(f"{where}: refusing to write non-finite values into '{name}'")
    q = np.rint(values / scale)
    if q.size and np.abs(q).max() >= 2**31 - 1:
        raise StoreFormatError(f"{where}: values of '{name}' are too large to store ({np.abs(values).max():.3g})")
    return q.astype(np.int32)


# -- writer --------------------------------------------------------------------


@dataclass(eq=False)
class StoreWriter:
    """A store being written: the group, the temporal factors to fill, the spatial factors to quantize."""

    group: Any
    path: Path | None  # None for an in-memory store
    temporal: TemporalFactors
    spatial: np.ndarray  # (h*w, K) float, written by finish_store
    mean_step: float | None = None  # the step of the mean and trend codes relative to the noise (None: floats)

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else "in-memory store"


def _create(group, name, data, where, checked=True):
    data = np.asarray(data)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise StoreFormatError(f"{where}: refusing to write non-finite values into '{name}'")
    with compact_json():
        group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=single_chunk(data.shape),
                           compressors=CHECKED_COMPRESSORS if checked else COMPRESSORS,
                           config=_ARRAY_CONFIG)[...] = data


def compact_json():
    """Zarr's metadata files without indentation (zarr indents by 2: ~40 % of the ~0.8 kB each array's
    ``zarr.json`` takes, a few % of a small store)."""
    return zarr.config.set({"json_indent": None})


def image_codes(images: np.ndarray) -> np.ndarray:
    """Integer images ``(..., h, w)`` as the zigzag codes of their residuals from the median edge detector
    (:func:`image_residuals`), in the narrowest unsigned dtype: how version 4 stores its maps and components."""
    return zigzag_encode(image_residuals(images))


def images_of_codes(codes: np.ndarray, where: str, name: str) -> np.ndarray:
    """The integer images (int64) of :func:`image_codes`."""
    codes = np.asarray(codes)
    if codes.dtype.kind != "u":
        raise StoreFormatError(f"{where}: array '{name}' must hold unsigned codes in version 4, got {codes.dtype}")
    return images_from_residuals(zigzag_decode(codes))


def _noise_array(noise: np.ndarray) -> np.ndarray:
    """What version 4 stores of a noise map: the image codes of its 16-bit codes (rounded first by
    :func:`round_noise`, which the compression does before standardising the movie by it), or, where a
    value is not positive and finite, the floats."""
    noise = np.asarray(noise, np.float32)
    codes = noise_codes(round_noise(noise)) if np.isfinite(noise).all() and (noise > 0).all() else None
    return noise if codes is None else image_codes(codes)


#: Largest mean or trend code (in units of the noise times :func:`mean_step`): the decoded integers must be
#: exact in float64.  A map beyond it (a huge offset over a tiny noise) is stored as float32.
MAX_MEAN_CODE = 2**50


def _mean_codes(arrays: dict, step: np.ndarray) -> dict | None:
    """The image codes of ``round(mean / step)`` and of the trend as ``round((mean + trend) / step)`` less the
    mean's integers (the movie's baseline, mean plus trend, is then rounded once); None when a value is not
    finite or too large."""
    mean = np.asarray(arrays["mean"], np.float64)
    values = [mean] + ([mean + np.asarray(arrays["trend"], np.float64)] if "trend" in arrays else [])
    if not all(np.isfinite(v).all() for v in values):
        return None
    ints = [np.rint(v / step) for v in values]
    if any(q.size and np.abs(q).max() >= MAX_MEAN_CODE for q in ints):
        return None
    codes = {"mean": image_codes(ints[0].astype(np.int64))}
    if "trend" in arrays:
        codes["trend"] = image_codes((ints[1] - ints[0]).astype(np.int64))
    return codes


def create_store(path, metadata: StoreMetadata, arrays: dict, *, temporal_chunk: int):
    """Create a store at ``path`` holding every array except the factors.

    Returns a :class:`StoreWriter` and its ``temporal`` factors (K, T) to fill by
    time chunks (float values; quantized as they are written).  The spatial
    factors (``arrays["spatial"]``) are quantized and written by
    :func:`finish_store`, once the temporal factors are known.

    The noise map is stored rounded to 8 bits of mantissa (:func:`round_noise`;
    the compression standardises the movie by the rounded map, so the store
    holds exactly what was used); the mean and the mean plus the trend are
    rounded to a step of ``noise * mean_step(T, e, kept)`` (:func:`mean_step`,
    ``e`` the float32 rounding error, or a finer one asked for), which adds
    ``e`` of the noise the movie keeps of its mean.
    """
    on_disk = isinstance(path, str | os.PathLike)
    where = str(path) if on_disk else "in-memory store"
    with compact_json():
        # An in-memory store is opened as the store object itself: its str() ("memory://<id>") would open fsspec's
        # process-wide memory filesystem, where every in-memory store stayed for good (a report's three
        # compressions each time) and two stores whose objects had the same id (one freed, one new: the held-out
        # fits' thread beside the photon split's) cleared and overwrote each other's chunks.
        group = zarr.open_group(str(path) if on_disk else path, mode="w", zarr_format=3)
    spatial = np.asarray(arrays["spatial"])
    k, t = metadata.total_rank, metadata.shape[0]
    rounding_error = ROUNDING_ERROR.get(metadata.factor_dtype, ROUNDING_ERROR["float32"])
    arrays = dict(arrays)
    arrays["noise"] = _noise_array(arrays["noise"])
    noise = (noise_from_codes(images_of_codes(arrays["noise"], where, "noise")) if arrays["noise"].dtype.kind == "u"
             else arrays["noise"]).astype(np.float64)
    # the mean and trend at the finest precision a compression may ask for (they are a small part of the store),
    # against the share of the mean's noise that the movie keeps (a smoothed mean keeps less)
    kept = smoothed_mean_kept(float(metadata.parameters.get("mean_smoothing") or 0.0)) if "trend" in arrays else 1.0
    relative = mean_step(t, min(rounding_error, ROUNDING_ERROR["float32"]), kept)
    codes = _mean_codes(arrays, noise * relative)
    if codes is not None:
        arrays.update(codes)
    else:
        relative = None
    for name, data in arrays.items():
        if name != "spatial":
            _create(group, name, data, where)
    with compact_json():
        array = group.create_array(
            "temporal",
            shape=(k, t),
            dtype="uint32",
            chunks=(max(k, 1), max(min(temporal_chunk, t), 1)),
            compressors=CHECKED_COMPRESSORS,
            config=_ARRAY_CONFIG,
        )
    temporal = TemporalFactors(array, np.full(k, WORKING_STEP, np.float32), where,
                               rounding_error=rounding_error, delta=True)
    return StoreWriter(group, Path(path) if on_disk else None, temporal, spatial, relative), temporal


def final_steps(df: np.ndarray | None, n_frames: int, rounding_error: float | None, scale: np.ndarray) -> np.ndarray:
    """The final step of each temporal factor: :func:`temporal_steps` of the fraction of noise it keeps (its
    degrees of freedom ``df`` over the frames when filtered, else 1); without a rounding error, its step SCALE."""
    kept = np.minimum(df / max(n_frames, 1), 1.0) if df is not None else np.ones(len(scale))
    return temporal_steps(kept, rounding_error) if rounding_error is not None else scale


def round_rows(rows: np.ndarray, scale: np.ndarray, final: np.ndarray, where: str):
    """Whole rows of temporal factors (float32, as read at steps SCALE) rounded to their FINAL steps.

    Returns ``(integers, or None when every step is already final; the sum of
    squares of each row's final values)``.  Row by row: the same whatever rows
    are rounded together (:func:`finish_store` takes blocks of ~64 MB, a
    cluster's tasks blocks of 16 rows).
    """
    if (scale != final).any():
        steps = final[:, None].astype(np.float64)
        rounded = quantize(rows, steps, where, "temporal")
        return rounded, np.square(rounded * steps, dtype=np.float64).sum(axis=1)
    return None, np.square(rows, dtype=np.float64).sum(axis=1)


def finish_store(writer: StoreWriter, metadata: StoreMetadata, *, sum_squares: np.ndarray | None = None) -> None:
    """Write the spatial factors, the manifest and, last, the metadata (a store without it is incomplete).

    Each temporal factor gets its step from the noise it passes
    (:func:`temporal_steps`); each spatial column's step is chosen so that rounding
    it adds no more error to the movie than rounding its temporal factor:
    ``s_k / (sqrt(h*w) * rms(V_k))`` (the error of column k is ``step_k**2 / 12 *
    h*w * mean(V_k**2)`` summed over a patch's pixels).

    ``sum_squares``: each row's sum of squares, when the rows were already
    rounded to their final steps elsewhere (:func:`round_rows`, by a cluster's
    tasks); then this process does not read the factors again.
    """
    where = str(writer)
    temporal = writer.temporal
    k, t = temporal.shape
    filtered = metadata.parameters.get("temporal_filter") and temporal.df is not None and (temporal.df >= 0).all()
    final = final_steps(temporal.df if filtered else None, t, temporal.rounding_error, temporal.scale)
    if sum_squares is not None:
        if not np.array_equal(temporal.scale, final) or np.shape(sum_squares) != (k,):
            raise ValueError("finish_store: sum_squares given for rows not rounded to their final steps")
        sum_sq = np.asarray(sum_squares, np.float64)
    else:
        # Every row gets its final step (from the working step), by blocks of ~64 MB.
        rows_per_block = int(np.clip((64 << 20) // (8 * max(t, 1)), 1, max(k, 1)))
        sum_sq = np.zeros(k)
        for k0 in range(0, k, rows_per_block):
            k1 = min(k0 + rows_per_block, k)
            rows = temporal[k0:k1, :]
            rounded, sum_sq[k0:k1] = round_rows(rows, temporal.scale[k0:k1], final[k0:k1], where)
            if rounded is not None:
                temporal.scale[k0:k1] = final[k0:k1]
                temporal.set_integers((slice(k0, k1), slice(None)), rounded)
    _create(writer.group, "temporal_scale", temporal.scale.astype(np.float32), where)
    rms = np.sqrt(sum_sq / max(t, 1))
    n_pix = writer.spatial.shape[0]
    step = temporal.scale.astype(np.float64)
    scale = (step / (math.sqrt(max(n_pix, 1)) * np.maximum(rms, step))).astype(np.float32)
    _create(writer.group, "spatial_scale", scale, where)
    h_w = metadata.patch_shape
    integers = quantize(writer.spatial, scale[None, :], where, "spatial")  # (h*w, K)
    # each column as its (h, w) image, coded from its neighbours; stored pixel by pixel as before
    residuals = image_residuals(integers.T.reshape(k, *h_w)).reshape(k, h_w[0] * h_w[1]).T
    _create(writer.group, "spatial", zigzag_encode(residuals), where)
    if filtered:
        _create(writer.group, "temporal_df", temporal.df.astype(np.int32), where)
    manifest = chunk_manifest(writer.path, ARRAYS) if writer.path is not None else None
    metadata = dataclasses.replace(metadata, factor_dtype=QUANTIZED_DTYPE, format_version=FORMAT_VERSION,
                                   manifest=manifest, mean_step=writer.mean_step)
    with compact_json():
        writer.group.attrs[ATTRS_KEY] = strict_json(metadata.to_dict())


def strict_json(obj):
    """``obj`` with NaN and infinities replaced by null: zarr.json must stay valid JSON."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def chunk_manifest(root: Path, names) -> dict:
    """{array: {chunk key: bytes}} of every chunk file under ``root`` (sorted, so the JSON is stable)."""
    manifest = {}
    for name in names:
        folder = root / name / "c"
        if not (root / name).is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        manifest[name] = {p.relative_to(root / name).as_posix(): p.stat().st_size for p in files}
    return manifest


# -- reader --------------------------------------------------------------------


def open_group(path) -> zarr.Group:
    """The store's zarr group (read-only), with one-line errors naming ``path``."""
    if isinstance(path, StoreWriter):
        return path.group
    if isinstance(path, zarr.Group):
        return path
    where = str(path)
    try:
        return zarr.open_group(where, mode="r")
    except FileNotFoundError as exc:  # zarr 3.0's own, or 3.1's GroupNotFoundError (a subclass; 3.0 has no such name)
        if not Path(path).exists():
            raise StoreFormatError(f"{where}: no such store") from exc
        if Path(path).is_file():  # a movie given where a store goes, most often
            raise StoreFormatError(f"{where}: a file, not a store (the .pmd.zarr folder pmd compress writes)") from exc
        raise StoreFormatError(f"{where}: not a Zarr v3 store ({exc})") from exc
    except Exception as exc:
        raise StoreFormatError(f"{where}: cannot open as a Zarr store ({type(exc).__name__}: {exc})") from exc


def read_array(array, key, where: str, name: str, what: str = "store"):
    """``array[key]``; a chunk that cannot be decoded (checksum, codec) is named in a one-line error."""
    try:
        return array[key]
    except (StoreFormatError, MemoryError):
        raise
    except Exception as exc:
        chunk = _damaged_chunk(array, name)
        if chunk is None:  # every chunk decodes alone: not damage
            raise
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise StoreFormatError(f"{where}: chunk '{chunk}' cannot be read ({type(exc).__name__}: {reason}); "
                               f"the {what} is damaged") from exc


def _damaged_chunk(array, name: str) -> str | None:
    """The key of the first chunk of ``array`` that cannot be decoded, or None."""
    for index in np.ndindex(*array.cdata_shape):
        try:
            array.blocks[index]
        except Exception:  # noqa: BLE001 - any failure marks the chunk
            return f"{name}/c/{'/'.join(map(str, index))}"
    return None


def _check_manifest(root: Path, manifest: dict, where: str) -> None:
    for name, chunks in manifest.items():
        for key, size in chunks.items():
            path = root / name / key
            try:
                actual = path.stat().st_size
            except OSError:
                raise StoreFormatError(f"{where}: chunk '{name}/{key}' is missing; the store is damaged") from None
            if actual != size:
                raise StoreFormatError(f"{where}: chunk '{name}/{key}' has {actual} bytes, the store's manifest "
                                       f"records {size} (truncated or replaced); the store is damaged")


def read_store(path) -> StoreContents:
    """Read and check a store (a path, an open zarr group or a :class:`StoreWriter`)."""
    group = open_group(path)
    where = str(path)
    if ATTRS_KEY not in group.attrs:
        from .demix import ATTRS_KEY as DEMIX_KEY  # here: formats.demix imports this module

        if DEMIX_KEY in group.attrs:
            raise StoreFormatError(f"{where}: a demix result (pmd demix's output), not a store; give the .pmd.zarr "
                                   "it was made from")
    metadata = StoreMetadata.from_dict(group.attrs.get(ATTRS_KEY), where)
    version = metadata.format_version
    if version < 2 and where not in _warned_v1:
        _warned_v1.add(where)
        log.warning("%s: a format-version-%d store carries no checksums, so damage to it may go unnoticed "
                    "(compress again to get version %d)", where, version, FORMAT_VERSION)
    root = Path(path) if isinstance(path, str | os.PathLike) else None
    if metadata.manifest is not None and root is not None:
        _check_manifest(root, metadata.manifest, where)
    for name, (ndim, required) in ARRAYS_BY_VERSION[version].items():
        if name not in group:
            if required:
                raise StoreFormatError(f"{where}: array '{name}' is missing")
            continue
        if group[name].ndim != ndim:
            raise StoreFormatError(f"{where}: array '{name}' has {group[name].ndim} dimensions, expected {ndim}")

    def load(name, dtype):
        data = np.asarray(read_array(group[name], ..., where, name), dtype=dtype)
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            raise StoreFormatError(f"{where}: array '{name}' holds non-finite values; the store is damaged")
        return data

    coded = version >= 4
    noise = _load_noise(group, where) if coded else load("noise", np.float32)

    def load_map(name):
        """The mean or the trend: version 4's codes times the noise times mean_step (the trend's: the codes of
        mean + trend less the mean's), or the floats."""
        data = np.asarray(read_array(group[name], ..., where, name))
        if not (coded and data.dtype.kind == "u"):
            return load(name, np.float32)
        if metadata.mean_step is None:
            raise StoreFormatError(f"{where}: array '{name}' holds codes but the metadata has no 'mean_step'")
        codes = images_of_codes(data, where, name)
        if codes.shape[-2:] != noise.shape:
            raise StoreFormatError(f"{where}: array '{name}' does not match the noise map's shape {noise.shape}")
        return (codes * (noise.astype(np.float64) * metadata.mean_step)).astype(np.float32)

    # Optional slow baseline (pmd compress --detrend): (n_knots, Y, X) at frames trend_frames.
    trend = load_map("trend") if "trend" in group else None
    trend_frames = load("trend_frames", np.float64) if "trend_frames" in group else None
    if (trend is None) != (trend_frames is None):
        raise StoreFormatError(f"{where}: arrays 'trend' and 'trend_frames' must come together")
    if version >= 2:
        spatial_scale = load("spatial_scale", np.float32)
        temporal_scale = load("temporal_scale", np.float32)
        if coded:
            codes = np.asarray(read_array(group["spatial"], ..., where, "spatial"))
            h, w = metadata.patch_shape
            if codes.ndim != 2 or codes.shape[0] != h * w:
                raise StoreFormatError(f"{where}: array 'spatial' has shape {codes.shape}, expected ({h * w}, K)")
            k = codes.shape[1]
            integers = images_of_codes(codes.T.reshape(k, h, w), where, "spatial").reshape(k, h * w).T
            spatial = (integers * spatial_scale.astype(np.float64)).astype(np.float32)
        elif version >= 3:
            codes = read_array(group["spatial"], ..., where, "spatial")
            if np.asarray(codes).dtype.kind != "u":
                raise StoreFormatError(f"{where}: array 'spatial' must hold unsigned zigzag codes in version 3, "
                                       f"got {np.asarray(codes).dtype}")
            spatial = (zigzag_decode(codes) * spatial_scale.astype(np.float64)).astype(np.float32)
        else:
            spatial = (load("spatial", np.float64) * spatial_scale).astype(np.float32)
        if spatial_scale.shape != (spatial.shape[1],) or temporal_scale.shape != (group["temporal"].shape[0],):
            raise StoreFormatError(f"{where}: arrays 'spatial_scale' and 'temporal_scale' must have one value "
                                   "per component")
    else:
        spatial, spatial_scale, temporal_scale = load("spatial", np.float32), None, None
    if coded and group["temporal"].dtype != np.uint32:
        raise StoreFormatError(f"{where}: array 'temporal' must hold uint32 codes in version 4, "
                               f"got {group['temporal'].dtype}")
    temporal_df = load("temporal_df", np.int64) if "temporal_df" in group else None
    if temporal_df is not None and temporal_df.shape != (group["temporal"].shape[0],):
        raise StoreFormatError(f"{where}: array 'temporal_df' must have one value per component")
    contents = StoreContents(
        metadata=metadata,
        mean=load_map("mean"),
        noise=noise,
        patch_origins=load("patch_origins", np.int64),
        patch_ranks=load("patch_ranks", np.int64),
        weights_y=load("weights_y", np.float32),
        weights_x=load("weights_x", np.float32),
        spatial=spatial,
        temporal=TemporalFactors(group["temporal"], temporal_scale, where, delta=coded),
        spatial_scale=spatial_scale,
        temporal_df=temporal_df,
        trend=trend,
        trend_frames=trend_frames,
    )
    _check_shapes(contents, where)
    return contents


def _load_noise(group, where: str) -> np.ndarray:
    """Version 4's noise map: the floats of its 16-bit codes (:func:`noise_codes`), or floats as stored."""
    data = np.asarray(read_array(group["noise"], ..., where, "noise"))
    if data.dtype.kind == "u":
        codes = images_of_codes(data, where, "noise")
        if codes.size and (codes.min() < 1 or codes.max() >= 0xFF << (NOISE_MANTISSA_BITS)):
            raise StoreFormatError(f"{where}: array 'noise' holds codes of no positive finite noise; "
                                   "the store is damaged")
        data = noise_from_codes(codes)
    data = np.asarray(data, np.float32)
    if not np.isfinite(data).all():
        raise StoreFormatError(f"{where}: array 'noise' holds non-finite values; the store is damaged")
    return data


def _check_shapes(c: StoreContents, where: str) -> None:
    t, y, x = c.metadata.shape
    k = int(np.sum(c.patch_ranks))
    checks = [
        (c.mean.shape == (y, x), "mean"),
        (c.noise.shape == (y, x), "noise"),
        (c.temporal.shape == (k, t), "temporal"),
        (c.spatial.shape == (int(np.prod(c.metadata.patch_shape)), k), "spatial"),
        (len(c.patch_origins) == len(c.patch_ranks) == c.metadata.n_patches, "patch_origins"),
    ]
    for ok, name in checks:
        if not ok:
            raise StoreFormatError(f"{where}: array '{name}' does not match the store's shape {t}x{y}x{x}, rank {k}")


# -- field parsers -------------------------------------------------------------


def _get(d, key, where):
    if key not in d:
        raise StoreFormatError(f"{where}: store metadata lacks '{key}'")
    return d[key]


def _ints(d, key, n, where):
    value = _get(d, key, where)
    if n is None:
        if not isinstance(value, int) or value < 0:
            raise StoreFormatError(f"{where}: '{key}' must be a non-negative integer, got {value!r}")
        return value
    if not (isinstance(value, list | tuple) and len(value) == n and all(isinstance(v, int) and v >= 0 for v in value)):
        raise StoreFormatError(f"{where}: '{key}' must be {n} non-negative integers, got {value!r}")
    return tuple(value)


def _str(d, key, where):
    value = _get(d, key, where)
    if not isinstance(value, str):
        raise StoreFormatError(f"{where}: '{key}' must be a string, got {value!r}")
    return value


def _choice(d, key, choices, where):
    value = _str(d, key, where)
    if value not in choices:
        raise StoreFormatError(f"{where}: '{key}' is {value!r}, expected one of {', '.join(choices)}")
    return value


def _dict(d, key, where):
    value = d.get(key, {})
    if not isinstance(value, dict):
        raise StoreFormatError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def _positive_or_none(d, key, where):
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise StoreFormatError(f"{where}: '{key}' must be a positive number or null, got {value!r}")
    return float(value)


def _frame_rate(d, where):
    return _positive_or_none(d, "frame_rate", where)


def _mean_step(d, where):
    return _positive_or_none(d, "mean_step", where)


def _manifest(d, where):
    value = d.get("manifest")
    if value is None:
        return None
    if not (isinstance(value, dict) and all(isinstance(v, dict) and all(isinstance(n, int) for n in v.values())
                                            for v in value.values())):
        raise StoreFormatError(f"{where}: 'manifest' must map arrays to {{chunk: bytes}}")
    return value
