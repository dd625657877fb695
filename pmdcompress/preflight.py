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


#: Frames read by :func:`check_sampled_frames`: evenly spaced over the movie, and the first ones (a shutter may
#: open late).  A few frames: the checks must cost nothing beside the compression's own passes.
SAMPLED_FRAMES = 64
FIRST_FRAMES = 16


def sample_frames(movie):
    """Read the frames :func:`check_sampled_frames` looks at: ``(summaries, even, mean)``, the summary of every frame
    read (:func:`_frame_summary`) by frame, the evenly spaced ones among them, and those frames' mean image; ``()``
    where the check is skipped.  Reads each frame once and holds only their sum.  Apart from the checks so that a
    cluster's worker reads the frames and the driver only decides (compress)."""
    n_frames = movie.shape[0]
    if getattr(movie, "frames_per_chunk", 1) * (SAMPLED_FRAMES + FIRST_FRAMES) > 2 * n_frames:
        return ()  # frames decoded in long chunks: the frames read would cost more than the compression's reads
    even = np.unique(np.linspace(0, n_frames - 1, min(SAMPLED_FRAMES, n_frames)).round().astype(int))
    index = np.union1d(even, np.arange(min(FIRST_FRAMES, n_frames)))
    frames, total = {}, np.zeros(movie.shape[1:], np.float64)
    for i in index:
        frame = movie.read(int(i), int(i) + 1)[0]
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():
            return ()  # refused by the statistics pass, which names the frames and any NaN border
        frames[int(i)] = _frame_summary(frame)
        if i in even:
            total += frame
    return frames, [int(i) for i in even], total / len(even)


def check_sampled_frames(movie, sampled: tuple | None = None) -> dict:
    """Warn of what a few frames read show to harm the compression or demixing: a zero-filled border of
    shifted-in edges (:func:`_fill_border`), dark frames and a step in brightness (:func:`_brightness`), odd lines
    shifted against even ones (:func:`_line_offset`).  Returns what was found (``fill_border``, ``dark``,
    ``step``, ``line_offset``).  ``sampled``: what :func:`sample_frames` returned for this movie, where it ran
    elsewhere (default: read here)."""
    if sampled is None:
        sampled = sample_frames(movie)
    if not sampled:
        return {}
    frames, even, mean = sampled
    found = {}
    border = _fill_border(movie, {i: frames[i] for i in even})
    if border:
        found["fill_border"] = border
    found.update(_brightness(movie, frames, even))
    offset = _line_offset(mean)
    if offset:
        found["line_offset"] = offset
        log.warning("%s: its odd lines are shifted %+d px against its even lines (a bidirectional scan's phase left"
                    " uncorrected?); denoising keeps less of such a movie (a simulation shifted 2 px: 1.3x the error"
                    " against its truth): correct it first (ScanImage's or suite2p's bidiphase)", movie.name, offset)
    return found


#: Shifts (px) tried between lines, and the correlation a line offset must reach and gain over no shift.
LINE_SHIFTS = 6
LINE_CORRELATION = 0.3
LINE_GAIN = 0.1


def _line_offset(mean: np.ndarray) -> int:
    """The shift of odd lines against even lines of a mean image (a bidirectional scan's phase error), 0 when none.

    Even line ``2j`` against odd ``2j + 1`` and odd ``2j + 1`` against even ``2j + 2`` are each matched by the
    whole-pixel shift that correlates their x-gradients best: a phase error shifts the first by ``+d`` and the
    second by ``-d``, structure running across lines (a diagonal dendrite) both the same way.  Only a match that is
    clear (:data:`LINE_CORRELATION`) and beats no shift (:data:`LINE_GAIN`) counts: a flat or noisy image shows none.
    """
    height, width = mean.shape
    n = (height - 1) // 2
    if n < 4 or width < 4 * LINE_SHIFTS:
        return 0
    grad = np.diff(mean - mean.mean(axis=1, keepdims=True), axis=1)
    shifts, gains = [], []
    for a, b in ((grad[0 : 2 * n : 2], grad[1 : 2 * n + 1 : 2]), (grad[1 : 2 * n + 1 : 2], grad[2 : 2 * n + 2 : 2])):
        corr = []
        for k in range(-LINE_SHIFTS, LINE_SHIFTS + 1):
            x0, x1 = max(0, -k), min(width - 1, width - 1 - k)
            pa, pb = a[:, x0:x1], b[:, x0 + k : x1 + k]
            corr.append(float((pa * pb).sum() / max(np.sqrt((pa * pa).sum() * (pb * pb).sum()), 1e-300)))
        best = int(np.argmax(corr))
        shifts.append(best - LINE_SHIFTS)
        gains.append((corr[best], corr[best] - corr[LINE_SHIFTS]))
    clear = all(c >= LINE_CORRELATION and g >= LINE_GAIN for c, g in gains)
    return shifts[0] if clear and shifts[0] == -shifts[1] and shifts[0] != 0 else 0


