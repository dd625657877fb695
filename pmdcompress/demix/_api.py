"""Public entry points of the demixing: validate, run, write; the math lives in pipeline.py."""

from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path

from ..errors import InputError, MissingDependencyError, OptionError
from ..options import DemixOptions, positive_float

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
    fs: float = 30.0,
    export=(),
    overwrite: bool = False,
    seed_from_mean: bool = False,
    figures: bool = True,
    **options,
):
    """Find neurons in a compressed movie: footprints, traces, dF/F, background, metrics.

    Parameters
    ----------
    store_or_path : PMDStore or str or path-like
        A ``*.pmd.zarr`` store (``pmdcompress.open``) or its path.
    output : str or path-like
        The result, a Zarr group (by convention ``NAME.demix.zarr``); figures and
        exports are written beside it as ``NAME.demix.contours.png``,
        ``.traces.png``, ``.caiman.hdf5``, ``.suite2p/plane0/``, ``.nwb``.
    kind : {"2p", "1p", "voltage"}, optional
        Two-photon calcium (low-rank smooth background), one-photon calcium
        (ring-model background, see ``background_model``), voltage (signed traces, no skewness test).
    fs : float, optional
        Frame rate in Hz (dF/F window, binning, exports).
    export : str or sequence of str, optional
        Any of ``"caiman"``, ``"suite2p"``, ``"nwb"`` (``nwb`` needs ``pip install pynwb``).
    overwrite : bool, optional
        Replace existing outputs.
    seed_from_mean : bool, optional
        Also add bright blobs of the mean image that no active component covers
        (cells that never fire); their footprints stay fixed.
    figures : bool, optional
        Write ``contours.png`` and ``traces.png``.
    **options
        Any field of :class:`~pmdcompress.demix.DemixOptions` (``cell_radius``,
        ``corr_threshold``, ``background_rank``, ``max_num_iter``, ...).

    Returns
    -------
    DemixResult
        The result, also written to ``output``.

    Notes
    -----
    The denoised movie ``U V`` is never formed: correlation images are computed
    tile by tile, and every product with the movie goes through the factors
    (``A.T (U V) = (A.T U) V``).  See docs/demix.md.
    """
    from ..io.atomic import atomic_output, check_output_path
    from ..parallel import blas_threads
    from ..reconstruct import PMDStore
    from . import pipeline
    from .result import write_result

    opts = DemixOptions.create(kind=kind, fs=positive_float(fs, "fs", what="a positive frame rate in Hz"),
                               seed_from_mean=bool(seed_from_mean), **options)
    exports = _parse_export(export)
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

    output = Path(output)
    siblings = sibling_paths(output)
    check_output_path(output, overwrite=overwrite)
    wanted = list(exports) + (["contours", "traces"] if figures else [])
    for key in wanted:
        check_output_path(siblings[key], overwrite=overwrite)

    if isinstance(store_or_path, PMDStore):
        store = store_or_path
    else:
        from ..reconstruct import open_store

        store = open_store(store_or_path)
    t_len, height, width = store.shape
    if t_len < 2:
        raise InputError(f"{store.path}: {t_len} frame(s); demixing needs at least 2")

    t0 = time.perf_counter()
    with blas_threads(1):
        model, fac, opts = pipeline.fit(store, opts)
        result = pipeline.to_result(model, fac, opts, store)
    from .. import __version__

    result.metadata.update(
        software_version=__version__,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        input={
            "store": str(store.path) if store.path is not None else None,
            "store_created": store.metadata.created,
            "store_total_rank": store.metadata.total_rank,
            "movie": store.metadata.input,
        },
    )
    result.metadata["timings"]["demix_s"] = time.perf_counter() - t0
    with atomic_output(output, overwrite=overwrite) as tmp:
        write_result(result, tmp)
    result.path = output
    log.info("demix: %d components -> %s", result.n_components, output)

    if figures:
        from . import figures as figs

        with atomic_output(siblings["contours"], overwrite=overwrite) as tmp:
            figs.contours_png(result, tmp)
        with atomic_output(siblings["traces"], overwrite=overwrite) as tmp:
            figs.traces_png(result, tmp)
        result.extra_outputs.update(contours=siblings["contours"], traces=siblings["traces"])
    if exports:
        from . import export as ex

        writers = {"caiman": ex.write_caiman, "suite2p": ex.write_suite2p, "nwb": ex.write_nwb}
        for name in exports:
            with atomic_output(siblings[name], overwrite=overwrite) as tmp:
                writers[name](result, tmp)
            result.extra_outputs[name] = siblings[name]
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
        ``median_footprint_cosine``; ``pairs`` lists ``[pred, true, iou, ...]``.
    """
    from .matching import evaluate_regions, load_regions

    if mode not in ("iou", "centroid"):
        raise OptionError(f"{{mode}} {mode!r}: expected 'iou' or 'centroid'", "mode")
    if not 0 < iou <= 1:
        raise OptionError(f"{{iou}} {iou!r}: expected a value in (0, 1]", "iou")
    pred = load_regions(demix_path, threshold=threshold)
    true = load_regions(truth, dims=pred.dims, threshold=truth_threshold)
    if pred.dims is None:
        pred = load_regions(demix_path, dims=true.dims, threshold=threshold)
    return evaluate_regions(pred, true, iou=iou, mode=mode, max_distance=max_distance)
