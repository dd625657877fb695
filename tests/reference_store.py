"""Plain numpy twins of the store's code kernels (formats/store_codes.py), written from their contract."""

from __future__ import annotations

import numpy as np


def med_encode_reference(images: np.ndarray) -> np.ndarray:
    """Median-edge-detector residuals (int64) of integer images (..., h, w), all pixels at once: each pixel less
    the prediction from its left (a), upper (b) and upper-left (c) neighbours (0 outside)."""
    img = np.asarray(images, np.int64)
    a = np.zeros_like(img)
    b = np.zeros_like(img)
    c = np.zeros_like(img)
    a[..., :, 1:] = img[..., :, :-1]
    b[..., 1:, :] = img[..., :-1, :]
    c[..., 1:, 1:] = img[..., :-1, :-1]
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    return img - np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))


def med_decode_reference(residuals: np.ndarray) -> np.ndarray:
    """Integer images (..., h, w) from their median-edge-detector residuals, every image at once, pixel by pixel in
    raster order: each pixel is its residual plus the prediction from its decoded left (a), upper (b) and
    upper-left (c) neighbours (0 outside): min(a, b) if c >= max(a, b), max(a, b) if c <= min(a, b), else a + b - c.
    """
    r = np.asarray(residuals, np.int64)
    padded = np.zeros(r.shape[:-2] + (r.shape[-2] + 1, r.shape[-1] + 1), np.int64)  # a zero row above, column left
    for y in range(r.shape[-2]):
        for x in range(r.shape[-1]):
            a, b, c = padded[..., y + 1, x], padded[..., y, x + 1], padded[..., y, x]
            hi, lo = np.maximum(a, b), np.minimum(a, b)
            prediction = np.select([c >= hi, c <= lo], [lo, hi], a + b - c)
            padded[..., y + 1, x + 1] = r[..., y, x] + prediction
    return padded[..., 1:, 1:]


def delta_decode_reference(codes: np.ndarray) -> np.ndarray:
    """Rows (int64) of zigzag-coded first differences: the running sums of the signed differences."""
    z = np.asarray(codes).astype(np.int64)
    return np.cumsum((z >> 1) ^ -(z & 1), axis=1)
