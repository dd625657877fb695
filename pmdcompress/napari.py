"""napari reader (npe2): a ``.pmd.zarr`` store opens as one lazy movie, reconstructed as you scroll.

Registered through ``napari.yaml`` (entry point ``napari.manifest``; ``pip install
'pmdcompress[napari]'``).  napari gets a dask array whose chunks are a few whole
frames, so showing frame ``t`` reconstructs only the frames of its chunk from the
factors; the movie is never decompressed to disk or memory.  The time axis is
scaled to seconds when the store knows the frame rate.

Nothing here imports napari: the reader is plain functions that napari's plugin
engine calls, so it is tested without a display.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Frames per dask chunk: one step of the slider reconstructs at most this many frames.
VIEWER_CHUNK_FRAMES = 8


def _is_store(path) -> bool:
    """A folder holding a pmdcompress store (its zarr.json names the format)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return False
    try:
        import json

        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return isinstance(attrs.get("pmdcompress"), dict)


def get_reader(path):
    """npe2 reader contribution: a reader function for a pmdcompress store, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_store if _is_store(path) else None


def read_store(path) -> list[tuple]:
    """``[(data, add_kwargs, "image")]``: the store as one lazy (T, Y, X) float32 image layer."""
    from .reconstruct import open_store

    if isinstance(path, list):
        path = path[0]
    store = open_store(path)
    t, y, x = store.shape
    data = store.to_dask(chunks=(min(t, VIEWER_CHUNK_FRAMES), y, x))
    rate = store.frame_rate
    # Contrast from the stored mean and noise images, so napari need not read the movie to set it.
    lo = float(np.percentile(store.mean, 0.5))
    hi = float(np.percentile(store.mean, 99.9) + 3 * np.median(store.noise))
    kwargs = {
        "name": Path(path).name,
        "scale": (1.0 / rate if rate else 1.0, 1.0, 1.0),
        "axis_labels": ("t", "y", "x"),
        "units": ("second" if rate else "pixel", "pixel", "pixel"),
        "contrast_limits": (lo, hi if hi > lo else lo + 1.0),
        "metadata": {"pmdcompress": store.info(), "frame_rate": rate},
    }
    return [(data, kwargs, "image")]
