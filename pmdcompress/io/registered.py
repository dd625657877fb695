"""Readers for the movies registration tools write: suite2p's ``data.bin`` and CaImAn's ``.mmap``.

Both are headerless memory-mappable binaries whose shape lives elsewhere:

- suite2p: ``data.bin`` (and ``data_chan2.bin``) are int16 frames (T, Ly, Lx), C order.
  Ly, Lx, nframes and fs come from the plane folder's ``ops.npy`` (suite2p 0.x, and 1.x
  with ``save_ops_orig``), else from ``db.npy`` (Ly, Lx, nframes) and ``settings.npy``
  (fs) of suite2p 1.x.  These are pickles: they go through the one restricted loader
  (:func:`pmdcompress.io.safe_pickle.load_npy`).  Without them the caller gives the
  frame shape (and the rate) explicitly.
- CaImAn: ``<base>_d1_<Y>_d2_<X>_d3_1_order_<C|F>_frames_<T>_.mmap``, float32, a
  (pixels, T) matrix in the named order whose pixels are flattened in Fortran order
  (CaImAn's ``load_memmap``).  Order F (what motion correction writes) stores whole
  frames contiguously; order C stores each pixel's time course contiguously, so
  reading frames touches the whole file (slow on long movies).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .safe_pickle import load_npy

log = logging.getLogger("pmdcompress")

SUITE2P_DTYPE = np.dtype("<i2")
CAIMAN_DTYPE = np.dtype("<f4")
_CAIMAN_NAME = re.compile(r"_d1_(\d+)_d2_(\d+)_d3_(\d+)_order_([CF])_frames_(\d+)_?\.mmap$")


def _positive(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def suite2p_geometry(path: Path, name: str) -> dict:
    """Ly, Lx, nframes and fs of a suite2p binary from the pickles beside it ({} when none)."""
    folder = path.parent
    found: dict = {}
    for fname in ("ops.npy", "db.npy", "settings.npy"):
        f = folder / fname
        if not f.is_file():
            continue
        d = load_npy(f)
        if not isinstance(d, dict):
            raise InputError(f"{f}: expected a suite2p dict, found {type(d).__name__}")
        for key in ("Ly", "Lx", "nframes", "fs"):
            if key not in found and d.get(key) is not None:
                found[key] = d[key]
                found.setdefault("source", fname)
    return found


def open_suite2p_binary(path: Path, name: str, *, frame_shape=None):
    """``(memmap (T, Y, X) int16, frame_rate or None, rate source)`` of a suite2p ``data.bin``."""
    geometry = {} if frame_shape is not None else suite2p_geometry(path, name)
    if frame_shape is not None:
        ly, lx = (int(n) for n in frame_shape)
        origin = "the frame_shape given"
    elif "Ly" in geometry and "Lx" in geometry:
        ly, lx = int(geometry["Ly"]), int(geometry["Lx"])
        origin = geometry["source"]
    else:
        raise InputError(
            f"{name}: a raw binary without suite2p's ops.npy (or db.npy) beside it; give its frame size"
            " with {frame_shape} HxW (suite2p's Ly x Lx; int16 frames) and its rate with {frame_rate}",
            "frame_shape", "frame_rate",
        )
    if ly < 1 or lx < 1:
        raise InputError(f"{name}: frame shape {ly}x{lx} from {origin} is not positive")
    size = path.stat().st_size
    frame_bytes = ly * lx * SUITE2P_DTYPE.itemsize
    n_frames, extra = divmod(size, frame_bytes)
    if extra:
        raise InputError(
            f"{name}: {size} bytes is not a whole number of {ly}x{lx} int16 frames (from {origin});"
            " the frame shape is wrong or the file is cut short"
        )
    if n_frames < 1:
        raise InputError(f"{name}: empty suite2p binary")
    expected = geometry.get("nframes")
    if expected is not None and int(expected) != n_frames and path.name == "data.bin":
        raise InputError(f"{name}: holds {n_frames} frames but {geometry['source']} says nframes={int(expected)};"
                         " the file is cut short or belongs to another run")
    mm = np.memmap(path, dtype=SUITE2P_DTYPE, mode="r", shape=(n_frames, ly, lx))
    rate = _positive(geometry.get("fs"))
    return mm, rate, (f"suite2p {geometry['source']} fs" if rate else None)


def caiman_geometry(path: Path, name: str) -> tuple[int, int, int, str, int]:
    """``(d1, d2, d3, order, T)`` from a CaImAn memmap's file name."""
    m = _CAIMAN_NAME.search(path.name)
    if m is None:
        raise InputError(
            f"{name}: not a CaImAn memmap name (expected ..._d1_Y_d2_X_d3_1_order_C|F_frames_T_.mmap);"
            " CaImAn keeps the shape only in the file name"
        )
    d1, d2, d3, order, t = m.groups()
    return int(d1), int(d2), int(d3), order, int(t)


def open_caiman_mmap(path: Path, name: str):
    """A read-only (T, Y, X) float32 view of a CaImAn ``.mmap`` file."""
    d1, d2, d3, order, t = caiman_geometry(path, name)
    if d3 != 1:
        raise InputError(f"{name}: a 3-D CaImAn memmap (d3={d3}); only single-plane movies are supported")
    expected = d1 * d2 * t * CAIMAN_DTYPE.itemsize
    size = path.stat().st_size
    if size != expected:
        raise InputError(f"{name}: {size} bytes but its name says {d1}x{d2}x{t} float32 ({expected} bytes)")
    if order == "F":
        # Element (pixel p, frame t) at p + t * P: frames contiguous, pixels x fastest along rows (F order).
        mm = np.memmap(path, dtype=CAIMAN_DTYPE, mode="r", shape=(t, d2, d1))
        return mm.transpose(0, 2, 1)
    log.warning("%s: an order-C CaImAn memmap keeps each pixel's time course together; reading frames touches"
                " the whole file (save with order='F' for speed)", name)
    mm = np.memmap(path, dtype=CAIMAN_DTYPE, mode="r", shape=(d2, d1, t))  # (x, y, t)
    return mm.transpose(2, 1, 0)
