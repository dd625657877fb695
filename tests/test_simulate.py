"""Tests of the movie simulator (pmdcompress.simulate.movie) and the ground-truth metrics."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import tifffile
import zarr

from pmdcompress.errors import InputError, OutputExistsError, StoreFormatError
from pmdcompress.simulate import groundtruth as gt
from pmdcompress.simulate import movie as sim

SMALL = dict(n_frames=300, shape=(64, 64), n_neurons=10)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """One small simulated movie, shared by the read-only tests."""
    path = tmp_path_factory.mktemp("sim") / "small.tif"
    info = sim.simulate_movie(path, **SMALL, seed=3)
    return path, info, sim.load_truth(path)


class FrameReader:
    """The minimal movie interface: ``shape`` and ``read(t0, t1)``."""

    def __init__(self, data):
        self.data = data
        self.shape = data.shape

    def read(self, t0, t1):
        return self.data[t0:t1]


# ---------------------------------------------------------------- simulator


def test_outputs_shapes_dtypes_and_attributes(small):
    path, info, truth = small
    movie = tifffile.imread(path)
    assert movie.shape == (300, 64, 64) and movie.dtype == np.uint16
    assert info["shape"] == (300, 64, 64)
    assert info["truth"] == path.with_name("small.truth.zarr") == truth.path
    assert truth.shape == (300, 64, 64)
    assert truth.clean.dtype == np.float32 and truth.clean.chunks[1:] == (64, 64)
    assert truth.footprints.shape == (10, 64, 64) and truth.footprints.dtype == np.float32
    np.testing.assert_allclose(truth.footprints.max(axis=(1, 2)), 1.0)
    assert truth.traces.shape == (10, 300) and truth.traces.dtype == np.float32
    assert truth.spikes.shape == (10, 300) and truth.spikes.dtype == np.uint8
    assert np.all(truth.spikes.sum(axis=1) >= 1)  # every neuron fires
    assert truth.background.shape == (64, 64) and truth.background.dtype == np.float32
    k = truth.neuropil_spatial.shape[0]
    assert truth.neuropil_spatial.shape == (k, 64, 64)
    assert truth.neuropil_traces.shape == (k, 300)
    attrs = truth.attrs
    assert attrs["version"] == sim.FORMAT_VERSION == "pmd-simulate/2"
    assert (attrs["n_frames"], attrs["shape"], attrs["n_neurons"]) == (300, [64, 64], 10)
    assert (attrs["seed"], attrs["kind"], attrs["photons"], attrs["fs"]) == (3, "2p", 1.0, 30.0)
    assert (truth.gain, truth.offset, truth.read_noise) == (20.0, 100.0, 4.0)
    assert attrs["mean_photons"] == pytest.approx(1.0, rel=1e-4)


def test_clean_is_offset_plus_gain_times_rate(small):
    _, _, truth = small
    rate = np.einsum("nt,nyx->tyx", truth.traces, truth.footprints) + np.einsum(
        "kt,kyx->tyx", truth.neuropil_traces, truth.neuropil_spatial
    )
    np.testing.assert_allclose(truth.clean[...], truth.offset + truth.gain * rate, rtol=1e-5)
    assert rate.mean() == pytest.approx(truth.attrs["photons"], rel=1e-4)


def test_noise_statistics_match_the_camera_model(small):
    path, _, truth = small
    movie = tifffile.imread(path).astype(np.float64)
    clean = truth.clean[...].astype(np.float64)
    residual = movie - clean
    rate = (clean - truth.offset) / truth.gain
    expected_var = truth.gain**2 * rate + truth.read_noise**2 + 1 / 12  # + rounding
    assert abs(residual.mean()) < 0.1  # standard error ~0.02 ADU
    assert residual.var() / expected_var.mean() == pytest.approx(1.0, abs=0.03)
    # Shot noise: the variance grows with the rate, pixel by pixel.
    dim, bright = rate < np.quantile(rate, 0.5), rate > np.quantile(rate, 0.9)
    for sel in (dim, bright):
        assert np.mean(residual[sel] ** 2) / expected_var[sel].mean() == pytest.approx(1.0, abs=0.05)


def test_same_seed_gives_identical_bytes(tmp_path, small):
    path, _, truth = small
    # Another chunking and folder: the output depends on the seed only.
    again = tmp_path / "again.tif"
    sim.simulate_movie(again, **SMALL, seed=3, chunk_frames=64)
    assert again.read_bytes() == path.read_bytes()
    other = sim.load_truth(again)
    np.testing.assert_array_equal(other.clean[...], truth.clean[...])
    np.testing.assert_array_equal(other.traces, truth.traces)
    np.testing.assert_array_equal(other.footprints, truth.footprints)


def test_different_seed_differs(tmp_path, small):
    path, _, truth = small
    other = tmp_path / "other.tif"
    sim.simulate_movie(other, **SMALL, seed=4)
    assert other.read_bytes() != path.read_bytes()
    assert not np.array_equal(sim.load_truth(other).footprints, truth.footprints)


def test_overwrite_refused_then_allowed(tmp_path):
    path = tmp_path / "m.tif"
    sim.simulate_movie(path, n_frames=20, shape=(16, 16), n_neurons=2)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="m.tif"):
        sim.simulate_movie(path, n_frames=20, shape=(16, 16), n_neurons=2, seed=1)
    assert path.read_bytes() == before
    sim.simulate_movie(path, n_frames=20, shape=(16, 16), n_neurons=2, seed=1, overwrite=True)
    assert path.read_bytes() != before
    assert sim.load_truth(path).attrs["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "m.truth.zarr"]


def test_existing_truth_alone_refuses_before_writing(tmp_path):
    (tmp_path / "m.truth.zarr").mkdir()
    with pytest.raises(OutputExistsError, match="truth.zarr"):
        sim.simulate_movie(tmp_path / "m.tif", n_frames=20, shape=(16, 16), n_neurons=2)
    assert [p.name for p in tmp_path.iterdir()] == ["m.truth.zarr"]


def test_failure_leaves_no_partial_output(tmp_path, monkeypatch):
    original = sim._noisy_frame

    def failing(rate, seed, t, *args):
        if t == 150:
            raise RuntimeError("disk on fire")
        return original(rate, seed, t, *args)

    monkeypatch.setattr(sim, "_noisy_frame", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        sim.simulate_movie(tmp_path / "m.tif", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_success_leaves_no_temporary_files(small):
    path, _, _ = small
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="4p"), "kind"),
        (dict(shape=(4, 64)), "shape"),
        (dict(shape=(64, 64, 3)), "shape"),
        (dict(n_frames=0), "n_frames"),
        (dict(chunk_frames=0), "chunk_frames"),
        (dict(photons=0.0), "photons"),
        (dict(fs=-1.0), "fs"),
        (dict(n_neurons=-1), "n_neurons"),
        (dict(read_noise=-1.0), "read_noise"),
    ],
)
def test_bad_parameters_raise_before_writing(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sim.simulate_movie(tmp_path / "m.tif", **{**dict(n_frames=10, shape=(16, 16)), **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_no_neurons_and_one_frame(tmp_path):
    sim.simulate_movie(tmp_path / "m.tif", n_frames=1, shape=(16, 16), n_neurons=0)
    truth = sim.load_truth(tmp_path / "m.tif")
    assert truth.footprints.shape == (0, 16, 16) and truth.traces.shape == (0, 1)
    assert tifffile.imread(tmp_path / "m.tif").shape in ((16, 16), (1, 16, 16))
    assert gt.trace_correlations(truth.clean, truth).shape == (0,)


def test_one_photon_kind_has_larger_cells_and_strong_background(tmp_path):
    info_1p = sim.simulate_movie(tmp_path / "a.tif", **SMALL, kind="1p")
    info_2p = sim.simulate_movie(tmp_path / "b.tif", **SMALL, kind="2p")
    t1, t2 = sim.load_truth(info_1p["truth"]), sim.load_truth(info_2p["truth"])
    assert (t1.footprints > 0.5).sum() > (t2.footprints > 0.5).sum()
    neuron_share = [
        np.einsum("nt,nyx->", t.traces, t.footprints) / (t.attrs["photons"] * 300 * 64 * 64) for t in (t1, t2)
    ]
    assert neuron_share[0] < neuron_share[1]
    assert t1.attrs["kind"] == "1p"


def test_three_photon_kind_is_dim_slow_and_sparse(tmp_path):
    """0.2 photons per pixel per frame at 2 Hz, 1.5 sources per 1000 px^2, nearly no neuropil: the counts are
    mostly zeros, the somata stand over a dark field."""
    info = sim.simulate_movie(tmp_path / "p3.tif", kind="3p", n_frames=200, shape=(80, 100), seed=1)
    truth = sim.load_truth(info["truth"])
    attrs = truth.attrs
    assert (attrs["photons"], attrs["fs"], attrs["n_neurons"]) == (0.2, 2.0, round(1.5 * 80 * 100 / 1000))
    rate = (np.asarray(truth.clean) - sim.DEFAULT_OFFSET) / sim.DEFAULT_GAIN  # expected photons per pixel per frame
    assert rate.mean() == pytest.approx(0.2, rel=0.05)
    counts = np.round((tifffile.imread(tmp_path / "p3.tif") - sim.DEFAULT_OFFSET) / sim.DEFAULT_GAIN)
    assert 0.6 < (counts <= 0).mean() < 0.95  # most pixels see no photon in a frame
    inside = truth.footprints.max(axis=0) > 0.5
    assert rate[:, inside].mean() > 5 * rate[:, ~inside].mean()  # somata over a dark background


def test_load_truth_paths_and_errors(tmp_path, small):
    path, info, truth = small
    assert sim.load_truth(info["truth"]).path == truth.path
    assert sim.load_truth(str(path)).path == truth.path
    with pytest.raises(FileNotFoundError):
        sim.load_truth(tmp_path / "absent.tif")
    copy = tmp_path / "copy.truth.zarr"
    shutil.copytree(truth.path, copy)
    zarr.open_group(str(copy), mode="r+").attrs["version"] = "pmd-simulate/9"
    with pytest.raises(StoreFormatError, match="pmd-simulate/9"):
        sim.load_truth(copy)


# ---------------------------------------------------------------- metrics


def test_clean_movie_is_perfect(small):
    _, _, truth = small
    assert gt.noise_rms(truth.clean, truth) == 0.0
    assert gt.noise_rms(truth, truth) == 0.0  # anything with read(t0, t1)
    assert gt.noise_rms_reduction(tifffile.memmap(small[0]), truth.clean, truth) == math.inf
    assert gt.snr_db(truth.clean, truth) == math.inf
    r = gt.trace_correlations(truth.clean, truth)
    assert r.shape == (10,)
    np.testing.assert_allclose(r, 1.0, atol=1e-5)


def test_known_gaussian_noise(small):
    _, _, truth = small
    clean = truth.clean[...]
    sigma = 3.0
    noisy = clean + np.random.default_rng(0).normal(0, sigma, clean.shape).astype(np.float32)
    untouched = noisy.copy()
    assert gt.noise_rms(noisy, truth, chunk_frames=37) == pytest.approx(sigma, rel=0.01)
    assert gt.noise_rms(FrameReader(noisy), truth) == pytest.approx(sigma, rel=0.01)
    signal = clean.astype(np.float64).var(axis=0).mean()
    mse = np.mean((noisy.astype(np.float64) - clean) ** 2)
    assert gt.snr_db(noisy, truth) == pytest.approx(10 * np.log10(signal / mse), abs=1e-4)
    peak = float(clean.max() - clean.min())
    assert gt.psnr_db(noisy, truth) == pytest.approx(20 * np.log10(peak / np.sqrt(mse)), abs=1e-4)
    r = gt.trace_correlations(noisy, truth)
    assert np.all((r > 0.5) & (r < 1.0))
    np.testing.assert_array_equal(noisy, untouched)  # inputs are never changed


def test_reduction_and_evaluation(small):
    path, _, truth = small
    raw = tifffile.memmap(path)
    clean = truth.clean[...]
    half = clean + 0.5 * (raw.astype(np.float32) - clean)  # error exactly halved
    assert gt.noise_rms_reduction(raw, half, truth) == pytest.approx(2.0, rel=1e-5)
    result = gt.evaluate_against_truth(raw, half, str(path))
    assert result["noise_rms_raw"] == pytest.approx(gt.noise_rms(raw, truth))
    assert result["noise_rms_reduction"] == pytest.approx(2.0, rel=1e-5)
    assert result["snr_db_denoised"] - result["snr_db_raw"] == pytest.approx(20 * np.log10(2), abs=1e-3)
    assert result["psnr_db_denoised"] - result["psnr_db_raw"] == pytest.approx(20 * np.log10(2), abs=1e-3)
    assert result["median_trace_corr_raw"] == pytest.approx(np.median(gt.trace_correlations(raw, truth)))
    assert result["median_trace_corr_raw"] < result["median_trace_corr_denoised"] < 1.0
    assert len(result["trace_corr_raw"]) == 10


def test_fewer_photons_lower_trace_correlation(tmp_path):
    medians = []
    for photons in (0.25, 4.0):
        path = tmp_path / f"p{photons}.tif"
        sim.simulate_movie(path, **SMALL, photons=photons, seed=5)
        r = gt.trace_correlations(tifffile.memmap(path), sim.load_truth(path))
        medians.append(np.median(r))
    assert medians[0] < medians[1] - 0.1


def test_metric_input_errors(small):
    _, _, truth = small
    with pytest.raises(InputError, match="shape"):
        gt.noise_rms(np.zeros((10, 64, 64), np.float32), truth)
    with pytest.raises(TypeError, match="truth"):
        gt.noise_rms(truth.clean, 42)
    with pytest.raises(ValueError, match="chunk_frames"):
        gt.noise_rms(truth.clean, truth, chunk_frames=0)


def test_regime_overrides_and_silent_cells(tmp_path):
    info = sim.simulate_movie(tmp_path / "s.tif", n_frames=200, shape=(64, 64), n_neurons=20, fs=7.0, seed=2,
                          regime={"silent_fraction": 0.5, "tau_decay_s": (1.0, 2.0)})
    truth = sim.load_truth(info["truth"])
    silent = truth.spikes.sum(axis=1) == 0
    assert 4 <= silent.sum() <= 16  # about half of 20
    # Silent cells have flat traces at their baseline; the others fire.
    np.testing.assert_allclose(truth.traces[silent].std(axis=1), 0, atol=1e-4)
    assert (truth.traces[~silent].std(axis=1) > 0).all()
    assert truth.attrs["regime"]["tau_decay_s"] == [1.0, 2.0]
    assert truth.attrs["regime"]["silent_fraction"] == 0.5


def test_unknown_regime_constant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown constant"):
        sim.simulate_movie(tmp_path / "s.tif", n_frames=20, shape=(16, 16), n_neurons=1, regime={"colour": 1})
    assert not (tmp_path / "s.tif").exists()


@pytest.mark.parametrize("shape", [(32.5, 32), (True, 32), (32, 32, 3)])
def test_a_frame_shape_that_is_not_two_integers_is_refused(tmp_path, shape):
    # (32.5, 32) used to be cut to 32 x 32 without a word
    from pmdcompress.errors import OptionError

    with pytest.raises(OptionError, match="expected N or HxW"):
        sim.simulate_movie(tmp_path / "m.tif", n_frames=20, shape=shape, truth=False)
    assert not (tmp_path / "m.tif").exists()
    assert sim.simulate_movie(tmp_path / "ok.tif", n_frames=20, shape="48x40", truth=False)["shape"] == (20, 48, 40)
