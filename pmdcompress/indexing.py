"""numpy's indexing for arrays read on demand (a compressed store, a movie file): one rule, two readers.

A key is resolved to the frames it selects and the rectangle that holds the rows and columns it selects; only
those are read, in runs of consecutive frames, into one block, and numpy then indexes that block with the key
moved to the block's origin.  So ``x[::100]`` of a 20000-frame movie reads 200 frames, a list of frames reads
each once, and a (Y, X) boolean mask reads the rectangle around its region.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def lazy_getitem(shape: tuple[int, int, int], dtype, key,
                 read_into: Callable[[int, int, tuple[int, int], tuple[int, int], np.ndarray], object]):
    """``x[key]`` of a (T, Y, X) array ``x`` of ``shape`` whose frames ``read_into(t0, t1, (y0, y1), (x0, x1),
    out)`` writes into ``out`` (``(t1 - t0, y1 - y0, x1 - x0)`` of ``dtype``).

    Integers, slices (any step), integer lists and arrays, boolean masks (a (Y, X) mask spans both axes),
    ``...`` and ``None`` index as in numpy, with numpy's result; a boolean scalar is refused (numpy reads it as
    a new axis, Python as the integer 1: neither is meant).
    """
    key = _expand_key(shape, key)
    axes = [i for i, k in enumerate(key) if k is not None and k is not Ellipsis]
    needed = [_needed(key[i], axis, n) for axis, (i, n) in enumerate(zip(axes, shape, strict=True))]
    frames = np.unique(needed[0])
    (y0, y1), (x0, x1) = ((int(v.min()), int(v.max()) + 1) if v.size else (0, 0) for v in needed[1:])
    block = np.empty((frames.size, y1 - y0, x1 - x0), dtype)
    # consecutive runs of the frames asked for, each made by one read into its part of the block
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, frames.size], strict=True):
        if hi > lo:
            read_into(int(frames[lo]), int(frames[hi - 1]) + 1, (y0, y1), (x0, x1), block[lo:hi])
    # the key again, on the block: each axis's entry moved to the block's origin (the frames by their position)
    local = list(key)
    for i, n, base in zip(axes, shape, (None, y0, x0), strict=True):
        local[i] = _rebase(key[i], n, base, frames)
    return block[tuple(local)]


def _expand_key(shape, key) -> tuple:
    """``key`` as a tuple of three axis entries (integers, slices, integer arrays) and any ``None``s; a boolean
    array becomes the integer arrays of its true entries (as numpy reads it: a (Y, X) mask takes the pixels of a
    region), once its shape is checked against the axes it spans."""
    if not isinstance(key, tuple):
        key = (key,)
    entries = []
    for k in key:
        if isinstance(k, bool | np.bool_):
            raise IndexError("a boolean does not index a movie; give an integer, a slice or an index array")
        if isinstance(k, list | np.ndarray):
            empty_list = isinstance(k, list) and len(k) == 0
            k = np.asarray(k, np.intp) if empty_list else np.asarray(k)  # numpy reads [] as no integers
            if k.ndim == 0 and k.dtype.kind in "iu":
                k = int(k)  # a 0-d integer array (what numpy's reductions return) indexes as its integer
        entries.append(k)
    spans = [k.ndim if isinstance(k, np.ndarray) and k.dtype == bool else 0 if k is None or k is Ellipsis
             else 1 for k in entries]
    ellipses = [i for i, k in enumerate(entries) if k is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if sum(spans) > 3:
        raise IndexError(f"too many indices for a (T, Y, X) movie: {sum(spans)}")
    fill = [slice(None)] * (3 - sum(spans))
    if ellipses and fill:
        i = ellipses[0]
        entries[i : i + 1], spans[i : i + 1] = fill, [1] * len(fill)
    elif not ellipses:
        entries, spans = entries + fill, spans + [1] * len(fill)
    # (an ellipsis that covers no axis is kept: numpy sees it between two index arrays and orders the result by it)
    out, axis = [], 0
    for k, span in zip(entries, spans, strict=True):
        if isinstance(k, np.ndarray) and k.dtype == bool:
            if k.shape != tuple(shape[axis : axis + span]):
                raise IndexError(f"a boolean index of shape {k.shape} does not fit axes {axis}-{axis + span - 1}"
                                 f" of the movie's {tuple(shape)}")
            out.extend(np.nonzero(k))
        else:
            out.append(k)
        axis += span
    return tuple(out)


def _wrapped(k, n: int):
    """Integer index (or array of them) ``k`` of an axis of length ``n`` counted from its start."""
    if isinstance(k, int | np.integer):
        return int(k) + n if k < 0 else int(k)
    return np.where(k < 0, k + n, k)


def _needed(k, axis: int, n: int) -> np.ndarray:
    """The coordinates along ``axis`` (of length ``n``) that entry ``k`` selects, checked against ``n``."""
    if isinstance(k, int | np.integer):
        i = _wrapped(k, n)
        if not 0 <= i < n:
            raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
        return np.array([i])
    if isinstance(k, slice):
        return np.arange(*k.indices(n))
    values = np.asarray(k)
    if values.size == 0:
        return np.zeros(0, np.int64)
    if values.dtype.kind not in "iu":
        raise IndexError(f"only integers, slices, integer or boolean arrays and None index a movie, got "
                         f"{type(k).__name__} of {values.dtype}")
    if values.min() < -n or values.max() >= n:
        bad = values[(values < -n) | (values >= n)].flat[0]
        raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
    return _wrapped(values, n).ravel()


def _rebase(k, n: int, base, frames: np.ndarray):
    """Entry ``k`` (of an axis of length ``n``) on the block made for it.  In space ``base`` is the block's first
    row or column; in time (``base`` None) the block holds ``frames`` (sorted, unique) and ``k`` becomes their
    positions."""
    if isinstance(k, slice):
        start, stop, step = k.indices(n)
        if len(range(start, stop, step)) == 0:
            return slice(0, 0)
        if base is None:  # the block holds exactly the slice's frames, in order
            return slice(None) if step > 0 else slice(None, None, -1)
        # base is the slice's smallest element: its last with a negative step, which None reaches
        return slice(start - base, stop - base, step) if step > 0 else slice(start - base, None, step)
    i = _wrapped(k if isinstance(k, int | np.integer) else np.asarray(k), n)
    if base is not None:
        return i - base
    position = np.searchsorted(frames, i)
    return int(position) if isinstance(i, int) else position
