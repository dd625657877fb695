"""Per-patch truncated SVD with a roughness test against a simulated null.

The solver sees one patch at a time, as a (frames, pixels) matrix that is
already mean-subtracted and divided by the per-pixel noise std.  It returns the
spatial components it keeps (orthonormal columns); the temporal factors are
re-fitted later on the full movie by the pipeline, so any solver that returns
spatial components slots in (see :class:`PatchSolver`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from .roughness import spatial_roughness, temporal_roughness


@dataclass(frozen=True)
class Thresholds:
    """A component is kept when ``spatial <= self.spatial or temporal <= self.temporal``."""

    spatial: float
    temporal: float


@dataclass
class PatchFit:
    """What a solver keeps for one patch.

    Attributes
    ----------
    spatial : ndarray, shape (pixels, k), float32
        Kept spatial components, orthonormal columns.
    n_tested : int
        Candidates tested before stopping.
    """

    spatial: np.ndarray
    n_tested: int
    spatial_stats: list = field(default_factory=list)
    temporal_stats: list = field(default_factory=list)

    @property
    def rank(self) -> int:
        return self.spatial.shape[1]


class PatchSolver(Protocol):
    """What the pipeline needs from a per-patch solver."""

    name: str

    def fit(self, data: np.ndarray, patch_shape, thresholds: Thresholds, rng) -> PatchFit: ...

    def null_statistics(self, data: np.ndarray, patch_shape, rng, n_components: int): ...

    def params(self) -> dict: ...


def _orthonormalize(z: np.ndarray, passes: int = 2) -> np.ndarray:
    """Orthonormal basis of the columns of a tall ``z`` by Cholesky-QR (float64 Gram).

    Twice as fast as Householder QR for the thin matrices here; a second pass
    restores orthogonality lost to rounding (``passes=1``: a basis of the same
    span, orthonormal to about ``cond(z)**2 * 1e-16``, enough between power
    iterations).  Rank-deficient columns fall back to Householder QR.
    """
    for _ in range(passes):
        gram = z.T.astype(np.float64) @ z.astype(np.float64)
        try:
            chol = np.linalg.cholesky(gram + 1e-12 * np.trace(gram) * np.eye(len(gram)))
        except np.linalg.LinAlgError:
            return np.linalg.qr(z)[0]
        z = (z @ np.linalg.inv(chol.T).astype(z.dtype)).astype(np.float32)
    return z


def randomized_svd(data: np.ndarray, rank: int, *, oversample: int, power_iterations: int, rng):
    """Leading singular triplets of ``data`` (L, P) by a seeded randomized range finder.

    Returns
    -------
    temporal : ndarray (L, r), singular_values : ndarray (r,), spatial : ndarray (P, r)
        With ``r = min(rank, L, P)``; ``data ~ temporal @ diag(s) @ spatial.T``.
    """
    n_rows, n_cols = data.shape
    r = min(rank, n_rows, n_cols)
    width = min(r + oversample, n_rows, n_cols)
    if width >= min(n_rows, n_cols) // 2:
        # Small matrices: the exact SVD costs no more than the sketch.
        u, s, vt = np.linalg.svd(data.astype(np.float64), full_matrices=False)
        return u[:, :r].astype(np.float32), s[:r], vt[:r].T.astype(np.float32)
    omega = rng.standard_normal((n_cols, width), dtype=np.float32)
    # Between power iterations only the span matters: one Cholesky-QR pass each, two for the last q.
    q = _orthonormalize(data @ omega, 1 if power_iterations else 2)
    for i in range(power_iterations):
        z = _orthonormalize(data.T @ q, 1)
        q = _orthonormalize(data @ z, 2 if i == power_iterations - 1 else 1)
    b = (q.T @ data).astype(np.float64)  # (width, P)
    # SVD of the short, wide b through its small Gram matrix.
    evals, evecs = np.linalg.eigh(b @ b.T)
    order = np.argsort(evals)[::-1][:r]
    s = np.sqrt(np.maximum(evals[order], 0.0))
    ub = evecs[:, order]
    spatial = (b.T @ ub) / np.where(s > 0, s, 1.0)
    temporal = q @ ub.astype(np.float32)
    return temporal, s, spatial.astype(np.float32)


@dataclass(frozen=True)
class SVDSolver:
    """Greedy truncated SVD of a patch, components kept while they beat the null.

    Candidates come in blocks of ``block_rank`` from a randomized SVD of the
    residual; each is tested in order, failures are discarded (never kept) and
    the search stops after ``consecutive_failures`` failures in a row or at
    ``max_rank`` kept components.
    """

    max_rank: int = 50
    block_rank: int = 8
    oversample: int = 8
    power_iterations: int = 2
    consecutive_failures: int = 3
    name: str = "svd"

    def params(self) -> dict:
        return asdict(self)

    def _candidates(self, data, rng):
        return randomized_svd(
            data, self.block_rank, oversample=self.oversample,
            power_iterations=self.power_iterations, rng=rng,
        )

    def null_statistics(self, data, patch_shape, rng, n_components):
        """Roughness of the first ``n_components`` candidates of a noise patch."""
        temporal, _, spatial = self._candidates(data, rng)
        n = min(n_components, spatial.shape[1])
        return spatial_roughness(spatial[:, :n], patch_shape), temporal_roughness(temporal[:, :n])

    def fit(self, data, patch_shape, thresholds, rng) -> PatchFit:
        """Keep the components of ``data`` (L, P) that beat ``thresholds``."""
        residual = np.array(data, dtype=np.float32, copy=True)
        kept: list[np.ndarray] = []
        sp_stats: list[float] = []
        t_stats: list[float] = []
        failures = 0
        n_tested = 0
        limit = min(self.max_rank, *residual.shape)
        while len(kept) < limit and failures < self.consecutive_failures:
            temporal, s, spatial = self._candidates(residual, rng)
            if spatial.shape[1] == 0 or s[0] <= 0:
                break
            sp = spatial_roughness(spatial, patch_shape)
            tp = temporal_roughness(temporal)
            for i in range(spatial.shape[1]):
                n_tested += 1
                sp_stats.append(float(sp[i]))
                t_stats.append(float(tp[i]))
                if sp[i] <= thresholds.spatial or tp[i] <= thresholds.temporal:
                    kept.append(spatial[:, i])
                    failures = 0
                    if len(kept) >= limit:
                        break
                else:
                    failures += 1
                    if failures >= self.consecutive_failures:
                        break
            # Deflate every tested candidate (kept or not) by projecting its
            # spatial direction out, so later candidates stay orthogonal.
            residual -= (residual @ spatial) @ spatial.T
            if n_tested >= min(residual.shape):
                break
        u = np.stack(kept, axis=1) if kept else np.zeros((data.shape[1], 0), np.float32)
        if u.shape[1] > 1:
            # Re-orthonormalise against float32 drift across deflation rounds.
            u, _ = np.linalg.qr(u)
        return PatchFit(u.astype(np.float32), n_tested, sp_stats, t_stats)
