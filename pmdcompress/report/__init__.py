"""SNR reports of a store against its raw movie: the analysis and the report folder.

:func:`analyse` streams the movie once, chunk by chunk (see
:mod:`pmdcompress.report.metrics`), and gathers every number, map and figure
sample; :func:`write_report` draws the figures and writes the folder.  Every
number is defined in ``docs/snr.md``.  The report reads a store and never
compresses: the held-out fits and the ground-truth scores are passed in by the
pipeline (:mod:`pmdcompress.pipeline.report`, :mod:`pmdcompress.pipeline.denoise`),
which also owns the ``pmd report`` and ``pmd denoise`` entry points.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .._package_version import __version__
from ..errors import InputError
from ..formats.report import REPORT
from ..io.readers import Movie, open_movie
from ..parallel import blas_threads
from . import figures
from . import metrics as mt
from .html import summary_lines as html_summary_lines
from .html import write_folder

if TYPE_CHECKING:
    from ..reconstruct import PMDStore

__all__ = ["analyse", "finish_heldout", "is_store", "locate_movie", "open_raw", "prefetch_matplotlib",
           "summary_lines", "write_report"]

log = logging.getLogger("pmdcompress")

REPORT_FORMAT = REPORT.name
REPORT_VERSION = REPORT.version


def summary_lines(report: dict) -> list[str]:
    """The key numbers of a report as text lines (see :func:`pmdcompress.report.html.summary_lines`)."""
    return html_summary_lines(report)


# --------------------------------------------------------------------------- inputs


def is_store(path) -> bool:
    """True for a pmdcompress store folder (a Zarr group with the ``pmdcompress`` attribute)."""
    if not isinstance(path, str | os.PathLike):
        return hasattr(path, "metadata") and hasattr(path, "temporal_block")  # an open PMDStore
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


def recorded_selection(store: PMDStore, movie) -> dict:
    """The part of its input file ``store`` was made from (plane, channel, dataset, frames, crop), as the store
    records it, where ``movie`` is a file of that name: ``pmd report scan.tif`` of a store of one plane of a
    ScanImage volume reads that plane (the file alone is ambiguous)."""
    info = store.metadata.input or {}
    if not isinstance(movie, (str, os.PathLike)) or Path(movie).name != info.get("name"):
        return {}
    selection = {key: info[key] for key in ("plane", "channel", "dataset") if info.get(key) is not None}
    if info.get("frames"):
        selection["frames"] = slice(*info["frames"])
    if info.get("crop"):
        selection["crop"] = [slice(*pair) for pair in info["crop"]]
    return selection


def _check_pair(movie: Movie | None, store: PMDStore) -> None:
    if movie is not None and tuple(movie.shape) != tuple(store.shape):
        where = store.path or "the store"
        raise InputError(f"{movie.name}: shape {tuple(movie.shape)} does not match {where} {tuple(store.shape)}")


def _check_identity(movie: Movie, store: PMDStore) -> None:
    """Warn when ``movie`` is not the file ``store`` was made from (by size, then sha256)."""
    where = store.path or "the store"
    recorded = store.metadata.input or {}
    if movie.path is None or not movie.path.is_file() or not recorded.get("sha256"):
        return
    size = movie.path.stat().st_size
    if recorded.get("size_bytes") not in (None, size):
        differs = f"{size} bytes, the store's input {recorded.get('name')} had {recorded['size_bytes']}"
    else:
        with open(movie.path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest == recorded["sha256"]:
            return
        differs = f"sha256 {digest[:12]}..., the store's input {recorded.get('name')} had {recorded['sha256'][:12]}..."
    log.warning("warning: %s is not the movie %s was made from (%s); the report compares different recordings",
                movie.name, where, differs)


# --------------------------------------------------------------------------- analysis


def analyse(movie: Movie | None, store: PMDStore, *, truth=None, writer=None, write_dtype=None,
            heldout: bool = True, movie_preview: bool = False, workers=None, progress=None,
            defer_heldout: bool = False, heldout_fit=None, score_truth=None, photon_split=None) -> dict:
    """Every metric, map and figure sample of a report, from one pass over the movie.

    Parameters
    ----------
    movie : Movie or None
        The raw movie (None: only what the factors allow).
    store : PMDStore
    truth : Truth, optional
        The simulated truth (its ``clean`` movie is compared frame by frame).
    writer : MovieWriter, optional
        Receives the denoised frames during the pass (``pmd denoise``).
    write_dtype : dtype, optional
    heldout : bool
        Fit the even and odd frames of a central crop (held-out validation) with ``heldout_fit``.
    movie_preview : bool
        Also sample a short clip for the animated preview.
    workers : int, optional
    progress : callable, optional
    defer_heldout : bool
        Return while the held-out fits still run (in a thread); :func:`finish_heldout`
        waits for them and adds their numbers (the report's figures are drawn meanwhile).
    heldout_fit : callable, optional
        ``(frames, store, workers=) -> dict or None``: fits the even and odd frames of
        the crop and scores them (:func:`pmdcompress.pipeline.heldout.heldout_validation`);
        without it there is no held-out validation.
    score_truth : callable, optional
        ``(movie, store, truth) -> dict``: whole-movie scores against the truth
        (:func:`pmdcompress.simulate.groundtruth.evaluate_against_truth`).
    photon_split : callable, optional
        ``(movie, store, workers=) -> dict``: the photon-splitting section, which
        re-compresses a split crop (:func:`pmdcompress.pipeline.photon_split.photon_split_section`);
        without it the report has none.  Its ``whole`` entry, where it has one, is the whole-movie split
        (``photon_split_whole``, :func:`pmdcompress.report.photon_split.whole_split`).

    Returns
    -------
    dict
        ``report`` (JSON-able: inputs, metrics, curves, regions, timings),
        ``maps``, ``traces``, ``frame``, ``clip``.
    """
    _check_pair(movie, store)
    timings = {}
    start = time.perf_counter()
    n_frames, height, width = store.shape
    plan = mt.make_plan(n_frames, (height, width))
    collect = None
    if heldout and heldout_fit is not None and movie is not None:
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

        # The held-out fits run in a thread beside the rest of the analysis (the photon split re-compresses too).
        # OpenBLAS can ignore a thread-count limit set from that thread, so this (main) thread holds one BLAS
        # thread until the fits end: otherwise their results would depend on whether the photon split's own
        # limit happened to be in force, and two runs of one command could differ.
        hold_blas = blas_threads(1)
        hold_blas.__enter__()
        pool = ThreadPoolExecutor(1, thread_name_prefix="pmd-heldout")
        future = pool.submit(heldout_fit, res.crop_frames, store, workers=workers)
        future.add_done_callback(lambda _: hold_blas.__exit__(None, None, None))
        pending = (future, collect[0], time.perf_counter())
        pool.shutdown(wait=False)
        res.crop_frames = None
    if truth is not None and movie is not None:
        t = time.perf_counter()
        mt.summarize_truth(res, out, score_truth(movie, store, truth) if score_truth is not None else None,
                           crop=collect[0] if collect else None)
        timings["truth_s"] = time.perf_counter() - t

    split_section = whole_section = None
    if photon_split is not None and movie is not None:
        from .photon_split import report_metrics, whole_metrics

        t = time.perf_counter()
        split_section = photon_split(movie, store, workers=workers)
        # The whole-movie split (photon_split_whole), where the hook made one: its own section and metrics.
        whole_section = split_section.pop("whole", None)
        out["metrics"].update(report_metrics(split_section))
        if whole_section is not None:
            out["metrics"].update(whole_metrics(whole_section))
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
            "frame_rate": store.frame_rate if store.frame_rate is not None else "unknown",
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
    if whole_section is not None:
        report["photon_split_whole"] = whole_section
    report["summary"] = summary_lines(report)
    data = {"report": report, "maps": maps, "traces": traces, "frame": frame, "clip": clip,
            "photon_split": split_section, "photon_split_whole": whole_section,
            "metrics": out["metrics"], "curves": out["curves"], "heldout_maps": out["heldout_maps"],
            "_pending": pending}
    if not defer_heldout:
        finish_heldout(data)
    return data


def finish_heldout(data: dict) -> None:
    """Wait for the held-out fits started by :func:`analyse` and add their numbers to ``data``."""
    pending = data.pop("_pending", None)
    if pending is None:
        return
    future, crop, started = pending
    mt.summarize_heldout(future.result(), data, crop)
    report = data["report"]
    report["timings"]["heldout_s"] = time.perf_counter() - started
    report["summary"] = summary_lines(report)


def prefetch_matplotlib() -> None:
    """Import matplotlib in a background thread while the pass (mostly GIL-free) runs."""
    import threading

    def load():
        try:
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401
        except Exception:  # noqa: BLE001 - the figures will raise it properly
            pass

    threading.Thread(target=load, name="pmd-import-matplotlib", daemon=True).start()


def write_report(folder: Path, data: dict, store: PMDStore, movie_preview: bool) -> dict:
    """Draw the figures of ``analyse``'s DATA and write the report folder (index.html, report.json, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    # The held-out fits (if any) run in their thread while the other figures are drawn.
    drawn = figures.render_all(data, folder, store, movie_preview_gif=movie_preview,
                               before_validation=lambda: finish_heldout(data))
    data["report"]["timings"]["figures_s"] = time.perf_counter() - t
    write_folder(folder, data["report"], data["maps"], drawn)
    return data["report"]


def open_raw(movie, store: PMDStore, stack: contextlib.ExitStack) -> Movie | None:
    """The raw movie of STORE: MOVIE opened (closed with STACK), or the one beside the store, or None."""
    if movie is None:
        movie = locate_movie(store)
        if movie is None:
            log.warning("no raw movie given or found beside the store: report without SNR gains or residual")
            return None
        log.info("raw movie: %s", movie)
    if isinstance(movie, Movie):
        return movie
    opened = open_movie(movie, **recorded_selection(store, movie))
    stack.callback(opened.close)
    _check_pair(opened, store)
    _check_identity(opened, store)
    return opened
