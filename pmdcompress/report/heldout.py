"""Held-out validation, the report's side: the crop and frames kept for it, the scoring of the even/odd fits
(the fits themselves are made by :mod:`pmdcompress.pipeline.heldout`).
"""

from __future__ import annotations

import numpy as np

#: Side of the crop fitted on even and odd frames for the held-out validation.
HELDOUT_CROP = 64


#: Most frames of the crop used by the held-out fits.
HELDOUT_FRAMES = 1500


#: Most bytes of raw crop frames kept in memory for the held-out fits.
HELDOUT_BYTES = 256 * 2**20


def central_crop(frame_shape, patch_shape, side: int, *, at_most_half: bool = False):
    """Central crop of at most ``side`` x ``side`` pixels (and at most half of each side with ``at_most_half``),
    but at least one patch: ``((y0, y1), (x0, x1))``."""
    out = []
    for n, p in zip(frame_shape, patch_shape, strict=True):
        size = min(n, max(min(side, -(-n // 2)) if at_most_half else side, p))
        start = (n - size) // 2
        out.append((start, start + size))
    return tuple(out)


def heldout_crop(frame_shape, patch_shape, side: int = HELDOUT_CROP):
    """The held-out fits' crop: central, at most ``side`` pixels and half of each side, at least one patch."""
    return central_crop(frame_shape, patch_shape, side, at_most_half=True)


def heldout_frames(n_frames: int, crop, itemsize: int) -> int:
    """Frames of the crop kept for the held-out fits: the first :data:`HELDOUT_FRAMES`, within :data:`HELDOUT_BYTES`."""
    (y0, y1), (x0, x1) = crop
    return int(min(n_frames, HELDOUT_FRAMES, HELDOUT_BYTES // max((y1 - y0) * (x1 - x0) * itemsize, 1)))


def score_heldout(frames: np.ndarray, fits, *, chunk: int = 256) -> dict:
    """Score the even-frame and odd-frame fits of a crop, each on the frames it did not see.

    Parameters
    ----------
    frames : ndarray, shape (T, h, w)
        Raw frames of the crop (any numeric dtype).
    fits : (PMDStore, PMDStore)
        Stores fitted to ``frames[0::2]`` and ``frames[1::2]``
        (:func:`pmdcompress.pipeline.heldout.heldout_validation` makes them).
    chunk : int
        Frames scored at a time.

    Returns
    -------
    dict
        Per-pixel sums ``sq`` (fit against the neighbour average), ``base`` (raw frame
        against it), their count ``n`` and the ``ranks`` of the two fits.

    Notes
    -----
    For frame t with both neighbours, ``a = (y_{t-1} + y_{t+1}) / 2``.  The fit of
    ``t``'s own parity (even fit at even t, odd fit at odd t) never saw frames
    ``t - 1`` and ``t + 1``, so its error is independent of their noise.
    """
    n_frames, h, w = frames.shape
    out = {"sq": np.zeros((h, w)), "base": np.zeros((h, w)), "n": 0}
    for t0 in range(1, n_frames - 1, chunk):
        ts = np.arange(t0, min(t0 + chunk, n_frames - 1))
        for parity, fit in enumerate(fits):
            sel = ts[ts % 2 == parity]
            if sel.size == 0:
                continue
            j0, j1 = (sel[0] - parity) // 2, (sel[-1] - parity) // 2 + 1
            est = fit.read(j0, j1).astype(np.float64)  # frames parity + 2 j
            y = frames[sel].astype(np.float64)
            a = 0.5 * (frames[sel - 1].astype(np.float64) + frames[sel + 1].astype(np.float64))
            e = est - a
            out["sq"] += np.einsum("tij,tij->ij", e, e)
            e = y - a
            out["base"] += np.einsum("tij,tij->ij", e, e)
            out["n"] += int(sel.size)
    out["ranks"] = [int(f.metadata.total_rank) for f in fits]
    return out
