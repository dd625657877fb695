"""Per-patch solvers. Each returns the spatial components it keeps for one patch."""

from __future__ import annotations

from ..errors import OptionError
from .svd import PatchFit, PatchSolver, SVDSolver, Thresholds

__all__ = ["PatchFit", "PatchSolver", "PMDSolver", "SVDSolver", "Thresholds", "get_solver", "SOLVERS"]

SOLVERS = ("svd", "pmd")


def get_solver(method: str, **params) -> PatchSolver:
    """The solver named ``method`` ("svd" or "pmd"), built with ``params``."""
    if method == "svd":
        return SVDSolver(**params)
    if method == "pmd":
        from .pmd import PMDSolver

        return PMDSolver(**params)
    raise OptionError(f"{{method}} must be one of {', '.join(SOLVERS)}, got {method!r}", "method")
