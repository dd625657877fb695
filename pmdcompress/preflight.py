"""Checks made before the first pass over a movie: will the output fit, is everything consistent?

A run that fails after an hour of computing for a reason knowable at the
start (a full disk, a read-only folder, inconsistent options) wastes the hour;
these checks move such failures to the first second.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from .errors import InputError
from .io.atomic import check_free_space, free_bytes
from .options import CompressOptions
from .tiling import Tiling

log = logging.getLogger("pmdcompress")

#: Bytes of a store besides its factors: metadata, chunk headers (a generous allowance).
STORE_OVERHEAD = 1 << 20


def check_compressible(movie) -> None:
    """Refuse a movie the compression cannot describe: a single pixel per frame has no spatial structure."""
    _, height, width = movie.shape
    if height * width < 2:
        raise InputError(f"{movie.name}: frames of {height}x{width} pixel; pmd compress needs at least 2 pixels "
                         "per frame")


def _largest_rank(shape, opts: CompressOptions):
    """``(T, Y, X, tiling, rank)``: the movie's sides, its patches and the most components a patch can keep."""
    t, y, x = (int(v) for v in shape)
    tiling = Tiling.create((y, x), opts.patch_shape, opts.overlap)
    py, px = tiling.patch_shape
    return t, y, x, tiling, min(int(opts.max_rank), py * px, t)


def store_size_bound(shape, opts: CompressOptions) -> int:
    """The most bytes a store of a (T, Y, X) movie can take with ``opts`` (every patch at ``max_rank``)."""
    t, y, x, tiling, rank = _largest_rank(shape, opts)
    py, px = tiling.patch_shape
    itemsize = np.dtype(opts.dtype).itemsize
    factors = tiling.n_patches * rank * (py * px + t) * max(itemsize, 4)
    maps = 8 * y * x * 4 + tiling.n_patches * (py + px) * 4
    trend = (math.ceil(t / 16) + 1) * y * x * 4 if opts.detrend else 0
    return int(factors + maps + trend + STORE_OVERHEAD)


def scratch_size_bound(shape, opts: CompressOptions) -> int:
    """The most bytes of the scratch folder that a compression writes beside its store while it runs.

    The fit buffer (at most ``fit_frames`` frames, float32) and the unfiltered temporal
    factors (every patch at ``max_rank``, int32 or float32); the folder goes when the run ends.
    """
    t, y, x, tiling, rank = _largest_rank(shape, opts)
    return int(min(int(opts.fit_frames), t) * y * x * 4 + tiling.n_patches * rank * t * 4)


def check_store_fits(output, shape, opts: CompressOptions) -> None:
    """Refuse a store (with its scratch) whose largest possible size exceeds the free space; warn when that
    is unknowable."""
    bound = store_size_bound(shape, opts) + scratch_size_bound(shape, opts)
    if not check_free_space(output, bound, f"a store at {{max_rank}} {opts.max_rank} and its scratch",
                            ("max_rank",)):
        log.warning("%s: cannot tell the free space in %s; the store may take up to %.1f MB",
                    output, os.path.dirname(os.path.abspath(output)), bound / 1e6)


def check_movie_fits(output, shape, dtype, *, compressed: bool) -> None:
    """Refuse an uncompressed movie output larger than the free space; for a compressed one, only warn."""
    nbytes = int(np.prod([int(v) for v in shape])) * np.dtype(dtype).itemsize + STORE_OVERHEAD
    if compressed:
        free = free_bytes(os.path.dirname(os.path.abspath(output)))
        if free is not None and free < nbytes:
            log.warning("%s: up to %.1f MB uncompressed but only %.1f MB are free; it may not fit",
                        output, nbytes / 1e6, free / 1e6)
        return
    if not check_free_space(output, nbytes, "the uncompressed movie"):
        log.warning("%s: cannot tell the free space; the movie takes %.1f MB", output, nbytes / 1e6)


#: Largest mean magnitude per pixel that the float32 computations of compress handle: the noise power (squares of
#: the values, summed over a segment of frames) must stay far from float32's 3.4e38.  No recording comes near it
#: (raw counts < 1e5, dF/F or photon units < 1e6); a movie above it is almost surely a units or scaling mistake.
MAX_MAGNITUDE = 1e15


def check_magnitude(total, n_frames: int, name: str, t0: int, t1: int) -> None:
    """Refuse frames [t0, t1) of the movie ``name`` whose per-pixel sums ``total`` (over ``n_frames``) are too large."""
    largest = float(np.max(np.abs(total))) / max(n_frames, 1) if len(total) else 0.0
    if not largest <= MAX_MAGNITUDE:
        raise InputError(f"{name}: values of magnitude {largest:.3g} in frames {t0}-{t1 - 1}; pmd compress needs "
                         f"|values| < {MAX_MAGNITUDE:.0e}: rescale the movie")


#: Frames read, evenly spaced, to look for a zero-filled border (a few frames: the check must cost nothing).
FILL_BORDER_SAMPLE = 32


