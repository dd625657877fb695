"""Denoised movies and SNR reports (``pmd denoise``, ``pmd report``).

:func:`denoise` writes the denoised movie (compressing first unless given a
store) and, on request, a report folder; :func:`make_report` writes the report
alone.  Both stream the movie once, chunk by chunk (see
:mod:`pmdcompress.report.metrics`); every number is defined in ``docs/snr.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import InputError, OptionError
from ..formats.report import REPORT
from ..io.atomic import atomic_output, check_output_path
from ..io.readers import Movie, open_movie
from ..options import output_dtype

if TYPE_CHECKING:
    from ..reconstruct import PMDStore

__all__ = ["analyse", "denoise", "finish_heldout", "make_report", "summary_lines"]

log = logging.getLogger("pmdcompress")

REPORT_FORMAT = REPORT.name
REPORT_VERSION = REPORT.version


def summary_lines(report: dict) -> list[str]:
    """The key numbers of a report as text lines (see :func:`pmdcompress.report.html.summary_lines`)."""
    from .html import summary_lines as lines

    return lines(report)


# --------------------------------------------------------------------------- inputs


def is_store(path) -> bool:
    """True for a pmdcompress store folder (a Zarr group with the ``pmdcompress`` attribute)."""
    if not isinstance(path, str | os.PathLike):
        return hasattr(path, "metadata") and hasattr(path, "temporal_block")  # an open PMDStore
        return False
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return False
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return doc.get("node_type") == "group" and "pmdcompress" in (doc.get("attributes") or {})


def locate_movie(store: PMDStore) -> Path | None:
    """The raw movie named in the store's metadata, when it sits beside the store with the right size."""
    if store.path is None:
        return None
    info = store.metadata.input or {}
    name = info.get("name")
    if not name or name.startswith("<"):
        return None
    candidate = store.path.parent / name
    if not candidate.exists():
        return None
    size = info.get("size_bytes")
    if size is not None and candidate.is_file() and candidate.stat().st_size != size:
        log.warning("%s: not used as the raw movie (%d bytes, the store's input had %d)", candidate,
                    candidate.stat().st_size, size)
        return None
    return candidate


def _open_truth(truth, shape):
    if truth is None:
        return None
    from ..simulate import Truth, load_truth

    if not isinstance(truth, Truth):
        try:
            truth = load_truth(truth)
        except FileNotFoundError as exc:
            raise InputError(f"{truth}: no ground truth there ({exc})") from exc
    if tuple(truth.shape) != tuple(shape):
        raise InputError(f"{truth.path}: ground truth has shape {tuple(truth.shape)}, the movie {tuple(shape)}")
    return truth


def _check_pair(movie: Movie | None, store: PMDStore) -> None:
    if movie is not None and tuple(movie.shape) != tuple(store.shape):
        where = store.path or "the store"
        raise InputError(f"{movie.name}: shape {tuple(movie.shape)} does not match {where} {tuple(store.shape)}")


# --------------------------------------------------------------------------- analysis


