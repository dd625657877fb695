"""The demixing result in memory (:class:`DemixResult`); on disk it is a ``*.demix.zarr``
group whose layout :mod:`pmdcompress.formats.demix` owns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._numba import jit
from ..formats.demix import ATTRS_KEY as DEMIX_ATTRS_KEY
from ..formats.demix import DEMIX, DemixFile, read_demix, write_demix

ATTRS_KEY = DEMIX_ATTRS_KEY
FORMAT = DEMIX.name
FORMAT_VERSION = DEMIX.version

#: How a footprint becomes a mask (``metadata["mask_shape"]``): ``"threshold"``, its pixels above
#: ``footprint_threshold`` of its peak with holes filled; ``"ellipse"``, that many pixels (the same area) in the
#: ellipse of their second moments.  Results written without the key keep ``"threshold"``, so their masks
#: and scores do not change.
#: ``"cell"`` (not a default): the ellipse holds only as many pixels as the footprint has above half its plateau (the
#: 90th percentile of its values on the mask), for components found by their activity: the boundary of a
#: blurred cell, as hand-drawn labels follow it (and as the mean-image finders already draw theirs).
MASK_SHAPES = ("threshold", "ellipse", "cell")
#: The plateau and the level of the ``"cell"`` shape: half of the 90th percentile of the footprint on its mask.
CELL_PLATEAU_PERCENTILE = 90.0
CELL_EDGE_LEVEL = 0.5
#: Refits of an ellipse's moments on the mask's pixels inside it (:func:`moment_ellipse`).
ELLIPSE_ITERATIONS = 3


def default_mask_shape(kind: str) -> str:
    """What new results of ``kind`` record.  Calcium (``2p``, ``1p``): ``"ellipse"``; every matched mask came closer
    to its cell on simulations (truth masks; 2p +0.002-0.014 mean IoU, 1p +0.03-0.06) and on neurofinder_dev's
    labels (docs/demix.md, session 7): a thresholded footprint's edge follows the noise, the neuropil and pixels
    shared with a neighbour, while the soma under it is round or oval.  Voltage keeps ``"threshold"`` (not
    measured)."""
    return "ellipse" if kind in ("2p", "1p") else "threshold"


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
    # masks() by (threshold, shape), with the footprints and metrics they were drawn from: writing a result and
    # exporting it drew every ellipse twice (a tenth of a demix's CPU on neurofinder_dev).
    _masks_drawn: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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
    def fs(self) -> float | None:
        """Frame rate in Hz; None when unknown (the store did not know it and none was given)."""
        fs = self.metadata.get("fs")
        return None if fs is None else float(fs)

    @property
    def spike_model(self) -> str | None:
        """``"AR(2), rise 96 ms"`` (or without the rise where the frame rate is unknown), ``"AR(1)"``, or None where
        no spikes were inferred (voltage, no components).  Results written before the rise was recorded are AR(1)."""
        if self.spikes is None or not self.n_components:
            return None
        rise = self.metrics.get("rise_g")
        if rise is None or not float(rise[0]) > 0:
            return "AR(1)"
        tau = self.metrics.get("tau_rise_s")
        tau = float(tau[0]) if tau is not None else float("nan")
        return f"AR(2), rise {1000 * tau:.0f} ms" if np.isfinite(tau) else "AR(2)"

    def footprint_images(self) -> np.ndarray:
        """Dense footprints, shape (n, Y, X), float32."""
        return np.asarray(self.footprints.T.toarray(), np.float32).reshape(self.n_components, *self.dims)

    @property
    def mask_shape(self) -> str:
        """How :meth:`masks` draws each mask (see :data:`MASK_SHAPES`); ``"threshold"`` for older results."""
        return str(self.metadata.get("mask_shape", "threshold"))

    def masks(self, threshold: float | None = None, shape: str | None = None) -> sp.csc_matrix:
        """Masks (pixels x n, 0/1 float32): pixels above ``threshold`` (default: the run's) of each
        footprint's peak, with enclosed holes filled; with ``shape`` ``"ellipse"`` (default: the run's,
        :attr:`mask_shape`) the same number of pixels in the ellipse of their second moments (for components
        seeded from the mean image, of their whole region); ``"cell"``: that ellipse with the area inside half
        the footprint's plateau (see :data:`MASK_SHAPES`).

        Filling follows the convention of hand-drawn regions of interest, which
        include the nucleus that a cytosolic indicator leaves dark.
        """
        thr = self.metadata["parameters"]["footprint_threshold"] if threshold is None else threshold
        shape = self.mask_shape if shape is None else shape
        if shape not in MASK_SHAPES:
            raise ValueError(f"shape: {shape!r} is not one of {', '.join(MASK_SHAPES)}")
        key = (float(thr), shape)
        drawn = self._masks_drawn.get(key)
        if drawn is None or drawn[0] is not self.footprints or drawn[1] is not self.metrics.get("seeded_from_mean"):
            drawn = (self.footprints, self.metrics.get("seeded_from_mean"), self._draw_masks(thr, shape))
            self._masks_drawn[key] = drawn
        return drawn[2].copy()

    def _draw_masks(self, thr: float, shape: str) -> sp.csc_matrix:
        if shape == "threshold":
            return fill_mask_holes(threshold_columns(self.footprints, thr), self.dims)
        # A mean-image component's footprint is the finder's region carrying the high-passed mean image (a dark
        # nucleus, an uneven rim), not a fitted profile: its mask is the whole region.
        fixed = np.asarray(self.metrics.get("seeded_from_mean", np.zeros(self.n_components)), bool)
        masks = fill_mask_holes(threshold_columns(self.footprints, np.where(fixed, 0.0, thr)), self.dims)
        sizes = None
        if shape == "cell":
            sizes = cell_sizes(self.footprints, masks)
            sizes[fixed] = np.diff(masks.indptr)[fixed]  # the mean-image finders' regions are already the cell
        return moment_ellipses(masks, self.dims, sizes=sizes)

    def label_image(self, threshold: float | None = None) -> np.ndarray:
        """Label image (Y, X) int32: 0 where no mask, else 1 + the index of the strongest footprint."""
        masks = self.masks(threshold)
        # 1 + the footprint's value under its mask: an ellipse's pixels where the footprint is zero still count.
        a = (sp.csc_matrix(masks, dtype=np.float64) + self.footprints.multiply(masks)).tocsr()
        out = np.zeros(a.shape[0], np.int32)
        rows = np.flatnonzero(np.diff(a.indptr))
        if rows.size:
            # Each covered pixel's first entry holding its row's maximum (np.argmax per row, all rows at once).
            row_of = np.repeat(np.arange(rows.size), np.diff(a.indptr)[rows])
            top = np.maximum.reduceat(a.data, a.indptr[rows])
            at_top = np.flatnonzero(a.data == top[row_of])
            first = at_top[np.unique(row_of[at_top], return_index=True)[1]]
            out[rows] = a.indices[first] + 1
        return out.reshape(self.dims)

    def __repr__(self) -> str:
        where = self.path or "in memory"
        return f"<DemixResult {where}: {self.n_components} components, {self.n_frames} frames, {self.dims}>"


def write_result(result: DemixResult, path) -> None:
    """Write ``result`` as a Zarr v3 group at ``path`` (the caller makes it atomic)."""
    write_demix(path, DemixFile(
        footprints=result.footprints, traces=result.traces, raw_traces=result.raw_traces, baseline=result.baseline,
        dff=result.dff, centers=result.centers, labels=result.label_image(),
        background_spatial=result.background_spatial, background_temporal=result.background_temporal,
        background_static=result.background_static, metrics=result.metrics, images=result.images,
        metadata=result.metadata, ring_weights=result.ring_weights, spikes=result.spikes,
    ))


def read_result(path) -> DemixResult:
    """Open a ``*.demix.zarr`` group written by :func:`write_result`."""
    f = read_demix(path)
    return DemixResult(
        footprints=f.footprints, traces=f.traces, raw_traces=f.raw_traces, baseline=f.baseline, dff=f.dff,
        centers=f.centers, background_spatial=f.background_spatial, background_temporal=f.background_temporal,
        background_static=f.background_static, metrics=f.metrics, images=f.images, metadata=f.metadata,
        path=Path(path), ring_weights=f.ring_weights, spikes=f.spikes,
    )


def open_demix(path: str | os.PathLike) -> DemixResult:
    """Open a ``*.demix.zarr`` result."""
    return read_result(path)


def threshold_columns(footprints, threshold) -> sp.csc_matrix:
    """0/1 float32 CSC: entries above ``threshold`` (a number, or one per column) times their column's maximum."""
    a = sp.csc_matrix(footprints, copy=True)
    threshold = np.broadcast_to(np.asarray(threshold, np.float64), (a.shape[1],))
    top = np.zeros(a.shape[1])
    for j in range(a.shape[1]):
        seg = a.data[a.indptr[j] : a.indptr[j + 1]]
        top[j] = seg.max() if seg.size else 0.0
    cols = np.repeat(np.arange(a.shape[1]), np.diff(a.indptr))
    a.data = ((a.data > threshold[cols] * top[cols]) & (a.data > 0)).astype(np.float32)
    a.eliminate_zeros()
    return a


