"""Writing and reading pmdcompress stores (Zarr v3), format version 1.

See docs/format.md for the layout.  The writer creates the store under a
temporary name and the caller renames it when complete; the reader refuses
anything that is not a complete store of a known version.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ..errors import StoreFormatError
from .spec import ARRAYS, ATTRS_KEY, StoreMetadata

# Byte shuffle + zstd: the factors are noise-like floats, where shuffle is what
# lets the entropy coder find the redundant exponent bytes.
COMPRESSORS = [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")]

#: Default chunks of :meth:`PMDStore.to_dask`: (frames, pixels, pixels).
DASK_CHUNK_FRAMES = 256
DASK_CHUNK_PIXELS = 64


def trend_basis(frames: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights, shape (len(frames), len(knots)).

    ``trend(t) = trend_basis(t, knots) @ trend_values``: linear between knots,
    constant beyond the first and last (docs/format.md, ``trend``).
    """
    frames = np.asarray(frames, dtype=np.float64)
    eye = np.eye(len(knots))
    return np.stack([np.interp(frames, knots, eye[j]) for j in range(len(knots))], axis=1).astype(np.float32)


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


def directory_bytes(path) -> int:
    """Bytes on disk of a file or folder tree."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class PMDStore:
    """A compressed movie: a lazy (T, Y, X) float32 array reconstructed on demand.

    ``store[t0:t1, y0:y1, x0:x1]`` reconstructs only what is asked;
    :meth:`read` does the same with an output dtype; :meth:`to_dask` wraps it.
    """

    def __init__(self, path):
        self.path = Path(path) if not isinstance(path, zarr.Group) else None
        where = str(path)
        try:
            group = path if isinstance(path, zarr.Group) else zarr.open_group(str(path), mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            if self.path is not None and not self.path.exists():
                raise StoreFormatError(f"{where}: no such store") from exc
            raise StoreFormatError(f"{where}: not a Zarr v3 store ({exc})") from exc
        except Exception as exc:
            raise StoreFormatError(f"{where}: cannot open as a Zarr store ({type(exc).__name__}: {exc})") from exc
        self.metadata = StoreMetadata.from_dict(group.attrs.get(ATTRS_KEY), where)
        for name, (ndim, required) in ARRAYS.items():
            if name not in group:
                if required:
                    raise StoreFormatError(f"{where}: array '{name}' is missing")
                continue
            if group[name].ndim != ndim:
                raise StoreFormatError(f"{where}: array '{name}' has {group[name].ndim} dimensions, expected {ndim}")
        self.mean = np.asarray(group["mean"][...], dtype=np.float32)
        self.noise = np.asarray(group["noise"][...], dtype=np.float32)
        self.patch_origins = np.asarray(group["patch_origins"][...], dtype=np.int64)
        self.patch_ranks = np.asarray(group["patch_ranks"][...], dtype=np.int64)
        self.weights_y = np.asarray(group["weights_y"][...], dtype=np.float32)
        self.weights_x = np.asarray(group["weights_x"][...], dtype=np.float32)
        self.spatial = np.asarray(group["spatial"][...], dtype=np.float32)
        self.temporal = group["temporal"]
        # Optional slow baseline (pmd compress --detrend): (n_knots, Y, X) at frames trend_frames.
        self.trend = np.asarray(group["trend"][...], np.float32) if "trend" in group else None
        self.trend_frames = np.asarray(group["trend_frames"][...], np.float64) if "trend_frames" in group else None
        if (self.trend is None) != (self.trend_frames is None):
            raise StoreFormatError(f"{where}: arrays 'trend' and 'trend_frames' must come together")
        self.component_offsets = np.concatenate([[0], np.cumsum(self.patch_ranks)])
        t, y, x = self.metadata.shape
        k = int(self.component_offsets[-1])
        checks = [
            (self.mean.shape == (y, x), "mean"),
            (self.noise.shape == (y, x), "noise"),
            (self.temporal.shape == (k, t), "temporal"),
            (self.spatial.shape == (int(np.prod(self.patch_shape)), k), "spatial"),
            (len(self.patch_origins) == len(self.patch_ranks) == self.metadata.n_patches, "patch_origins"),
        ]
        for ok, name in checks:
            if not ok:
                raise StoreFormatError(
                    f"{where}: array '{name}' does not match the store's shape {t}x{y}x{x}, rank {k}"
                )
        self._cells_cache: dict = {}

    # -- array protocol -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.metadata.shape)

    @property
    def frame_rate(self) -> float | None:
        """Frames per second of the input (None when unknown): the store's ``frame_rate`` field, or for
        stores written before it existed, the rate recorded with the input."""
        rate = getattr(self.metadata, "frame_rate", None)
        if rate is None:
            rate = self.metadata.input.get("frame_rate")
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            return None
        return rate if np.isfinite(rate) and rate > 0 else None

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
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (3 - len(key))
        if len(key) != 3:
            raise IndexError(f"too many indices for a (T, Y, X) movie: {len(key)}")
        bounds, squeeze, steps = [], [], []
        for axis, (k, n) in enumerate(zip(key, self.shape, strict=True)):
            if isinstance(k, int | np.integer):
                i = int(k) + n if k < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
                bounds.append((i, i + 1))
                squeeze.append(axis)
                steps.append(1)
            elif isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 0:
                    raise IndexError("negative steps are not supported")
                bounds.append((start, max(start, stop)))
                steps.append(step)
            else:
                raise IndexError(f"only integers and slices index a PMDStore, got {type(k).__name__}")
        (t0, t1), (y0, y1), (x0, x1) = bounds
        out = self.read(t0, t1, (y0, y1), (x0, x1))
        out = out[:: steps[0], :: steps[1], :: steps[2]]
        return out.squeeze(axis=tuple(squeeze)) if squeeze else out

    # -- reconstruction -------------------------------------------------------
    def cells(self, crop_y, crop_x):
        key = (tuple(crop_y), tuple(crop_x))
        if key not in self._cells_cache:
            if len(self._cells_cache) > 8:
                self._cells_cache.clear()
            from ..reconstruct import build_cells  # numba: loaded on first reconstruction

            self._cells_cache[key] = build_cells(self, *crop_y, *crop_x)
        return self._cells_cache[key]

    def temporal_block(self, t0: int, t1: int) -> np.ndarray:
        """Temporal factors of frames [t0, t1), shape (K, t1 - t0), float32."""
        return np.ascontiguousarray(self.temporal[:, t0:t1], dtype=np.float32)

    def read(self, t0=0, t1=None, crop_y=None, crop_x=None, *, dtype=np.float32, out=None) -> np.ndarray:
        """Reconstruct frames [t0, t1) of the crop into a new (or given) array.

        Integer ``dtype``s round to nearest and clip to the dtype's range.
        """
        t_len, y_len, x_len = self.shape
        t1 = t_len if t1 is None else t1
        crop_y = (0, y_len) if crop_y is None else crop_y
        crop_x = (0, x_len) if crop_x is None else crop_x
        shape = (t1 - t0, crop_y[1] - crop_y[0], crop_x[1] - crop_x[0])
        if out is None:
            out = np.empty(shape, dtype=dtype)
        if min(shape) == 0:
            return out
        from ..reconstruct import render

        basis = trend_basis(np.arange(t0, t1), self.trend_frames) if self.trend is not None else None
        render(self.cells(crop_y, crop_x), self.temporal_block(t0, t1), out, crop_y[0], crop_x[0], basis)
        return out

    def to_dask(self, chunks=None):
        """A dask array over the reconstruction, each chunk reconstructed when computed.

        Default chunks are (256 frames, 64, 64 pixels): dask no longer narrows a
        chunk's read to the slice asked of it, so chunks small in space keep crops
        cheap (a 10x10 crop over 3000 frames costs a few 64x64 tiles, not whole
        frames), and 256 frames keep single frames cheap.  Pass ``chunks`` (e.g.
        ``(8, Y, X)`` for a viewer that shows whole frames) to choose otherwise.
        """
        import dask.array as da

        if chunks is None:
            t, y, x = self.shape
            chunks = (max(1, min(t, DASK_CHUNK_FRAMES)), max(1, min(y, DASK_CHUNK_PIXELS)),
                      max(1, min(x, DASK_CHUNK_PIXELS)))
        return da.from_array(self, chunks=chunks, asarray=False, fancy=False, name=f"pmd-{id(self)}")

    # -- information ----------------------------------------------------------
    @property
    def bytes_on_disk(self) -> int | None:
        return directory_bytes(self.path) if self.path is not None else None

    def info(self) -> dict:
        """Shape, ranks, sizes, ratios, timings and parameters as a JSON-able dict."""
        md = self.metadata
        t, y, x = md.shape
        stored = self.bytes_on_disk
        raw_bytes = t * y * x * np.dtype(md.input_dtype).itemsize
        n_elements = int(self.spatial.size + self.temporal.size + 2 * y * x)
        ranks = self.patch_ranks
        d = {
            "path": str(self.path) if self.path else None,
            "format_version": md.format_version,
            "software_version": md.software_version,
            "method": md.method,
            "shape": [t, y, x],
            "frame_rate": self.frame_rate,
            "frame_rate_source": md.input.get("frame_rate_source") if self.frame_rate is not None else None,
            "input_dtype": md.input_dtype,
            "factor_dtype": md.factor_dtype,
            "patch_shape": list(md.patch_shape),
            "overlap": list(md.overlap),
            "n_patches": md.n_patches,
            "total_rank": md.total_rank,
            "rank_per_patch": {
                "min": int(ranks.min()),
                "median": float(np.median(ranks)),
                "mean": float(ranks.mean()),
                "max": int(ranks.max()),
            },
            "bytes_on_disk": stored,
            "bytes_input": raw_bytes,
            "compression_ratio_bytes": (raw_bytes / stored) if stored else None,
            "compression_ratio_vs_uint16": (t * y * x * 2 / stored) if stored else None,
            "compression_ratio_elements": t * y * x / n_elements,
            "input": md.input,
            "parameters": md.parameters,
            "timings": md.timings,
            "created": md.created,
        }
        return d


def open_store(path: str | os.PathLike) -> PMDStore:
    """Open a pmdcompress store (a ``*.pmd.zarr`` folder) as a lazy movie."""
    return PMDStore(path)