def analyse(movie: Movie | None, store: PMDStore, *, truth=None, writer=None, write_dtype=None,
            heldout: bool = True, movie_preview: bool = False, workers=None, progress=None,
            defer_heldout: bool = False, photon_split: bool = True) -> dict:
    """Every metric, map and figure sample of a report, from one pass over the movie.

    Parameters
    ----------
    movie : Movie or None
        The raw movie (None: only what the factors allow).
    store : PMDStore
    truth : Truth, optional
    writer : MovieWriter, optional
        Receives the denoised frames during the pass (``pmd denoise``).
    write_dtype : dtype, optional
    heldout : bool
        Fit the even and odd frames of a central crop (held-out validation).
    movie_preview : bool
        Also sample a short clip for the animated preview.
    workers : int, optional
    progress : callable, optional
    defer_heldout : bool
        Return while the held-out fits still run (in a thread); :func:`finish_heldout`
        waits for them and adds their numbers (the report's figures are drawn meanwhile).
    photon_split : bool
        Score the store's method by photon splitting on a central crop
        (:mod:`pmdcompress.report.photon_split`).

    Returns
    -------
    dict
        ``report`` (JSON-able: inputs, metrics, curves, regions, timings),
        ``maps``, ``traces``, ``frame``, ``clip``.
    """
    from . import metrics as mt

    _check_pair(movie, store)
    timings = {}
    start = time.perf_counter()
    n_frames, height, width = store.shape
    plan = mt.make_plan(n_frames, (height, width))
    collect = None
    if heldout and movie is not None:
        crop = mt.heldout_crop((height, width), store.patch_shape)
        collect = (crop, mt.heldout_frames(n_frames, crop, movie.dtype.itemsize))
    res = mt.stream(movie, store, truth=truth, writer=writer, write_dtype=write_dtype, collect=collect, plan=plan,
                    workers=workers, progress=progress)
    timings["pass_s"] = res.seconds
    t = time.perf_counter()
    out = mt.summarize(res, store, plan, has_movie=movie is not None)
    if movie is not None:
        mt.summarize_photon_transfer(res, out)
    timings["summarize_s"] = time.perf_counter() - t
    pending = None
    if res.crop_frames is not None:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="pmd-heldout")
        pending = (pool.submit(mt.heldout_validation, res.crop_frames, store, workers=workers), collect[0],
                   time.perf_counter())
        pool.shutdown(wait=False)
        res.crop_frames = None
    if truth is not None and movie is not None:
        from ..simulate.groundtruth import evaluate_against_truth

        t = time.perf_counter()
        mt.summarize_truth(res, out, evaluate_against_truth(movie, store, truth),
                           crop=collect[0] if collect else None)
        timings["truth_s"] = time.perf_counter() - t

    split_section = None
    if photon_split and movie is not None:
        from . import photon_split as ps

        t = time.perf_counter()
        split_section = ps.report_section(movie, store, workers=workers)
        out["metrics"].update(ps.report_metrics(split_section))
        timings["photon_split_s"] = time.perf_counter() - t

    # Samples for the figures: regions chosen on the raw movie when there is one.
    t = time.perf_counter()
    maps = out["maps"]
    score = maps.get("snr_raw", maps.get("snr_denoised_signal"))
    centres = mt.pick_regions(mt.smooth(score, 1.0), 4)
    traces = mt.sample_traces(movie, store, centres)
    frame = mt.sample_frames(movie, store, traces["peak_frame"])
    clip = None
    if movie_preview:
        clip = mt.sample_clip(movie, store, traces["peak_frame"], centre_yx=centres[0] if centres else None)
    timings["samples_s"] = time.perf_counter() - t
    timings["analysis_s"] = time.perf_counter() - start

    info = store.info()
    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "software_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "definitions": "docs/snr.md",
        "inputs": {
            "movie": movie.name if movie is not None else None,
            "store": str(store.path) if store.path is not None else None,
            "truth": str(truth.path) if truth is not None else None,
            "shape": list(store.shape),
            "input_dtype": store.metadata.input_dtype,
        },
        "store": {k: info[k] for k in ("method", "patch_shape", "overlap", "n_patches", "total_rank",
                                       "rank_per_patch", "bytes_on_disk", "compression_ratio_bytes",
                                       "compression_ratio_elements", "timings")},
        "metrics": out["metrics"],
        "regions": out["regions"],
        "curves": out["curves"],
        "traces": {"frames": traces["frames"], "centres": traces["centres"], "radius": traces["radius"]},
        "timings": timings,
    }
    if split_section is not None:
        report["photon_split"] = split_section
    report["summary"] = summary_lines(report)
    data = {"report": report, "maps": maps, "traces": traces, "frame": frame, "clip": clip,
            "photon_split": split_section,
            "metrics": out["metrics"], "curves": out["curves"], "heldout_maps": out["heldout_maps"],
            "_pending": pending}
    if not defer_heldout:
        finish_heldout(data)
    return data


def finish_heldout(data: dict) -> None:
    """Wait for the held-out fits started by :func:`analyse` and add their numbers to ``data``."""
    from . import metrics as mt

    pending = data.pop("_pending", None)
    if pending is None:
        return
    future, crop, started = pending
    mt.summarize_heldout(future.result(), data, crop)
    report = data["report"]
    report["timings"]["heldout_s"] = time.perf_counter() - started
    report["summary"] = summary_lines(report)


def _prefetch_matplotlib() -> None:
    """Import matplotlib in a background thread while the pass (mostly GIL-free) runs."""
    import threading

    def load():
        try:
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401
        except Exception:  # noqa: BLE001 - the figures will raise it properly
            pass

    threading.Thread(target=load, name="pmd-import-matplotlib", daemon=True).start()