def _redraw_masks(masks: sp.csc_matrix, dims, redraw) -> sp.csc_matrix:
    """Each nonempty column's mask (pixel index ``y * X + x``) replaced by ``redraw(j, y, x)``, flat indices."""
    masks = sp.csc_matrix(masks)
    width = dims[1]
    rows, cols = [], []
    for j in range(masks.shape[1]):
        pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
        if pix.size == 0:
            continue
        y, x = np.divmod(pix.astype(np.int64), width)
        new = redraw(j, y, x)
        rows.append(new)
        cols.append(np.full(new.size, j))
    if not rows:
        return sp.csc_matrix(masks.shape, dtype=np.float32)
    r = np.concatenate(rows)
    return sp.csc_matrix((np.ones(r.size, np.float32), (r, np.concatenate(cols))), shape=masks.shape)


# Pixels of the padded boxes that one call of :func:`fill_mask_holes` fills at most (4 MiB of booleans).
FILL_BATCH_PIXELS = 1 << 22


def fill_mask_holes(masks: sp.csc_matrix, dims) -> sp.csc_matrix:
    """Each column's mask (pixel index ``y * X + x``) with its enclosed holes filled.

    Each mask is filled in its bounding box; the boxes are stacked (padded below and to the right, which
    leaves every hole a hole and every pixel open to the border open) and filled by one 3-D call whose
    structure does not reach across boxes: per box what a 2-D call gives (4-connected), without the
    overhead of one call per mask (a thousand at 512 x 512)."""
    from scipy import ndimage

    masks = sp.csc_matrix(masks)
    width = dims[1]
    boxes = {}
    for j in range(masks.shape[1]):
        pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
        if pix.size:
            y, x = np.divmod(pix.astype(np.int64), width)
            boxes[j] = (y, x, y.min(), x.min())
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    filled = {}
    order = list(boxes)
    while order:
        batch, height, wide = [], 0, 0
        for j in order:
            y, x, y0, x0 = boxes[j]
            h, w = max(height, int(y.max() - y0) + 1), max(wide, int(x.max() - x0) + 1)
            if batch and (len(batch) + 1) * h * w > FILL_BATCH_PIXELS:
                break
            batch.append(j)
            height, wide = h, w
        order = order[len(batch):]
        stack = np.zeros((len(batch), height, wide), bool)
        for k, j in enumerate(batch):
            y, x, y0, x0 = boxes[j]
            stack[k, y - y0, x - x0] = True
        stack = ndimage.binary_fill_holes(stack, structure=structure)
        for k, j in enumerate(batch):
            _, _, y0, x0 = boxes[j]
            fy, fx = np.nonzero(stack[k])
            filled[j] = (fy + y0) * width + fx + x0
    return _redraw_masks(masks, dims, lambda j, y, x: filled[j])


