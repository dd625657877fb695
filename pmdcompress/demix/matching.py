"""Matching regions of interest to ground truth.

Regions are read from a demix result, neurofinder-style JSON, a label image, a
``pmd simulate`` side-car, a CaImAn HDF5 file, a suite2p folder (``stat.npy``'s
``ypix``/``xpix``, cells of ``iscell.npy``), an NWB file (a ``PlaneSegmentation``'s
``image_mask`` or ``pixel_mask``) or an ImageJ ROI zip/``.roi`` (:func:`load_regions`), then
matched one to one by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``)
on ``1 - IoU`` (pairs below the IoU threshold are never matched) or on centroid
distance (:func:`evaluate_regions`).  F1 = 2 TP / (2 TP + FP + FN).

A ``pmd simulate`` side-car of version 2 says which sources are dendrite or axon
segments (``source_kind``); :func:`score_somata` scores against its somata alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from ..errors import InputError, MissingDependencyError
from ..formats.truth import SOMA, read_truth
from ..io.safe_pickle import load_npy
from .result import ATTRS_KEY, DemixResult, fill_mask_holes, read_result, threshold_columns


@dataclass
class Regions:
    """Masks (pixels x n, bool CSC), optional weights (pixels x n) and traces (n, T)."""

    masks: sp.csc_matrix | None
    dims: tuple[int, int] | None
    weights: sp.csc_matrix | None = None
    traces: np.ndarray | None = None
    coordinates: list | None = None  # neurofinder JSON before dims are known
    # pmd's result (or its suite2p export) of a store made from a crop of its file: [[y0, y1], [x0, x1]] of the
    # file, which a whole file's labels are cut to (crop_regions)
    crop: list | None = None
    # what each region is, where the source says (a simulated truth of version 2): formats.truth.SOMA or DENDRITE
    kinds: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.masks.shape[1] if self.masks is not None else len(self.coordinates or [])

    def take(self, keep: np.ndarray) -> Regions:
        """The regions ``keep`` (indices), in that order; the field of view and crop stay."""
        def cut(a):
            return None if a is None else a[:, keep]

        return Regions(cut(self.masks), self.dims, cut(self.weights),
                       None if self.traces is None else self.traces[keep], crop=self.crop,
                       kinds=None if self.kinds is None else self.kinds[keep])


def _threshold_columns(a, thr: float) -> sp.csc_matrix:
    return threshold_columns(a, thr).astype(bool)


def _from_dense(images: np.ndarray, thr: float | None) -> tuple[sp.csc_matrix, sp.csc_matrix]:
    n = images.shape[0]
    flat = sp.csc_matrix(images.reshape(n, -1).T.astype(np.float32))
    masks = _threshold_columns(flat, 0.0 if thr is None else thr)
    return masks, flat


def load_regions(source, *, dims=None, threshold: float | None = None) -> Regions:
    """Regions from a result, a JSON/label/side-car/CaImAn file (see :func:`pmdcompress.demix.evaluate`)."""
    if isinstance(source, DemixResult):
        res = source
        crop = ((res.metadata.get("input") or {}).get("movie") or {}).get("crop")
        return Regions(res.masks(threshold), res.dims, res.footprints.tocsc(), res.raw_traces, crop=_as_crop(crop))
    if isinstance(source, Regions):
        return source
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    name = path.name.lower()
    if path.is_dir() and (path / "zarr.json").exists():
        import zarr

        try:
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
        except Exception as exc:  # zarr raises several types
            raise InputError(f"{path}: not a Zarr group ({type(exc).__name__})") from exc
        if ATTRS_KEY in attrs:
            return load_regions(read_result(path), threshold=threshold)
        if str(attrs.get("version", "")).startswith("pmd-simulate"):
            return _from_truth(path, threshold)
        raise InputError(f"{path}: neither a demix result nor a pmd simulate side-car")
    if name.endswith((".tif", ".tiff")) and Path(str(path)[: -len(path.suffix)] + ".truth.zarr").is_dir():
        return _from_truth(Path(str(path)[: -len(path.suffix)] + ".truth.zarr"), threshold)
    if name.endswith(".json"):
        return _from_json(path, dims)
    if path.is_dir() or name == "stat.npy":
        return _from_suite2p(path, dims)
    if name.endswith(".nwb"):
        return _from_nwb(path, threshold, dims)
    if name.endswith((".zip", ".roi")):
        return _from_imagej(path, dims)
    if name.endswith((".tif", ".tiff", ".npy")):
        return _from_labels(path)
    if name.endswith((".h5", ".hdf5")):
        return _from_caiman(path)
    raise InputError(f"{path}: unknown region format (expected .demix.zarr, .json, .tif/.npy labels, "
                     ".truth.zarr, CaImAn .hdf5, a suite2p folder, .nwb or an ImageJ ROI .zip/.roi)")


def _from_truth(path: Path, threshold) -> Regions:
    truth = read_truth(path)  # the side-car's format reader, not the simulator
    masks, weights = _from_dense(truth.footprints, 0.2 if threshold is None else threshold)
    return Regions(masks, tuple(truth.footprints.shape[1:]), weights, np.asarray(truth.traces),
                   kinds=truth.source_kind)


def _from_json(path: Path, dims) -> Regions:
    try:
        data = json.loads(path.read_text())
        coords = [np.asarray(r["coordinates"], np.int64).reshape(-1, 2) for r in data]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not neurofinder-style JSON ([{{\"coordinates\": [[row, col], ...]}}]): "
                         f"{type(exc).__name__}: {exc}") from exc
    return _from_coordinates(coords, dims, path)


def _from_coordinates(coords: list, dims, source=None) -> Regions:
    """Regions from per-ROI ``[[row, col], ...]`` pixel lists (clipped to ``dims``; deferred without them).

    An ROI with no pixel in the field means regions of another field of view (scoring them would be silently
    wrong), so SOURCE is refused.
    """
    if dims is None:
        return Regions(None, None, coordinates=coords)
    height, width = dims
    rows, cols = [], []
    for j, c in enumerate(coords):
        ok = (c[:, 0] >= 0) & (c[:, 0] < height) & (c[:, 1] >= 0) & (c[:, 1] < width)
        if c.size and not ok.any():
            raise InputError(f"{source or 'regions'}: ROI {j} (rows {c[:, 0].min()}-{c[:, 0].max()}, columns "
                             f"{c[:, 1].min()}-{c[:, 1].max()}) lies outside the {height}x{width} field of view: "
                             "regions of another movie?")
        pix = np.unique(c[ok, 0] * width + c[ok, 1])
        rows.append(pix)
        cols.append(np.full(pix.size, j))
    n = len(coords)
    masks = sp.csc_matrix(
        (np.ones(sum(r.size for r in rows), bool),
         (np.concatenate(rows) if rows else np.zeros(0, int), np.concatenate(cols) if cols else np.zeros(0, int))),
        shape=(height * width, n),
    )
    return Regions(masks, (height, width))


def crop_regions(regions: Regions, crop, dims, source=None) -> tuple[Regions, int]:
    """``regions`` of a whole frame cut to ``crop`` (``[[y0, y1], [x0, x1]]``, a store's recorded ``--crop``) in a
    field of ``dims``; with the number of regions that lie wholly outside it (left out).

    Regions already drawn in a field of ``dims`` are taken as the crop's own and returned as they are.
    Coordinate lists (neurofinder JSON) carry no field size: they are taken as the whole file's, which is what
    labels that come with a movie are.
    """
    (y0, y1), (x0, x1) = crop
    if regions.masks is None:
        shifted = [np.asarray(c, np.int64).reshape(-1, 2) - (y0, x0) for c in regions.coordinates or []]
        inside = [bool(((c[:, 0] >= 0) & (c[:, 0] < y1 - y0) & (c[:, 1] >= 0) & (c[:, 1] < x1 - x0)).any())
                  for c in shifted]
        kept = [c for c, ok in zip(shifted, inside, strict=True) if ok]
        return _from_coordinates(kept, dims, source), len(shifted) - len(kept)
    if regions.dims is not None and tuple(regions.dims) == tuple(dims):
        return regions, 0
    height, width = regions.dims
    if height < y1 or width < x1:
        raise InputError(f"{source or 'regions'}: regions in a {height}x{width} field of view cannot be those of "
                         f"the file the store cropped to rows {y0}:{y1}, columns {x0}:{x1}")
    rows, cols = np.mgrid[y0:y1, x0:x1]
    pixels = (rows * width + cols).ravel()

    def cut(m):
        return None if m is None else m.tocsr()[pixels].tocsc()

    masks = cut(regions.masks)
    keep = np.flatnonzero(np.diff(masks.indptr) > 0)
    whole = Regions(masks, tuple(dims), cut(regions.weights), regions.traces, kinds=regions.kinds)
    return whole.take(keep), int(masks.shape[1] - keep.size)


def _suite2p_plane(path: Path) -> Path:
    """The folder holding ``stat.npy``: ``path`` itself, its ``plane0/``, or its ``suite2p/plane0/``."""
    if path.is_file():
        return path.parent
    for plane in (path, path / "plane0", path / "suite2p" / "plane0"):
        if (plane / "stat.npy").is_file():
            return plane
    raise InputError(f"{path}: a folder without stat.npy (expected a suite2p plane folder or its parent)")


def _as_crop(crop) -> list | None:
    """A recorded crop as ``[[y0, y1], [x0, x1]]`` of ints, or None."""
    return None if not crop else [[int(n) for n in pair] for pair in crop]


def _from_suite2p(path: Path, dims) -> Regions:
    """suite2p ROIs: each ``stat`` entry's ``ypix``/``xpix`` (all its pixels), kept where ``iscell[:, 0]`` is 1.

    ``stat.npy`` and ``ops.npy`` are pickles, read only through the restricted
    loader (:mod:`pmdcompress.io.safe_pickle`).  The image size comes from
    ``ops.npy`` (``Ly``, ``Lx``) when present.
    """
    plane = _suite2p_plane(path)
    stat = load_npy(plane / "stat.npy")
    try:
        coords = [np.stack([np.asarray(s["ypix"], np.int64).ravel(), np.asarray(s["xpix"], np.int64).ravel()],
                           axis=1) for s in stat]
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise InputError(f"{plane / 'stat.npy'}: not a suite2p stat array (dicts with ypix and xpix): "
                         f"{type(exc).__name__}: {exc}") from exc
    if (plane / "iscell.npy").is_file():
        iscell = np.asarray(load_npy(plane / "iscell.npy"))
        if iscell.shape[0] != len(coords):
            raise InputError(f"{plane / 'iscell.npy'}: {iscell.shape[0]} rows for {len(coords)} ROIs in stat.npy")
        keep = (iscell.reshape(len(coords), -1)[:, 0] > 0.5) if len(coords) else np.zeros(0, bool)
        coords = [c for c, k in zip(coords, keep, strict=True) if k]
    crop = None
    if (plane / "ops.npy").is_file():
        ops = load_npy(plane / "ops.npy")
        if isinstance(ops, dict) and "Ly" in ops and "Lx" in ops:
            own = (int(ops["Ly"]), int(ops["Lx"]))
            if dims is not None and tuple(dims) != own:
                raise InputError(f"image sizes differ: {plane} is {own}, the other side {tuple(dims)}")
            dims = own
        if isinstance(ops, dict):  # pmd's export of a --crop store records the crop (suite2p ignores the key)
            crop = _as_crop(ops.get("pmd_input_crop"))
    regions = _from_coordinates(coords, dims, path)
    regions.crop = crop
    return regions


def _from_nwb(path: Path, threshold, dims=None) -> Regions:
    """ROIs of the first ``PlaneSegmentation`` in an NWB (HDF5) file.

    ``image_mask`` ([roi, x, y] as the NWB schema defines it, x the image width):
    pixels above ``threshold`` (default 0.2) of each ROI's peak, enclosed holes
    filled (binary masks are kept as they are);
    ``pixel_mask`` rows ``(x, y, weight)`` as the NWB schema defines them (x the
    column), every listed pixel with a positive weight.  Read with h5py; pynwb is not needed.
    """
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError("reading NWB needs h5py: pip install 'pmdcompress[hdf5]'") from exc
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and _attr_str(obj.attrs.get("neurodata_type")) == "PlaneSegmentation":
            found.append(name)

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not an NWB (HDF5) file ({exc})") from exc
    with f:
        f.visititems(visit)
        if not found:
            raise InputError(f"{path}: no PlaneSegmentation (ImageSegmentation ROIs) in this NWB file")
        seg = f[sorted(found)[0]]
        if "image_mask" in seg:
            images = np.asarray(seg["image_mask"][...], np.float32)
            if images.ndim != 3:
                raise InputError(f"{path}: image_mask of shape {images.shape}, expected (rois, x, y)")
            # NWB's image_mask is [roi, x, y] with x the image width; a file written [roi, y, x] is
            # recognised only when the other side's image size says so.
            if dims is None or tuple(images.shape[1:]) != tuple(dims) or tuple(dims) == tuple(dims)[::-1]:
                images = np.ascontiguousarray(images.transpose(0, 2, 1))
            dims = tuple(images.shape[1:])
            masks, weights = _from_dense(images, 0.2 if threshold is None else threshold)
            return Regions(fill_mask_holes(masks, dims).astype(bool), dims, weights)
        if "pixel_mask" in seg and "pixel_mask_index" in seg:
            rows = seg["pixel_mask"][...]
            ends = np.asarray(seg["pixel_mask_index"][...], np.int64)
            names = rows.dtype.names or ()
            x = np.asarray(rows["x"] if "x" in names else rows[:, 0], np.int64)
            y = np.asarray(rows["y"] if "y" in names else rows[:, 1], np.int64)
            w = np.asarray(rows["weight"] if "weight" in names else rows[:, 2], np.float64)
            starts = np.concatenate([[0], ends[:-1]])
            coords = [np.stack([y[a:b][w[a:b] > 0], x[a:b][w[a:b] > 0]], axis=1) for a, b in zip(starts, ends,
                                                                                                     strict=True)]
            return _from_coordinates(coords, _nwb_plane_dims(f, seg) or dims, path)
        raise InputError(f"{path}: PlaneSegmentation {sorted(found)[0]} has neither image_mask nor pixel_mask")


def _attr_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nwb_plane_dims(f, seg):
    """Image size of a pixel-mask segmentation: its reference images' shape when stored, else unknown."""
    if "reference_images" in seg:
        for key in seg["reference_images"]:
            obj = seg["reference_images"][key]
            data = obj["data"] if hasattr(obj, "keys") and "data" in obj else None
            if data is not None and data.ndim >= 2:
                return tuple(int(d) for d in data.shape[-2:])
    return None


def _from_imagej(path: Path, dims) -> Regions:
    """ImageJ ROIs (a RoiSet ``.zip`` or one ``.roi``) read with ``roifile``: pixels whose centre lies inside.

    Polygons, freehand and traced outlines, rectangles and ovals are
    rasterised; lines and points have no area and are refused.
    """
    try:
        import roifile
    except ImportError as exc:
        raise MissingDependencyError("reading ImageJ ROIs needs roifile: pip install roifile") from exc
    from matplotlib.path import Path as Polygon

    try:
        rois = roifile.roiread(str(path))
    except Exception as exc:  # roifile raises several types on a bad file
        raise InputError(f"{path}: not an ImageJ ROI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(rois, list):
        rois = [rois]
    kinds = roifile.ROI_TYPE
    coords = []
    for k, roi in enumerate(rois):
        polygon = roi.roitype in (kinds.POLYGON, kinds.FREEHAND, kinds.TRACED) or (
            roi.roitype == kinds.RECT and roi.n_coordinates > 0)
        if roi.roitype not in (kinds.RECT, kinds.OVAL) and not polygon:
            raise InputError(f"{path}: ROI {k} ({roi.name!r}) is a {kinds(roi.roitype).name.lower()}, "
                             "not an area (expected polygon, freehand, traced, rectangle or oval)")
        if polygon:
            xy = np.asarray(roi.coordinates(), np.float64)
            if xy.ndim != 2 or len(xy) < 3:
                raise InputError(f"{path}: ROI {k} ({roi.name!r}) has fewer than 3 vertices")
            top, left = int(np.floor(xy[:, 1].min())), int(np.floor(xy[:, 0].min()))
            bottom, right = int(np.ceil(xy[:, 1].max())) + 1, int(np.ceil(xy[:, 0].max())) + 1
        else:
            top, left, bottom, right = int(roi.top), int(roi.left), int(roi.bottom), int(roi.right)
        yy, xx = np.mgrid[top:bottom, left:right]
        cy, cx = yy + 0.5, xx + 0.5
        if polygon:
            inside = Polygon(xy).contains_points(np.stack([cx.ravel(), cy.ravel()], axis=1)).reshape(yy.shape)
        elif roi.roitype == kinds.OVAL:
            ry, rx = max((bottom - top) / 2, 1e-9), max((right - left) / 2, 1e-9)
            inside = ((cy - (top + bottom) / 2) / ry) ** 2 + ((cx - (left + right) / 2) / rx) ** 2 <= 1.0
        else:
            inside = np.ones(yy.shape, bool)
        coords.append(np.stack([yy[inside], xx[inside]], axis=1).astype(np.int64))
    return _from_coordinates(coords, dims, path)


def _from_labels(path: Path) -> Regions:
    if path.name.lower().endswith(".npy"):
        labels = load_npy(path)  # a pickled .npy goes through the restricted loader, and is refused there
    else:
        import tifffile

        labels = tifffile.imread(path)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise InputError(f"{path}: a label image must be 2-D integers, got {labels.dtype} {labels.shape}")
    ids = np.unique(labels[labels > 0])
    index = np.searchsorted(ids, labels.ravel())
    pix = np.flatnonzero(labels.ravel() > 0)
    masks = sp.csc_matrix((np.ones(pix.size, bool), (pix, index[pix])), shape=(labels.size, ids.size))
    return Regions(masks, labels.shape)


def _from_caiman(path: Path) -> Regions:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading CaImAn HDF5 needs h5py: pip install 'pmdcompress[hdf5]'") from exc
    with h5py.File(path, "r") as f:
        try:
            g = f["estimates/A"]
            dims = tuple(int(d) for d in f["estimates/dims"][...])
            a = sp.csc_matrix((g["data"][...], g["indices"][...], g["indptr"][...]), shape=tuple(g["shape"][...]))
            c = f["estimates/C"][...] if "estimates/C" in f else None
        except KeyError as exc:
            raise InputError(f"{path}: not a CaImAn HDF5 file ({exc})") from exc
    # CaImAn flattens pixels in Fortran order: index y + x * Y.
    height, width = dims
    coo = a.tocoo()
    y, x = coo.row % height, coo.row // height
    a = sp.csc_matrix((coo.data, (y * width + x, coo.col)), shape=(height * width, a.shape[1]))
    return Regions(_threshold_columns(a, 0.2), dims, a, c)


def _centroids(masks: sp.csc_matrix, dims) -> np.ndarray:
    width = dims[1]
    n = masks.shape[1]
    out = np.full((n, 2), np.nan)
    for j in range(n):
        pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
        if pix.size:
            out[j] = [np.mean(pix // width), np.mean(pix % width)]
    return out


#: A median offset of the matched pairs' centroids at least this large (pixels, on either axis) over at least
#: OFFSET_MIN_PAIRS pairs is reported as systematic: labels drawn in another coordinate convention (1-based
#: coordinates, a half-pixel origin) sit beside the cells they mark, and every matched IoU pays for it.
#: neurofinder_dev's labels sit one pixel down and right of its movie's cells, which the raw images alone show
#: (the labels' mean max-minus-mean and high-passed mean images peak shifted by (-1, -1)).
OFFSET_PX = 0.5
OFFSET_MIN_PAIRS = 10


def shift_masks(masks: sp.csc_matrix, dims, dy: int, dx: int) -> sp.csc_matrix:
    """``masks`` (Y*X, n) moved by ``dy`` rows and ``dx`` columns; pixels moved out of the image are dropped."""
    height, width = dims
    coo = masks.tocoo()
    y, x = coo.row // width + dy, coo.row % width + dx
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    return sp.csc_matrix((coo.data[inside], (y[inside] * width + x[inside], coo.col[inside])), shape=masks.shape)


def centroid_offset(pred: sp.csc_matrix, true: sp.csc_matrix, dims, rows, cols) -> dict:
    """The median (rows, columns) offset of matched predicted regions (``rows``, at least one) from their truth
    regions (``cols``), and the pairs' mean IoU with the truth moved by that offset rounded to whole pixels (the
    same pairs, not rematched)."""
    offset = np.median(_centroids(pred[:, rows], dims) - _centroids(true[:, cols], dims), axis=0)
    dy, dx = (int(round(float(v))) for v in offset)
    ious = np.diag(iou_matrix(pred[:, rows], shift_masks(true[:, cols], dims, dy, dx)))
    return {"median_centroid_offset": [float(offset[0]), float(offset[1])], "offset_pixels": [dy, dx],
            "mean_iou_truth_moved": float(ious.mean()),
            "systematic_offset": bool(len(rows) >= OFFSET_MIN_PAIRS and np.max(np.abs(offset)) >= OFFSET_PX)}


def iou_matrix(pred: sp.csc_matrix, true: sp.csc_matrix) -> np.ndarray:
    """IoU of every pair of masks, shape (n_pred, n_true)."""
    p = pred.astype(np.float32)
    t = true.astype(np.float32)
    inter = np.asarray((p.T @ t).toarray(), np.float64)
    sp_ = np.asarray(p.sum(axis=0)).ravel()
    st = np.asarray(t.sum(axis=0)).ravel()
    union = sp_[:, None] + st[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match(pred: sp.csc_matrix, true: sp.csc_matrix, dims, *, iou=0.3, mode="iou", max_distance=5.0):
    """Hungarian matching; returns (pred indices, true indices, IoU matrix)."""
    ious = iou_matrix(pred, true)
    if ious.size == 0:
        return np.zeros(0, int), np.zeros(0, int), ious
    if mode == "iou":
        allowed = ious >= iou
        cost = np.where(allowed, 1.0 - ious, 1e6)
    else:
        cp, ct = _centroids(pred, dims), _centroids(true, dims)
        dist = np.hypot(cp[:, None, 0] - ct[None, :, 0], cp[:, None, 1] - ct[None, :, 1])
        dist = np.nan_to_num(dist, nan=np.inf)
        allowed = dist <= max_distance
        cost = np.where(allowed, dist, 1e6)
    r, c = linear_sum_assignment(cost)
    ok = allowed[r, c]
    return r[ok], c[ok], ious


def score_somata(pred: Regions, true: Regions, **match_options) -> dict:
    """``{"n_true_dendrites": n, "somata": scores}`` where ``true`` says what its regions are, else ``{}``.

    ``scores`` are :func:`evaluate_regions`'s against the somata of ``true`` alone (its pairs name the regions of
    ``true`` by their own numbers): every region of ``pred`` still counts, so one on a dendrite is a false positive.
    """
    if true.kinds is None:
        return {}
    somata = np.flatnonzero(true.kinds == SOMA)
    scores = evaluate_regions(pred, true.take(somata), **match_options)
    for key in ("mode", "iou_threshold", "max_distance"):  # the settings are the whole evaluation's
        scores.pop(key)
    for pair in scores["pairs"]:
        pair["true"] = int(somata[pair["true"]])
    return {"n_true_dendrites": int(true.n - somata.size), "somata": scores}


def evaluate_regions(pred: Regions, true: Regions, *, iou=0.3, mode="iou", max_distance=5.0) -> dict:
    """Scores of ``pred`` against ``true`` (see :func:`pmdcompress.demix.evaluate`)."""
    if pred.masks is None or true.masks is None:
        raise InputError("cannot evaluate two region files that do not give the image size (JSON, ImageJ ROIs, "
                         "suite2p without ops.npy) against each other")
    if tuple(pred.dims) != tuple(true.dims):
        raise InputError(f"image sizes differ: result {tuple(pred.dims)}, ground truth {tuple(true.dims)}")
    r, c, ious = match(pred.masks, true.masks, pred.dims, iou=iou, mode=mode, max_distance=max_distance)
    tp = int(r.size)
    n_pred, n_true = pred.n, true.n
    out = {
        "mode": mode,
        "iou_threshold": iou if mode == "iou" else None,
        "max_distance": max_distance if mode == "centroid" else None,
        "n_true": n_true,
        "n_pred": n_pred,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_true - tp,
        "precision": tp / n_pred if n_pred else 0.0,
        "recall": tp / n_true if n_true else 0.0,
        "f1": 2 * tp / (n_pred + n_true) if (n_pred + n_true) else 1.0,
        "mean_iou": float(ious[r, c].mean()) if tp else None,
    }
    if tp:
        out.update(centroid_offset(pred.masks.tocsc(), true.masks.tocsc(), pred.dims, r, c))
    pairs = [{"pred": int(i), "true": int(j), "iou": float(ious[i, j])} for i, j in zip(r, c, strict=True)]
    if pred.weights is not None and true.weights is not None and tp:
        a = pred.weights.tocsc()
        b = true.weights.tocsc()
        for p in pairs:
            x = a[:, p["pred"]].toarray().ravel().astype(np.float64)
            y = b[:, p["true"]].toarray().ravel().astype(np.float64)
            den = np.linalg.norm(x) * np.linalg.norm(y)
            p["footprint_cosine"] = float(x @ y / den) if den > 0 else 0.0
        out["median_footprint_cosine"] = float(np.median([p["footprint_cosine"] for p in pairs]))
    if pred.traces is not None and true.traces is not None and tp:
        if pred.traces.shape[1] == true.traces.shape[1]:
            for p in pairs:
                x = np.asarray(pred.traces[p["pred"]], np.float64)
                y = np.asarray(true.traces[p["true"]], np.float64)
                ok = x.std() > 0 and y.std() > 0
                p["trace_corr"] = float(np.corrcoef(x, y)[0, 1]) if ok else 0.0
            corrs = [p["trace_corr"] for p in pairs]
            out["median_trace_corr"] = float(np.median(corrs))
            out["mean_trace_corr"] = float(np.mean(corrs))
    out["pairs"] = pairs
    return out