def warn_fill_border(movie, n_sample: int = FILL_BORDER_SAMPLE) -> dict | None:
    """Warn when frames of ``movie`` have a border of whole rows/columns that are exactly 0 where its other
    pixels hardly ever are: the edges motion correction shifts in and fills with zeros (Inscopix, ImageJ,
    NoRMCorre with zero fill).  Such edges jump on and off from frame to frame: each jump is structure the
    compression must keep (raising the rank several-fold) and demixing reads as activity.  NaN borders are
    refused (:func:`non_finite_error`); a zero border cannot be told from data with certainty, so it is named
    with the crop that removes it, on frames sampled evenly.  Returns what was found (None: nothing)."""
    n_frames, height, width = movie.shape
    if height < 8 or width < 8:
        return None
    index = np.unique(np.linspace(0, n_frames - 1, min(n_sample, n_frames)).round().astype(int))
    frames = np.stack([movie.read(int(i), int(i) + 1)[0] for i in index])
    zero = frames == 0
    rows, cols = zero.all(axis=2), zero.all(axis=1)
    top, bottom, left, right = _leading(rows), _leading(rows[:, ::-1]), _leading(cols), _leading(cols[:, ::-1])
    partial = (top < height) & (top + bottom + left + right > 0)  # a border, not a frame that is all zeros
    widths = np.stack([top, bottom, left, right])[:, top < height]
    if partial.sum() < 2 or (widths == widths[:, :1]).all():  # none, or the same in every frame (a dead edge)
        return None
    y, x = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    border = ((y < top[:, None, None]) | (y >= height - bottom[:, None, None])
              | (x < left[:, None, None]) | (x >= width - right[:, None, None]))
    inside = ~border & (top[:, None, None] < height)
    if zero[inside].mean() > 0.01:  # a dim movie whose counts are often 0: a row of zeros proves nothing
        return None
    t, b, lf, r = (int(v[partial].max()) for v in (top, bottom, left, right))
    log.warning("%s: %d of %d frames sampled have a border of whole rows/columns equal to 0 (up to %d rows at the"
                " top, %d at the bottom, %d columns at the left, %d at the right), as motion correction leaves"
                " shifted-in edges: they raise the rank and can hide cells from demix; crop them away before"
                " compressing ([:, %d:%d, %d:%d] is clear of them in these frames)", movie.name, int(partial.sum()),
                len(index), t, b, lf, r, t, height - b, lf, width - r)
    return {"frames": int(partial.sum()), "sampled": len(index), "top": t, "bottom": b, "left": lf, "right": r}


def _leading(flags):
    """How many leading entries of each row of FLAGS (n, L) are True."""
    return np.where(flags.all(axis=1), flags.shape[1], np.argmin(flags, axis=1))


def non_finite_error(frames, name: str, t0: int) -> InputError:
    """The refusal of frames (n, Y, X), frames t0.. of the movie ``name``, some of which hold NaN or inf.

    Says how many frames and pixels, and whether they form a border (whole rows/columns at the edges, as motion
    correction with CaImAn's ``border_nan=True`` leaves): the user's fix then is a crop or a fill, not a new movie.
    Runs only on the way to the error, so it may look at every pixel of the chunk.
    """
    bad = ~np.isfinite(frames)
    per_frame = bad.reshape(len(bad), -1).sum(axis=1)
    hit = np.flatnonzero(per_frame)
    first, n, (height, width) = int(hit[0]), len(frames), frames.shape[1:]
    head = (f"{name}: frame {t0 + first} contains NaN or inf values ({per_frame[first]:,} of {height * width:,} "
            f"pixels; {len(hit)} of frames {t0}-{t0 + n - 1} "
            f"{'has' if len(hit) == 1 else 'have'} some)")
    masks = bad[hit]
    rows, cols = masks.all(axis=2), masks.all(axis=1)
    top, bottom = _leading(rows), _leading(rows[:, ::-1])
    left, right = _leading(cols), _leading(cols[:, ::-1])
    y, x = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    border = ((y < top[:, None, None]) | (y >= height - bottom[:, None, None])
              | (x < left[:, None, None]) | (x >= width - right[:, None, None]))
    whole = masks.reshape(len(hit), -1).all(axis=1)
    if whole.any() or not np.array_equal(border, masks):
        return InputError(f"{head}, not a border of whole rows/columns: replace them (e.g. with the neighbouring "
                          "frames' values) before compressing")
    t, b, lf, r = int(top.max()), int(bottom.max()), int(left.max()), int(right.max())
    return InputError(f"{head}: a NaN border (up to {t} rows at the top, {b} at the bottom, {lf} columns at the left, "
                      f"{r} at the right), as motion correction leaves it: crop it away (finite in every frame: "
                      f"[:, {t}:{height - b}, {lf}:{width - r}]; pmd compress has no crop option) or fill it, e.g. "
                      "CaImAn's border_nan='copy'")
