"""Varimax-localised spatial components (solver/localize.py): the same span, one source per column."""

import numpy as np

from pmdcompress.solver.localize import localized, varimax
from pmdcompress.solver.pmd import PMDSolver
from pmdcompress.solver.svd import Thresholds


def blob(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * radius**2)).ravel()


def test_varimax_separates_sources_that_a_rotation_mixed():
    """Three compact sources, orthonormalised and mixed evenly (a Helmert rotation): varimax gives each column
    back to one source (its energy there), and the rotation is orthogonal."""
    shape = (32, 32)
    sources = np.stack([blob(shape, c, 2.5) for c in ((8, 8), (8, 24), (24, 16))], axis=1)
    q, _ = np.linalg.qr(sources)
    helmert = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]])
    mixing = helmert / np.linalg.norm(helmert, axis=1, keepdims=True)
    mixed = q @ mixing
    rotation = varimax(mixed)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-10)
    out = localized(mixed)
    np.testing.assert_allclose(out.T @ out, np.eye(3), atol=1e-10)
    share = (np.abs(out.T @ (sources / np.linalg.norm(sources, axis=0)))) ** 2  # (column, source)
    assert np.all(share.max(axis=1) > 0.95), share
    assert sorted(share.argmax(axis=1)) == [0, 1, 2]
    # before the rotation the columns mix the sources
    before = (np.abs(mixed.T @ (sources / np.linalg.norm(sources, axis=0)))) ** 2
    assert before.max(axis=1).max() < 0.7
    # each column's largest loading is positive
    assert np.all(out[np.argmax(np.abs(out), axis=0), np.arange(3)] > 0)


def test_localized_components_span_what_the_solver_kept():
    """The solver with and without the rotation keeps the same span: the unfiltered reconstruction is the same."""
    rng = np.random.default_rng(1)
    shape = (24, 24)
    feet = np.stack([blob(shape, c, 2.0) for c in ((6, 6), (6, 18), (18, 12), (12, 12))])
    traces = rng.gamma(0.3, 2.0, (4, 400))
    data = (traces.T @ feet + rng.normal(0, 0.5, (400, feet.shape[1]))).astype(np.float32)
    data -= data.mean(axis=0)
    data /= data.std(axis=0)
    keep_all = Thresholds(np.inf, np.inf)
    fits = [PMDSolver(max_rank=6, localize=flag).fit(data, shape, keep_all, np.random.default_rng(2)).spatial
            for flag in (False, True)]
    assert fits[0].shape == fits[1].shape == (576, 6)
    p0, p1 = (u.astype(np.float64) @ u.T.astype(np.float64) for u in fits)
    np.testing.assert_allclose(p1, p0, atol=1e-5)
    assert not np.allclose(np.abs(fits[0]), np.abs(fits[1]), atol=1e-3)  # a different basis
