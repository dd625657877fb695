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

from ._api import demix, evaluate
from .result import DemixResult, open_demix

__all__ = ["DemixOptions", "DemixResult", "demix", "evaluate", "open_demix"]


def __getattr__(name):
    if name == "DemixOptions":
        from ..options import DemixOptions

        return DemixOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
