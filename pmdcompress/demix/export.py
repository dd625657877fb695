"""Exports of a demixing result to the formats other tools read.

- :func:`write_caiman`: a CaImAn-style HDF5 file (``estimates/A`` sparse CSC with
  pixels flattened in Fortran order, ``C``, ``YrA``, ``F_dff``, ``b``, ``f``, ``dims``,
  ``params/data/fr``...), as CaImAn's ``save`` and roiextractors read it.
- :func:`write_suite2p`: a suite2p ``plane0/`` folder (``stat.npy``, ``F.npy``,
  ``Fneu.npy``, ``spks.npy``, ``iscell.npy``, ``ops.npy``).  suite2p keeps ``stat`` and
  ``ops`` as pickled dicts, so those two files are numpy object arrays: written here
  for suite2p's sake; pmdcompress itself never loads a pickle.
- :func:`write_nwb`: an NWB file through pynwb (optional): ImageSegmentation /
  PlaneSegmentation with image masks in NWB's [roi, x, y] order, Fluorescence
  (RoiResponseSeries, Denoised, Baseline, Neuropil) and DfOverF, the mean and
  correlation images; with the session metadata of :mod:`.nwb_metadata` it passes
  nwbinspector's DANDI configuration.

Layouts follow what each tool's own loader reads: suite2p's GUI (``gui/io.py``:
``ops['diameter']``, ``ops['fs']``, ``tau``; it plots ``F - 0.7 * Fneu``), CaImAn's
``Estimates`` HDF5 and roiextractors' CaImAn, suite2p and NWB segmentation extractors.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from .nwb_metadata import load_nwb_metadata


def _fortran_footprints(result):
    """``A`` with pixels in Fortran order (index ``y + x * Y``), CSC."""
    import scipy.sparse as sp

    height, width = result.dims
    coo = result.footprints.tocoo()
    y, x = coo.row // width, coo.row % width
    return sp.csc_matrix((coo.data, (y + x * height, coo.col)), shape=coo.shape)


def _background_on_rois(result) -> np.ndarray:
    """Mean background (static + fluctuating) under each footprint, weighted by it: (n, T)."""
    a = result.footprints.tocsc().astype(np.float64)
    wsum = np.maximum(np.asarray(a.sum(axis=0)).ravel(), 1e-30)
    static = (a.T @ result.background_static.ravel().astype(np.float64)) / wsum
    out = np.repeat(static[:, None], result.n_frames, axis=1)
    nb = result.background_spatial.shape[0]
    if nb:
        b = result.background_spatial.reshape(nb, -1).astype(np.float64)
        out += ((a.T @ b.T) / wsum[:, None]) @ result.background_temporal.astype(np.float64)
    return out


def write_caiman(result, path) -> None:
    """CaImAn-style HDF5 (see module docstring)."""
    import h5py

    height, width = result.dims
    a = _fortran_footprints(result)
    nb = result.background_spatial.shape[0]
    b = result.background_spatial.reshape(nb, height, width).transpose(0, 2, 1).reshape(nb, height * width).T  # F order
    b0 = result.background_static.T.ravel()
    met = result.metrics
    with h5py.File(path, "w") as f:
        est = f.create_group("estimates")
        ga = est.create_group("A")
        ga.create_dataset("data", data=a.data.astype(np.float32))
        ga.create_dataset("indices", data=a.indices.astype(np.int64))
        ga.create_dataset("indptr", data=a.indptr.astype(np.int64))
        ga.create_dataset("shape", data=np.array(a.shape, np.int64))
        est.create_dataset("C", data=result.traces.astype(np.float32))
        # raw = baseline + C + YrA, so C + YrA is the baseline-free raw trace.
        yra = result.raw_traces - result.baseline - result.traces
        est.create_dataset("YrA", data=yra.astype(np.float32))
        est.create_dataset("F_dff", data=result.dff.astype(np.float32))
        spikes = getattr(result, "spikes", None)  # deconvolved activity, when the demixing inferred it
        if spikes is not None:
            est.create_dataset("S", data=np.asarray(spikes, np.float32))
        est.create_dataset("b", data=b.astype(np.float32))
        est.create_dataset("f", data=result.background_temporal.astype(np.float32))
        est.create_dataset("b0", data=b0.astype(np.float32))
        if result.ring_weights is not None:
            # CNMF-E's W: ring weights on the ssub_B-downsampled grid, pixels in F order like A.
            lh, lw = result.metadata["ring"]["low_dims"]
            order = np.arange(lh * lw).reshape(lh, lw).T.ravel()  # F-order position -> C-order index
            w = sp.csr_matrix(result.ring_weights)[order][:, order].tocsc()
            gw = est.create_group("W")
            gw.create_dataset("data", data=w.data.astype(np.float32))
            gw.create_dataset("indices", data=w.indices.astype(np.int64))
            gw.create_dataset("indptr", data=w.indptr.astype(np.int64))
            gw.create_dataset("shape", data=np.array(w.shape, np.int64))
        est.create_dataset("dims", data=np.array([height, width], np.int64))
        est.create_dataset("Cn", data=result.images["correlation"].astype(np.float32))
        est.create_dataset("SNR_comp", data=np.asarray(met["snr"], np.float64))
        est.create_dataset("r_values", data=np.asarray(met["r_value"], np.float64))
        est.create_dataset("idx_components", data=np.arange(result.n_components, dtype=np.int64))
        est.create_dataset("idx_components_bad", data=np.zeros(0, np.int64))
        params = f.create_group("params").create_group("data")
        # CaImAn's fr is a number; an unknown rate is NaN there and says "unknown" in the file's attributes.
        params.create_dataset("fr", data=float(result.fs) if result.fs else float("nan"))
        f.attrs["frame_rate"] = f"{result.fs:g} Hz" if result.fs else "unknown"
        params.create_dataset("dims", data=np.array([height, width], np.int64))
        if result.ring_weights is not None:
            params.create_dataset("ssub_B", data=int(result.metadata["ring"]["ssub"]))
            params.create_dataset("ring_radius", data=float(result.metadata["ring"]["radius"]))
        f.attrs["software"] = "pmdcompress " + str(result.metadata.get("software_version", ""))


def suite2p_stat(result) -> list[dict]:
    """suite2p ``stat`` entries (ypix, xpix, lam, med, npix, ...), one dict per component."""
    height, width = result.dims
    masks = result.masks().tocsc()
    a = result.footprints.tocsc()
    counts = np.asarray(masks.sum(axis=1)).ravel()
    stats = []
    met = result.metrics
    npix_all = np.diff(masks.indptr)
    mean_npix = max(float(np.mean(npix_all)) if npix_all.size else 1.0, 1.0)
    for j in range(result.n_components):
        pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
        seg = slice(a.indptr[j], a.indptr[j + 1])
        weights = dict(zip(a.indices[seg].tolist(), a.data[seg].tolist(), strict=True))
        lam = np.array([weights.get(int(p), 0.0) for p in pix], np.float32)
        ypix = (pix // width).astype(np.int32)
        xpix = (pix % width).astype(np.int32)
        med = [int(np.median(ypix)), int(np.median(xpix))] if pix.size else [0, 0]
        radius = float(np.sqrt(pix.size / np.pi))
        stats.append({
            "ypix": ypix,
            "xpix": xpix,
            "lam": lam,
            "med": med,
            "npix": int(pix.size),
            "overlap": counts[pix] > 1,
            "compact": float(1.0 / max(met["compactness"][j], 1e-6)),
            "radius": radius,
            "aspect_ratio": 1.0,
            "npix_norm": float(pix.size / mean_npix),
            "snr": float(met["snr"][j]),
            "skew": float(met["skew"][j]),
            "std": float(np.std(result.raw_traces[j])),
            "footprint": 1.0,
        })
    return stats


#: suite2p's neuropil coefficient: its GUI and its users compute F - 0.7 * Fneu.
SUITE2P_NEUCOEFF = 0.7


def _median_tau(result) -> float:
    """suite2p's ``tau``: the median decay of the inferred spikes (s), 1.0 when unknown."""
    tau = np.asarray(result.metrics.get("tau_s", []), np.float64)
    tau = tau[np.isfinite(tau) & (tau > 0)]
    return float(np.median(tau)) if tau.size else 1.0