def _frame_summary(frame) -> dict:
    """A frame's mean, 1st percentile, and its border of whole rows/columns equal to 0 with the zeros inside it."""
    zero = frame == 0
    rows, cols = zero.all(axis=1), zero.all(axis=0)
    top, bottom, left, right = (int(_leading(f[None])[0]) for f in (rows, rows[::-1], cols, cols[::-1]))
    inside = zero[top : len(rows) - bottom, left : len(cols) - right]
    return {"mean": float(np.mean(frame, dtype=np.float64)), "p1": float(np.percentile(frame, 1)),
            "border": (top, bottom, left, right), "zeros_inside": int(inside.sum()), "inside": int(inside.size)}


def _fill_border(movie, frames: dict) -> dict | None:
    """Warn when frames have a border of whole rows/columns that are exactly 0 where the movie's other pixels
    hardly ever are: the edges motion correction shifts in and fills with zeros (Inscopix, ImageJ, NoRMCorre
    with zero fill).  Such edges come and go from frame to frame: each is structure the compression must keep
    (a 64 x 64 one-photon simulation with 0-6 px borders: rank 93 against 24) and demixing takes for activity
    (0 of 15 cells found).  NaN borders are refused (:func:`non_finite_error`); a zero border cannot be told from
    data with certainty, so it is named with the crop that removes it."""
    height, width = movie.shape[1:]
    if height < 8 or width < 8:
        return None
    lit = {i: f for i, f in frames.items() if f["inside"]}  # a frame all zeros is dark, not a border
    widths = np.array([f["border"] for f in lit.values()]).reshape(-1, 4)
    bordered = int((widths.sum(axis=1) > 0).sum())
    if bordered < 2 or (widths == widths[:1]).all():  # none, or the same in every frame: a dead edge
        return None
    if sum(f["zeros_inside"] for f in lit.values()) > 0.01 * sum(f["inside"] for f in lit.values()):
        return None  # a dim movie whose counts are often 0: a row of zeros proves nothing
    t, b, lf, r = (int(v) for v in widths.max(axis=0))
    log.warning("%s: %d of %d frames read have a border of whole rows/columns equal to 0 (up to %d rows at the top,"
                " %d at the bottom, %d columns at the left, %d at the right), as motion correction leaves"
                " shifted-in edges: they raise the rank and can hide cells from demix; crop them away"
                " (--crop %d:%d,%d:%d is clear of them in these frames)", movie.name, bordered,
                len(frames), t, b, lf, r, t, height - b, lf, width - r)
    return {"frames": bordered, "sampled": len(frames), "top": t, "bottom": b, "left": lf, "right": r}


#: A frame is dark where it keeps less than this share of the movie's light (its mean above the floor: the 1st
#: percentile of the darkest frame's pixels, about the offset where some frame is dark) ...
DARK_SHARE = 0.5
#: ... and a level change is a step beyond this many robust SDs of neighbouring samples' differences and this
#: share of the movie's light.
STEP_Z = 10.0
STEP_SHARE = 0.2
#: Sampled frames on each side of a step whose medians it compares.
STEP_WINDOW = 8


