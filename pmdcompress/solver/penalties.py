"""The penalized denoisers of the rank-1 PMD solver, in one namespace.

Each penalty has its own module: :mod:`.tv1d` (Condat's 1-D total variation),
:mod:`.trend_filter` (l1 trend filtering of order 2) and :mod:`.tv2d`
(anisotropic 2-D total variation); the constrained search they share (the
smoothest ``x`` with ``||y - x||^2 <= delta``) is in :mod:`.constrained`.
This module gathers their public functions for callers that want all three.
"""

from __future__ import annotations

from .constrained import DEFAULT_RTOL, DEFAULT_SEARCH_MAX_NUM_ITER
from .trend_filter import DEFAULT_TF_MAX_NUM_ITER, constrained_trend_filter, trend_filter
from .tv1d import constrained_tv1d, tv1d_denoise
from .tv2d import DEFAULT_TV2D_MAX_NUM_ITER, DEFAULT_TV2D_TOL, constrained_tv2d, tv2d_denoise

__all__ = [
    "DEFAULT_RTOL",
    "DEFAULT_SEARCH_MAX_NUM_ITER",
    "DEFAULT_TF_MAX_NUM_ITER",
    "DEFAULT_TV2D_MAX_NUM_ITER",
    "DEFAULT_TV2D_TOL",
    "constrained_trend_filter",
    "constrained_tv1d",
    "constrained_tv2d",
    "trend_filter",
    "tv1d_denoise",
    "tv2d_denoise",
]
