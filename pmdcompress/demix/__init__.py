"""Demixing: neurons' footprints and traces from a compressed store, in factor space.

Public API::

    result = pmdcompress.demix.demix("movie.pmd.zarr", "movie.demix.zarr", kind="2p", fs=30.0,
                                     export=("caiman", "suite2p", "nwb"))
    scores = pmdcompress.demix.evaluate("movie.demix.zarr", "regions.json", iou=0.3)
    result = pmdcompress.demix.open_demix("movie.demix.zarr")

See docs/demix.md for the method and the output layout.  Importing this package
does not import numba (``pmd --help`` stays fast); the kernels load on first use.
"""

from __future__ import annotations

import importlib

from ..options import DemixOptions
from .result import DemixResult, open_demix

__all__ = ["DemixOptions", "DemixResult", "demix", "evaluate", "open_demix"]

# The job that runs a demixing (options, fit, result, figures, exports) is pipeline/demix.py, one layer above this
# package; ``demix`` and ``evaluate`` are re-exported from there on first use so that the public API stays
# ``pmdcompress.demix.demix`` while nothing in this package imports the pipeline at import time.
_FROM_PIPELINE = {"demix", "evaluate"}


def __getattr__(name):
    if name in _FROM_PIPELINE:
        return getattr(importlib.import_module("pmdcompress.pipeline.demix"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
