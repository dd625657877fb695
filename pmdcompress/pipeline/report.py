"""``pmd report``: an SNR report of a store against its raw movie, with the held-out fits and truth scores.

The report package analyses and draws; this module hands it what needs the
pipeline or the simulator: the held-out re-compression
(:func:`pmdcompress.pipeline.heldout.heldout_validation`) and, for simulated
movies, the ground truth and its scores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

from ..errors import InputError, StoreFormatError
from ..io.atomic import atomic_output, check_output_path, input_paths
from ..io.readers import Movie
from ..reconstruct import PMDStore, open_store
from ..report import analyse, open_raw, prefetch_matplotlib, write_report
from ..simulate import Truth, load_truth
from ..simulate.groundtruth import evaluate_against_truth
from .heldout import heldout_validation
from .photon_split import photon_split_section, split_scratch

__all__ = ["analysis_hooks", "check_truth_fits", "make_report", "open_truth", "truth_part"]


# How far ``raw - clean`` may stray from noise around 0 before the truth is refused: its mean in noise SDs, and its
# RMS over the movie's noise.  The noise comes from successive-frame differences, which signal changes can only
# inflate, so a matching truth's RMS is at most 1 (up to sampling) and below 1 where the signal moves between frames.
# On every ``pmd simulate`` kind (200x40x40) a matching truth gives |mean| < 0.01 and RMS 0.99-1.00 (0.93 for a
# bright 2p movie at 2 Hz); the movie rescaled x3 + 100 gives mean 3.9-10.5 SDs; another seed's truth RMS 1.00-2.06
# (refused above 1.2 on 2p, dendritic, 2p-dense, 3p, 2p-real*; not on 1p, voltage, widefield, whose small simulated
# transients hide under the noise).
TRUTH_MAX_BIAS_SD = 1.0
TRUTH_RMS_RANGE = (0.67, 1.2)
TRUTH_CHECK_BLOCKS = 4  # blocks of frames read from the movie and the truth, spread over the movie
TRUTH_CHECK_FRAMES = 16  # consecutive frames per block


def truth_residual_stats(truth: Truth, movie) -> tuple[float, float]:
    """``(mean, rms)`` of ``raw - clean`` in units of the movie's noise, from a few blocks of frames.

    The noise is the RMS over pixels of successive-frame differences over sqrt(2) (the raw movie's own, so it
    follows any rescaling of the movie; the truth's camera constants would not).  The RMS is of the residual
    less its mean.
    """
    n = truth.shape[0]
    length = min(TRUTH_CHECK_FRAMES, n)
    starts = sorted({int(s) for s in np.linspace(0, n - length, TRUTH_CHECK_BLOCKS)})
    r_sum = r_sq = d_sq = 0.0
    r_count = d_count = 0
    for t0 in starts:
        raw = np.asarray(movie.read(t0, t0 + length), dtype=np.float64)
        r = raw - truth.read(t0, t0 + length)
        r_sum += float(r.sum())
        r_sq += float(np.square(r).sum())
        r_count += r.size
        d = np.diff(raw, axis=0)
        d_sq += float(np.square(d).sum()) / 2
        d_count += d.size
    mean = r_sum / r_count
    noise = np.sqrt(d_sq / d_count) if d_count else 0.0
    if noise <= 0:  # one frame, or a movie without noise: nothing to scale by
        return 0.0, 1.0
    return float(mean / noise), float(np.sqrt(max(r_sq / r_count - mean**2, 0.0)) / noise)


def check_truth_fits(truth: Truth, movie) -> None:
    """Refuse TRUTH unless ``movie - truth.clean`` looks like noise around 0 (same units, same movie)."""
    bias, rms = truth_residual_stats(truth, movie)
    if abs(bias) > TRUTH_MAX_BIAS_SD or not TRUTH_RMS_RANGE[0] <= rms <= TRUTH_RMS_RANGE[1]:
        raise InputError(
            f"{truth.path}: the ground truth does not fit {movie.name}: raw - clean has mean {bias:+.2f} noise SDs "
            f"and RMS {rms:.2f}x the noise (a matching truth: about 0 and 1); was the movie rescaled or converted "
            "after pmd simulate, or is the truth another movie's?")


class _CleanPart:
    """A truth's clean movie restricted to frames ``[t0, t1)`` and a crop, read lazily by frame ranges as
    :meth:`Truth.read` reads it (``clean[t0:t1]``)."""

    def __init__(self, clean, frames, crop):
        self._clean = clean
        self._t0 = int(frames[0])
        self._rows, self._cols = (slice(int(a), int(b)) for a, b in crop)
        self.shape = (int(frames[1]) - self._t0, self._rows.stop - self._rows.start, self._cols.stop - self._cols.start)
        self.dtype = clean.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a truth's part is read by ranges of frames (clean[t0:t1])")
        t0, t1, _ = key.indices(self.shape[0])
        return self._clean[self._t0 + t0 : self._t0 + t1, self._rows, self._cols]


def truth_part(truth: Truth, frames, crop=None) -> Truth:
    """The ground truth of part of its movie: frames ``[t0, t1)`` and a crop ``((y0, y1), (x0, x1))`` (None: whole
    frames), as ``pmd compress --frames/--crop`` read the movie.  Neurons without any footprint in the crop are
    left out (their traces cannot be seen in it)."""
    (t0, t1) = (int(n) for n in frames)
    _, ny, nx = truth.shape
    (y0, y1), (x0, x1) = crop if crop is not None else ((0, ny), (0, nx))
    footprints = truth.footprints[:, y0:y1, x0:x1]
    seen = np.flatnonzero(footprints.reshape(footprints.shape[0], -1).max(axis=1, initial=0) > 0)
    return dataclasses.replace(
        truth, clean=_CleanPart(truth.clean, (t0, t1), ((y0, y1), (x0, x1))), footprints=footprints[seen],
        traces=truth.traces[seen, t0:t1], spikes=truth.spikes[seen, t0:t1], background=truth.background[y0:y1, x0:x1],
        neuropil_spatial=truth.neuropil_spatial[:, y0:y1, x0:x1], neuropil_traces=truth.neuropil_traces[:, t0:t1])


def open_truth(truth, shape, movie=None) -> Truth | None:
    """TRUTH (a :class:`~pmdcompress.simulate.Truth`, or the path of one or of its movie) checked against SHAPE
    and, when given, against MOVIE's values (:func:`check_truth_fits`).

    Where MOVIE is part of its file (``frames``, ``crop``: given to ``pmd compress``, or recorded in the store
    a report reads) and TRUTH is the whole file's, the same part of TRUTH is used (:func:`truth_part`).
    """
    if truth is None:
        return None
    if not isinstance(truth, Truth):
        try:
            truth = load_truth(truth)
        except FileNotFoundError as exc:
            raise InputError(f"{truth}: no ground truth there ({exc})") from exc
    if (isinstance(movie, Movie) and tuple(truth.shape) != tuple(shape)
            and tuple(truth.shape) == movie.file_shape and tuple(movie.shape) == tuple(shape)):
        truth = truth_part(truth, movie.frame_range, movie.crop)
    if tuple(truth.shape) != tuple(shape):
        raise InputError(f"{truth.path}: ground truth has shape {tuple(truth.shape)}, the movie {tuple(shape)}")
    if movie is not None:
        check_truth_fits(truth, movie)
    return truth


def analysis_hooks(heldout: bool, photon_split: bool = True, whole_split: bool = True, scratch=None) -> dict:
    """What :func:`pmdcompress.report.analyse` is handed by the pipeline: held-out fits, truth scores, photon split
    (with ``whole_split``, also the whole-movie split: ``photon_split_whole``; its movies on disk in ``scratch``,
    a folder, or in a temporary one, :func:`~pmdcompress.pipeline.photon_split.photon_split_section`)."""
    split = None
    if photon_split:
        split = functools.partial(photon_split_section, whole=whole_split, scratch=scratch)
    return {"heldout_fit": heldout_validation if heldout else None, "score_truth": evaluate_against_truth,
            "photon_split": split}


def make_report(movie, store, folder, *, truth=None, overwrite: bool = False, movie_preview: bool = False,
                heldout: bool = True, workers=None, progress=None, photon_split: bool = True,
                whole_split: bool = True) -> dict:
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
    whole_split : bool
        With ``photon_split``, also the whole-movie split (``photon_split_whole``: ``A`` with most of the
        photons, one more re-compression of the crop).

    Returns
    -------
    dict
        The content of ``report.json``.
    """
    inputs = input_paths(movie, store, truth)
    check_output_path(folder, overwrite=overwrite, inputs=inputs, folder=True)
    if not isinstance(store, PMDStore):
        try:
            store = open_store(store)
        except StoreFormatError as exc:
            paths = isinstance(movie, str | os.PathLike) and isinstance(store, str | os.PathLike)
            if paths and (Path(movie) / "zarr.json").is_file() and Path(store).is_file():
                raise StoreFormatError(f"{exc}: the arguments are MOVIE then STORE; {movie} looks like the store "
                                       "(swapped?)") from exc
            raise
    with contextlib.ExitStack() as stack:
        movie = open_raw(movie, store, stack)
        truth = open_truth(truth, store.shape, movie)
        prefetch_matplotlib()
        # The photon split's movies go to a scratch folder beside the report (removed however this ends).
        scratch = stack.enter_context(split_scratch(folder)) if photon_split and movie is not None else None
        data = analyse(movie, store, truth=truth, heldout=heldout, movie_preview=movie_preview, workers=workers,
                       progress=progress, defer_heldout=True,
                       **analysis_hooks(heldout, photon_split, whole_split, scratch))
        with atomic_output(folder, overwrite=overwrite, inputs=inputs, folder=True) as tmp:
            report = write_report(Path(tmp), data, store, movie_preview)
    return report
