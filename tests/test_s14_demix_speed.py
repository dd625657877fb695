"""The high-pass inside a fill border, row by row in one compiled pass, equals scipy's sparse formula to the bit."""

import numpy as np
import pytest
import scipy.sparse as sp

from pmdcompress.demix.factors import _smooth
from pmdcompress.demix.pipeline import _highpass_inside, _without, border_mask


def _reference(u, uh, border, dims, sigma):
    """The sparse formula the kernel replaces (session 13's code): ``uh - diag(scale) (u - uh)``, border emptied."""
    mask = border_mask(border, dims)
    share = _smooth((~mask).astype(np.float64)[None], sigma)[0].ravel()
    scale = np.where(share > 0, 1.0 / np.maximum(share, 1e-12) - 1.0, 0.0)
    scale[mask.ravel()] = 0.0
    out = uh - sp.diags(scale.astype(np.float32)) @ (u - uh)
    out = _without(sp.csr_matrix(out, dtype=np.float32), mask)
    out.sort_indices()
    return out


def _random_pair(rng, dims, k):
    n = dims[0] * dims[1]
    u = sp.random(n, k, density=0.05, random_state=rng, dtype=np.float32, format="csr")
    u.data[rng.random(u.nnz) < 0.05] = 0.0  # explicit zeros, kept as entries
    # unsorted column indices within rows, as the store's factors come
    for r in range(n):
        lo, hi = u.indptr[r], u.indptr[r + 1]
        perm = rng.permutation(hi - lo)
        u.indices[lo:hi] = u.indices[lo:hi][perm]
        u.data[lo:hi] = u.data[lo:hi][perm]
    u.has_sorted_indices = False
    uh = sp.random(n, k, density=0.3, random_state=rng, dtype=np.float32, format="csr")
    uh = (uh + u).tocsr()  # overlapping columns: both present, one present, and cancelling pairs below
    uh.sort_indices()
    same = rng.random(uh.nnz) < 0.05
    rows = np.repeat(np.arange(n), np.diff(uh.indptr))
    dense_u = u.toarray()
    uh.data[same] = dense_u[rows[same], uh.indices[same]]  # u - uh exactly 0 there: scipy drops the entry
    return u, uh


@pytest.mark.parametrize("border, sigma", [((1, 3, 3, 3), 2.5), ((0, 0, 4, 0), 1.5), ((2, 2, 0, 0), 4.0),
                                           ((0, 0, 0, 0), 2.0)])
def test_highpass_inside_equals_the_sparse_formula(border, sigma):
    rng = np.random.default_rng(sum(border))
    dims, k = (24, 20), 30
    u, uh = _random_pair(rng, dims, k)
    got = _highpass_inside(u, uh, border, dims, sigma)
    ref = _reference(u, uh, border, dims, sigma)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.array_equal(got.indptr, ref.indptr)
    assert np.array_equal(got.indices, ref.indices)
    assert np.array_equal(got.data, ref.data)  # to the bit
    assert not np.any(got.data == 0)
    inside = ~border_mask(border, dims).ravel()
    assert np.all(np.diff(got.indptr)[~inside] == 0)  # the border's rows are empty
