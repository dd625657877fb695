"""Integer codes of the store's arrays (docs/format.md, "Codes"): lossless transforms that make the quantized
values cheap for the byte shuffle + zstd chain, and the rounding of the noise and the mean.

- :func:`zigzag_encode` / :func:`zigzag_decode`: small signed integers as small unsigned codes in the
  narrowest dtype (version 3's spatial codes; every code of version 4).
- :func:`image_residuals` / :func:`images_from_residuals`: a stack of integer images as the residuals of the
  median edge detector (LOCO-I / JPEG-LS's MED predictor from the left, upper and upper-left pixels): the
  spatial components, the mean and the noise maps are smooth, so the residuals are small (version 4).
- :func:`delta_codes` / :func:`from_delta_codes`: rows of integers as their first differences along time
  within a block of frames (one time chunk of the store), zigzag coded: the temporal factors change by little
  from frame to frame (version 4: ~45 % fewer bytes than the values on two-photon stores).
- :func:`round_noise`, :func:`noise_codes`, :func:`noise_from_codes`: the noise map rounded to
  :data:`NOISE_MANTISSA_BITS` bits of mantissa, BEFORE the movie is standardised by it (the compression's
  statistics stage), so that what is stored is exactly what was used; its 16-bit codes.
- :func:`mean_step`: the step of the mean (and trend) codes, relative to each pixel's noise; the trend is
  coded as the codes of mean + trend less the mean's, so that the movie's baseline is rounded once.
"""

from __future__ import annotations

import math

import numpy as np

from .._numba import jit

#: Bits of mantissa the noise map keeps: a relative rounding of at most 2**-9 (0.2 %), 20x below its estimate's
#: own error (>= 4 % even on 2000 frames), and it adds no error: the movie is standardised by the rounded map.
NOISE_MANTISSA_BITS = 8
_NOISE_DROP = 23 - NOISE_MANTISSA_BITS  # float32 mantissa bits dropped
_LARGEST = (0x7F7FFFFF >> _NOISE_DROP) << _NOISE_DROP  # the largest finite float32 so rounded


def zigzag_encode(q: np.ndarray) -> np.ndarray:
    """Integers ``q`` as zigzag codes (0, -1, 1, -2, 2, ... -> 0, 1, 2, 3, 4, ...) in the narrowest unsigned
    dtype that holds them (uint8, uint16 or uint32; uint64 beyond).

    As int32, two of the four bytes of small signed integers only repeat the sign, which the byte shuffle +
    zstd chain cannot squeeze to nothing (about 2 bits a value); zigzag codes put the sign in the lowest bit,
    and the narrow dtype drops the empty bytes.
    """
    z = _zigzag(q)
    top = int(z.max()) if z.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.uint64
    return z.astype(dtype)


def _zigzag(q) -> np.ndarray:
    """Zigzag codes (uint64) of the integers ``q``: the sign in the lowest bit."""
    q = np.asarray(q, np.int64)
    return ((q << 1) ^ (q >> 63)).view(np.uint64)


def zigzag_decode(z: np.ndarray) -> np.ndarray:
    """The signed integers (int64) of zigzag codes ``z`` (:func:`zigzag_encode`)."""
    z = np.asarray(z).astype(np.uint64).view(np.int64)
    return (z >> 1) ^ -(z & 1)


def image_residuals(images: np.ndarray) -> np.ndarray:
    """Residuals (int64) of integer images ``(..., h, w)`` from the median edge detector.

    Each pixel is predicted from its left (a), upper (b) and upper-left (c) neighbours, taken as 0 outside the
    image: ``min(a, b)`` where ``c >= max(a, b)``, ``max(a, b)`` where ``c <= min(a, b)``, else ``a + b - c``
    (the first row is so predicted from the left, the first column from above).  Exactly undone by
    :func:`images_from_residuals`.
    """
    # compiled: the numpy form (tests/reference_store.py med_encode_reference) made ten passes of int64
    # temporaries, 0.24 CPU-s of a cluster driver's finish_store on a 512 x 512 store of rank 4725
    return _med_images(images, decode=False)


def images_from_residuals(residuals: np.ndarray) -> np.ndarray:
    """The integer images (int64) whose :func:`image_residuals` are ``residuals`` ``(..., h, w)``."""
    return _med_images(residuals, decode=True)


def _med_images(values, decode: bool) -> np.ndarray:
    v = np.asarray(values, np.int64)
    shape = v.shape
    if v.ndim < 2 or v.size == 0:
        return v.copy()
    out = np.empty(shape, np.int64)
    _med_kernel(np.ascontiguousarray(v.reshape(-1, shape[-2], shape[-1])), out.reshape(-1, shape[-2], shape[-1]),
                decode)
    return out


