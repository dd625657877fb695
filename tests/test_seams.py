"""Regressions found by end-to-end QA at the seams between packages (pipeline, formats, CLI, README)."""

import logging

import pmdcompress
from conftest import blobs_movie
from pmdcompress.pipeline import heldout


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