def moment_ellipse(ypix: np.ndarray, xpix: np.ndarray, dims, *, n_iter: int = ELLIPSE_ITERATIONS,
                   size: int | None = None) -> np.ndarray:
    """Flat indices (``y * X + x``) of as many pixels as given (or ``size``), those nearest (in the Mahalanobis
    distance of the pixels' second moments, each pixel a unit square) to their centroid: a digital ellipse of the
    same area (or of ``size`` pixels), clipped to the field.  Then ``n_iter`` times the moments are taken again
    over the given pixels inside the last ellipse, so that a protrusion (a dendrite's stub, a neighbour's
    pixels) does not stretch or pull the ellipse towards it.  Ties go to the lower index (deterministic)."""
    height, width = dims
    n = ypix.size
    flat_given = ypix.astype(np.int64) * width + xpix
    if n < 3:
        return np.sort(flat_given)
    n = n if size is None else max(int(size), 1)
    y = ypix.astype(np.float64)
    x = xpix.astype(np.float64)
    inside = np.ones(ypix.size, bool)
    for _ in range(n_iter + 1):
        cy, cx = y[inside].mean(), x[inside].mean()
        # A pixel is a unit square: its own second moment (1/12) keeps a line of pixels a (thin) ellipse.
        cov = np.cov(np.vstack([y[inside], x[inside]]), bias=True) + np.eye(2) / 12.0
        inv = np.linalg.inv(cov)
        # Wide enough for any ellipse of n pixels with these moments: the boundary of a uniform ellipse is at 2
        # SDs of each axis; the trimmed moments are smaller than the ellipse's, so allow 3 x n / count, + 2 px.
        grow = np.sqrt(max(n, ypix.size) / max(int(inside.sum()), 1))
        half = int(np.ceil(3.0 * grow * np.sqrt(np.linalg.eigvalsh(cov)[-1]))) + 2
        y0, y1 = max(int(np.floor(cy)) - half, 0), min(int(np.ceil(cy)) + half + 1, height)
        x0, x1 = max(int(np.floor(cx)) - half, 0), min(int(np.ceil(cx)) + half + 1, width)
        ellipse, now = _ellipse_window(ypix, xpix, y0, y1, x0, x1, width, cy, cx, inv[0, 0], inv[0, 1],
                                       inv[1, 1], n)
        if now.sum() < 3 or np.array_equal(now, inside):
            break
        inside = now
    return ellipse