def _brightness(movie, frames: dict, even: list) -> dict:
    """Warn of dark frames (a shutter still closed, the laser off) and of a step in the movie's brightness (laser
    power or gain changed mid-recording).  Either is one signal shared by every pixel, far above any cell's: the
    compression keeps it, and demixing, which finds cells by how their pixels fluctuate together, then finds few
    (a 64 x 64 simulation: 14 of 20 cells; with 8 dark first frames: 5; with its second half at twice the power:
    6)."""
    from scipy import ndimage

    floor = min(f["p1"] for f in frames.values())
    values = np.array([frames[i]["mean"] for i in even])
    # the level about each frame: a running median of the evenly spaced frames, which follows bleaching, a slow
    # swell and a step, and which a few dark frames among them do not move
    running = ndimage.median_filter(values, min(2 * STEP_WINDOW + 1, len(values)), mode="reflect")
    level = np.interp(np.arange(movie.shape[0]), even, running)
    found: dict = {}
    step = _brightness_step(movie, even, values, floor)
    if step is not None:
        after, low, high = step
        found["step"] = after
        log.warning("%s: its brightness steps at frame %d (mean %.4g before, %.4g after: laser power or gain"
                    " changed?); a change of every pixel at once leaves demixing few cells: compress the parts"
                    " apart (--frames 0:%d, --frames %d:)", movie.name, after, low, high, after, after)
    dark = [i for i, f in frames.items() if f["mean"] - floor < DARK_SHARE * (level[i] - floor)]
    if dark:
        found["dark"] = dark
        first = [i for i in dark if i < FIRST_FRAMES]
        hint = f"; leave them out with --frames {first[-1] + 1}:" if first and first == list(range(len(first))) \
            else ""
        darkest = min(dark, key=lambda i: frames[i]["mean"])
        log.warning("%s: frame%s %s of %d read %s dark (mean %.4g against %.4g: shutter closed, laser off?); a dip"
                    " of every pixel at once leaves demixing few cells%s", movie.name, "s" * (len(dark) > 1),
                    _frame_list(dark), len(frames), "are" if len(dark) > 1 else "is", frames[darkest]["mean"],
                    level[darkest], hint)
    return found


def _brightness_step(movie, sampled, values, floor):
    """``(first frame after, level before, level after)`` of a step in the sampled frames' means ``values``, or
    None: the split where the medians of :data:`STEP_WINDOW` samples on each side differ most, found to the frame
    by halving, kept where it is large (:data:`STEP_Z`, :data:`STEP_SHARE`) and made from one frame to the next (a
    population's slow swell, 2p-dense: +15 % over 20 frames, is none)."""
    w = STEP_WINDOW
    if len(values) < 2 * w:
        return None
    spread = 1.4826 * float(np.median(np.abs(np.diff(values)))) / np.sqrt(2)
    steps = [np.median(values[k : k + w]) - np.median(values[k - w : k]) for k in range(w, len(values) - w + 1)]
    k = int(np.argmax(np.abs(steps))) + w
    low, high = float(np.median(values[k - w : k])), float(np.median(values[k : k + w]))
    if not abs(high - low) > max(STEP_Z * spread, STEP_SHARE * (max(low, high) - floor)):
        return None
    j = k - w + int(np.argmax(np.abs(np.diff(values[k - w : k + w]))))
    (before, at_before), (after, at_after) = ((int(sampled[i]), float(values[i])) for i in (j, j + 1))
    while after - before > 1:
        mid = (before + after) // 2
        value = float(np.mean(movie.read(mid, mid + 1), dtype=np.float64))
        if abs(value - low) < abs(value - high):
            before, at_before = mid, value
        else:
            after, at_after = mid, value
    return (after, low, high) if abs(at_after - at_before) >= 0.5 * abs(high - low) else None


def _frame_list(frames) -> str:
    """``0-7, 120`` for [0, ..., 7, 120]."""
    runs, start = [], frames[0]
    for a, b in zip(frames, [*frames[1:], None], strict=True):
        if b != a + 1:
            runs.append(f"{start}-{a}" if a > start else f"{a}")
            start = b
    return ", ".join(runs)


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
                      f"--crop {t}:{height - b},{lf}:{width - r}) or fill it, e.g. CaImAn's border_nan='copy'")
