"""The demixing job: validate the options, run the fit (``demix.pipeline``), write the result, figures, exports.

``pmdcompress.demix.demix`` and ``pmdcompress.demix.evaluate`` are these functions (re-exported lazily); the
demix package itself holds the maths and the formats and never imports the pipeline.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._package_version import __version__
from ..errors import InputError, MissingDependencyError, OptionError
from ..io.atomic import atomic_output, check_output_path, output_lock
from ..options import DemixOptions, positive_float
from ..progress import null_progress

# The fit, the store reader and the writers are imported where they are used: ``pmd evaluate`` needs none of them,
# and the figures (matplotlib), the exports and the NWB metadata (YAML) only the runs that ask for them.

log = logging.getLogger("pmdcompress")

EXPORTS = ("caiman", "suite2p", "nwb")


def _parse_export(export) -> tuple[str, ...]:
    if export is None:
        return ()
    if isinstance(export, str):
        export = [e for e in export.replace(" ", "").split(",") if e]
    out = []
    for e in export:
        name = str(e).lower()
        if name in ("caiman-hdf5", "hdf5", "cnmf"):
            name = "caiman"
        if name not in EXPORTS:
            raise OptionError(f"{{export}} {e!r}: expected any of {', '.join(EXPORTS)}", "export")
        if name not in out:
            out.append(name)
    return tuple(out)


def sibling_paths(output: Path) -> dict:
    """Where the figures and exports of ``output`` (``NAME.zarr``) go: beside it, named ``NAME.*``."""
    name = output.name[:-5] if output.name.endswith(".zarr") else output.name
    base = output.with_name(name)
    return {
        "contours": base.with_name(name + ".contours.png"),
        "traces": base.with_name(name + ".traces.png"),
        "caiman": base.with_name(name + ".caiman.hdf5"),
        "suite2p": base.with_name(name + ".suite2p"),
        "nwb": base.with_name(name + ".nwb"),
    }


def demix(
    store_or_path,
    output,
    *,
    kind: str = "2p",
    fs: float | None = None,
    export=(),
    overwrite: bool = False,
    seed_from_mean: bool | None = None,
    figures: bool = False,
    nwb_metadata=None,
    progress=None,
    **options,
):
    """Find neurons in a compressed movie: footprints, traces, dF/F, background, metrics.

    Parameters
    ----------
    store_or_path : PMDStore or str or path-like
        A ``*.pmd.zarr`` store (``pmdcompress.open``) or its path.
    output : str or path-like or None
        The result, a Zarr group (by convention ``NAME.demix.zarr``); figures and
        exports are written beside it as ``NAME.demix.contours.png``,
        ``.traces.png``, ``.caiman.hdf5``, ``.suite2p/plane0/``, ``.nwb``.  None: ``NAME.demix.zarr``
        beside the store ``NAME.pmd.zarr`` (as ``pmd demix`` names it), or, for a store in memory (``compress``
        with no output), a result returned and written nowhere (no exports or figures then).
    kind : {"2p", "1p", "voltage"}, optional
        Two-photon calcium (low-rank smooth background), one-photon calcium
        (ring-model background, see ``background_model``), voltage (signed traces, no skewness test).
    fs : float, optional
        Frame rate in Hz (dF/F window, binning, spike decay in seconds, exports); default the store's
        (from the movie's metadata).  When neither knows it, the result says
        "unknown": windows are set in frames, a warning says so, and the NWB
        export (which needs a rate) asks for ``fs``.
    export : str or sequence of str, optional
        Any of ``"caiman"``, ``"suite2p"``, ``"nwb"`` (``nwb`` needs ``pip install pynwb``).
    overwrite : bool, optional
        Replace existing outputs.
    seed_from_mean : bool, optional
        Also add somata of the mean image that no active component covers
        (cells that never fire: bright blobs, and dark nuclei in a bright rim);
        their footprints stay fixed.  Default: on for ``"2p"`` and ``"voltage"``, off for ``"1p"``.
    figures : bool, optional
        Also write ``contours.png`` and ``traces.png`` (off by default: drawing them with matplotlib costs about
        2 CPU-s, as much as the whole fit of a short movie).
    nwb_metadata : str, path-like or dict, optional
        Session metadata for the NWB export (subject, session start, experimenter,
        indicator, location; a YAML file, see :mod:`pmdcompress.demix.nwb_metadata`);
        with it the NWB file passes nwbinspector's DANDI configuration.
    **options
        Any field of :class:`~pmdcompress.demix.DemixOptions` (``cell_radius``,
        ``corr_threshold``, ``background_rank``, ``max_num_iter``, ...).

    Returns
    -------
    DemixResult
        The result, also written to ``output`` (its ``path``; None for a result kept in memory).

    Notes
    -----
    The denoised movie ``U V`` is never formed: correlation images are computed
    tile by tile, and every product with the movie goes through the factors
    (``A.T (U V) = (A.T U) V``).  See docs/demix.md.
    """
    if fs is not None:
        fs = positive_float(fs, "fs", what="a positive frame rate in Hz")
    opts = DemixOptions.create(kind=kind, fs=fs, seed_from_mean=seed_from_mean, **options)
    exports = _parse_export(export)
    if nwb_metadata is not None:
        if "nwb" not in exports:  # it would be dropped without a word
            raise OptionError("{nwb_metadata} applies only to the NWB export: add nwb to {export}, or leave it out",
                              "nwb_metadata", "export")
        from ..demix.nwb_metadata import load_nwb_metadata

        nwb_metadata = load_nwb_metadata(nwb_metadata)  # checked before any work
    if "nwb" in exports:
        try:
            import pynwb  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("NWB export needs pynwb: pip install 'pmdcompress[nwb]'") from exc
    if "caiman" in exports:
        try:
            import h5py  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("CaImAn export needs h5py: pip install 'pmdcompress[hdf5]'") from exc

    from ..reconstruct import PMDStore

    store_path = store_or_path.path if isinstance(store_or_path, PMDStore) else store_or_path
    if output is None and store_path is not None:
        output = default_output(store_path)
    if output is None:  # a store in memory: so is its result
        if exports or figures:
            raise OptionError("exports and figures are written beside the result: give {output} (a .demix.zarr "
                              "path) to have them", "output")
        return _demix(store_or_path, None, {}, opts, (), False, overwrite, [], fs, None, progress)
    output = Path(output)
    siblings = sibling_paths(output)
    inputs = [store_path]
    check_output_path(output, overwrite=overwrite, inputs=inputs, folder=True)
    wanted = list(exports) + (["contours", "traces"] if figures else [])
    for key in wanted:
        check_output_path(siblings[key], overwrite=overwrite, inputs=inputs, folder=key == "suite2p")
    with output_lock(output):  # one writer from the start
        return _demix(store_or_path, output, siblings, opts, exports, figures, overwrite, inputs, fs, nwb_metadata,
                      progress)


def default_output(store_path) -> Path:
    """Where ``pmd demix`` writes the result of ``NAME.pmd.zarr``: ``NAME.demix.zarr`` beside it (a store of
    another name: its stem)."""
    path = Path(store_path)
    stem = path.name[: -len(".pmd.zarr")] if path.name.endswith(".pmd.zarr") else path.stem
    return path.with_name(stem + ".demix.zarr")


def _demix(store_or_path, output, siblings, opts, exports, figures, overwrite, inputs, fs, nwb_metadata, progress):
    from ..demix import pipeline as demix_fit
    from ..demix import result as demix_result
    from ..parallel import blas_threads
    from ..reconstruct import PMDStore, open_store

    if isinstance(store_or_path, PMDStore):
        store = store_or_path
    else:
        store = open_store(store_or_path)
    t_len, height, width = store.shape
    if t_len < 2:
        raise InputError(f"{store.path}: {t_len} frame(s); demixing needs at least 2")
    opts.check_field((height, width), store.path or "store")
    if store.metadata.total_rank == 0:
        log.warning("%s: the store holds no components (rank 0: nothing above the noise); the result is empty",
                    store.path or "store")
    fs_source = "given"
    if fs is None:
        fs, fs_source = store.frame_rate, "store"
        opts = replace(opts, fs=fs)
    if fs is None:
        fs_source = "unknown"
        log.warning("%s: frame rate unknown; dF/F windows are set in frames and outputs say 'unknown' (give fs,"
                    " pmd demix --fs, for rates in the exports)", store.path or "store")
        for name in ("nwb", "suite2p"):
            if name in exports:
                raise InputError(f"{store.path or 'store'}: the {name} export needs the frame rate, which the store"
                                 " does not know; give it with {fs}", "fs")

    t0 = time.perf_counter()
    # Coarse steps (the fit, the traces, the result, figures, each export): the fit is most of the time.
    bar = (progress or null_progress)("demix", 3 + bool(figures) + len(exports))
    with blas_threads(1):
        model, fac, opts = demix_fit.fit(store, opts)
        bar.update()
        result = demix_fit.to_result(model, fac, opts, store)
        bar.update()
    result.metadata.update(
        software_version=__version__,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        input={
            "store": str(store.path) if store.path is not None else None,
            "store_created": store.metadata.created,
            "store_total_rank": store.metadata.total_rank,
            "movie": store.metadata.input,
        },
        fs_source=fs_source,
    )
    result.metadata["timings"]["demix_s"] = time.perf_counter() - t0
    if output is not None:
        with atomic_output(output, overwrite=overwrite, inputs=inputs, folder=True) as tmp:
            demix_result.write_result(result, tmp)
    bar.update()
    result.path = output
    log.info("demix: %d components -> %s", result.n_components, output or "memory")

    if figures:
        from ..demix import figures as demix_figures

        with atomic_output(siblings["contours"], overwrite=overwrite, inputs=inputs) as tmp:
            demix_figures.contours_png(result, tmp)
        with atomic_output(siblings["traces"], overwrite=overwrite, inputs=inputs) as tmp:
            demix_figures.traces_png(result, tmp)
        result.extra_outputs.update(contours=siblings["contours"], traces=siblings["traces"])
        bar.update()
    if exports:
        from ..demix import export as demix_export

        writers = {"caiman": demix_export.write_caiman,
                   "suite2p": lambda res, tmp: demix_export.write_suite2p(res, tmp,
                                                                          final_path=siblings["suite2p"].resolve()),
                   "nwb": lambda res, tmp: demix_export.write_nwb(res, tmp, metadata=nwb_metadata)}
        for name in exports:
            with atomic_output(siblings[name], overwrite=overwrite, inputs=inputs, folder=name == "suite2p") as tmp:
                writers[name](result, tmp)
            result.extra_outputs[name] = siblings[name]
            bar.update()
    bar.close()
    result.metadata["timings"]["total_s"] = time.perf_counter() - t0
    return result


def evaluate(demix_path, truth, *, iou: float = 0.3, mode: str = "iou", max_distance: float = 5.0,
             threshold: float | None = None, truth_threshold: float = 0.2) -> dict:
    """Match a demixing result to ground truth; recall, precision, F1 and matched-pair quality.

    Parameters
    ----------
    demix_path : DemixResult or str or path-like
        A ``*.demix.zarr`` result, or any region source that ``truth`` accepts.
    truth : str or path-like
        Neurofinder-style JSON (``[{"coordinates": [[row, col], ...]}, ...]``), a label
        image (``.tif``/``.npy``: 0 background, one integer per cell), a ``pmd simulate``
        side-car (``*.truth.zarr`` or the simulated movie beside it), or a CaImAn HDF5.
    iou : float, optional
        IoU a matched pair must reach (``mode="iou"``).
    mode : {"iou", "centroid"}, optional
        Hungarian assignment on 1 - IoU, or on centroid distance (``max_distance`` px).
    threshold : float, optional
        Mask threshold of the demixed footprints (fraction of each peak; default the run's).
    truth_threshold : float, optional
        Mask threshold of continuous ground-truth footprints (simulate side-cars).

    Returns
    -------
    dict
        ``n_true``, ``n_pred``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``,
        ``mean_iou``, and when both sides have them ``median_trace_corr`` and
        ``median_footprint_cosine``; ``pairs`` lists ``[pred, true, iou, ...]``.  A simulated
        truth that says which sources are dendrite segments (version 2) adds ``n_true_dendrites``
        and ``somata``: the same scores against its somata alone, every prediction counted
        (one on a dendrite is false there).
    """
    if mode not in ("iou", "centroid"):
        raise OptionError(f"{{mode}} {mode!r}: expected 'iou' or 'centroid'", "mode")
    if not 0 < iou <= 1:
        raise OptionError(f"{{iou}} {iou!r}: expected a value in (0, 1]", "iou")
    if not max_distance > 0:  # NaN fails too
        raise OptionError(f"{{max_distance}} {max_distance!r}: expected a positive distance in pixels", "max_distance")
    # matching needs scipy.optimize (a quarter of a second to import): only evaluations pay for it
    from ..demix.matching import crop_regions, evaluate_regions, load_regions, score_somata

    pred = load_regions(demix_path, threshold=threshold)
    crop = pred.crop  # a demix result (or its suite2p export) of a store made from a crop of its file (--crop)
    if crop is not None:
        # the truth, drawn on the whole file, is cut to the crop
        true, outside = crop_regions(load_regions(truth, threshold=truth_threshold), crop, pred.dims, truth)
        if outside:
            log.info("%s: %d of its regions lie outside the store's crop (rows %d:%d, columns %d:%d) and are left "
                     "out", truth, outside, *crop[0], *crop[1])
    else:
        true = load_regions(truth, dims=pred.dims, threshold=truth_threshold)
    if pred.dims is None:
        pred = load_regions(demix_path, dims=true.dims, threshold=threshold)
    _check_truth(pred, true, demix_path, truth)
    scores = evaluate_regions(pred, true, iou=iou, mode=mode, max_distance=max_distance)
    scores.update(score_somata(pred, true, iou=iou, mode=mode, max_distance=max_distance))
    if crop is not None:
        scores.update(crop=[list(pair) for pair in crop], n_true_outside_crop=outside)
    return scores


def _check_truth(pred, true, result_name, truth_name) -> None:
    """Refuse ground truth that cannot score anything: no regions, an empty region, another field of view."""
    if true.masks is None or pred.masks is None:
        return  # evaluate_regions says which sizes are missing
    if tuple(pred.dims) != tuple(true.dims):
        raise InputError(f"{truth_name}: image sizes differ: regions in a {true.dims[0]}x{true.dims[1]} field of "
                         f"view, but {result_name} is {pred.dims[0]}x{pred.dims[1]}: ground truth of another movie?")
    if true.n == 0:
        raise InputError(f"{truth_name}: no regions; a ground truth needs at least one cell to score against")
    empty = np.flatnonzero(np.diff(true.masks.tocsc().indptr) == 0)
    if empty.size:
        raise InputError(f"{truth_name}: region {int(empty[0])} has no pixel in the field of view "
                         f"({empty.size} such of {true.n})")
