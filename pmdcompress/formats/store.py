"""The PMD store (``*.pmd.zarr``): its metadata, arrays, writer and reader (docs/format.md).

This module is the only place that knows the store's layout.  The writer
creates the arrays and, last, the metadata attribute (a folder without it is
never read as a store); the reader checks every field and array against the
spec and returns a :class:`StoreContents` whose ``temporal`` array stays lazy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ..errors import StoreFormatError
from ._version import FormatId, read_version

STORE = FormatId("pmdcompress-store", 1, (1,), "store")
FORMAT_NAME = STORE.name
FORMAT_VERSION = STORE.version
ATTRS_KEY = "pmdcompress"

# Arrays of a version-1 store: name -> (ndim, required).
ARRAYS = {
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

FACTOR_DTYPES = ("float32", "float16")
METHODS = ("svd", "pmd")

# Byte shuffle + zstd: the factors are noise-like floats, where shuffle is what
# lets the entropy coder find the redundant exponent bytes.
COMPRESSORS = [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")]


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
    format: str = field(default=FORMAT_NAME, init=False)
    format_version: int = field(default=FORMAT_VERSION, init=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["patch_shape"] = list(self.patch_shape)
        d["overlap"] = list(self.overlap)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "store") -> StoreMetadata:
        if not isinstance(d, dict):
            raise StoreFormatError(f"{where}: not a pmdcompress store (no '{ATTRS_KEY}' attributes)")
        read_version(d, STORE, where)
        return cls(
            shape=_ints(d, "shape", 3, where),
            input_dtype=_str(d, "input_dtype", where),
            factor_dtype=_choice(d, "factor_dtype", FACTOR_DTYPES, where),
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
        )


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
    temporal: Any  # (K, T) zarr array, read by time blocks
    trend: np.ndarray | None  # (N, Y, X) float32
    trend_frames: np.ndarray | None  # (N,) float64


# -- writer --------------------------------------------------------------------


def create_store(path, metadata: StoreMetadata, arrays: dict, *, temporal_chunk: int):
    """Create a store at ``path`` holding every array except the temporal factors.

    Returns the zarr group and the empty ``temporal`` array (K, T) to fill by
    time chunks.
    """
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, data in arrays.items():
        data = np.asarray(data)
        group.create_array(
            name, shape=data.shape, dtype=data.dtype, chunks=data.shape or (1,), compressors=COMPRESSORS
        )[...] = data
    k, t = metadata.total_rank, metadata.shape[0]
    temporal = group.create_array(
        "temporal",
        shape=(k, t),
        dtype=metadata.factor_dtype,
        chunks=(max(k, 1), max(min(temporal_chunk, t), 1)),
        compressors=COMPRESSORS,
    )
    return group, temporal


def finish_store(group, metadata: StoreMetadata) -> None:
    """Write the metadata last: a store without it is never taken as complete."""
    group.attrs[ATTRS_KEY] = metadata.to_dict()


# -- reader --------------------------------------------------------------------


def open_group(path) -> zarr.Group:
    """The store's zarr group (read-only), with one-line errors naming ``path``."""
    if isinstance(path, zarr.Group):
        return path
    where = str(path)
    try:
        return zarr.open_group(where, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        if not Path(path).exists():
            raise StoreFormatError(f"{where}: no such store") from exc
        raise StoreFormatError(f"{where}: not a Zarr v3 store ({exc})") from exc
    except Exception as exc:
        raise StoreFormatError(f"{where}: cannot open as a Zarr store ({type(exc).__name__}: {exc})") from exc


def read_store(path) -> StoreContents:
    """Read and check a store (a path or an open zarr group)."""
    group = open_group(path)
    where = str(path)
    metadata = StoreMetadata.from_dict(group.attrs.get(ATTRS_KEY), where)
    for name, (ndim, required) in ARRAYS.items():
        if name not in group:
            if required:
                raise StoreFormatError(f"{where}: array '{name}' is missing")
            continue
        if group[name].ndim != ndim:
            raise StoreFormatError(f"{where}: array '{name}' has {group[name].ndim} dimensions, expected {ndim}")
    # Optional slow baseline (pmd compress --detrend): (n_knots, Y, X) at frames trend_frames.
    trend = np.asarray(group["trend"][...], np.float32) if "trend" in group else None
    trend_frames = np.asarray(group["trend_frames"][...], np.float64) if "trend_frames" in group else None
    if (trend is None) != (trend_frames is None):
        raise StoreFormatError(f"{where}: arrays 'trend' and 'trend_frames' must come together")
    contents = StoreContents(
        metadata=metadata,
        mean=np.asarray(group["mean"][...], dtype=np.float32),
        noise=np.asarray(group["noise"][...], dtype=np.float32),
        patch_origins=np.asarray(group["patch_origins"][...], dtype=np.int64),
        patch_ranks=np.asarray(group["patch_ranks"][...], dtype=np.int64),
        weights_y=np.asarray(group["weights_y"][...], dtype=np.float32),
        weights_x=np.asarray(group["weights_x"][...], dtype=np.float32),
        spatial=np.asarray(group["spatial"][...], dtype=np.float32),
        temporal=group["temporal"],
        trend=trend,
        trend_frames=trend_frames,
    )
    _check_shapes(contents, where)
    return contents


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
