"""The report's photon split in less CPU, with the same numbers (session 13).

The split's noise statistics (signal masks, pooled and halves correlations) cost most of ``pmd report``'s time.
Two steps were made cheaper without moving a float: the kept-pair counts at every lag (``k0``/``k1``) are counted
on the signal mask's bytes in one numba pass (:func:`~pmdcompress.report.kernels.kept_pairs`) instead of two
float64 einsums per lag on its 0/1 values, and :func:`~pmdcompress.report.kernels.median_mad` sorts contiguous
rows.  Each is pinned here to the plain-numpy formula it replaces, and the correlations it feeds to the previous
code path on a small simulated movie.
"""

import math

import numpy as np
import pytest
import tifffile

from pmdcompress.report import kernels
from pmdcompress.report import photon_split as ps
from pmdcompress.simulate import simulate_movie


def _einsum_kept_pairs(keep, m, m2, lags):
    """The plain-numpy twin of :func:`kernels.kept_pairs`: the einsums of the previous ``_add_lagged_moments``
    on the mask's 0/1 floats."""
    k = keep.astype(np.float64)
    h, w = keep.shape[1:]
    out = np.zeros((len(lags), 2, h, w))
    for i, lag in enumerate(lags):
        p, q = ps._lag_slices(h, w, lag)
        kx, ky = k[:, p[0], p[1]], k[:, q[0], q[1]]
        a, b = kx.shape[1:]
        out[i, 0, :a, :b] = np.einsum("tij,tij->ij", kx[:m], ky[:m])
        out[i, 1, :a, :b] = 0.5 * (np.einsum("tij,tij->ij", kx[:m2], ky[1 : m2 + 1])
                                   + np.einsum("tij,tij->ij", kx[1 : m2 + 1], ky[:m2]))
    return out


@pytest.mark.parametrize("shape, m, m2", [((30, 9, 11), 29, 28), ((30, 9, 11), 28, 28), ((12, 5, 4), 12, 11),
                                          ((3, 3, 3), 2, 2), ((257, 20, 24), 256, 256), ((1, 4, 4), 1, 0)])
def test_kept_pairs_equal_the_einsums_of_the_mask(shape, m, m2):
    rng = np.random.default_rng(sum(shape))
    keep = rng.random(shape) > 0.3
    lags = [(0, 0)] + [lag for lag in ps._lags(2) if lag[0] < shape[1] and abs(lag[1]) < shape[2]]
    got = kernels.kept_pairs(keep, m, m2, lags)
    want = _einsum_kept_pairs(keep, m, m2, lags)
    assert np.array_equal(got, want)
    # Real counts, not zeros: every kept difference of the first m frames pairs with itself at lag (0, 0).
    assert np.array_equal(got[0, 0], keep[:m].sum(axis=0))
    assert got[0, 0].sum() > 0


def test_kept_pairs_of_no_lags_or_frames_are_empty():
    keep = np.ones((0, 4, 5), bool)
    assert kernels.kept_pairs(keep, 0, 0, [(0, 1)]).shape == (1, 2, 4, 5)
    assert not kernels.kept_pairs(keep, 0, 0, [(0, 1)]).any()
    assert kernels.kept_pairs(np.ones((3, 4, 5), bool), 3, 2, []).shape == (0, 2, 4, 5)


@pytest.mark.parametrize("n", [1, 2, 9, 20, 256, 257])
def test_median_mad_equals_numpy_medians(n, monkeypatch):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 7, 13))
    x[:, 0] = np.round(x[:, 0], 1)  # ties
    x[:, 1] = 3.0  # constant pixels: a deviation of 0
    monkeypatch.setattr(kernels, "MEDIAN_SORT_PIXELS", 10)  # several blocks, the last one short
    med, mad = kernels.median_mad(x)
    want_med = np.median(x, axis=0)
    assert np.array_equal(med, want_med)
    assert np.array_equal(mad, np.median(np.abs(x - want_med), axis=0))
    assert not np.shares_memory(med, x)