def write_suite2p(result, path, *, final_path=None) -> None:
    """suite2p ``plane0/`` folder inside the folder ``path`` (see module docstring).

    ``Fneu`` is the background (static + fluctuating) under each mask and ``F`` our
    raw trace plus ``0.7 * Fneu``, so the ``F - 0.7 * Fneu`` that suite2p's GUI and
    scripts compute (``ops['neucoeff']``) is exactly our raw trace.  ``final_path``
    is where the folder will live once complete (``ops['save_path']``); ``path``
    may be a temporary name.  suite2p needs a frame rate (``ops['fs']``).
    """
    if result.fs is None:
        raise InputError("the suite2p export needs the frame rate (suite2p's ops['fs']); give it with {fs}", "fs")
    plane = os.path.join(path, "plane0")
    os.makedirs(plane)
    neu = _background_on_rois(result)
    np.save(os.path.join(plane, "F.npy"), (result.raw_traces + SUITE2P_NEUCOEFF * neu).astype(np.float32))
    np.save(os.path.join(plane, "Fneu.npy"), neu.astype(np.float32))
    spks = result.spikes if result.spikes is not None else result.traces  # voltage: no spike model
    np.save(os.path.join(plane, "spks.npy"), spks.astype(np.float32))
    np.save(os.path.join(plane, "iscell.npy"), np.ones((result.n_components, 2), np.float32))
    stats = suite2p_stat(result)
    stat = np.empty(result.n_components, dtype=object)
    for j, entry in enumerate(stats):
        stat[j] = entry
    np.save(os.path.join(plane, "stat.npy"), stat, allow_pickle=True)
    height, width = result.dims
    radius = result.metadata.get("parameters", {}).get("cell_radius") or result.metadata.get("cell_radius_estimate")
    diameter = int(round(2 * float(radius))) if radius else int(round(2 * np.median([s["radius"] for s in stats]
                                                                                  or [5.0])))
    ops = {
        "Ly": height,
        "Lx": width,
        "fs": float(result.fs),
        "nframes": int(result.n_frames),
        "meanImg": result.images["mean"].astype(np.float32),
        "meanImgE": result.images["mean"].astype(np.float32),
        "Vcorr": result.images["correlation"].astype(np.float32),
        "max_proj": result.images["correlation"].astype(np.float32),
        "xrange": [0, width],
        "yrange": [0, height],
        "nplanes": 1,
        "nchannels": 1,
        "tau": _median_tau(result),
        "neucoeff": SUITE2P_NEUCOEFF,
        "diameter": [diameter, diameter],
        "aspect": 1.0,
        "save_path": os.path.join(os.fspath(final_path if final_path is not None else path), "plane0"),
        "save_path0": os.fspath(final_path if final_path is not None else path),
        "software": "pmdcompress " + str(result.metadata.get("software_version", "")),
    }
    crop = ((result.metadata.get("input") or {}).get("movie") or {}).get("crop")
    if crop:
        # The store was made from a crop of its file (pmd compress --crop): ROIs are in the crop's pixels, and
        # `pmd evaluate` cuts the file's labels to it.  suite2p ignores keys it does not know.
        ops["pmd_input_crop"] = [[int(n) for n in pair] for pair in crop]
    np.save(os.path.join(plane, "ops.npy"), np.array(ops, dtype=object), allow_pickle=True)


