"""Regressions found by end-to-end QA at the seams between packages (pipeline, formats, CLI, README)."""

import logging

import numpy as np

import pmdcompress
from conftest import blobs_movie
from pmdcompress.pipeline import heldout
from pmdcompress.pipeline.batch import plan_batch


def _store(tmp_path, frame_rate):
    movie, _ = blobs_movie(n_frames=60, shape=(24, 24), n_sources=2)
    store = pmdcompress.compress(movie, tmp_path / "m.pmd.zarr", workers=1, patch_shape=24, frame_rate=frame_rate)
    return movie, store


def test_heldout_fits_see_half_the_rate(tmp_path, monkeypatch):
    movie, store = _store(tmp_path, 30.0)
    real, rates = heldout.compress, []

    def spy(frames, output, **kwargs):
        rates.append(kwargs.get("frame_rate"))
        return real(frames, output, **kwargs)

    monkeypatch.setattr(heldout, "compress", spy)
    assert heldout.heldout_validation(movie, store, workers=1) is not None
    assert rates == [15.0, 15.0]  # every other frame


def test_heldout_fits_of_an_unknown_rate_do_not_warn(tmp_path, caplog):
    # `pmd report` printed "<array>: frame rate unknown ... stored as unknown" twice: once per in-memory fit.
    movie, store = _store(tmp_path, None)
    caplog.clear()  # the store's own compress warns, rightly
    with caplog.at_level(logging.WARNING, logger="pmdcompress"):
        assert heldout.heldout_validation(movie, store, workers=1) is not None
    assert not [r for r in caplog.records if "frame rate" in r.getMessage()]


def test_batch_folders_of_same_named_movies_say_which_movie(tmp_path):
    for rec in ("m1", "m2"):
        (tmp_path / rec).mkdir()
        np.save(tmp_path / rec / "movie.npy", np.zeros((12, 4, 4), np.float32))
    jobs = plan_batch([tmp_path / "m1" / "movie.npy", tmp_path / "m2" / "movie.npy"])
    assert [j.name for j in jobs] == ["m1/movie", "m2/movie"]  # not movie-<digest>
    same = plan_batch([{"path": tmp_path / "m1" / "movie.npy", "plane": 0},
                       {"path": tmp_path / "m1" / "movie.npy", "plane": 1}])
    assert len({j.name for j in same}) == 2  # one file twice: still told apart

