"""Per-patch solvers. Each returns the spatial components it keeps for one patch."""

from __future__ import annotations

from ..errors import InputError
from .svd import PatchFit, PatchSolver, SVDSolver, Thresholds

__all__ = ["PatchFit", "PatchSolver", "SVDSolver", "Thresholds", "get_solver", "SOLVERS"]

SOLVERS = ("svd",)


def get_solver(method: str, **params) -> PatchSolver:
    """The solver named ``method`` ("svd"), built with ``params``."""
    if method == "svd":
        return SVDSolver(**params)
    raise InputError(f"--method must be one of {', '.join(SOLVERS)}, got {method!r}")
