"""The cell radius estimate and the refit it triggers (demix/pipeline.py fit())."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import pmdcompress
from pmdcompress.demix import pipeline
from pmdcompress.demix.factors import load_factors
from pmdcompress.options import DemixOptions
from pmdcompress.simulate import simulate_movie


@pytest.fixture(scope="module")
def big_cells(tmp_path_factory):
    """Somata of radius 9-11 px: the first pass at the default 6 px is redone at the estimate."""
    folder = tmp_path_factory.mktemp("radius")
    movie = folder / "big.tif"
    simulate_movie(movie, n_frames=600, shape=(112, 112), n_neurons=14, photons=2.0, seed=1,
                   regime={"radius": (9.0, 11.0)})
    return pmdcompress.compress(movie, folder / "big.pmd.zarr")


def test_first_pass_stops_at_its_quality_tests_with_the_whole_pass_estimate(big_cells):
    store = big_cells
    first = replace(DemixOptions(fs=30.0), cell_radius=pipeline.DEFAULT_CELL_RADIUS)
    whole, _, _ = pipeline._fit(store, load_factors(store), first, 0.0, radius_given=False)
    whole_estimate = pipeline.estimate_cell_radius(whole.footprints, whole.fixed)
    assert whole_estimate > pipeline.REFIT_RATIO * pipeline.DEFAULT_CELL_RADIUS  # this movie refits
    seen = []
    stopped, _, _ = pipeline._fit(store, load_factors(store), first, 0.0, radius_given=False,
                                  stop_if=lambda estimate: seen.append(estimate) or True)
    assert isinstance(stopped, pipeline._Stopped)
    # The estimate counts the active footprints only: the mean-image components the stopped pass never adds,
    # and its final traces, change nothing in it.
    assert seen == [whole_estimate] and stopped.estimate == whole_estimate
    kept, _, _ = pipeline._fit(store, load_factors(store), first, 0.0, radius_given=False,
                               stop_if=lambda estimate: False)
    np.testing.assert_array_equal(kept.footprints.values, whole.footprints.values)
    np.testing.assert_array_equal(kept.traces, whole.traces)
    # fit() refits at that estimate and reports it, with the first pass's time.
    model, _, opts = pipeline.fit(store, DemixOptions(fs=30.0))
    assert model.cell_radius_estimate == whole_estimate
    assert opts.cell_radius == pytest.approx(whole_estimate)
    assert 0 < model.timings["first_pass_s"] < model.timings["total_fit_s"]


@pytest.mark.parametrize("sigma", [8.4, 13.0])
def test_highpass_spatial_is_the_frame_filtered_factors(big_cells, sigma):
    # Filtering each patch's components on the patch grown by the filter's reach equals filtering the whole
    # frame (reflected at the frame's edges): the sparse high-passed factors, assembled in place, are exact.
    from pmdcompress.demix.factors import _smooth, highpass_spatial

    store = big_cells
    fac = load_factors(store)
    uh = highpass_spatial(store, fac, sigma)
    assert uh.shape == fac.U.shape and uh.indices.dtype == np.int32
    dense = fac.U.toarray().T.reshape(-1, *fac.dims)
    want = (dense - _smooth(dense, sigma)).reshape(dense.shape[0], -1).T
    np.testing.assert_allclose(uh.toarray(), want, atol=1e-5 * np.abs(want).max())
