"""Noise and spectra: Welch spectra of raw, denoised and residual (noise std in the upper half band), and
the store-derived expectation of the residual (temporal-filter fractions, hat diagonal, rank map).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from ..formats.store import piecewise_linear_df
from ..formats.store_codes import smoothed_mean_kept
from ..preprocess import add_ring_band, band_dof, coherent_noise_std, coherent_sums, welch_band
from .kernels import DIRECTIONS, _band_kernel, _window_kernel


def filter_fractions(store, *, tol: float = 1e-4) -> np.ndarray:
    """Fraction of each temporal factor's white noise that its temporal filter keeps, shape (K,).

    1 for unfiltered factors (``parameters.temporal_filter`` false or absent).  For
    trend-filtered factors, the degrees of freedom of trend filtering (Tibshirani and
    Taylor 2011): the number of knots (frames where the second difference is not
    zero, relative to ``tol`` times the factor's peak) plus 2, over the number of frames.
    """
    k, n_frames = store.temporal.shape
    if not store.metadata.parameters.get("temporal_filter") or k == 0 or n_frames < 8:
        return np.ones(k)
    # Stores of format 2 round the factors, which hides the knots: they record the count instead.
    recorded = getattr(store, "temporal_df", None)
    if recorded is not None:
        return np.minimum(np.asarray(recorded, np.float64) / n_frames, 1.0)
    out = np.empty(k)
    step = max(1, min(k, 2**22 // max(n_frames, 1)))
    for k0 in range(0, k, step):
        v = np.asarray(store.temporal[k0 : k0 + step], np.float64)
        out[k0 : k0 + step] = np.minimum(piecewise_linear_df(v, tol) / n_frames, 1.0)
    return out


def mean_kept_fraction(store) -> float:
    """Share of a pixel's noise mean over the frames that the store keeps: 1 for the input's own mean; for a
    smoothed one (``parameters.mean_smoothing``, :func:`pmdcompress.preprocess.mean_correction`) the Gaussian's
    sum of squared weights (white noise; noise shared between neighbours keeps more)."""
    width = float(store.metadata.parameters.get("mean_smoothing") or 0.0)
    if width <= 0 or getattr(store, "trend", None) is None:
        return 1.0
    return smoothed_mean_kept(width)


def hat_diagonal(store, correlation=(0.0, 0.0, 0.0, 0.0), fractions=None) -> np.ndarray:
    """Per-pixel degrees of freedom of the reconstruction, from the factors.

    ``df[p] = sum_q W_q(p) (|U_q(p)|^2 + sum_d rho_d (U_q(p).U_q(p+d) + U_q(p).U_q(p-d)))``: the
    derivative of the denoised pixel with respect to the raw pixel (the leverage
    of the patch projections, weighted by the overlap weights), plus the same
    for neighbours whose noise is correlated with this pixel's (``rho_d`` along
    the 4 directions of :data:`DIRECTIONS`).  The spatial components are taken
    as fixed.

    Parameters
    ----------
    store : PMDStore
    correlation : 4 floats
        Noise correlation between neighbours along right, down, down-right, down-left.
    fractions : ndarray, shape (K,), optional
        Fraction of each component's noise kept by its temporal filter
        (:func:`filter_fractions`); 1 when not given.

    Returns
    -------
    ndarray of float64, shape (Y, X)
    """
    _, height, width = store.shape
    h, w = store.patch_shape
    out = np.zeros((height, width))
    for p, (y0, x0) in enumerate(store.patch_origins):
        k0, k1 = store.component_offsets[p], store.component_offsets[p + 1]
        if k1 == k0:
            continue
        u = store.spatial[:, k0:k1].astype(np.float64).reshape(h, w, k1 - k0)
        g = np.ones(k1 - k0) if fractions is None else np.asarray(fractions[k0:k1], np.float64)
        ug = u * g
        term = np.einsum("ijk,ijk->ij", ug, u)
        for rho, (dy, dx) in zip(correlation, DIRECTIONS, strict=True):
            if rho == 0:
                continue
            a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
            b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
            c = rho * np.einsum("ijk,ijk->ij", ug[a], u[b])
            term[a] += c
            term[b] += c
        weight = store.weights_y[p][:, None].astype(np.float64) * store.weights_x[p][None, :]
        out[y0 : y0 + h, x0 : x0 + w] += weight * term
    return out


class FitProjection:
    """The store's patch projections applied to other frames: ``P x = s sum_q W_q U_q diag(a) U_q^T (x / s)_q``
    (``s`` the store's noise scale: the components live on the standardised movie).

    :meth:`noise_residual` passes the movie's own noise (its frame differences
    less their region-shared part) through the fit: what the residual of noise
    alone looks like, its spatial correlation included (a fit keeps the smooth,
    shared part of widely correlated noise first, which lowers the residual's
    local correlation below the noise's).  The spatial components are taken as
    fixed, and each component's temporal filter as keeping the fraction ``g``
    of its noise (:func:`filter_fractions`): the kept part of frame ``t`` is
    ``g P x_t + sqrt(g - g^2) P x_t'`` with ``x_t'`` another frame's noise (half
    the block away), which has the filter's variance ``g`` and covariance ``g``
    with ``x_t``.
    """

    def __init__(self, store, fractions=None):
        self.shape = tuple(store.shape[1:])
        self.patch_shape = tuple(store.patch_shape)
        g = filter_fractions(store) if fractions is None else np.asarray(fractions, np.float64)
        self.kept = np.asarray(g, np.float32)
        self.extra = np.sqrt(np.clip(g - g * g, 0.0, None)).astype(np.float32)
        scale = np.asarray(store.noise, np.float64)
        self.scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        self.patches = []
        h, w = self.patch_shape
        for p, (y0, x0) in enumerate(store.patch_origins):
            k0, k1 = int(store.component_offsets[p]), int(store.component_offsets[p + 1])
            if k1 == k0:
                continue
            u = np.asarray(store.spatial[:, k0:k1], np.float32)
            weight = (store.weights_y[p][:, None].astype(np.float32) * store.weights_x[p][None, :]).reshape(-1)
            self.patches.append((int(y0), int(x0), k0, k1, u, weight))

    def apply(self, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``sum_q W_q U_q diag(scale_q) U_q^T x_q`` for frames ``x`` (n, H, W)."""
        n = x.shape[0]
        h, w = self.patch_shape
        x = np.asarray(x, np.float32) / self.scale
        out = np.zeros(x.shape, np.float32)
        for y0, x0, k0, k1, u, weight in self.patches:
            block = np.ascontiguousarray(x[:, y0 : y0 + h, x0 : x0 + w]).reshape(n, -1)
            fitted = ((block @ u) * scale[k0:k1]) @ u.T
            out[:, y0 : y0 + h, x0 : x0 + w] += (fitted * weight).reshape(n, h, w)
        return out * self.scale

    def noise_residual(self, noise: np.ndarray) -> np.ndarray:
        """``noise`` (n, H, W, independent over frames more than one apart) less what the fit keeps of it."""
        other = np.roll(noise, noise.shape[0] // 2, axis=0)
        return noise - self.apply(noise, self.kept) - self.apply(other, self.extra)


def rank_map(store) -> np.ndarray:
    """Overlap-weighted number of components at each pixel, ``sum_q W_q(p) rank_q``."""
    _, height, width = store.shape
    h, w = store.patch_shape
    out = np.zeros((height, width))
    for p, (y0, x0) in enumerate(store.patch_origins):
        weight = store.weights_y[p][:, None].astype(np.float64) * store.weights_x[p][None, :]
        out[y0 : y0 + h, x0 : x0 + w] += weight * store.patch_ranks[p]
    return out


class Spectra:
    """Welch spectra of raw, denoised and residual pixel time series, chunk by chunk.

    Per pixel: the power in the upper half band (0.25 to 0.5 cycles per frame;
    its square root is the noise std, exactly as
    :class:`pmdcompress.preprocess.NoiseAccumulator`) and in the lower band
    (from bin 2 to 0.25 cycles per frame).  Pooled over pixels: the spectrum of
    each signal in units of the raw noise variance (``weights``), the spectral
    flatness figure.  Also the residual's windowed mean square over the same
    segments, so that the residual std / raw noise ratio compares like with like.

    Parameters
    ----------
    n_pixels : int
    segment : int
        Welch segment length (frames).
    weights : ndarray, shape (n_pixels,)
        ``1 / sigma^2`` used to pool the spectra over pixels.
    """

    def __init__(self, n_pixels: int, segment: int, weights: np.ndarray, frame_shape=None):
        self.segment = int(segment)
        # The raw band's cross power with each pixel's annulus mean and that mean's power (noise without the
        # fast signals a region shares: preprocess.coherent_noise_std).
        self.frame_shape = None if frame_shape is None else (int(frame_shape[0]), int(frame_shape[1]))
        self.ring = np.zeros((2, n_pixels)) if frame_shape is not None else None
        self.dof = 0.0
        self.window, self.norm, self.lo, self.hi = welch_band(self.segment)
        self.weights = np.asarray(weights, np.float32)
        self.high = np.zeros((3, n_pixels))
        self.low = np.zeros((3, n_pixels))
        self.pooled = np.zeros((3, self.hi))
        self.n_segments = 0
        self.residual_sq = np.zeros(n_pixels)  # sum over segments of sum_t (w_t r_t)^2
        self.n_frames = 0

    @property
    def frequencies(self) -> np.ndarray:
        """Cycles per frame of each bin of :attr:`pooled`."""
        return np.arange(self.hi) / self.segment

    def add(self, y: np.ndarray, d: np.ndarray) -> None:
        """Add a block of consecutive frames: raw ``y`` (n, P) and denoised ``d`` (n, P) float32."""
        n = y.shape[0]
        seg = self.segment
        if n < seg:
            return
        high = np.zeros_like(self.high)
        low = np.zeros_like(self.low)
        pooled = np.zeros_like(self.pooled)
        residual_sq = np.zeros_like(self.residual_sq)
        ring = None if self.ring is None else np.zeros_like(self.ring)
        d = np.ascontiguousarray(d, np.float32)
        for s0 in range(0, n - seg + 1, max(seg // 2, 1)):
            yw = np.empty((seg, y.shape[1]), np.float32)
            rw = np.empty_like(yw)
            residual_sq += _window_kernel(y, d, self.window, s0, yw, rw)
            spec_y = scipy.fft.rfft(yw, axis=0, workers=1, overwrite_x=True)
            spec_r = scipy.fft.rfft(rw, axis=0, workers=1, overwrite_x=True)
            _band_kernel(spec_y, spec_r, self.lo, self.hi, self.weights, high, low, pooled)
            if ring is not None:
                add_ring_band(ring, spec_y[self.lo : self.hi], self.frame_shape)
            self.n_segments += 1
        self.high += high / self.norm
        self.low += low / self.norm
        self.pooled += pooled / self.norm
        self.residual_sq += residual_sq / self.norm
        if ring is not None:
            self.ring += ring / self.norm
            self.dof += band_dof(n, seg)
        self.n_frames += n

    def merge(self, other: Spectra) -> None:
        self.high += other.high
        self.low += other.low
        self.pooled += other.pooled
        self.n_segments += other.n_segments
        self.residual_sq += other.residual_sq
        if self.ring is not None:
            self.ring += other.ring
            self.dof += other.dof
        self.n_frames += other.n_frames

    def residual_std(self) -> np.ndarray:
        """(P,) root mean square of the residual, with the same window weights as the noise estimate.

        All frequencies count (slow removed signal too), but the frames are weighted
        exactly like the noise estimate's, so that estimation noise largely cancels
        in the ratio of the two.
        """
        return np.sqrt(self.residual_sq / max(self.n_segments, 1))

    def noise_std(self) -> np.ndarray:
        """(3, P) noise std of raw, denoised, residual (upper half band, mean average)."""
        count = self.n_segments * (self.hi - self.lo)
        return np.sqrt(self.high / count) if count else np.full_like(self.high, np.nan)

    def raw_noise_coherent(self) -> np.ndarray:
        """(P,) raw noise std without the fast signals each pixel shares with its annulus (flicker, background).

        :func:`pmdcompress.preprocess.coherent_noise_std` on the upper half
        band; the plain band estimate (``noise_std()[0]``) when no frame shape was given.
        """
        count = self.n_segments * (self.hi - self.lo)
        if self.ring is None or not count:
            return self.noise_std()[0]
        return coherent_noise_std(coherent_sums(self.high[0], self.ring, self.dof), count)

    def band_ratio(self) -> np.ndarray:
        """(3, P) mean power per bin in the lower band over that in the upper half band (1 = white)."""
        n_low, n_high = self.lo - 2, self.hi - self.lo
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.low / max(n_low, 1)) / (self.high / max(n_high, 1))

    def pooled_spectra(self, n_pixels: int) -> np.ndarray:
        """(3, bins) spectra pooled over pixels, in units of the raw noise variance."""
        return self.pooled / max(self.n_segments, 1) / max(n_pixels, 1)
