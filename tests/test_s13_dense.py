"""Session 13, dense two-photon fields: a dim firing soma with a dark nucleus is kept on spatial consistency.

On ``pmd simulate --kind 2p-real`` fields (half the somata with a dark nucleus, 0.8 photons per pixel) the SNR floor
of two-photon demixing refused firing somata whose footprints matched the data at their own transients (r_value
0.9-0.99) because their masks, nucleus included, had no mean-image contrast (the weak path asked for >= 1 robust SD).
"""

from __future__ import annotations

import numpy as np
import pytest

import pmdcompress
import pmdcompress.demix as dm
from pmdcompress.demix.matching import evaluate_regions, load_regions
from pmdcompress.demix.metrics import _shape
from pmdcompress.demix.pipeline import BRIGHT_SOMA_CONTRAST
from pmdcompress.simulate import load_truth, simulate_movie


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    movie = root / "dense.tif"
    simulate_movie(movie, n_frames=1500, shape=(64, 64), seed=1, kind="2p-real")
    store = pmdcompress.compress(movie, root / "dense.pmd.zarr", workers=2)
    return {"root": root, "movie": movie, "store": store}


def test_a_dim_firing_soma_without_mean_image_contrast_is_found_and_no_weak_component_is_false(dense, tmp_path):
    """At least one active component under the SNR floor (5) and without mean-image contrast (< 1 robust SD) is
    matched to a firing simulated soma, and every active component under the floor that is no clear soma of the mean
    image lies on a firing soma: the weak path finds dim cells and adds no false ones here."""
    res = dm.demix(dense["store"], tmp_path / "d.demix.zarr", fs=7.0, figures=False)
    truth = load_truth(dense["movie"])
    firing = truth.spikes.sum(axis=1) > 0
    pred, true = load_regions(res), load_regions(dense["movie"])
    masks = true.masks.tocsc()
    height, width = true.dims
    soma = np.array([_shape(masks[:, [j]].toarray().reshape(1, height, width))[2][0] < 2.0 for j in range(true.n)])
    matched = {p["pred"]: p["true"] for p in evaluate_regions(pred, true)["pairs"]}
    met = res.metrics
    active = ~np.asarray(met["seeded_from_mean"], bool)
    weak = active & (met["snr"] < 5.0) & (met["mean_contrast"] < BRIGHT_SOMA_CONTRAST)
    assert weak.any()
    for j in np.flatnonzero(weak):
        assert j in matched, f"weak component {j} matches no simulated source"
        assert firing[matched[j]] and soma[matched[j]], f"weak component {j} is on a silent soma or a dendrite"
    dim = [j for j in np.flatnonzero(weak) if met["mean_contrast"][j] < 1.0]
    assert dim, "no dim firing soma without mean-image contrast was kept"