def nwb_image_masks(result) -> np.ndarray:
    """NWB ``image_mask`` weights, (n, Y, X) float32: the footprints, peak 1.

    Where the result's masks are ellipses (``mask_shape``), each footprint is kept on its mask only, and the
    mask's pixels where it is at most ``footprint_threshold`` of its peak (an ellipse's rim, a filled nucleus)
    carry just above that level: every reader that thresholds an image mask at it, as ``pmd evaluate`` does,
    gets the mask that ``stat.npy`` and ``pmd evaluate`` score for the result.
    """
    images = result.footprint_images()
    if result.mask_shape == "threshold":
        return images
    thr = float(result.metadata["parameters"]["footprint_threshold"])
    masks = result.masks().toarray().T.reshape(images.shape) > 0
    floor = np.float32(thr * (1.0 + 1e-3))
    return np.where(masks, np.maximum(images, floor), np.float32(0)).astype(np.float32)


def write_nwb(result, path, *, metadata=None, identifier=None) -> None:
    """NWB file with the segmentation and the traces (needs pynwb).

    ``metadata`` is the session's (a dict or a YAML file; see
    :func:`pmdcompress.demix.nwb_metadata.load_nwb_metadata`): subject, session start,
    experimenter, indicator, location...  Without it the file is valid NWB but not
    DANDI-ready (no subject; the session start is when demix ran), and a warning says so.
    Masks are stored as ``image_mask`` [roi, x, y] and images as [x, y] (NWB's x is the
    image width), as roiextractors and NeuroConv read them.
    """
    import datetime
    import hashlib
    import logging

    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.base import Images
    from pynwb.file import Subject
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel

    if result.fs is None:
        raise InputError("the NWB export needs the frame rate; give it with {fs}", "fs")
    meta = load_nwb_metadata(metadata) if metadata is not None else None
    if meta is None:
        logging.getLogger("pmdcompress").warning(
            "NWB export without session metadata: no subject, and the session start is the time demix ran; not"
            " DANDI-ready (give --nwb-metadata session.yaml, see the README)")
        meta = {}
    created = result.metadata.get("created")
    start = meta.get("session_start_time") or (
        datetime.datetime.fromisoformat(created) if created else datetime.datetime.now(datetime.UTC))
    if identifier is None:
        identifier = meta.get("identifier") or hashlib.sha256(
            np.ascontiguousarray(result.traces).tobytes()).hexdigest()[:32]
    file_fields = {k: meta[k] for k in ("experimenter", "lab", "institution", "experiment_description",
                                         "session_id", "keywords", "related_publications") if k in meta}
    nwb = NWBFile(session_description=meta.get("session_description", "pmdcompress demix"),
                  identifier=identifier, session_start_time=start, **file_fields)
    if "subject" in meta:
        nwb.subject = Subject(**meta["subject"])
    imaging = meta.get("imaging", {})
    device = nwb.create_device(name="Microscope", description=imaging.get("device", "unknown (not given)"))
    channel = OpticalChannel(name="OpticalChannel", description=imaging.get("channel", "imaging channel"),
                             emission_lambda=float(imaging.get("emission_lambda", np.nan)))
    plane_kwargs = {}
    if "pixel_size_um" in imaging:
        # NWB's grid_spacing follows its [x, y] axes; given as (y, x) micrometers.
        py, px = (float(v) for v in imaging["pixel_size_um"])
        plane_kwargs.update(grid_spacing=[px * 1e-6, py * 1e-6], grid_spacing_unit="meters")
    plane = nwb.create_imaging_plane(
        name="ImagingPlane", optical_channel=channel, description=imaging.get("description", "imaging plane"),
        device=device, excitation_lambda=float(imaging.get("excitation_lambda", np.nan)),
        imaging_rate=float(result.fs), indicator=imaging.get("indicator", "unknown"),
        location=imaging.get("location", "unknown"), **plane_kwargs,
    )
    module = nwb.create_processing_module(name="ophys", description="optical physiology processed by pmdcompress "
                                          "(penalized matrix decomposition, then demixing of its factors)")
    seg = ImageSegmentation(name="ImageSegmentation")
    module.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="pmdcompress demix footprints "
                                       "(peak-normalised weights)", imaging_plane=plane)
    ps.add_column(name="snr", description="peak SNR of the trace", data=np.zeros(0))
    ps.add_column(name="r_value", description="spatial correlation with the data at active frames", data=np.zeros(0))
    images = nwb_image_masks(result)
    for j in range(result.n_components):
        ps.add_roi(image_mask=images[j].T, snr=float(result.metrics["snr"][j]),
                   r_value=float(result.metrics["r_value"][j]))
    region = ps.create_roi_table_region(region=list(range(result.n_components)), description="all components")

    def series(container, name, data, description, unit="a.u."):
        container.create_roi_response_series(
            name=name, data=H5DataIO(np.ascontiguousarray(data.T, np.float32), compression="gzip"), rois=region,
            unit=unit, rate=float(result.fs), description=description)

    fl = Fluorescence(name="Fluorescence")
    df = DfOverF(name="DfOverF")
    module.add(fl)
    module.add(df)
    series(fl, "RoiResponseSeries", result.raw_traces, "raw trace: baseline + activity + residual, input units")
    series(fl, "Denoised", result.traces, "denoised activity (baseline removed), input units")
    series(fl, "Baseline", result.baseline, "running-percentile baseline of the raw trace, input units")
    series(fl, "Neuropil", _background_on_rois(result), "background (static + fluctuating) under each footprint")
    spikes = getattr(result, "spikes", None)
    if spikes is not None:
        series(fl, "Deconvolved", np.asarray(spikes),
               f"deconvolved activity: OASIS {result.spike_model}, decay per ROI; units of RoiResponseSeries")
    series(df, "RoiResponseSeries", result.dff, "dF/F: (raw - baseline) / baseline", unit="n.a.")
    module.add(Images(name="SegmentationImages", description="mean and local-correlation images [x, y]", images=[
        GrayscaleImage(name="mean", data=result.images["mean"].astype(np.float32).T,
                       description="mean image of the movie"),
        GrayscaleImage(name="correlation", data=result.images["correlation"].astype(np.float32).T,
                       description="local correlation image of the denoised movie"),
    ]))
    import warnings

    with warnings.catch_warnings():
        # the file is written under a temporary name and renamed to *.nwb when complete
        warnings.filterwarnings("ignore", message=".*does not end in '.nwb'")
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