def _median_mad_by_walk(buf):
    # Plain twin of preprocess.median_mad_of_sorted: the deviations of the two halves walked outwards from the
    # middle and merged value by value up to the median's rank.
    m = buf.size
    h = m // 2
    med = buf[h] if m % 2 == 1 else 0.5 * (buf[h - 1] + buf[h])
    lo, hi = (h - 1, h + 1) if m % 2 == 1 else (h - 1, h)
    devs = [0.0] if m % 2 == 1 else []
    while len(devs) <= h:
        dl = med - buf[lo] if lo >= 0 else np.inf
        dr = buf[hi] - med if hi < m else np.inf
        if dl <= dr:
            devs.append(dl)
            lo -= 1
        else:
            devs.append(dr)
            hi += 1
    return med, (devs[h] if m % 2 == 1 else 0.5 * (devs[h - 1] + devs[h]))


@pytest.mark.parametrize("n", [*range(1, 12), 64, 255, 256, 257])
def test_sorted_median_mad_equals_the_walk_and_numpy(n):
    from pmdcompress.preprocess import median_mad_of_sorted

    rng = np.random.default_rng(n)
    for x in (rng.standard_normal(n), np.round(rng.standard_normal(n) * 2), rng.exponential(1.0, n),
              np.full(n, 1.5), np.r_[np.zeros(n - n // 3), np.ones(n // 3)]):
        buf = np.sort(x)
        med, mad = median_mad_of_sorted(buf)
        assert (med, mad) == _median_mad_by_walk(buf)
        assert med == np.median(x) and mad == np.median(np.abs(x - np.median(x)))


@pytest.mark.parametrize("shape", [(40, 9, 11), (3, 4, 2), (1, 1, 5), (257, 16, 12)])
def test_score_sums_equal_the_einsums_of_float64_copies(shape):
    rng = np.random.default_rng(shape[0])
    a = rng.poisson(3.0, shape).astype(np.float32)
    b = rng.poisson(3.0, shape).astype(np.int32)
    d = (0.7 * a + rng.standard_normal(shape)).astype(np.float32)
    lags = ((1, 0), (-1, 0), (0, 1), (2, -1))
    got = kernels.score_sums(a, b, d, lags)
    A, B, D = (np.asarray(x, np.float64) for x in (a, b, d))
    r = A - D
    want = [np.einsum("tij,tij->ij", D - B, D - B), np.einsum("tij,tij->ij", A - B, A - B), B.sum(axis=0),
            np.einsum("tij,tij->ij", B, B), r.sum(axis=0), np.einsum("tij,tij->ij", r, B), A.sum(axis=0)]
    h, w = shape[1:]
    for lag in lags:
        here, there = ps._lag_slices(h, w, lag)
        bq = B[:, there[0], there[1]]
        for v in (bq.sum(axis=0), np.einsum("tij,tij->ij", r[:, here[0], here[1]], bq),
                  np.einsum("tij,tij->ij", A[:, here[0], here[1]], bq)):
            full = np.zeros((h, w))
            full[here] = v
            want.append(full)
    assert len(want) == got.shape[0] == len(kernels.SCORE_SUMS) + 3 * len(lags)
    for k, v in enumerate(want):
        assert np.array_equal(got[k], v), k
    assert got[2].sum() == b.sum()  # the sums are real: B's total


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_dither_variance_sum_equals_the_numpy_formula(dtype):
    rng = np.random.default_rng(7)
    frames = (100 + 4.0 * rng.poisson(3.0, (30, 6, 9)) + rng.normal(0, 2, (30, 6, 9))).astype(dtype)
    offset = 100 + rng.normal(0, 1, (6, 9))
    block = (np.asarray(frames, np.float64) - offset) / 3.7
    f = block - np.floor(block)
    want = (f * (1.0 - f)).sum(axis=0)
    assert np.array_equal(kernels.dither_variance_sum(frames, offset, 3.7), want)
    assert np.array_equal(kernels.dither_variance_sum(frames, 99.5, 3.7),
                          (lambda g: (g * (1.0 - g)).sum(axis=0))(((np.asarray(frames, np.float64) - 99.5) / 3.7)
                                                                 % 1.0))
    assert 0 < want.mean() / 30 <= 0.25


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 2, 9])
def test_first_differences_equal_numpy_diff(dtype, n):
    rng = np.random.default_rng(n)
    block = (rng.random((n, 5, 7)) * 200).astype(dtype)
    got = kernels.first_differences(block)
    want = np.diff(np.asarray(block, np.float64), axis=0)
    assert got.shape == want.shape and got.flags.c_contiguous
    assert np.array_equal(got, want)
    if n > 1:
        assert np.abs(got).sum() > 0


# ------------------------------------------------------------------------ the previous code path, kept as a twin


def _previous_lagged(acc, pairs, first, second, keep, m, m2):
    for a, (p, q) in zip(acc, pairs, strict=True):
        x, y, kx, ky = first[:, p[0], p[1]], second[:, q[0], q[1]], keep[:, p[0], p[1]], keep[:, q[0], q[1]]
        a["c0"] += np.einsum("tij,tij->ij", x[:m], y[:m])
        a["c1"] += 0.5 * (np.einsum("tij,tij->ij", x[:m2], y[1 : m2 + 1])
                          + np.einsum("tij,tij->ij", x[1 : m2 + 1], y[:m2]))
        a["k0"] += np.einsum("tij,tij->ij", kx[:m], ky[:m])
        a["k1"] += 0.5 * (np.einsum("tij,tij->ij", kx[:m2], ky[1 : m2 + 1])
                          + np.einsum("tij,tij->ij", kx[1 : m2 + 1], ky[:m2]))


def _previous_pooled(frames, *, radius=ps.CORRELATION_RADIUS, chunk=256, clean=False, variance=None):
    n, h, w = frames.shape
    lags = [(dy, dx) for dy, dx in ps._lags(radius) if dy < h and abs(dx) < w]
    pairs = [ps._lag_slices(h, w, lag) for lag in lags]
    names = ("c0", "c1", "k0", "k1")
    acc = [{k: np.zeros((h - dy, w - abs(dx))) for k in names} for dy, dx in lags]
    own = {k: np.zeros((h, w)) for k in names}
    for t0 in range(0, n - 1, chunk):
        d = ps._differences(frames[t0 : min(t0 + chunk + 2, n)], clean)
        if d.shape[0] < 2:
            continue
        keep = (~ps._signal_mask(d) if d.shape[0] >= 8 else np.ones(d.shape, bool)).astype(np.float64)
        d *= keep
        m = min(chunk, d.shape[0])
        m2 = min(m, d.shape[0] - 1)
        if variance is None:
            own["c0"] += np.einsum("tij,tij->ij", d[:m], d[:m])
            own["c1"] += np.einsum("tij,tij->ij", d[:m2], d[1 : m2 + 1])
            own["k0"] += keep[:m].sum(axis=0)
            own["k1"] += np.einsum("tij,tij->ij", keep[:m2], keep[1 : m2 + 1])
        _previous_lagged(acc, pairs, d, d, keep, m, m2)
    if variance is None:
        var = np.clip(ps._extrapolated(own["c0"], own["k0"], own["c1"], own["k1"]), 0.0, None)
    else:
        var = np.clip(np.asarray(variance, np.float64), 0.0, None)
    out = {}
    for lag, a, (p, q) in zip(lags, acc, pairs, strict=True):
        den = np.sqrt(var[p] * var[q]).sum()
        cov = ps._extrapolated(a["c0"], a["k0"], a["c1"], a["k1"])
        out[lag] = float(cov.sum() / den) if den > 0 else math.nan
    return out


def _previous_halves(first, second, *, radius=1, chunk=256, clean=False):
    n, h, w = first.shape
    lags = [(0, 0)] + [(dy, dx) for dy, dx in ps._lags(radius) if dy < h and abs(dx) < w]
    pairs = [ps._lag_slices(h, w, lag) for lag in lags]
    names = ("c0", "c1", "k0", "k1")
    acc = [{k: np.zeros((h - dy, w - abs(dx))) for k in names} for dy, dx in lags]
    own = {k: np.zeros((2, h, w)) for k in names}
    for t0 in range(0, n - 1, chunk):
        block = slice(t0, min(t0 + chunk + 2, n))
        d1, d2 = ps._differences(first[block]), ps._differences(second[block])
        if d1.shape[0] < 2:
            continue
        if clean and d1.shape[0] >= ps.COHERENT_MIN_FRAMES:
            basis = ps._shared_basis(d1 + d2)
            d1, d2 = ps._project_out(d1, basis), ps._project_out(d2, basis)
        keep = (~ps._signal_mask(d1 + d2) if d1.shape[0] >= 8 else np.ones(d1.shape, bool)).astype(np.float64)
        d1, d2 = d1 * keep, d2 * keep
        m = min(chunk, d1.shape[0])
        m2 = min(m, d1.shape[0] - 1)
        for i, d in enumerate((d1, d2)):
            own["c0"][i] += np.einsum("tij,tij->ij", d[:m], d[:m])
            own["c1"][i] += np.einsum("tij,tij->ij", d[:m2], d[1 : m2 + 1])
            own["k0"][i] += keep[:m].sum(axis=0)
            own["k1"][i] += np.einsum("tij,tij->ij", keep[:m2], keep[1 : m2 + 1])
        _previous_lagged(acc, pairs, d1, d2, keep, m, m2)

    def extrapolated(s):
        return ps._extrapolated(s["c0"], s["k0"], s["c1"], s["k1"], "three-lag")

    var = np.clip(extrapolated(own), 0.0, None)
    return {lag: float(extrapolated(a).sum() / np.sqrt(var[0][p] * var[1][q]).sum())
            for lag, a, (p, q) in zip(lags, acc, pairs, strict=True)}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A small simulated two-photon movie (``pmd simulate --kind 2p-real``) and two binomial halves of it."""
    path = tmp_path_factory.mktemp("sim") / "movie.tif"
    info = simulate_movie(path, n_frames=560, shape=(40, 36), n_neurons=8, seed=3, photons=3.0, kind="2p-real")
    raw = tifffile.imread(info["movie"]).astype(np.float64)
    rng = np.random.default_rng(0)
    counts = np.clip(np.round((raw - raw.min()) / 4.0), 0, None).astype(np.int64)
    a = rng.binomial(counts, 0.5).astype(np.float64)
    return raw, a, counts - a


@pytest.mark.parametrize("clean", [False, True])
def test_pooled_correlations_equal_the_previous_code_path(simulated, clean):
    raw = simulated[0]
    for variance in (None, np.full(raw.shape[1:], float(np.var(np.diff(raw, axis=0))) / 2)):
        got = ps.pooled_correlations(raw, clean=clean, variance=variance)
        want = _previous_pooled(raw, clean=clean, variance=variance)
        assert got.keys() == want.keys() and len(got) == 12
        assert got == want  # the same floats
        assert any(v != 0.0 for v in got.values())


@pytest.mark.parametrize("clean, radius", [(False, 1), (True, 1), (False, 2)])
def test_halves_correlations_equal_the_previous_code_path(simulated, clean, radius):
    _, a, b = simulated
    got = ps.halves_correlations(a, b, clean=clean, radius=radius)
    assert got == _previous_halves(a, b, clean=clean, radius=radius)
    assert all(math.isfinite(v) for v in got.values()) and got[(0, 0)] != 0.0


def test_split_statistics_equal_the_previous_code_path_on_short_movies():
    # Fewer than 8 differences (no signal mask) and a single chunk shorter than the lag's m2.
    rng = np.random.default_rng(5)
    for n in (3, 7, 9):
        x = rng.poisson(4.0, (n, 10, 12)).astype(np.float64)
        y = rng.poisson(4.0, (n, 10, 12)).astype(np.float64)
        assert ps.pooled_correlations(x) == _previous_pooled(x)
        assert ps.halves_correlations(x, y) == _previous_halves(x, y)