def _write_report(folder: Path, data: dict, store: PMDStore, movie_preview: bool) -> dict:
    from .figures import render_all
    from .html import write_folder

    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    # The held-out fits (if any) run in their thread while the other figures are drawn.
    figures = render_all(data, folder, store, movie_preview_gif=movie_preview,
                         before_validation=lambda: finish_heldout(data))
    data["report"]["timings"]["figures_s"] = time.perf_counter() - t
    write_folder(folder, data["report"], data["maps"], figures)
    return data["report"]


# --------------------------------------------------------------------------- public entry points


def make_report(movie, store, folder, *, truth=None, overwrite: bool = False, movie_preview: bool = False,
                heldout: bool = True, workers=None, progress=None, photon_split: bool = True) -> dict:
    """Write an SNR report of a compressed (denoised) movie into ``folder``.

    Parameters
    ----------
    movie : path, Movie, ndarray or None
        The raw movie.  None: the one named in the store's metadata when it sits
        beside the store; otherwise a report of what the factors alone allow.
    store : path or PMDStore
        The store made from ``movie``.
    folder : path
        Output folder (``index.html``, ``report.json``, ``maps.npz``, PNG figures),
        written under a temporary name and renamed when complete.
    truth : path or Truth, optional
        Ground truth of a simulated movie (``pmd simulate``'s ``.truth.zarr``).
    overwrite : bool
        Replace an existing folder.
    movie_preview : bool
        Also write ``preview.gif`` (raw | denoised | residual, a short clip).
    heldout : bool
        Fit the even and odd frames of a central crop for the held-out validation.
    workers : int, optional
        Threads (default: all cores or ``$PMD_NUM_WORKERS``).
    progress : callable, optional
        Progress factory (see :mod:`pmdcompress.progress`).
    photon_split : bool
        Score the store's method by photon splitting on a central crop.

    Returns
    -------
    dict
        The content of ``report.json``.
    """
    check_output_path(folder, overwrite=overwrite)
    from ..reconstruct import PMDStore, open_store  # numba loads here, not at `pmd --help`

    if not isinstance(store, PMDStore):
        store = open_store(store)
    with contextlib.ExitStack() as stack:
        movie = _open_raw(movie, store, stack)
        truth = _open_truth(truth, store.shape)
        _prefetch_matplotlib()
        data = analyse(movie, store, truth=truth, heldout=heldout, movie_preview=movie_preview, workers=workers,
                       progress=progress, defer_heldout=True, photon_split=photon_split)
        with atomic_output(folder, overwrite=overwrite) as tmp:
            report = _write_report(Path(tmp), data, store, movie_preview)
    return report


def _open_raw(movie, store: PMDStore, stack: contextlib.ExitStack) -> Movie | None:
    if movie is None:
        movie = locate_movie(store)
        if movie is None:
            log.warning("no raw movie given or found beside the store: report without SNR gains or residual")
            return None
        log.info("raw movie: %s", movie)
    if isinstance(movie, Movie):
        return movie
    opened = open_movie(movie)
    stack.callback(opened.close)
    _check_pair(opened, store)
    return opened


