"""Per-neuron quality metrics, computed from the factors and the fitted model.

- ``snr``: peak signal over noise of the trace: ``(99.5th percentile - median) / sigma``,
  where ``sigma`` is the standard deviation that white pixel noise of the store's
  noise level would give the least-squares trace of that footprint in the raw
  movie, ``sqrt(sum a^2 noise^2) / sum a^2``.
- ``std_snr``: ``std(trace) / sigma``.
- ``skew``: skewness of the trace (calcium transients are positive and sparse).
- ``r_value``: Pearson correlation, over the footprint's box, between the footprint
  and the data's image at the trace's top 5 % frames minus its image at the median
  frames (CaImAn's spatial consistency test, taken through the factors).
- ``size``: pixels above ``threshold`` of the footprint's peak.
- ``compactness``: ``size`` over the area of the ellipse with the mask's second
  moments (1 for an ellipse, lower for ragged or split masks).
- ``elongation``: the ratio of the mask's principal axes (square root of the
  eigenvalue ratio of its second moments): about 1 for a soma, 3 or more for a
  piece of dendrite.
- ``mean_contrast`` (with a mean image): the mask's mean in the mean image
  high-passed at ``contrast_sigma``, in robust SDs of that high-passed image: a
  soma filled with a cytosolic indicator is brighter than the neuropil around it.
"""

from __future__ import annotations

import numpy as np

from . import hals

METRICS = ("snr", "std_snr", "skew", "r_value", "size", "compactness", "elongation")


def trace_noise(fp: hals.Footprints, noise: np.ndarray) -> np.ndarray:
    """Noise SD of each footprint's least-squares trace under white pixel noise, shape (n,)."""
    nb = hals.windows(noise[None].astype(np.float64), fp)[0]  # (n, bh, bw)
    a2 = fp.values.astype(np.float64) ** 2
    num = np.sqrt((a2 * nb**2).reshape(fp.n, int(np.prod(fp.values.shape[1:]))).sum(axis=1))
    den = a2.reshape(fp.n, int(np.prod(fp.values.shape[1:]))).sum(axis=1)
    return num / np.maximum(den, 1e-30)


def _skew(c: np.ndarray) -> np.ndarray:
    d = c - c.mean(axis=1, keepdims=True)
    m2 = (d**2).mean(axis=1)
    m3 = (d**3).mean(axis=1)
    return m3 / np.maximum(m2, 1e-30) ** 1.5


def footprint_masks(fp: hals.Footprints, threshold: float) -> np.ndarray:
    """Each footprint's mask in its box, the pixels above ``threshold`` of its peak: bool (n, bh, bw).

    Built once per :func:`compute_metrics` and shared by the shape metrics and ``mean_contrast``;
    an empty footprint (peak <= 0) has an empty mask.
    """
    if fp.n == 0:
        return np.zeros((0, *fp.box), bool)
    top = fp.values.reshape(fp.n, -1).max(axis=1)
    masks = fp.values > (threshold * np.maximum(top, 1e-30))[:, None, None]
    masks[top <= 0] = False
    return masks


def _shape(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Size, compactness and elongation of each mask (bool (n, bh, bw))."""
    n = masks.shape[0]
    bh, bw = masks.shape[1:]
    yy, xx = np.mgrid[:bh, :bw]
    size = masks.reshape(n, bh * bw).sum(axis=1).astype(np.int64)
    compact = np.zeros(n)
    elong = np.ones(n)
    for j in np.flatnonzero(size >= 3):
        m = masks[j]
        y, x = yy[m].astype(np.float64), xx[m].astype(np.float64)
        cov = np.cov(np.stack([y, x]))
        det = max(float(np.linalg.det(cov)), 1e-12)
        compact[j] = size[j] / (4 * np.pi * np.sqrt(det))
        # a pixel's own extent (1/12 on each axis) keeps one-pixel-wide masks finite
        ev = np.linalg.eigvalsh(cov + np.eye(2) / 12.0)
        elong[j] = float(np.sqrt(ev[1] / ev[0]))
    return size, compact, elong


def r_values(u, v, fp: hals.Footprints, c: np.ndarray, *, top=0.05) -> np.ndarray:
    """Spatial consistency of each footprint with the data at its active frames, shape (n,)."""
    n, t = c.shape
    if n == 0:
        return np.zeros(0)
    k_top = max(1, int(round(top * t)))
    weights = np.zeros((t, n))
    order = np.argsort(c, axis=1)
    mid = order[:, t // 4 : 3 * t // 4]
    for j in range(n):
        weights[order[j, -k_top:], j] = 1.0 / k_top
        weights[mid[j], j] -= 1.0 / mid.shape[1]
    full = hals.Footprints(fp.origins, fp.values, np.ones_like(fp.support), fp.dims)
    img = hals.u_times_into_boxes(u, v @ weights, full)  # (n, bh, bw)
    out = np.zeros(n)
    for j in range(n):
        a = fp.values[j].ravel().astype(np.float64)
        b = img[j].ravel()
        if a.std() == 0 or b.std() == 0:
            continue
        out[j] = np.corrcoef(a, b)[0, 1]
    return out


def mean_contrast(mean: np.ndarray, fp: hals.Footprints, threshold: float, sigma: float,
                  masks: np.ndarray | None = None) -> np.ndarray:
    """Each mask's mean in ``mean`` high-passed at ``sigma``, in robust SDs of the high-passed image.

    ``masks``: :func:`footprint_masks` at ``threshold``, when the caller has them already.
    """
    from scipy import ndimage

    if masks is None:
        masks = footprint_masks(fp, threshold)
    img = mean.astype(np.float64)
    hp = img - ndimage.gaussian_filter(img, sigma, mode="reflect")
    spread = 1.4826 * float(np.median(np.abs(hp - np.median(hp)))) + 1e-12
    win = hals.windows(hp[None], fp)[0]
    out = np.zeros(fp.n)
    for j in range(fp.n):
        if masks[j].any():
            out[j] = win[j][masks[j]].mean() / spread
    return out


def compute_metrics(u, v, fp: hals.Footprints, c: np.ndarray, noise: np.ndarray, *, threshold=0.2,
                    mean=None, contrast_sigma=None) -> dict:
    """Every metric of :data:`METRICS` for each footprint (and ``mean_contrast`` with ``mean``); arrays (n,)."""
    sigma = trace_noise(fp, noise)
    med = np.median(c, axis=1) if c.size else np.zeros(0)
    peak = np.percentile(c, 99.5, axis=1) if c.size else np.zeros(0)
    masks = footprint_masks(fp, threshold)
    size, compact, elong = _shape(masks)
    extra = {}
    if mean is not None:
        extra["mean_contrast"] = mean_contrast(mean, fp, threshold, contrast_sigma, masks=masks)
    return {**extra,
        "snr": (peak - med) / np.maximum(sigma, 1e-30),
        "std_snr": c.std(axis=1) / np.maximum(sigma, 1e-30) if c.size else np.zeros(0),
        "skew": _skew(c) if c.size else np.zeros(0),
        "r_value": r_values(u, v, fp, c),
        "size": size,
        "compactness": compact,
        "elongation": elong,
    }
