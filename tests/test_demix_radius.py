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


def test_local_footprint_area_of_a_disk_under_a_flat_background():
    from pmdcompress.demix.hals import local_footprint_area

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:25, :25]
    for radius in (3.0, 5.0, 8.0):
        disk = ((yy - 13) ** 2 + (xx - 11) ** 2 <= radius**2).astype(np.float64)
        cell = np.maximum(rng.standard_normal(400), 0) ** 2
        neuropil = rng.standard_normal(400)
        tile = disk[None] * cell[:, None, None] + 0.8 * neuropil[:, None, None]
        tile += 0.3 * rng.standard_normal(tile.shape)
        tile -= tile.mean(axis=0)
        area = local_footprint_area(tile.astype(np.float32), (13, 11))
        assert abs(area - disk.sum()) <= 0.1 * disk.sum() + 2, (radius, area, disk.sum())
    assert local_footprint_area(np.zeros((50, 9, 9), np.float32), (4, 4)) == 0


def test_seeds_guess_the_radius_before_the_fit(big_cells):
    # Somata of 9-11 px: the brightest seeds' own footprints say so before any fit, and the one pass runs at
    # their radius (no refit: the fitted estimate agrees within REFIT_RATIO).
    store = big_cells
    model, _, opts = pipeline.fit(store, DemixOptions(fs=30.0))
    prior = model.cell_radius_prior
    assert prior is not None and 8.0 < prior < 14.0
    assert opts.cell_radius == prior and "first_pass_s" not in model.timings
    assert 1 / pipeline.REFIT_RATIO <= model.cell_radius_estimate / prior <= pipeline.REFIT_RATIO
    # The same pass as one started at that radius.
    direct, _, _ = pipeline._fit(store, load_factors(store), replace(DemixOptions(fs=30.0), cell_radius=prior), 0.0,
                                 radius_given=False)
    np.testing.assert_array_equal(model.footprints.values, direct.footprints.values)
    np.testing.assert_array_equal(model.traces, direct.traces)


def test_first_pass_stops_at_its_quality_tests_with_the_whole_pass_estimate(big_cells, monkeypatch):
    monkeypatch.setattr(pipeline, "GUESS_FROM_SEEDS", False)
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