def denoise(movie_or_store, output, *, report=None, overwrite: bool = False, truth=None, movie_preview: bool = False,
            movie=None, store=None, dtype="float32", heldout: bool = True, workers=None, progress=None,
            **compress_options) -> dict:
    """Write the denoised movie (and optionally a report), compressing first unless given a store.

    Parameters
    ----------
    movie_or_store : path, ndarray, Movie or PMDStore
        The raw movie, or a store made from it (then nothing is compressed).
    output : path
        The denoised movie: ``.tif``/``.tiff`` (BigTIFF when large), ``.zarr`` or
        ``.npy``; same frames and shape as the input, streamed.
    report : path, optional
        Report folder (see :func:`make_report`).
    overwrite : bool
        Replace existing outputs.
    truth : path or Truth, optional
        Ground truth for the report.
    movie_preview : bool
        Animated preview in the report.
    movie : path, optional
        The raw movie when ``movie_or_store`` is a store (default: the store's
        input beside it, if present).
    store : path, optional
        Keep the compressed factors there (default: a temporary store, deleted).
    dtype : str
        Output dtype: ``float32`` (default), ``original`` (the input's, rounded
        and clipped) or any numpy dtype name.
    heldout, workers, progress
        As for :func:`make_report`; ``workers`` and ``progress`` also drive the compression.
    **compress_options
        Options of :func:`pmdcompress.compress` (patch_shape, overlap, max_rank, ...,
        and the input selection frames/plane/channel/dataset).

    Returns
    -------
    dict
        ``output``, ``shape``, ``dtype``, ``store`` (path or None), ``report``
        (the report's JSON content, or None) and ``timings``.
    """
    from ..pipeline.compress import compress

    timings = {}
    start = time.perf_counter()
    given_store = is_store(movie_or_store)
    # Validate every output before any work.
    check_output_path(output, overwrite=overwrite)
    if report is not None:
        check_output_path(report, overwrite=overwrite)
        if Path(report).resolve() == Path(output).resolve():
            raise InputError(f"{report}: the report folder and the output movie must differ")
    if store is not None:
        if given_store:
            raise OptionError(f"{store}: {{store}} applies only when denoising a movie, not a store", "store")
        check_output_path(store, overwrite=overwrite)
    if given_store and compress_options:
        raise InputError(f"{movie_or_store}: compression options ({', '.join(sorted(compress_options))}) do not "
                         "apply to an existing store")
    from ..reconstruct import PMDStore, open_store  # numba loads here, not at `pmd --help`

    with contextlib.ExitStack() as stack:
        if given_store:
            st = movie_or_store if isinstance(movie_or_store, PMDStore) else open_store(movie_or_store)
            raw = _open_raw(movie, st, stack) if report is not None else None
        else:
            if movie is not None:
                raise OptionError("{movie} applies only when denoising an existing store", "movie")
            selection = {k: compress_options.pop(k) for k in ("frames", "plane", "channel", "dataset")
                         if k in compress_options}
            # Denoising defaults to the penalized solver: it removes more noise
            # than svd for ~2x the time (benchmarks/bench_compress.py).
            compress_options.setdefault("method", "pmd")
            raw = movie_or_store if isinstance(movie_or_store, Movie) else open_movie(movie_or_store, **selection)
            if raw is not movie_or_store:
                stack.callback(raw.close)
            if store is None:
                parent = Path(output).resolve().parent
                tmpdir = tempfile.mkdtemp(prefix=".pmd-denoise-", dir=parent)
                stack.callback(shutil.rmtree, tmpdir, ignore_errors=True)
                store_path = Path(tmpdir) / "movie.pmd.zarr"
            else:
                store_path = Path(store)
            t = time.perf_counter()
            st = compress(raw, store_path, overwrite=overwrite, workers=workers, progress=progress,
                          **compress_options)
            timings["compress_s"] = time.perf_counter() - t
        out_dtype = output_dtype(dtype, st.metadata.input_dtype, default="float32")
        result = {"output": str(output), "shape": list(st.shape), "dtype": str(out_dtype),
                  "store": str(store) if store is not None else (str(st.path) if given_store else None),
                  "report": None}
        t = time.perf_counter()
        if report is None:
            from ..pipeline.decompress import decompress

            decompress(st, output, dtype=str(out_dtype), overwrite=overwrite, workers=workers, progress=progress)
            timings["write_s"] = time.perf_counter() - t
        else:
            from ..io.writers import open_writer

            tru = _open_truth(truth, st.shape)
            # The report folder is renamed into place first, then the movie: both, or neither.
            writer = stack.enter_context(open_writer(output, st.shape, out_dtype, overwrite=overwrite))
            tmp = Path(stack.enter_context(atomic_output(report, overwrite=overwrite)))
            _prefetch_matplotlib()
            data = analyse(raw, st, truth=tru, writer=writer, write_dtype=out_dtype, heldout=heldout,
                           movie_preview=movie_preview, workers=workers, progress=progress, defer_heldout=True)
            timings["write_and_report_s"] = time.perf_counter() - t
            if "compress_s" in timings:
                data["report"]["timings"]["compress_s"] = timings["compress_s"]
            result["report"] = _write_report(tmp, data, st, movie_preview)
    timings["total_s"] = time.perf_counter() - start
    result["timings"] = timings
    return result

