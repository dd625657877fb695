"""Preprocessing: per-pixel mean, noise level and standardisation.

The noise level of every pixel is the square root of the mean power spectral
density in the upper half band (0.25 to 0.5 cycles per frame), estimated with
Hann-windowed segments (Welch).  On white noise this is unbiased; CaImAn's
default ``logmexp`` averaging is 25 % low (see docs/format.md and
``../shared/reference/compression_denoising.md``), so it is not offered.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

# Welch segment length: long enough to resolve the band edge, short enough that
# a 20-frame movie still gets an estimate (segments shrink to the movie length).
WELCH_SEGMENT = 256


def _segments(n_frames: int, segment: int) -> list[tuple[int, int]]:
    """Start/stop of Welch segments with 50 % overlap covering ``n_frames``."""
    seg = min(segment, n_frames)
    step = max(seg // 2, 1)
    starts = list(range(0, n_frames - seg + 1, step))
    return [(s, s + seg) for s in starts]


class NoiseAccumulator:
    """Accumulate the upper-half-band PSD of pixel time series, chunk by chunk.

    Parameters
    ----------
    n_pixels : int
        Number of pixels (columns of the blocks passed to :meth:`add`).
    segment : int
        Welch segment length in frames.

    Notes
    -----
    For each Hann-windowed, mean-removed segment ``x`` of length ``L`` the
    periodogram bin ``|FFT(w x)_k|**2 / sum(w**2)`` has expectation ``sigma**2``
    for white noise of variance ``sigma**2``.  The estimate is the mean of these
    bins over ``L/4 < k <= L/2`` and over all segments: the *mean* (not a log or
    median average) keeps it unbiased.
    """

    def __init__(self, n_pixels: int, segment: int = WELCH_SEGMENT):
        self.segment = segment
        self.power = np.zeros(n_pixels, dtype=np.float64)
        self.count = 0

    def add(self, block: np.ndarray) -> None:
        """Add a block of consecutive frames, shape (n, n_pixels), float32/64."""
        n = block.shape[0]
        if n < 4:
            return
        segs = _segments(n, self.segment)
        seg_len = segs[0][1] - segs[0][0]
        window = np.hanning(seg_len + 2)[1:-1].astype(np.float32)  # no zero end points
        lo = seg_len // 4 + 1
        hi = seg_len // 2 + 1
        norm = float(np.sum(window.astype(np.float64) ** 2))
        for s0, s1 in segs:
            x = block[s0:s1]
            x = (x - x.mean(axis=0, dtype=np.float64).astype(np.float32)) * window[:, None]
            spec = scipy.fft.rfft(x, axis=0, workers=1)[lo:hi]
            self.power += (np.abs(spec) ** 2).sum(axis=0, dtype=np.float64) / norm
            self.count += hi - lo

    def std(self) -> np.ndarray:
        """Per-pixel noise standard deviation (float64); zeros where nothing was added."""
        if self.count == 0:
            return np.zeros_like(self.power)
        return np.sqrt(self.power / self.count)


def noise_std_psd(movie: np.ndarray, segment: int = WELCH_SEGMENT) -> np.ndarray:
    """Per-pixel noise std of a movie from the upper half band of its PSD.

    Parameters
    ----------
    movie : ndarray, shape (T, ...)
        Time along the first axis; any trailing shape.
    segment : int
        Welch segment length (frames); shortened to ``T`` for short movies.

    Returns
    -------
    ndarray, shape movie.shape[1:], float64
    """
    movie = np.asarray(movie)
    flat = movie.reshape(movie.shape[0], -1).astype(np.float32, copy=False)
    acc = NoiseAccumulator(flat.shape[1], segment)
    acc.add(flat)
    return acc.std().reshape(movie.shape[1:])


def safe_scale(noise: np.ndarray) -> np.ndarray:
    """Noise std usable as a divisor: dead or constant pixels get 1, never 0 or NaN.

    A pixel whose noise is zero (dead, saturated, clipped) has no fluctuation to
    standardise; dividing its zero deviation by 1 keeps it at zero.
    """
    noise = np.asarray(noise, dtype=np.float64)
    positive = noise[np.isfinite(noise) & (noise > 0)]
    floor = 1e-6 * float(np.median(positive)) if positive.size else 1.0
    out = np.where(np.isfinite(noise) & (noise > floor), noise, 1.0)
    return out.astype(np.float32)
