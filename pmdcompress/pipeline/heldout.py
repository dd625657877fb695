"""The report's held-out validation: compress the even and the odd frames of a crop apart.

The report (:mod:`pmdcompress.report`) never compresses; it is handed
:func:`heldout_validation`, which makes the two fits here and scores them with
:func:`pmdcompress.report.heldout.score_heldout`.
"""

from __future__ import annotations

import numpy as np

from ..options import MIN_FRAMES
from ..report.heldout import score_heldout
from .compress import compress

#: Options of the store that the held-out fits reuse (the patch geometry is added).
REUSED_OPTIONS = ("method", "max_rank", "consecutive_failures", "fit_frames", "false_pass", "seed")


def heldout_validation(frames: np.ndarray, store, *, workers=None, chunk: int = 256) -> dict | None:
    """Fit the even and the odd frames of a crop with STORE's options, score each on the frames it did not see.

    Parameters
    ----------
    frames : ndarray, shape (T, h, w)
        Raw frames of the crop (any numeric dtype).
    store : PMDStore
        Its compression parameters are used for the fits.
    workers : int, optional
    chunk : int
        Frames scored at a time.

    Returns
    -------
    dict or None
        See :func:`pmdcompress.report.heldout.score_heldout`; None when the movie is too short, or its frames one
        pixel wide or high (the store's patches are then clipped to one pixel, which no compression accepts as
        a patch shape: the report of a (T, Y, 1) movie stopped with "patch_shape (32, 1): must be at least 2").
    """
    if frames.shape[0] < 2 * MIN_FRAMES + 2 or min(frames.shape[1:]) < 2:
        return None
    params = store.metadata.parameters
    options = {k: params[k] for k in REUSED_OPTIONS if k in params}
    options["patch_shape"] = tuple(store.patch_shape)
    options["overlap"] = tuple(store.metadata.overlap)
    # Each fit sees every other frame, so at half the store's rate (unknown stays unknown).
    rate = store.frame_rate / 2 if store.frame_rate else None
    fits = [compress(frames[parity::2], None, workers=workers, hash_input=False, frame_rate=rate, **options)
            for parity in (0, 1)]
    return score_heldout(frames, fits, chunk=chunk)
