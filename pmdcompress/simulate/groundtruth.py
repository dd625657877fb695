"""Quality of a movie against the ground truth of a simulated one.

Every metric streams over chunks of frames, reading the movie and the clean movie
``chunk_frames`` at a time, so neither is held whole in memory as float.  A movie
is anything with ``shape`` ``(T, Y, X)`` and either ``read(t0, t1)`` returning
frames ``t0:t1`` or numpy-style slicing along time (numpy arrays, memmaps, zarr
arrays).  The truth is a :class:`pmdcompress.simulate.Truth` or the path of a
simulated movie or of its ``.truth.zarr`` group.

All values are in the movie's units (ADU for simulated movies).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import InputError
from .movie import Truth, load_truth

__all__ = [
    "evaluate_against_truth",
    "noise_rms",
    "noise_rms_reduction",
    "psnr_db",
    "snr_db",
    "trace_correlations",
]

DEFAULT_CHUNK_FRAMES = 64  # 16 MB of float32 at 256 x 256; larger chunks measured slower


def noise_rms(movie, truth, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> float:
    """Root-mean-square difference between a movie and the clean movie.

    Parameters
    ----------
    movie : array-like or reader, shape (T, Y, X)
        Raw or denoised movie, in the units of the clean movie (ADU).
    truth : Truth or str or path-like
        Ground truth, or the path of the simulated movie or its truth group.
    chunk_frames : int, optional
        Frames read at a time.

    Returns
    -------
    float
        ``sqrt(mean((movie - clean)**2))`` over all pixels and frames, ADU.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pmdcompress.simulate import simulate_movie, load_truth
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_movie(d / "m.tif", n_frames=10, shape=(16, 16), n_neurons=2)
    >>> truth = load_truth(d / "m.tif")
    >>> noise_rms(truth.clean, truth)
    0.0
    """
    truth = _as_truth(truth)
    stats = _stream([movie], truth, chunk_frames)
    return math.sqrt(stats["mse"][0])


def noise_rms_reduction(raw, denoised, truth, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> float:
    """Factor by which denoising reduced the RMS error against the clean movie.

    Parameters
    ----------
    raw, denoised : array-like or reader, shape (T, Y, X)
        The raw movie and its denoised version.
    truth : Truth or str or path-like
        Ground truth.
    chunk_frames : int, optional
        Frames read at a time.

    Returns
    -------
    float
        ``noise_rms(raw) / noise_rms(denoised)``; ``inf`` if the denoised movie is
        exactly the clean one, ``nan`` if both are.
    """
    truth = _as_truth(truth)
    stats = _stream([raw, denoised], truth, chunk_frames)
    return _ratio(math.sqrt(stats["mse"][0]), math.sqrt(stats["mse"][1]))


def psnr_db(movie, truth, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> float:
    """Peak signal-to-noise ratio of a movie against the clean movie, in dB.

    Parameters
    ----------
    movie : array-like or reader, shape (T, Y, X)
        Raw or denoised movie.
    truth : Truth or str or path-like
        Ground truth.
    chunk_frames : int, optional
        Frames read at a time.

    Returns
    -------
    float
        ``20 log10((max(clean) - min(clean)) / noise_rms(movie))``; ``inf`` for the
        clean movie itself.

    Notes
    -----
    The peak is the dynamic range of the clean movie over all pixels and frames,
    so the camera offset does not count as signal.
    """
    truth = _as_truth(truth)
    stats = _stream([movie], truth, chunk_frames)
    return _psnr(stats, 0)


def snr_db(movie, truth, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> float:
    """Signal-to-noise ratio of a movie against the clean movie, in dB.

    Parameters
    ----------
    movie : array-like or reader, shape (T, Y, X)
        Raw or denoised movie.
    truth : Truth or str or path-like
        Ground truth.
    chunk_frames : int, optional
        Frames read at a time.

    Returns
    -------
    float
        ``10 log10(mean_p var_t(clean) / mean((movie - clean)**2))``; ``inf`` for
        the clean movie itself.

    Notes
    -----
    The signal is the temporal variance of the clean movie at each pixel, averaged
    over pixels: only what changes in time counts, not the static background or
    the camera offset.  The noise is the mean squared error against the clean
    movie, so signal removed by a denoiser counts as noise.
    """
    truth = _as_truth(truth)
    stats = _stream([movie], truth, chunk_frames)
    return _snr(stats, 0)


def trace_correlations(movie, truth, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> np.ndarray:
    """Pearson correlation of each neuron's trace, extracted from the movie, with the truth.

    Parameters
    ----------
    movie : array-like or reader, shape (T, Y, X)
        Raw or denoised movie.
    truth : Truth or str or path-like
        Ground truth.
    chunk_frames : int, optional
        Frames read at a time.

    Returns
    -------
    ndarray, shape (N,), float64
        One correlation per neuron; ``nan`` where either trace is constant.

    Notes
    -----
    Oracle demixing: each frame ``y`` (minus the fixed image ``offset + gain *
    background``, which only shifts the traces) is fitted by least squares with
    the true spatial components ``D = [footprints, neuropil_spatial, 1]`` as
    columns (pixels x (N + K + 1)), all neurons jointly, ``c = pinv(D) y``.  Because
    the neuropil modes and a constant are in the fit, neuropil and offsets are
    removed exactly for the clean movie, which gives correlations of 1; for other
    movies the correlations measure how well the movie preserves each neuron's
    activity, not how good a demixing algorithm is.
    """
    truth = _as_truth(truth)
    stats = _stream([movie], truth, chunk_frames, traces=True)
    return _correlations(stats["coefficients"][0], truth.traces)


def evaluate_against_truth(raw, denoised, truth, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> dict:
    """All ground-truth metrics of a raw movie and its denoised version, in one pass.

    Parameters
    ----------
    raw, denoised : array-like or reader, shape (T, Y, X)
        The raw movie and its denoised version.
    truth : Truth or str or path-like
        Ground truth.
    chunk_frames : int, optional
        Frames read at a time.

    Returns
    -------
    dict
        ``noise_rms_raw``, ``noise_rms_denoised``, ``noise_rms_reduction``,
        ``median_trace_corr_raw``, ``median_trace_corr_denoised``, ``snr_db_raw``,
        ``snr_db_denoised``, ``psnr_db_raw``, ``psnr_db_denoised`` (floats) and
        ``trace_corr_raw``, ``trace_corr_denoised`` (lists, one per neuron).
        See :func:`noise_rms`, :func:`snr_db`, :func:`psnr_db` and
        :func:`trace_correlations` for the definitions.
    """
    truth = _as_truth(truth)
    stats = _stream([raw, denoised], truth, chunk_frames, traces=True)
    rms = [math.sqrt(m) for m in stats["mse"]]
    corr = [_correlations(c, truth.traces) for c in stats["coefficients"]]
    return {
        "noise_rms_raw": rms[0],
        "noise_rms_denoised": rms[1],
        "noise_rms_reduction": _ratio(rms[0], rms[1]),
        "median_trace_corr_raw": _nanmedian(corr[0]),
        "median_trace_corr_denoised": _nanmedian(corr[1]),
        "snr_db_raw": _snr(stats, 0),
        "snr_db_denoised": _snr(stats, 1),
        "psnr_db_raw": _psnr(stats, 0),
        "psnr_db_denoised": _psnr(stats, 1),
        "trace_corr_raw": corr[0].tolist(),
        "trace_corr_denoised": corr[1].tolist(),
    }


# --------------------------------------------------------------------------- private


def _as_truth(truth) -> Truth:
    """A :class:`Truth`, opening it if given as a path."""
    if isinstance(truth, Truth):
        return truth
    if isinstance(truth, (str, os.PathLike)):
        return load_truth(truth)
    raise TypeError(f"truth must be a Truth or a path, got {type(truth).__name__}")


def _read(movie, t0: int, t1: int) -> np.ndarray:
    """Frames ``t0:t1`` of a movie as a new float32 array (never a view of the input)."""
    read = getattr(movie, "read", None)
    frames = read(t0, t1) if callable(read) else movie[t0:t1]
    return np.array(frames, dtype=np.float32, copy=True)


def _projector(truth: Truth) -> np.ndarray:
    """Neuron rows of ``pinv(D)``, shape (N, Y*X), float32, for ``D = [footprints, neuropil, 1]``.

    Built over blocks of pixels in float64 so that no (N + K + 1, Y*X) float64
    array is ever held.
    """
    _, ny, nx = truth.shape
    pixels = ny * nx
    n_neurons = truth.footprints.shape[0]
    footprints = truth.footprints.reshape(n_neurons, pixels)
    neuropil = truth.neuropil_spatial.reshape(-1, pixels)

    def block(sl: slice) -> np.ndarray:
        ones = np.ones((1, sl.stop - sl.start))
        return np.concatenate([footprints[:, sl], neuropil[:, sl], ones]).astype(np.float64)

    step = 8192
    blocks = [slice(p0, min(p0 + step, pixels)) for p0 in range(0, pixels, step)]
    m = n_neurons + neuropil.shape[0] + 1
    gram = np.zeros((m, m))
    for sl in blocks:
        d = block(sl)
        gram += d @ d.T
    # Pseudo-inverse of the Gram matrix: robust to a degenerate column set.
    w, v = np.linalg.eigh(gram)
    keep = w > w.max() * 1e-12
    gram_pinv = ((v[:, keep] / w[keep]) @ v[:, keep].T)[:n_neurons]
    projector = np.empty((n_neurons, pixels), dtype=np.float32)
    for sl in blocks:
        projector[:, sl] = gram_pinv @ block(sl)
    return projector


def _stream(movies: list, truth: Truth, chunk_frames: int, *, traces: bool = False) -> dict:
    """One pass over the clean movie and ``movies``: squared errors, clean statistics, traces.

    Returns a dict with ``mse`` (one per movie), ``coefficients`` (one (N, T) array
    per movie, if ``traces``), ``clean_var`` (mean over pixels of the temporal
    variance of the clean movie), ``clean_min`` and ``clean_max``.
    """
    if int(chunk_frames) != chunk_frames or chunk_frames < 1:
        raise ValueError(f"chunk_frames must be an integer >= 1, got {chunk_frames!r}")
    shape = truth.shape
    for movie in movies:
        if tuple(getattr(movie, "shape", ())) != shape:
            raise InputError(
                f"movie shape {tuple(getattr(movie, 'shape', ()))} does not match the truth {shape} ({truth.path})"
            )
    n_frames, ny, nx = shape
    n_neurons = truth.footprints.shape[0]
    sse = [0.0] * len(movies)
    coefficients = [np.empty((n_neurons, n_frames), dtype=np.float64) for _ in movies]
    if traces:
        projector = _projector(truth)
        reference = (truth.offset + truth.gain * truth.background).reshape(-1)
        reference = reference.astype(np.float32)
    shift = None
    sum1 = np.zeros((ny, nx))
    sum2 = np.zeros((ny, nx))
    lo, hi = math.inf, -math.inf
    for t0 in range(0, n_frames, int(chunk_frames)):
        t1 = min(t0 + int(chunk_frames), n_frames)
        clean = _read(truth, t0, t1)
        if shift is None:
            shift = clean[0].copy()
        centred = clean - shift
        sum1 += centred.sum(axis=0, dtype=np.float64)
        sum2 += np.square(centred, out=centred).sum(axis=0, dtype=np.float64)
        lo, hi = min(lo, float(clean.min())), max(hi, float(clean.max()))
        del centred
        for m, movie in enumerate(movies):
            frames = _read(movie, t0, t1)
            if frames.shape != clean.shape:
                raise InputError(f"movie frames {t0}:{t1} have shape {frames.shape}, expected {clean.shape}")
            error = frames - clean
            sse[m] += float(np.square(error, out=error).sum(dtype=np.float64))
            del error
            if traces:
                flat = frames.reshape(t1 - t0, -1)
                flat -= reference  # frames is our own copy
                coefficients[m][:, t0:t1] = projector @ flat.T
            del frames
    count = n_frames * ny * nx
    mean1 = sum1 / n_frames
    clean_var = float(np.mean(sum2 / n_frames - mean1**2))
    return {
        "mse": [s / count for s in sse],
        "coefficients": coefficients if traces else None,
        "clean_var": max(clean_var, 0.0),
        "clean_min": lo,
        "clean_max": hi,
    }


def _correlations(extracted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation; nan where a row is constant."""
    x = extracted - extracted.mean(axis=1, keepdims=True)
    y = true.astype(np.float64)
    y = y - y.mean(axis=1, keepdims=True)
    norm = np.sqrt((x**2).sum(axis=1) * (y**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(axis=1) / norm
    r[norm == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def _nanmedian(x: np.ndarray) -> float:
    """Median ignoring nan; nan if nothing is left."""
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else math.nan


def _ratio(a: float, b: float) -> float:
    """``a / b`` with ``inf`` for ``b == 0`` and ``nan`` for ``0 / 0``."""
    if b == 0:
        return math.nan if a == 0 else math.inf
    return a / b


def _snr(stats: dict, m: int) -> float:
    """SNR in dB of movie ``m`` of a :func:`_stream` result."""
    mse = stats["mse"][m]
    if mse == 0:
        return math.inf
    if stats["clean_var"] == 0:
        return -math.inf
    return 10 * math.log10(stats["clean_var"] / mse)


def _psnr(stats: dict, m: int) -> float:
    """PSNR in dB of movie ``m`` of a :func:`_stream` result."""
    mse = stats["mse"][m]
    peak = stats["clean_max"] - stats["clean_min"]
    if mse == 0:
        return math.inf
    if peak == 0:
        return -math.inf
    return 20 * math.log10(peak / math.sqrt(mse))
