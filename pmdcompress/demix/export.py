"""Exports of a demixing result to the formats other tools read.

- :func:`write_caiman`: a CaImAn-style HDF5 file (``estimates/A`` sparse CSC with
  pixels flattened in Fortran order, ``C``, ``YrA``, ``F_dff``, ``b``, ``f``, ``dims``,
  ``params/data/fr``...), as CaImAn's ``save`` and roiextractors read it.
- :func:`write_suite2p`: a suite2p ``plane0/`` folder (``stat.npy``, ``F.npy``,
  ``Fneu.npy``, ``spks.npy``, ``iscell.npy``, ``ops.npy``).  suite2p keeps ``stat`` and
  ``ops`` as pickled dicts, so those two files are numpy object arrays: written here
  for suite2p's sake; pmdcompress itself never loads a pickle.
- :func:`write_nwb`: an NWB file through pynwb (optional): ImageSegmentation /
  PlaneSegmentation with image masks, Fluorescence and DfOverF RoiResponseSeries.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp


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
        if result.spikes is not None:
            est.create_dataset("S", data=result.spikes.astype(np.float32))
        # raw = baseline + C + YrA, so C + YrA is the baseline-free raw trace.
        yra = result.raw_traces - result.baseline - result.traces
        est.create_dataset("YrA", data=yra.astype(np.float32))
        est.create_dataset("F_dff", data=result.dff.astype(np.float32))
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
        params.create_dataset("fr", data=float(result.fs))
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


def write_suite2p(result, path) -> None:
    """suite2p ``plane0/`` folder inside the folder ``path`` (see module docstring).

    ``F`` is the fluorescence under the mask (our raw trace plus the background
    there) and ``Fneu`` that background, so ``F - Fneu`` is the raw trace.
    """
    plane = os.path.join(path, "plane0")
    os.makedirs(plane)
    neu = _background_on_rois(result)
    np.save(os.path.join(plane, "F.npy"), (result.raw_traces + neu).astype(np.float32))
    np.save(os.path.join(plane, "Fneu.npy"), neu.astype(np.float32))
    spks = result.spikes if result.spikes is not None else result.traces  # voltage: no spike model
    np.save(os.path.join(plane, "spks.npy"), spks.astype(np.float32))
    np.save(os.path.join(plane, "iscell.npy"), np.ones((result.n_components, 2), np.float32))
    stat = np.empty(result.n_components, dtype=object)
    for j, s in enumerate(suite2p_stat(result)):
        stat[j] = s
    np.save(os.path.join(plane, "stat.npy"), stat, allow_pickle=True)
    height, width = result.dims
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
        "tau": float(np.median(result.metrics["tau_s"])) if len(result.metrics.get("tau_s", ())) else 1.0,
        "save_path": plane,
        "software": "pmdcompress " + str(result.metadata.get("software_version", "")),
    }
    np.save(os.path.join(plane, "ops.npy"), np.array(ops, dtype=object), allow_pickle=True)


def write_nwb(result, path, *, session_description="pmdcompress demix", identifier=None) -> None:
    """NWB file with the segmentation and the traces (needs pynwb)."""
    import datetime
    import hashlib

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel

    created = result.metadata.get("created")
    start = datetime.datetime.fromisoformat(created) if created else datetime.datetime.now(datetime.UTC)
    if identifier is None:
        identifier = hashlib.sha256(np.ascontiguousarray(result.traces).tobytes()).hexdigest()[:32]
    nwb = NWBFile(session_description=session_description, identifier=identifier, session_start_time=start)
    device = nwb.create_device(name="Microscope", description="unknown (written by pmdcompress demix)")
    channel = OpticalChannel(name="OpticalChannel", description="unknown", emission_lambda=np.nan)
    plane = nwb.create_imaging_plane(
        name="ImagingPlane", optical_channel=channel, description="demixed plane", device=device,
        excitation_lambda=np.nan, imaging_rate=float(result.fs), indicator="unknown", location="unknown",
    )
    module = nwb.create_processing_module(name="ophys", description="pmdcompress demix")
    seg = ImageSegmentation()
    module.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="pmdcompress demix footprints",
                                       imaging_plane=plane)
    ps.add_column(name="snr", description="peak SNR of the trace")
    ps.add_column(name="r_value", description="spatial correlation with the data at active frames")
    images = result.footprint_images()
    for j in range(result.n_components):
        ps.add_roi(image_mask=images[j], snr=float(result.metrics["snr"][j]),
                   r_value=float(result.metrics["r_value"][j]))
    region = ps.create_roi_table_region(region=list(range(result.n_components)), description="all components")
    fl = Fluorescence(name="Fluorescence")
    df = DfOverF(name="DfOverF")
    module.add(fl)
    module.add(df)
    fl.create_roi_response_series(name="RoiResponseSeries", data=result.raw_traces.T.astype(np.float32),
                                  rois=region, unit="n.a.", rate=float(result.fs))
    df.create_roi_response_series(name="RoiResponseSeries", data=result.dff.T.astype(np.float32),
                                  rois=region, unit="n.a.", rate=float(result.fs))
    if result.spikes is not None:
        fl.create_roi_response_series(name="Deconvolved", data=result.spikes.T.astype(np.float32),
                                      rois=region, unit="n.a.", rate=float(result.fs),
                                      description="inferred spikes (AR(1) deconvolution), units of the traces")
    module.add(Images(name="SegmentationImages", images=[
        GrayscaleImage(name="mean", data=result.images["mean"].astype(np.float32)),
        GrayscaleImage(name="correlation", data=result.images["correlation"].astype(np.float32)),
    ]))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
