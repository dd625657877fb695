"""The paper's penalized rank-1 solver: greedy TV / trend-filter constrained components.

Buchanan, Kinsella, Zhou et al. (bioRxiv 334706), as trefide implements it (see
../shared/reference/pmd_anchors.md, section 1a); our own code.  For each
component of a patch's residual ``R`` (frames x pixels, standardised):

1. initialise from the leading singular pair of the residual (a block of
   randomized-SVD candidates, shared with the SVD solver);
2. alternate until ``u`` and ``v`` stop changing:

   - spatial: ``u~ = R^T v / ||R^T v||``, then the smoothest ``u`` in total
     variation with ``||u~ - u||^2 <= d * s_u^2`` (``s_u``: the noise level of
     ``u~``, Immerkaer's estimator);
   - temporal: ``v~ = R u``, then the smoothest ``v`` in l1 trend filtering
     (``||D^2 v||_1``) with ``||v~ - v||^2 <= T * s_v^2`` (``s_v``: the PSD
     upper-half-band noise of ``v~``);

3. debias (``v = R u``), test the roughness of the unpenalised factors
   (``R^T v_smooth`` and ``R u``) against the null (same solver on simulated
   noise), deflate ``R -= v u^T`` whether it passed or not, and stop after
   ``consecutive_failures`` failures in a row.

The kept spatial components are orthonormalised and rotated by varimax (their span is what the
pipeline projects the full movie on).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .._numba import CONTRACT, jit
from ..preprocess import noise_std_vector
from .localize import localized
from .roughness import spatial_roughness, temporal_roughness
from .svd import PatchFit, randomized_svd
from .trend_filter import trend_filter_search
from .tv2d import SEARCH_TOL_FACTOR, tv2d_search


@jit
def _laplacian_abs_sum_kernel(img):
    # sum over the valid (h-2, w-2) region of |img * [[1,-2,1],[-2,4,-2],[1,-2,1]]|
    h, w = img.shape
    total = 0.0
    for i in range(h - 2):
        a, b, c = img[i], img[i + 1], img[i + 2]
        for j in range(w - 2):
            conv = (a[j] - 2.0 * a[j + 1] + a[j + 2]) - 2.0 * (b[j] - 2.0 * b[j + 1] + b[j + 2]) \
                + (c[j] - 2.0 * c[j + 1] + c[j + 2])
            total += abs(conv)
    return total


def _norm(x):
    """``np.linalg.norm(x)`` of a real 1-D array, the same float (numpy computes ``sqrt(x.dot(x))``), without
    its argument handling: the rank-1 loop takes a dozen norms per component."""
    return np.sqrt(x.dot(x))


def image_noise_std(img: np.ndarray) -> float:
    """Immerkaer's fast noise std of an image (Laplacian-difference operator).

    J. Immerkaer, "Fast noise variance estimation", CVIU 64 (1996) 300-302.
    Images smaller than 3x3 return the plain std.
    """
    h, w = img.shape
    if h < 3 or w < 3:
        return float(np.std(img))
    total = _laplacian_abs_sum_kernel(np.ascontiguousarray(img, dtype=np.float64))
    return float(np.sqrt(np.pi / 2.0) * total / (6.0 * (w - 2) * (h - 2)))


@dataclass
class _WarmStart:
    """Where the penalty searches of the next rank-1 step start."""

    lam_u: float | None
    lam_v: float | None
    dual: np.ndarray  # (h, w) float64: the 2-D TV dual at lam_u


@jit(fastmath=CONTRACT)
def _deflate_kernel(residual, v, u):
    # residual[l, p] + (-v[l]) * u[p] as one fused multiply-add: the floats of BLAS's sger (OpenBLAS's axpy
    # kernels fuse it where the CPU has FMA), which this replaced (CONTRACT: fusing only, nothing reordered).
    n_frames, n_pix = residual.shape
    for t in range(n_frames):
        scale = -v[t]
        row = residual[t]
        for p in range(n_pix):
            row[p] = row[p] + scale * u[p]


def _deflate(residual, v, u):
    """``residual -= outer(v, u)`` in place (float32, C-ordered (L, P)).

    Compiled, without the GIL: scipy's ``sger`` (used until session 18, the same floats) holds it, so with several
    worker threads every deflation (a pass over the residual per tested component) ran alone."""
    _deflate_kernel(residual, np.asarray(v, np.float32), np.asarray(u, np.float32))


@dataclass(frozen=True)
class PMDSolver:
    """Greedy penalized rank-1 decomposition of a patch (see the module docstring)."""

    max_rank: int = 50
    consecutive_failures: int = 3
    block_rank: int = 8
    oversample: int = 8
    power_iterations: int = 2
    max_num_iter: int = 2
    tol: float = 5e-3
    search_rtol: float = 5e-2
    #: Certified accuracy of the spatial steps' 2-D TV solves (``||x - x*|| <= tv_tol ||y - mean(y)||``).  2e-2
    #: (1e-2 before session 9) is inside what the search's own window (``search_rtol``) leaves open: moving the
    #: steering alone moves the answers as much (p90 3.6 % of the image norm on neurofinder_dev's searches), and
    #: it takes 30 % fewer 2-D TV iterations.
    tv_tol: float = 2e-2
    #: Tolerances of the first spatial step of each component, when more follow (see _rank_one).  Loosening them
    #: to 0.1 / 0.3 saved 2-4 % of compress CPU on the real two-photon movies but moved ranks by 1-2 % (session 6,
    #: benchmarks/results/speed_draft.json): not kept, the stores stay as they were.
    draft_tv_tol: float = 5e-2
    draft_search_rtol: float = 0.15
    #: The 2-D TV searches certify the solves that only steer their penalty weight (outside the residual
    #: window) to this multiple of the step's tolerance, and the answer to the tolerance itself
    #: (:func:`.tv2d.tv2d_search`); 1 certifies every solve (the earlier behaviour, about 1.3x the iterations).
    tv_steer_factor: float = SEARCH_TOL_FACTOR
    #: Start every penalty search from the weights (and 2-D TV dual) of the previous
    #: one, within a component and from one component to the next: about 1.5x
    #: faster on real patches.  Off: each component starts cold, and only the
    #: weights carry over between its two iterations (the earlier behaviour).
    warm_start: bool = True
    #: Rotate the kept components of a patch by varimax (:mod:`.localize`): the same span, so the same
    #: unfiltered movie, but each source in few temporal factors, where the temporal filter's tests see it.
    localize: bool = True
    #: Decide a component by the temporal statistic of ``R u`` as soon as it passes (see _rank_one), before
    #: the last temporal step: the same decision, one trend-filter search and one product fewer per such
    #: component; off: every component gets both statistics (the null always does).
    early_keep: bool = True
    name: str = "pmd"

    def params(self) -> dict:
        return asdict(self)

    def _rank_one(self, residual, patch_shape, v, warm, keep_temporal=None):
        """Alternate the constrained spatial and temporal steps from ``v`` (L,).

        ``warm`` carries the penalty weights (and the 2-D TV dual) of the last
        search from one iteration, and (with ``warm_start``) one component, to
        the next: the searches then start next to their answer.

        ``keep_temporal``: the rank test's temporal threshold, or None.  When the last iteration's ``R u``
        already passes it, the component is kept whatever its spatial statistic: the last temporal step
        (whose smoothed ``v`` only feeds that statistic) is skipped.

        Returns ``(u, v, Ru, tp)``: the spatial and (smoothed) temporal factors, ``R u`` in float32 (the
        debiased temporal factor; None when no step was taken) and the temporal statistic of ``R u`` when
        it decided the test early (``v`` is then None), else None.
        """
        h, w = patch_shape
        n_frames, n_pix = residual.shape
        u = np.zeros(n_pix)
        ru = None
        # The trend filter's active set (its kinks) carries from one iteration's temporal step to the next: v~
        # changes little, so the second search starts next to its answer.  Only the number of active-set steps
        # changes (the optimum of each solve is unique; the same active set gives the same floats).
        active = np.zeros(max(n_frames - 2, 0), np.int8)
        if not self.warm_start:
            warm.lam_u = warm.lam_v = None
        for it in range(self.max_num_iter):
            # The first spatial step only steers the next temporal step (v~ = R u, an
            # average over pixels) and never ends the loop (u starts at zero): a looser
            # solve will do, when another iteration follows.
            draft = it == 0 and self.max_num_iter > 1
            tv_tol = max(self.tv_tol, self.draft_tv_tol) if draft else self.tv_tol
            rtol_u = max(self.search_rtol, self.draft_search_rtol) if draft else self.search_rtol
            u_tilde = residual.T @ v.astype(np.float32)
            norm = _norm(u_tilde)
            if norm == 0:
                break
            u_tilde = (u_tilde / norm).astype(np.float64)
            image = u_tilde.reshape(h, w)
            sigma_u = image_noise_std(image)
            u_new, warm.lam_u = tv2d_search(image, n_pix * sigma_u**2, lam0=warm.lam_u, rtol=rtol_u, tol=tv_tol,
                                            dual=warm.dual if self.warm_start else None,
                                            steer_tol=self.tv_steer_factor * tv_tol)
            u_new = u_new.ravel()
            nu = _norm(u_new)
            if nu == 0:
                u_new = u_tilde
            else:
                u_new = u_new / nu
            ru = residual @ u_new.astype(np.float32)
            if keep_temporal is not None and it == self.max_num_iter - 1:
                tp = temporal_roughness(ru[:, None])[0]
                if tp <= keep_temporal:
                    return u_new, None, ru, tp
            v_tilde = ru.astype(np.float64)
            sigma_v = noise_std_vector(v_tilde) if n_frames >= 8 else 0.0
            if sigma_v > 0 and n_frames >= 4:
                v_new, warm.lam_v = trend_filter_search(v_tilde, n_frames * sigma_v**2, lam0=warm.lam_v,
                                                        rtol=self.search_rtol, active=active)
            else:
                v_new = v_tilde
            nv = _norm(v_new)
            v_new = v_new / nv if nv > 0 else v_tilde / max(_norm(v_tilde), 1e-30)
            if it == self.max_num_iter - 1:  # the loop ends here whatever the change: not measured
                u, v = u_new, v_new
                break
            change = max(_norm(u_new - u), _norm(v_new - v / max(_norm(v), 1e-30)))
            u, v = u_new, v_new
            if change < self.tol:
                break
        return u, v, ru, None

    def _components(self, data, patch_shape, rng, thresholds, limit, n_null=None):
        residual = np.array(data, dtype=np.float32, copy=True)
        kept, sp_stats, t_stats = [], [], []
        failures = n_tested = 0
        warm = _WarmStart(None, None, np.zeros(patch_shape))
        while True:
            temporal, s, _ = randomized_svd(residual, self.block_rank, oversample=self.oversample,
                                            power_iterations=self.power_iterations, rng=rng)
            if temporal.shape[1] == 0 or s[0] <= 0:
                break
            keep_temporal = thresholds.temporal if self.early_keep and n_null is None else None
            for i in range(temporal.shape[1]):
                u, v_smooth, v, tp = self._rank_one(residual, patch_shape, temporal[:, i].astype(np.float64), warm,
                                                    keep_temporal)
                u32 = u.astype(np.float32)
                if tp is not None:  # kept on R u alone: the spatial statistic would not change the decision
                    sp = np.nan
                else:
                    if v is None:  # no step taken (u = 0)
                        v = residual @ u32
                    # else v = R u, the debiased temporal factor, from the last temporal step (u is its u)
                    # The test looks at unpenalised (debiased) factors: a penalised
                    # u of pure noise collapses towards a constant and would look
                    # smooth, so its roughness would say nothing.
                    u_debiased = residual.T @ v_smooth.astype(np.float32)
                    sp = spatial_roughness(u_debiased[:, None], patch_shape)[0]
                    tp = temporal_roughness(v[:, None])[0]
                n_tested += 1
                sp_stats.append(sp)
                t_stats.append(tp)
                if n_null is not None:
                    if n_tested >= n_null:
                        return sp_stats, t_stats
                    _deflate(residual, v, u32)
                    continue
                if sp <= thresholds.spatial or tp <= thresholds.temporal:
                    kept.append(u32)
                    failures = 0
                else:
                    failures += 1
                if failures >= self.consecutive_failures or len(kept) >= limit:
                    return kept, n_tested, sp_stats, t_stats  # the residual is not deflated by this last one
                _deflate(residual, v, u32)
            if n_tested >= min(data.shape):
                break
        if n_null is not None:
            return sp_stats, t_stats
        return kept, n_tested, sp_stats, t_stats

    def null_statistics(self, data, patch_shape, rng, n_components):
        sp, tp = self._components(data, patch_shape, rng, None, 0, n_null=n_components)
        return np.asarray(sp), np.asarray(tp)

    def fit(self, data, patch_shape, thresholds, rng) -> PatchFit:
        limit = min(self.max_rank, *data.shape)
        kept, n_tested, sp, tp = self._components(data, patch_shape, rng, thresholds, limit)
        if kept:
            u, _ = np.linalg.qr(np.stack(kept, axis=1).astype(np.float64))
            # the same span, each column as local as can be: one source per temporal factor (see .localize)
            u = (localized(u) if self.localize else u).astype(np.float32)
        else:
            u = np.zeros((data.shape[1], 0), np.float32)
        return PatchFit(u, n_tested, sp, tp)

