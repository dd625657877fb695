"""What a few frames read before compressing show: a zero-filled border of shifted-in edges (motion correction),
dark frames (a shutter still closed) and a step in brightness (laser power changed), each named with its remedy."""

from __future__ import annotations

import numpy as np
import pytest

from pmdcompress.io.readers import open_movie
from pmdcompress.preflight import SAMPLED_FRAMES, check_sampled_frames


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


def _camera_movie(shape=(200, 40, 48), seed=0, level=300):
    """Poisson counts over an offset of 100, with a slow swell (a population's activity) and 20 % bleaching."""
    rng = np.random.default_rng(seed)
    t = np.arange(shape[0])
    light = level * (1 + 0.1 * np.sin(2 * np.pi * t / 80)) * np.exp(-0.22 * t / shape[0])
    return (100 + rng.poisson(light[:, None, None] * np.ones(shape[1:]))).astype(np.uint16)


def test_a_zero_filled_border_is_named_with_its_crop(caplog):
    movie, shifts = _shifted_in_zeros(_camera_movie())
    sampled = np.unique(np.linspace(0, 199, SAMPLED_FRAMES).round().astype(int))
    top = int(np.clip(shifts[sampled, 0], 0, None).max())
    bottom = int(np.clip(-shifts[sampled, 0], 0, None).max())
    with caplog.at_level("WARNING", logger="pmdcompress"):
        found = check_sampled_frames(open_movie(movie))["fill_border"]
    assert found["top"] == top and found["bottom"] == bottom and found["sampled"] == len(sampled)
    assert found["frames"] == int(((np.abs(shifts[sampled]) > 0).any(axis=1)).sum())
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"<array>: {found['frames']} of {len(sampled)} frames read have a border of whole "
                           f"rows/columns equal to 0 (up to {top} rows at the top, {bottom} at the bottom")
    crop = f"{top}:{40 - bottom},{found['left']}:{48 - found['right']}"
    assert f"--crop {crop}" in line
    caplog.clear()  # the crop the warning names leaves a movie it says nothing of
    with caplog.at_level("WARNING", logger="pmdcompress"):
        assert "fill_border" not in check_sampled_frames(open_movie(movie, crop=crop))
    assert not caplog.records


@pytest.mark.parametrize("case", ["clean", "dead column", "dim counts"])
def test_nothing_is_said_of_an_ordinary_movie(caplog, case):
    """Bleaching, a slow swell, a dead column (also at the edge in every frame: a sensor's, not a shift's), or a
    dim movie whose counts are mostly 0 (whole edge rows of 0 by chance)."""
    movie = _camera_movie()
    if case == "dead column":
        movie[:, :, 7] = 0
        movie[:, :, -1] = 0
    elif case == "dim counts":  # 3p at 0.05 photons without an offset
        movie = np.random.default_rng(1).poisson(0.05, (200, 40, 48)).astype(np.uint16)
        movie[::3, 0] = 0
    with caplog.at_level("WARNING", logger="pmdcompress"):
        assert check_sampled_frames(open_movie(movie)) == {}
    assert not caplog.records


def test_dark_first_frames_are_named_with_the_frames_to_keep(caplog):
    movie = _camera_movie()
    movie[:6] = 100 + np.random.default_rng(2).poisson(2, movie[:6].shape)  # the shutter opens at frame 6
    with caplog.at_level("WARNING", logger="pmdcompress"):
        assert check_sampled_frames(open_movie(movie)) == {"dark": [0, 1, 2, 3, 4, 5]}
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("<array>: frames 0-5 of 75 read are dark (mean 102 against ")
    assert line.endswith("leave them out with --frames 6:")


@pytest.mark.parametrize("at", [37, 123])
def test_a_step_in_brightness_is_found_to_the_frame(caplog, at):
    movie = _camera_movie().astype(np.float64)
    movie[at:] = 100 + (movie[at:] - 100) * 1.6  # laser power raised
    with caplog.at_level("WARNING", logger="pmdcompress"):
        assert check_sampled_frames(open_movie(movie.astype(np.uint16))) == {"step": at}
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"<array>: its brightness steps at frame {at} (mean ")
    assert line.endswith(f"compress the parts apart (--frames 0:{at}, --frames {at}:)")


def test_frames_decoded_in_long_chunks_are_not_read_one_by_one(tmp_path):
    """An HDF5 movie chunked along all of time decodes every frame for each frame read: no sampled checks there."""
    h5py = pytest.importorskip("h5py")
    movie = _camera_movie()
    movie[:6] = 100
    with h5py.File(tmp_path / "m.h5", "w") as fh:
        fh.create_dataset("mov", data=movie, chunks=(200, 8, 8))
        fh.create_dataset("frames", data=movie, chunks=(1, 40, 48))
    with open_movie(tmp_path / "m.h5") as m:
        assert m.frames_per_chunk == 200 and check_sampled_frames(m) == {}
    with open_movie(tmp_path / "m.h5", dataset="frames") as m:
        assert m.frames_per_chunk == 1 and check_sampled_frames(m) == {"dark": [0, 1, 2, 3, 4, 5]}


def _textured_movie(shape=(100, 48, 64), seed=0, diagonal=False):
    """Poisson frames of a still image: blobs of 2-3 px, or stripes at 45 degrees (structure across lines)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    if diagonal:
        y, x = np.mgrid[: shape[1], : shape[2]]
        image = 200 + 150 * (np.sin((x + y) / 2.0) > 0.3)
    else:
        image = 200 + 3000 * ndimage.gaussian_filter(rng.random(shape[1:]), 2.0).clip(0.5) - 1500
    return rng.poisson(np.broadcast_to(image, shape)).astype(np.uint16)


@pytest.mark.parametrize("shift", [1, -2, 3])
def test_a_bidirectional_line_offset_is_found(caplog, shift):
    movie = _textured_movie()
    movie[:, 1::2] = np.roll(movie[:, 1::2], shift, axis=2)
    with caplog.at_level("WARNING", logger="pmdcompress"):
        assert check_sampled_frames(open_movie(movie)) == {"line_offset": shift}
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"<array>: its odd lines are shifted {shift:+d} px against its even lines")


@pytest.mark.parametrize("diagonal", [False, True])
def test_lines_in_register_show_no_offset(diagonal):
    assert check_sampled_frames(open_movie(_textured_movie(diagonal=diagonal))) == {}


def test_frames_with_nan_are_left_to_the_refusal_that_names_them(caplog):
    movie = _camera_movie().astype(np.float32)
    movie[3] = np.nan  # a dropped frame: no "dark" warning before the NaN refusal
    with caplog.at_level("WARNING", logger="pmdcompress"):
        assert check_sampled_frames(open_movie(movie)) == {}
    assert not caplog.records
