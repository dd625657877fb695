"""Zero-filled borders of motion-corrected movies: named, with the crop that removes them, before compressing."""

from __future__ import annotations

import numpy as np
import pytest

from pmdcompress.io.readers import open_movie
from pmdcompress.preflight import warn_fill_border


def _shifted_in_zeros(movie, seed=0, most=5):
    """Each frame's edges set to 0 over its shift (a random walk of at most ``most`` pixels), as motion
    correction with zero fill leaves them."""
    rng = np.random.default_rng(seed)
    out = movie.copy()
    shifts = np.clip(np.round(np.cumsum(rng.normal(0, 0.8, (len(movie), 2)), axis=0)), -most, most).astype(int)
    for frame, (dy, dx) in zip(out, shifts, strict=True):
        frame[: max(dy, 0)] = 0
        frame[frame.shape[0] + min(dy, 0):] = 0
        frame[:, : max(dx, 0)] = 0
        frame[:, frame.shape[1] + min(dx, 0):] = 0
    return out, shifts


def _camera_movie(shape=(200, 40, 48), seed=0):
    return np.random.default_rng(seed).poisson(300, shape).astype(np.uint16)


def test_a_zero_filled_border_is_named_with_its_crop(caplog):
    movie, shifts = _shifted_in_zeros(_camera_movie())
    sampled = np.unique(np.linspace(0, 199, 32).round().astype(int))
    top = int(np.clip(shifts[sampled, 0], 0, None).max())
    bottom = int(np.clip(-shifts[sampled, 0], 0, None).max())
    with caplog.at_level("WARNING", logger="pmdcompress"):
        found = warn_fill_border(open_movie(movie))
    assert found["top"] == top and found["bottom"] == bottom and found["sampled"] == 32
    assert found["frames"] == int(((np.abs(shifts[sampled]) > 0).any(axis=1)).sum())
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"<array>: {found['frames']} of 32 frames sampled have a border of whole rows/columns "
                           f"equal to 0 (up to {top} rows at the top, {bottom} at the bottom")
    assert f"[:, {top}:{40 - bottom}, {found['left']}:{48 - found['right']}]" in line


@pytest.mark.parametrize("case", ["clean", "dead column", "dim counts", "dark frames"])
def test_no_warning_without_a_fill_border(caplog, case):
    movie = _camera_movie()
    if case == "dead column":  # inside the field, and at the edge in every frame: a sensor's, not a shift's
        movie[:, :, 7] = 0
        movie[:, :, -1] = 0
    elif case == "dim counts":  # 3p at 0.05 photons: most counts are 0, and whole edge rows by chance
        movie = np.random.default_rng(1).poisson(0.05, (200, 40, 48)).astype(np.uint16)
        movie[::3, 0] = 0
    elif case == "dark frames":  # the shutter closed: whole frames of 0 are not a border
        movie[:20] = 0
    with caplog.at_level("WARNING", logger="pmdcompress"):
        assert warn_fill_border(open_movie(movie)) is None
    assert not caplog.records
