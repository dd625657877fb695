"""The demix result (``*.demix.zarr``): layout, writer and reader (docs/format.md).

Layout of a ``*.demix.zarr`` group (Zarr v3; attributes under ``pmdcompress-demix``):

====================================  ============  ======================================================
array                                 shape         meaning
====================================  ============  ======================================================
``footprints/data, indices, indptr``  CSC           footprints A (pixels x n, pixel ``y * X + x``), peak 1
``traces``                            (n, T)        C: baseline-free activity (>= 0 for calcium)
``raw_traces``                        (n, T)        F: fluorescence at the footprint's peak, background removed
``baseline``                          (n, T)        running low percentile of F (dF/F's F0)
``dff``                               (n, T)        (F - F0) / max(F0, floor)
``spikes``                            (n, T)        inferred spikes S (AR(1) or AR(2) deconvolution of F - F0,
                                                    units of F; the metrics ``rise_g``, ``tau_rise_s`` say
                                                    which, since session 17, 0 for AR(1)); calcium only,
                                                    absent for voltage; version 2 on
``centers``                           (n, 2)        weighted centroids (y, x)
``labels``                            (Y, X)        label image of the masks (0: none; 1 + index of the
                                                    strongest footprint at the pixel)
``background/spatial, temporal``      (nb, Y, X),   fluctuating background b f (units of the movie)
                                      (nb, T)
``background/static``                 (Y, X)        static background (mean image without the neurons)
``background/ring/data, indices,      CSR           ring model only (``--kind 1p`` with ``background_model="ring"``):
indptr``                                            weights W on the ``ring_ssub``-block grid (Nl x Nl);
                                                    see the ``ring`` attribute for the model
``metrics/<name>``                    (n,)          per-neuron metrics (see pmdcompress.demix.metrics)
``images/mean, correlation, ...``     (Y, X)        mean image, correlation images
====================================  ============  ======================================================

The attributes hold ``format``/``format_version`` (:data:`DEMIX`), ``dims``,
``n_components``, the names of the ``metrics`` and ``images`` arrays, the
``ring`` model (or null) and the run's parameters; the writer stores the
metadata mapping it is given as is and writes it last.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import zarr
import zarr.api.asynchronous
from zarr.core.sync import sync

from ..errors import StoreFormatError
from ._version import FormatId, read_version
from .store import COMPRESSORS, read_array, single_chunk

# Version 2 adds ``spikes`` (and the metrics ``tau_s``, ``decay_g``); version 1 files read with spikes None.
DEMIX = FormatId("pmdcompress-demix", 2, (1, 2), "demix result")
ATTRS_KEY = "pmdcompress-demix"


@dataclass(frozen=True, eq=False)
class DemixFile:
    """The arrays and metadata of a ``*.demix.zarr`` group, as stored."""

    footprints: sp.csc_matrix  # (Y*X, n) float32
    traces: np.ndarray  # (n, T) float32
    raw_traces: np.ndarray  # (n, T) float32
    baseline: np.ndarray  # (n, T) float32
    dff: np.ndarray  # (n, T) float32
    centers: np.ndarray  # (n, 2) float64
    labels: np.ndarray  # (Y, X) int32
    background_spatial: np.ndarray  # (nb, Y, X) float32
    background_temporal: np.ndarray  # (nb, T) float32
    background_static: np.ndarray  # (Y, X) float32
    metrics: dict  # name -> (n,)
    images: dict  # name -> (Y, X) float32
    metadata: dict  # JSON-able; carries the header fields of DEMIX
    ring_weights: sp.csr_matrix | None = None  # (Nl, Nl), ring background model only
    spikes: np.ndarray | None = None  # (n, T) float32, calcium results of version >= 2

    @property
    def format_version(self) -> int:
        return int(self.metadata.get("format_version", DEMIX.version))


def write_demix(path, result: DemixFile) -> None:
    """Write ``result`` as a Zarr v3 group at ``path`` (the caller makes it atomic).

    The small arrays (about 25 of 30: metrics, images, centers, ...) are created and written in one batch on
    zarr's event loop: one at a time, zarr's own overhead per array (a round trip through the loop, metadata,
    codec set-up) cost more CPU than their data (0.1 of 1.3 CPU-s of a demix of a 300x115x140 movie).  The large
    ones (traces, footprints) follow one at a time, each converted to its stored type only while it is written,
    so that memory stays that of one copy.  The files are byte for byte those of one array at a time; the group's
    attributes are written last.
    """
    a = result.footprints.tocsc()
    arrays = {"footprints/data": (a.data, np.float32), "footprints/indices": (a.indices, np.int64),
              "footprints/indptr": (a.indptr, np.int64)}  # "group/name" -> (data, stored dtype or None: as is)
    for name in ("traces", "raw_traces", "baseline", "dff"):
        arrays[name] = (getattr(result, name), np.float32)
    if result.spikes is not None:
        arrays["spikes"] = (result.spikes, np.float32)
    arrays["centers"] = (result.centers, np.float64)
    arrays["labels"] = (result.labels, None)
    arrays["background/spatial"] = (result.background_spatial, np.float32)
    arrays["background/temporal"] = (result.background_temporal, np.float32)
    arrays["background/static"] = (result.background_static, np.float32)
    groups = ["footprints", "background", "metrics", "images"]
    if result.ring_weights is not None:
        w = sp.csr_matrix(result.ring_weights)
        arrays.update({"background/ring/data": (w.data, np.float32), "background/ring/indices": (w.indices, np.int64),
                       "background/ring/indptr": (w.indptr, np.int64)})
        groups.insert(2, "background/ring")
    for name, values in result.metrics.items():
        arrays[f"metrics/{name}"] = (values, None)
    for name, img in result.images.items():
        arrays[f"images/{name}"] = (img, np.float32)
    sync(_write_group(str(path), groups, arrays, jsonable(result.metadata)))


# Arrays up to this many bytes are written in one batch (their copies, where the stored type differs, coexist).
BATCH_BYTES = 4 << 20


async def _write_group(path: str, groups: list[str], arrays: dict, attrs) -> None:
    root = await zarr.api.asynchronous.open_group(store=path, mode="w", zarr_format=3)
    opened = {"": root}
    for name in groups:  # parents first
        parent, _, leaf = name.rpartition("/")
        opened[name] = await opened[parent].create_group(leaf)

    async def put(key, source, dtype):
        parent, _, name = key.rpartition("/")
        data = np.ascontiguousarray(np.asarray(source), dtype=dtype)
        chunks = single_chunk(data.shape)
        if data.ndim == 2 and data.shape[1] > 4096 and data.shape[0] < data.shape[1]:
            chunks = (max(data.shape[0], 1), 4096)
        arr = await opened[parent].create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                                                compressors=COMPRESSORS)
        if data.size:
            await arr.setitem(..., data)

    def small(source, dtype):
        source = np.asarray(source)
        return source.size * np.dtype(dtype or source.dtype).itemsize <= BATCH_BYTES

    await asyncio.gather(*(put(key, *item) for key, item in arrays.items() if small(*item)))
    for key, item in arrays.items():
        if not small(*item):
            await put(key, *item)
    await root.update_attributes({ATTRS_KEY: attrs})  # last: a group without it is incomplete


def is_demix_result(path) -> bool:
    """Whether ``path`` is a Zarr group that ``pmd demix`` wrote (complete: its attributes are written last)."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        return False
    try:
        return isinstance(zarr.open_group(str(path), mode="r").attrs.get(ATTRS_KEY), dict)
    except Exception:  # noqa: BLE001 - zarr raises several types for what is not a group
        return False