@jit
def _med_kernel(values, out, decode):  # pragma: no cover - compiled (twins: tests/reference_store.py med_*_reference)
    # Encoding: out = values less the prediction from the values' neighbours.  Decoding: out = the residuals in
    # values plus the prediction from the neighbours decoded before them (raster order).
    n, h, w = values.shape
    known = out if decode else values
    sign = 1 if decode else -1
    for k in range(n):
        for y in range(h):
            for x in range(w):
                a = known[k, y, x - 1] if x > 0 else 0
                b = known[k, y - 1, x] if y > 0 else 0
                c = known[k, y - 1, x - 1] if x > 0 and y > 0 else 0
                hi = a if a > b else b
                lo = b if a > b else a
                if c >= hi:
                    p = lo
                elif c <= lo:
                    p = hi
                else:
                    p = a + b - c
                out[k, y, x] = values[k, y, x] + sign * p


def delta_codes(q: np.ndarray) -> np.ndarray:
    """Rows of integers ``q`` (K, n) as uint32 zigzag codes of their first differences (the first frame's
    value as it is): the store's temporal codes of one time chunk (version 4)."""
    q = np.asarray(q, np.int64)
    d = np.empty_like(q)
    if q.size:
        d[:, :1] = q[:, :1]
        np.subtract(q[:, 1:], q[:, :-1], out=d[:, 1:])
    z = _zigzag(d)
    if z.size and int(z.max()) >= 2**32:
        raise OverflowError("temporal codes beyond 32 bits")
    return z.astype(np.uint32)


def from_delta_codes(z: np.ndarray, skip: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """The rows (int64) of :func:`delta_codes` ``z`` (K, n), from frame ``skip`` on (into ``out`` when given):
    one pass per row (the decoding of a time chunk is a running sum), no temporary arrays."""
    z = np.asarray(z)
    if out is None:
        out = np.empty((z.shape[0], max(z.shape[1] - skip, 0)), np.int64)
    if z.size:
        _delta_decode(z, int(skip), out)
    return out


@jit
def _delta_decode(z, skip, out):  # pragma: no cover - compiled (twin: tests/reference_store.py)
    for r in range(z.shape[0]):
        total = 0
        for t in range(z.shape[1]):
            code = np.int64(z[r, t])
            total += (code >> 1) ^ -(code & 1)
            if t >= skip:
                out[r, t - skip] = total


def round_noise(noise: np.ndarray) -> np.ndarray:
    """``noise`` (positive, finite) as float32 rounded to :data:`NOISE_MANTISSA_BITS` bits of mantissa (to the
    nearest, ties away from zero): exactly what :func:`noise_codes` stores."""
    bits = np.asarray(noise, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + (1 << (_NOISE_DROP - 1))) >> _NOISE_DROP) << _NOISE_DROP
    # a positive value never rounds to 0 (a tiny subnormal) nor to infinity (beyond the largest float32)
    rounded = np.where((bits > 0) & (bits < 0x7F800000), np.clip(rounded, 1 << _NOISE_DROP, _LARGEST), rounded)
    return rounded.astype(np.uint32).view(np.float32)


def noise_codes(noise: np.ndarray) -> np.ndarray | None:
    """The 16-bit codes (uint16: exponent and mantissa) of a noise map rounded by :func:`round_noise`; None when
    it cannot be so stored (a value that is not positive and finite, or not so rounded)."""
    noise = np.asarray(noise, np.float32)
    if not (np.isfinite(noise).all() and (noise > 0).all()) or not np.array_equal(round_noise(noise), noise):
        return None
    return (noise.view(np.uint32) >> _NOISE_DROP).astype(np.uint16)


def noise_from_codes(codes: np.ndarray) -> np.ndarray:
    """The float32 noise map of :func:`noise_codes`."""
    return (np.asarray(codes).astype(np.uint32) << _NOISE_DROP).view(np.float32)


def mean_step(n_frames: int, rounding_error: float, kept: float = 1.0) -> float:
    """Step of the mean and trend codes, relative to each pixel's noise std: ``sqrt(12 * e * kept / T)``.

    The mean of T frames carries ``noise**2 / T`` of noise, which every frame of the denoised movie keeps
    (``kept`` of it where the store smooths its mean: :func:`smoothed_mean_kept`); rounding the mean (plus
    trend: they are rounded together) to a step ``s`` adds ``s**2 / 12``, ``e``
    (:data:`~pmdcompress.formats.store.ROUNDING_ERROR`) of that.
    """
    return math.sqrt(12.0 * rounding_error * kept / max(int(n_frames), 1))


def smoothed_mean_kept(width: float) -> float:
    """Share of the mean's noise that a Gaussian smoothing of width ``width`` (pixels; 0: none) keeps: the sum of
    its squared weights (white noise), as ``report.noise.mean_kept_fraction`` counts it."""
    if not width or width <= 0:
        return 1.0
    from scipy import ndimage

    radius = int(np.ceil(4.0 * width))
    impulse = np.zeros((2 * radius + 1, 2 * radius + 1))
    impulse[radius, radius] = 1.0
    return float(np.sum(ndimage.gaussian_filter(impulse, width, mode="constant", truncate=4.0) ** 2))
