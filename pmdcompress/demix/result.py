"""The demixing result in memory (:class:`DemixResult`) and on disk (``*.demix.zarr``).

Layout of a ``*.demix.zarr`` group (Zarr v3; attributes under ``pmdcompress-demix``):

====================================  ============  ======================================================
array                                 shape         meaning
====================================  ============  ======================================================
``footprints/data, indices, indptr``  CSC           footprints A (pixels x n, pixel ``y * X + x``), peak 1
``traces``                            (n, T)        C: baseline-free activity (>= 0 for calcium)
``raw_traces``                        (n, T)        F: fluorescence at the footprint's peak, background removed
``baseline``                          (n, T)        running low percentile of F (dF/F's F0)
``dff``                               (n, T)        (F - F0) / max(F0, floor)
``spikes``                            (n, T)        inferred spikes S (AR(1) deconvolution of F - F0; units of
                                                    F); calcium only, absent for voltage (format version 2)
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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import StoreFormatError

ATTRS_KEY = "pmdcompress-demix"
FORMAT = "pmdcompress-demix"
FORMAT_VERSION = 2  # 2: ``spikes`` (and metrics tau_s, decay_g); 1 is still read (spikes None)
READABLE_VERSIONS = (1, 2)


@dataclass
class DemixResult:
    """Footprints, traces, background, metrics and images of a demixed movie."""

    footprints: sp.csc_matrix  # (Y*X, n) float32
    traces: np.ndarray  # (n, T) float32
    raw_traces: np.ndarray  # (n, T) float32
    baseline: np.ndarray  # (n, T) float32
    dff: np.ndarray  # (n, T) float32
    centers: np.ndarray  # (n, 2) float64
    background_spatial: np.ndarray  # (nb, Y, X) float32
    background_temporal: np.ndarray  # (nb, T) float32
    background_static: np.ndarray  # (Y, X) float32
    metrics: dict  # name -> (n,)
    images: dict  # name -> (Y, X)
    metadata: dict
    path: Path | None = None
    extra_outputs: dict = field(default_factory=dict)
    ring_weights: sp.csr_matrix | None = None  # (Nl, Nl) on metadata["ring"]["low_dims"], ring model only
    spikes: np.ndarray | None = None  # (n, T) float32, calcium only (None for voltage and format version 1)

    @property
    def dims(self) -> tuple[int, int]:
        return tuple(self.metadata["dims"])

    @property
    def n_components(self) -> int:
        return self.footprints.shape[1]

    @property
    def n_frames(self) -> int:
        return self.traces.shape[1]

    @property
    def fs(self) -> float:
        return float(self.metadata["fs"])

    def footprint_images(self) -> np.ndarray:
        """Dense footprints, shape (n, Y, X), float32."""
        return np.asarray(self.footprints.T.toarray(), np.float32).reshape(self.n_components, *self.dims)

    def masks(self, threshold: float | None = None) -> sp.csc_matrix:
        """Masks (pixels x n, 0/1 float32): pixels above ``threshold`` (default: the run's) of each
        footprint's peak, with enclosed holes filled.

        Filling follows the convention of hand-drawn regions of interest, which
        include the nucleus that a cytosolic indicator leaves dark.
        """
        thr = self.metadata["parameters"]["footprint_threshold"] if threshold is None else threshold
        return fill_mask_holes(threshold_columns(self.footprints, thr), self.dims)

    def label_image(self, threshold: float | None = None) -> np.ndarray:
        """Label image (Y, X) int32: 0 where no mask, else 1 + the index of the strongest footprint."""
        masks = self.masks(threshold)
        a = self.footprints.multiply(masks).tocsr()
        out = np.zeros(a.shape[0], np.int32)
        for p in np.flatnonzero(np.diff(a.indptr)):
            seg = slice(a.indptr[p], a.indptr[p + 1])
            out[p] = a.indices[seg][np.argmax(a.data[seg])] + 1
        return out.reshape(self.dims)

    def __repr__(self) -> str:
        where = self.path or "in memory"
        return f"<DemixResult {where}: {self.n_components} components, {self.n_frames} frames, {self.dims}>"


def write_result(result: DemixResult, path) -> None:
    """Write ``result`` as a Zarr v3 group at ``path`` (the caller makes it atomic)."""
    import zarr

    from ..store.zarr_store import COMPRESSORS

    group = zarr.open_group(str(path), mode="w", zarr_format=3)

    def put(grp, name, data):
        data = np.ascontiguousarray(data)
        chunks = data.shape if data.size else tuple(max(s, 1) for s in data.shape)
        if data.ndim == 2 and data.shape[1] > 4096 and data.shape[0] < data.shape[1]:
            chunks = (max(data.shape[0], 1), 4096)
        arr = grp.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks or (1,),
                               compressors=COMPRESSORS)
        if data.size:
            arr[...] = data

    a = result.footprints.tocsc()
    fg = group.create_group("footprints")
    put(fg, "data", a.data.astype(np.float32))
    put(fg, "indices", a.indices.astype(np.int64))
    put(fg, "indptr", a.indptr.astype(np.int64))
    for name in ("traces", "raw_traces", "baseline", "dff"):
        put(group, name, getattr(result, name).astype(np.float32))
    if result.spikes is not None:
        put(group, "spikes", result.spikes.astype(np.float32))
    put(group, "centers", result.centers.astype(np.float64))
    put(group, "labels", result.label_image())
    bg = group.create_group("background")
    put(bg, "spatial", result.background_spatial.astype(np.float32))
    put(bg, "temporal", result.background_temporal.astype(np.float32))
    put(bg, "static", result.background_static.astype(np.float32))
    if result.ring_weights is not None:
        w = sp.csr_matrix(result.ring_weights)
        rg = bg.create_group("ring")
        put(rg, "data", w.data.astype(np.float32))
        put(rg, "indices", w.indices.astype(np.int64))
        put(rg, "indptr", w.indptr.astype(np.int64))
    mg = group.create_group("metrics")
    for name, values in result.metrics.items():
        put(mg, name, np.asarray(values))
    ig = group.create_group("images")
    for name, img in result.images.items():
        put(ig, name, np.asarray(img, np.float32))
    group.attrs[ATTRS_KEY] = _jsonable(result.metadata)  # last: a group without it is incomplete


def read_result(path) -> DemixResult:
    """Open a ``*.demix.zarr`` group written by :func:`write_result`."""
    import zarr

    where = str(path)
    if not Path(path).is_dir():
        raise StoreFormatError(f"{where}: no such demix result")
    try:
        group = zarr.open_group(where, mode="r")
    except Exception as exc:  # zarr raises several types for a non-group
        raise StoreFormatError(f"{where}: not a Zarr v3 group ({type(exc).__name__}: {exc})") from exc
    meta = group.attrs.get(ATTRS_KEY)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreFormatError(f"{where}: not a pmdcompress demix result (attribute '{ATTRS_KEY}' missing)")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise StoreFormatError(f"{where}: demix format_version {meta.get('format_version')!r}, "
                               f"this version reads {', '.join(map(str, READABLE_VERSIONS))}")
    try:
        dims = tuple(meta["dims"])
        n = int(meta["n_components"])
        a = sp.csc_matrix(
            (group["footprints/data"][...], group["footprints/indices"][...], group["footprints/indptr"][...]),
            shape=(dims[0] * dims[1], n),
        )
        metrics = {name: group[f"metrics/{name}"][...] for name in meta.get("metrics", [])}
        images = {name: group[f"images/{name}"][...] for name in meta.get("images", [])}
        ring = None
        if meta.get("ring"):
            nl = int(np.prod(meta["ring"]["low_dims"]))
            ring = sp.csr_matrix((group["background/ring/data"][...], group["background/ring/indices"][...],
                                  group["background/ring/indptr"][...]), shape=(nl, nl))
        return DemixResult(
            footprints=a,
            traces=group["traces"][...],
            raw_traces=group["raw_traces"][...],
            baseline=group["baseline"][...],
            dff=group["dff"][...],
            centers=group["centers"][...],
            background_spatial=group["background/spatial"][...],
            background_temporal=group["background/temporal"][...],
            background_static=group["background/static"][...],
            metrics=metrics,
            images=images,
            metadata=meta,
            path=Path(path),
            ring_weights=ring,
            spikes=group["spikes"][...] if "spikes" in group else None,
        )
    except KeyError as exc:
        raise StoreFormatError(f"{where}: array {exc} is missing") from exc


def open_demix(path: str | os.PathLike) -> DemixResult:
    """Open a ``*.demix.zarr`` result."""
    return read_result(path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def threshold_columns(footprints, threshold: float) -> sp.csc_matrix:
    """0/1 float32 CSC: entries above ``threshold`` times their column's maximum."""
    a = sp.csc_matrix(footprints, copy=True)
    top = np.zeros(a.shape[1])
    for j in range(a.shape[1]):
        seg = a.data[a.indptr[j] : a.indptr[j + 1]]
        top[j] = seg.max() if seg.size else 0.0
    cols = np.repeat(np.arange(a.shape[1]), np.diff(a.indptr))
    a.data = ((a.data > threshold * top[cols]) & (a.data > 0)).astype(np.float32)
    a.eliminate_zeros()
    return a


def fill_mask_holes(masks: sp.csc_matrix, dims) -> sp.csc_matrix:
    """Each column's mask (pixel index ``y * X + x``) with its enclosed holes filled."""
    from scipy import ndimage

    masks = sp.csc_matrix(masks)
    width = dims[1]
    rows, cols = [], []
    for j in range(masks.shape[1]):
        pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
        if pix.size == 0:
            continue
        y, x = np.divmod(pix, width)
        y0, x0 = y.min(), x.min()
        box = np.zeros((y.max() - y0 + 1, x.max() - x0 + 1), bool)
        box[y - y0, x - x0] = True
        fy, fx = np.nonzero(ndimage.binary_fill_holes(box))
        rows.append((fy + y0) * width + fx + x0)
        cols.append(np.full(fy.size, j))
    if not rows:
        return sp.csc_matrix(masks.shape, dtype=np.float32)
    r = np.concatenate(rows)
    return sp.csc_matrix((np.ones(r.size, np.float32), (r, np.concatenate(cols))), shape=masks.shape)
