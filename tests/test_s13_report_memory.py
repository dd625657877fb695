"""The report's photon split keeps its movies on disk (scratch files read a chunk at a time): the same numbers as in
memory, memory that does not grow with the split's frames, and no scratch left behind.

Until session 13 the split held the crop's raw frames, counts, both halves, ``A`` in float32 and the denoised
``A`` whole, for the balanced and the whole-movie split: ``pmd report`` of a 256 x 256 movie peaked at 3.2 GB
(1280 frames of the crop, :data:`~pmdcompress.report.photon_split.REPORT_BYTES` each).
"""

import errno
import os
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from pmdcompress.report import photon_split as ps
from pmdcompress.report.frame_files import FrameFile, Frames, Scratch


def _movie(t, *, shape=(40, 44), seed=0, blur=0.0, read_noise_only=False):
    """A uint16 shot-noise movie (gain 4, offset 100) with a few blinking sources; ``blur`` shares each photon with
    the 4 neighbours (correlated noise); ``read_noise_only``: a float32 movie of the same signal with a noise that
    does not grow with it (no shot-noise curve: the Gaussian split)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    feet = np.array([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
                     for cy, cx in rng.uniform(5, min(h, w) - 5, (6, 2))])
    traces = 1.0 + 3.0 * (rng.random((6, t)) < 0.03)
    traces = ndimage.gaussian_filter1d(traces, 2.0, axis=1)
    rate = 3.0 * (0.5 + np.einsum("kt,kij->tij", traces, feet))
    if read_noise_only:
        return (100.0 + 4.0 * rate + rng.normal(0, 4.0, rate.shape)).astype(np.float32)
    counts = rng.poisson(rate).astype(np.float64)
    if blur:
        mix = np.array([[0, blur, 0], [blur, 1 - 4 * blur, blur], [0, blur, 0]])
        counts = ndimage.convolve(counts, mix[None], mode="nearest")
    adu = np.round(100.0 + 4.0 * counts + rng.normal(0, 2.0, counts.shape))
    return adu.astype(np.uint16)


class _Reader:
    """The reader interface that :func:`ps.report_section` uses, over an array."""

    def __init__(self, frames):
        self.frames, self.dtype = frames, frames.dtype

    def read(self, t0, t1):
        return self.frames[t0:t1]


def _blur(block):
    return ndimage.gaussian_filter(np.asarray(block, np.float32), (0, 1.0, 1.0))


def blur_denoiser(a):
    """A spatial blur of every frame: whole for an array, a chunk at a time for frames in a file."""
    if isinstance(a, Frames):
        return a.map(_blur, np.float32)
    return _blur(a)


def _store(shape):
    return SimpleNamespace(shape=shape, patch_shape=(8, 8), metadata=SimpleNamespace(overlap=(2, 2)))


@pytest.mark.parametrize("kind", ["binomial", "correlated", "gaussian"])
def test_the_split_in_scratch_files_gives_the_numbers_of_the_split_in_memory(tmp_path, kind):
    movie = {"binomial": lambda: _movie(300), "correlated": lambda: _movie(300, blur=0.15),
             "gaussian": lambda: _movie(300, read_noise_only=True)}[kind]()
    in_memory = ps.report_section(_Reader(movie), _store(movie.shape), blur_denoiser, whole=True)
    on_disk = ps.report_section(_Reader(movie), _store(movie.shape), blur_denoiser, whole=True, scratch=tmp_path)
    assert in_memory["counts"]["split"] == kind, in_memory["counts"]
    assert in_memory["ok"] and in_memory["whole"]["ok"], (in_memory.get("reason"), in_memory["whole"].get("reason"))
    assert on_disk == in_memory  # every float, the whole-movie split's included
    assert list(tmp_path.iterdir()) == []  # each file deleted once done with


def test_frame_files_read_back_what_was_written_by_slices_indices_and_crops(tmp_path):
    values = np.random.default_rng(1).normal(size=(70, 9, 11)).astype(np.float32)
    f = Scratch(tmp_path).empty(values.shape, np.float32, "x")
    for t0 in range(0, 70, 32):
        f[t0 : t0 + 32] = values[t0 : t0 + 32]
    assert np.array_equal(f[5:40], values[5:40])
    index = np.r_[3:9, 20:21, 50:70]
    assert np.array_equal(f[index], values[index]) and f[index].flags.c_contiguous
    crop = f[:, 2:7, 1:10]
    assert crop.shape == (70, 5, 9) and np.array_equal(crop[10:20], values[10:20, 2:7, 1:10])
    assert np.array_equal(crop[:, 1:3, 4:6][0:70], values[:, 3:5, 5:7])
    assert np.array_equal(np.asarray(f.map(lambda b: b * np.float32(3), np.float32)), values * np.float32(3))
    assert np.array_equal(np.load(f.path), values) and np.array_equal(f.memmap(), values)
    with pytest.raises(ValueError, match="take shape"):
        f[0:2] = values[:3]


def test_the_splits_memory_does_not_grow_with_its_frames(tmp_path):
    """Three times the frames (above the 256-frame chunks the split works in) take no more memory; in memory, each
    of the half-dozen movies of the split held grows by the crop's size per frame."""
    peaks = {}
    for t in (600, 1800):
        movie = _movie(t)
        folder = tmp_path / str(t)
        folder.mkdir()
        tracemalloc.start()
        try:
            ps.report_section(_Reader(movie), _store(movie.shape), blur_denoiser, whole=True, scratch=folder)
            peaks[t] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    extra_frame_bytes = (1800 - 600) * movie[0].size * 4  # one float32 movie of the added frames
    assert peaks[1800] - peaks[600] < 0.5 * extra_frame_bytes, (peaks, extra_frame_bytes)


