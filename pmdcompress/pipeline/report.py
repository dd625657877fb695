"""``pmd report``: an SNR report of a store against its raw movie, with the held-out fits and truth scores.

The report package analyses and draws; this module hands it what needs the
pipeline or the simulator: the held-out re-compression
(:func:`pmdcompress.pipeline.heldout.heldout_validation`) and, for simulated
movies, the ground truth and its scores.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import InputError
from ..io.atomic import atomic_output, check_output_path, input_paths
from ..reconstruct import PMDStore, open_store
from ..report import analyse, open_raw, prefetch_matplotlib, write_report
from ..simulate import Truth, load_truth
from ..simulate.groundtruth import evaluate_against_truth
from .heldout import heldout_validation
from .photon_split import photon_split_section

__all__ = ["analysis_hooks", "make_report", "open_truth"]


def open_truth(truth, shape) -> Truth | None:
    """TRUTH (a :class:`~pmdcompress.simulate.Truth`, or the path of one or of its movie) checked against SHAPE."""
    if truth is None:
        return None
    if not isinstance(truth, Truth):
        try:
            truth = load_truth(truth)
        except FileNotFoundError as exc:
            raise InputError(f"{truth}: no ground truth there ({exc})") from exc
    if tuple(truth.shape) != tuple(shape):
        raise InputError(f"{truth.path}: ground truth has shape {tuple(truth.shape)}, the movie {tuple(shape)}")
    return truth


def analysis_hooks(heldout: bool, photon_split: bool = True) -> dict:
    """What :func:`pmdcompress.report.analyse` is handed by the pipeline: held-out fits, truth scores, photon split."""
    return {"heldout_fit": heldout_validation if heldout else None, "score_truth": evaluate_against_truth,
            "photon_split": photon_split_section if photon_split else None}


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
        Score the store's method by photon splitting on a central crop (a re-compression).

    Returns
    -------
    dict
        The content of ``report.json``.
    """
    inputs = input_paths(movie, store, truth)
    check_output_path(folder, overwrite=overwrite, inputs=inputs, folder=True)
    if not isinstance(store, PMDStore):
        store = open_store(store)
    with contextlib.ExitStack() as stack:
        movie = open_raw(movie, store, stack)
        truth = open_truth(truth, store.shape)
        prefetch_matplotlib()
        data = analyse(movie, store, truth=truth, heldout=heldout, movie_preview=movie_preview, workers=workers,
                       progress=progress, defer_heldout=True, **analysis_hooks(heldout, photon_split))
        with atomic_output(folder, overwrite=overwrite, inputs=inputs, folder=True) as tmp:
            report = write_report(Path(tmp), data, store, movie_preview)
    return report