def _ellipse_window(ypix, xpix, y0, y1, x0, x1, width, cy, cx, i00, i01, i11, n):
    """The ``n`` pixels of the window ``[y0, y1) x [x0, x1)`` nearest to ``(cy, cx)`` in the quadratic form
    ``(i00, i01, i11)`` (distances rounded to 9 decimals, ties to the lower flat index) as sorted flat indices, and
    which given pixels are among them: :func:`moment_ellipse`'s round, in one compiled pass (its dozen small numpy
    calls took half of the 512 x 512 field's mask drawing; twin: tests/test_s15_demixsys.py).  The same floats
    (each distance summed as numpy evaluates the expression, no fused multiply-add; numpy's rounding: multiply by
    1e9, round half to even, divide) and a stable sort of the rounded distances in raster order, which is
    lexsort's order with the flat index second."""
    return _ellipse_window_kernel(np.ascontiguousarray(ypix, np.int64), np.ascontiguousarray(xpix, np.int64),
                                  int(y0), int(y1), int(x0), int(x1), int(width), float(cy), float(cx),
                                  float(i00), float(2.0 * i01), float(i11), int(n))


@jit
def _ellipse_window_kernel(ypix, xpix, y0, y1, x0, x1, width, cy, cx, i00, two_i01, i11, n):
    h, w = y1 - y0, x1 - x0
    size = h * w
    rounded = np.empty(size, np.float64)
    for r in range(h):
        dy = np.float64(y0 + r) - cy
        for q in range(w):
            dx = np.float64(x0 + q) - cx
            dist = (i00 * dy) * dy + (two_i01 * dy) * dx + (i11 * dx) * dx
            rounded[r * w + q] = np.rint(dist * 1e9) / 1e9
    order = np.argsort(rounded, kind="mergesort")
    m = min(n, size)
    picked = np.zeros(size, np.bool_)
    ellipse = np.empty(m, np.int64)
    for i in range(m):
        k = order[i]
        picked[k] = True
        ellipse[i] = (y0 + k // w) * width + x0 + k % w
    ellipse.sort()
    now = np.zeros(ypix.size, np.bool_)
    for i in range(ypix.size):
        wy, wx = ypix[i] - y0, xpix[i] - x0
        if wy >= 0 and wy < h and wx >= 0 and wx < w:
            now[i] = picked[wy * w + wx]
    return ellipse, now


def cell_sizes(footprints, masks: sp.csc_matrix) -> np.ndarray:
    """Per column, the mask's pixels where the footprint exceeds :data:`CELL_EDGE_LEVEL` of its plateau (the
    :data:`CELL_PLATEAU_PERCENTILE` of its values on the mask); int64 (n,)."""
    a = sp.csc_matrix(footprints)
    masks = sp.csc_matrix(masks)
    on = sp.csc_matrix(a.multiply(masks))
    out = np.diff(masks.indptr).astype(np.int64)
    for j in range(masks.shape[1]):
        values = on.data[on.indptr[j] : on.indptr[j + 1]]
        values = values[values > 0]
        if values.size:
            plateau = np.percentile(values, CELL_PLATEAU_PERCENTILE)
            out[j] = max(int(np.count_nonzero(values > CELL_EDGE_LEVEL * plateau)), 1)
    return out


def moment_ellipses(masks: sp.csc_matrix, dims, *, sizes=None) -> sp.csc_matrix:
    """Each column's mask (pixel index ``y * X + x``) replaced by :func:`moment_ellipse` of its pixels (of
    ``sizes[j]`` pixels where given, else of the mask's area)."""
    return _redraw_masks(
        masks, dims, lambda j, y, x: moment_ellipse(y, x, dims, size=None if sizes is None else int(sizes[j]))
    )