def test_the_store_denoiser_gives_the_same_frames_from_a_file_as_from_an_array(tmp_path):
    from pmdcompress.pipeline.compress import compress
    from pmdcompress.pipeline.photon_split import store_denoiser

    movie = _movie(160, shape=(24, 24)).astype(np.float32)
    store = compress(movie, None, workers=1, patch_shape=(12, 12), overlap=(4, 4))
    denoise = store_denoiser(store, workers=1)
    f = FrameFile(tmp_path / "a.npy", movie.shape, np.float32)
    f[0:160] = movie
    from_file = denoise(f)
    assert isinstance(from_file, Frames) and from_file.shape == movie.shape
    whole = denoise(movie)
    assert np.array_equal(np.concatenate([from_file[t0 : t0 + 64] for t0 in range(0, 160, 64)]), whole)


def _report_inputs(tmp_path):
    from pmdcompress.pipeline.compress import compress

    path = tmp_path / "movie.npy"
    np.save(path, _movie(200, shape=(32, 32)))
    store = tmp_path / "movie.pmd.zarr"
    compress(path, store, workers=1, frame_rate=10.0)
    return path, store


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_report_leaves_no_scratch_on_success_on_failure_and_on_interrupt(tmp_path, monkeypatch):
    from pmdcompress.pipeline import photon_split as pps
    from pmdcompress.pipeline.report import make_report

    movie, store = _report_inputs(tmp_path)
    seen = []
    denoiser = pps.store_denoiser

    def watching(store, **kw):
        inner = denoiser(store, **kw)

        def denoise(a):
            seen.append(a.path.parent)  # the scratch folder, beside the report
            return inner(a)

        return denoise

    monkeypatch.setattr(pps, "store_denoiser", watching)
    report = make_report(movie, store, tmp_path / "rep", heldout=False, workers=1)
    assert report["photon_split"]["crop"] == [0, 32, 0, 32]
    assert seen and all(p.parent == tmp_path and p.name.endswith(".scratch.partial") for p in seen)
    assert _leftovers(tmp_path) == []
    for error in (RuntimeError("a failing denoiser"), KeyboardInterrupt()):
        def failing(store, error=error, **kw):
            def denoise(a):
                assert any(a.path.parent.iterdir())
                raise error

            return denoise

        monkeypatch.setattr(pps, "store_denoiser", failing)
        with pytest.raises(type(error)):
            make_report(movie, store, tmp_path / "rep2", heldout=False, workers=1)
        assert _leftovers(tmp_path) == [] and not (tmp_path / "rep2").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_in_the_splits_scratch_names_the_report_and_leaves_no_scratch(tmp_path, code):
    from pmdcompress.errors import OutputError
    from pmdcompress.pipeline.photon_split import split_scratch

    report = tmp_path / "store-report"
    with pytest.raises(OutputError) as info:
        with split_scratch(report) as folder:
            (folder / "a.raw").write_bytes(b"x")
            raise OSError(code, os.strerror(code))  # what a write into a full file system raises (no file name)
    message = str(info.value)
    assert message.startswith(f"{report}: ") and "photon split's scratch files" in message
    assert str(tmp_path) in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # the scratch folder is gone, and nothing else was made


def test_other_errors_in_the_splits_scratch_pass_through(tmp_path):
    from pmdcompress.pipeline.photon_split import split_scratch

    with pytest.raises(PermissionError):
        with split_scratch(tmp_path / "r"):
            raise PermissionError(errno.EACCES, "denied")
    assert list(tmp_path.iterdir()) == []
