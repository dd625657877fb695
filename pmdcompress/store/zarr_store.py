"""Store files on disk: sizes and the summary that ``pmd info`` prints.

The layout itself (arrays, attributes, codecs, writer, reader) lives in
:mod:`pmdcompress.formats.store`; the lazy movie over a store
(:class:`~pmdcompress.reconstruct.PMDStore`, ``to_dask``) in
:mod:`pmdcompress.reconstruct`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..formats.store import StoreContents


def directory_bytes(path) -> int:
    """Bytes on disk of a file or folder tree."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def store_frame_rate(md) -> float | None:
    """Frames per second of a store's input, None when unknown: the metadata's ``frame_rate`` field where the
    format has one, else the rate recorded with the input (``input["frame_rate"]``)."""
    rate = getattr(md, "frame_rate", None)
    if rate is None:
        rate = md.input.get("frame_rate")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        return None
    return rate if np.isfinite(rate) and rate > 0 else None


def describe(contents: StoreContents, path: Path | None) -> dict:
    """Shape, ranks, sizes, ratios, timings and parameters as a JSON-able dict."""
    md = contents.metadata
    t, y, x = md.shape
    stored = directory_bytes(path) if path is not None else None
    raw_bytes = t * y * x * np.dtype(md.input_dtype).itemsize
    n_elements = int(contents.spatial.size + contents.temporal.size + 2 * y * x)
    ranks = contents.patch_ranks
    return {
        "path": str(path) if path else None,
        "format_version": md.format_version,
        "software_version": md.software_version,
        "method": md.method,
        "shape": [t, y, x],
        "frame_rate": store_frame_rate(md),
        "frame_rate_source": md.input.get("frame_rate_source") if store_frame_rate(md) is not None else None,
        "input_dtype": md.input_dtype,
        "factor_dtype": md.factor_dtype,
        "patch_shape": list(md.patch_shape),
        "overlap": list(md.overlap),
        "n_patches": md.n_patches,
        "total_rank": md.total_rank,
        "rank_per_patch": {
            "min": int(ranks.min()),
            "median": float(np.median(ranks)),
            "mean": float(ranks.mean()),
            "max": int(ranks.max()),
        },
        "bytes_on_disk": stored,
        "bytes_input": raw_bytes,
        "compression_ratio_bytes": (raw_bytes / stored) if stored else None,
        # the file as a whole: larger than the data read when one plane/channel or some frames were picked
        "compression_ratio_vs_input_file": (md.input["size_bytes"] / stored) if stored and md.input.get("size_bytes")
        else None,
        "compression_ratio_vs_uint16": (t * y * x * 2 / stored) if stored else None,
        "compression_ratio_elements": t * y * x / n_elements,
        "input": md.input,
        "parameters": md.parameters,
        "timings": md.timings,
        "created": md.created,
    }