def read_demix(path) -> DemixFile:
    """Open a ``*.demix.zarr`` group written by :func:`write_demix`."""
    where = str(path)
    if not Path(path).is_dir():
        raise StoreFormatError(f"{where}: no such demix result")
    try:
        group = zarr.open_group(where, mode="r")
    except Exception as exc:  # zarr raises several types for a non-group
        raise StoreFormatError(f"{where}: not a Zarr v3 group ({type(exc).__name__}: {exc})") from exc
    meta = group.attrs.get(ATTRS_KEY)
    if not isinstance(meta, dict):
        raise StoreFormatError(f"{where}: not a pmdcompress demix result (attribute '{ATTRS_KEY}' missing)")
    read_version(meta, DEMIX, where)
    def get(name):
        return read_array(group[name], ..., where, name, "demix result")

    try:
        dims = tuple(meta["dims"])
        n = int(meta["n_components"])
        a = sp.csc_matrix(
            (get("footprints/data"), get("footprints/indices"), get("footprints/indptr")),
            shape=(dims[0] * dims[1], n),
        )
        ring = None
        if meta.get("ring"):
            nl = int(np.prod(meta["ring"]["low_dims"]))
            ring = sp.csr_matrix((get("background/ring/data"), get("background/ring/indices"),
                                  get("background/ring/indptr")), shape=(nl, nl))
        return DemixFile(
            footprints=a,
            traces=get("traces"),
            raw_traces=get("raw_traces"),
            baseline=get("baseline"),
            dff=get("dff"),
            centers=get("centers"),
            labels=get("labels"),
            background_spatial=get("background/spatial"),
            background_temporal=get("background/temporal"),
            background_static=get("background/static"),
            metrics={name: get(f"metrics/{name}") for name in meta.get("metrics", [])},
            images={name: get(f"images/{name}") for name in meta.get("images", [])},
            metadata=meta,
            ring_weights=ring,
            spikes=group["spikes"][...] if "spikes" in group else None,
        )
    except KeyError as exc:
        raise StoreFormatError(f"{where}: array {exc} is missing") from exc


def jsonable(obj):
    """``obj`` with numpy values and paths turned into JSON types (mappings and sequences recursed)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj
