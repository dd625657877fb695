"""Two components on one cell, left apart by the fit, are merged after the soma-shape step when their traces are
related beyond chance (``pipeline.related_traces``, Bartlett's null); overlapping sources with unrelated traces
stay two."""

import numpy as np

from pmdcompress.demix import hals
from pmdcompress.demix.pipeline import COHERENCE_SDS, PART_OVERLAP, _merge, related_traces


def _ar1(rng, n, t, rho):
    out = np.zeros((n, t))
    e = rng.standard_normal((n, t))
    for k in range(1, t):
        out[:, k] = rho * out[:, k - 1] + e[:, k]
    return out


def test_related_traces_is_bartletts_null_computed_directly():
    rng = np.random.default_rng(0)
    c = _ar1(rng, 6, 400, 0.8)
    c[1] = c[0] + 0.5 * rng.standard_normal(400)  # 0 and 1 share a signal
    got = related_traces(c)
    t = c.shape[1]
    want = np.zeros((6, 6), bool)
    for i in range(6):
        for j in range(6):
            a = c[i] - c[i].mean()
            b = c[j] - c[j].mean()
            r = (a @ b) / np.sqrt((a @ a) * (b @ b))
            ra = np.clip((a[1:] @ a[:-1]) / (a @ a), 0, 0.99)
            rb = np.clip((b[1:] @ b[:-1]) / (b @ b), 0, 0.99)
            want[i, j] = r > COHERENCE_SDS * np.sqrt((1 + ra * rb) / ((1 - ra * rb) * t))
    np.testing.assert_array_equal(got, want)
    assert got[0, 1] and got[1, 0]
    # Independent autocorrelated traces: their chance correlations (SD about 0.08 here, not 1 / sqrt(T) = 0.05)
    # stay under the null level.
    assert not got[2:, 2:][~np.eye(4, dtype=bool)].any()


def _two_footprints(shift):
    """A soma (disc of radius 5) and a smaller disc (radius 3.5) ``shift`` pixels to its right, in one 23 x 23 box."""
    yy, xx = np.mgrid[:23, :23]
    soma = np.clip(1.0 - np.hypot(yy - 11, xx - 11) / 6.0, 0, None)
    soma[np.hypot(yy - 11, xx - 11) > 5] = 0
    part = np.clip(1.0 - np.hypot(yy - 11, xx - 11 - shift) / 4.5, 0, None)
    part[np.hypot(yy - 11, xx - 11 - shift) > 3.5] = 0
    values = np.stack([soma, part]).astype(np.float32)
    return hals.Footprints(np.array([[5, 5], [5, 5]]), values, values > 0, (40, 40))


def _overlap(fp):
    masks = fp.values > 0.2 * fp.values.reshape(fp.n, -1).max(axis=1)[:, None, None]
    return (masks[0] & masks[1]).sum() / masks.sum(axis=(1, 2)).min()


def test_a_part_inside_a_soma_with_a_related_trace_is_merged_and_an_unrelated_source_is_not():
    rng = np.random.default_rng(1)
    t = 500
    soma_trace = _ar1(rng, 1, t, 0.9)[0]
    fp = _two_footprints(2)
    assert _overlap(fp) > PART_OVERLAP
    # one cell split in two: both traces carry its transients, each with its own noise (correlation about 0.5,
    # below what the fit's own merge asks of touching footprints, 0.8)
    c = np.stack([soma_trace + 1.0 * rng.standard_normal(t), 0.6 * soma_trace + 1.0 * rng.standard_normal(t)])
    assert 0.2 < np.corrcoef(c)[0, 1] < 0.8
    merged, c2, fixed = _merge(_two_footprints(2), c.copy(), np.inf, np.zeros(2, bool), mask_threshold=0.2,
                               max_overlap=PART_OVERLAP, related_only=True)
    assert merged.n == 1 and c2.shape == (1, t) and fixed.shape == (1,)
    # the merged footprint covers both (union of supports)
    assert merged.support[0].sum() >= fp.support[0].sum()

    # a second source under the soma with a trace of its own (independent, as autocorrelated as the soma's):
    # its correlation with the soma's is within chance, and it stays apart -- even at a positive correlation that
    # the fit's duplicate test (any positive correlation) would have merged
    other = _ar1(rng, 1, t, 0.9)[0]
    c = np.stack([soma_trace + 0.3 * rng.standard_normal(t), other + 0.3 * rng.standard_normal(t)])
    assert not related_traces(c)[0, 1]
    kept, _, _ = _merge(_two_footprints(2), c.copy(), np.inf, np.zeros(2, bool), mask_threshold=0.2,
                        max_overlap=PART_OVERLAP, related_only=True)
    assert kept.n == 2


def test_touching_components_with_related_traces_are_not_parts():
    rng = np.random.default_rng(2)
    t = 500
    shared = _ar1(rng, 1, t, 0.9)[0]
    fp = _two_footprints(7)  # side by side: under half of the smaller shared
    assert 0 < _overlap(fp) < PART_OVERLAP
    c = np.stack([shared + 0.5 * rng.standard_normal(t), shared + 0.5 * rng.standard_normal(t)])
    assert related_traces(c)[0, 1]
    kept, _, _ = _merge(fp, c.copy(), np.inf, np.zeros(2, bool), mask_threshold=0.2, max_overlap=PART_OVERLAP,
                        related_only=True)
    assert kept.n == 2
