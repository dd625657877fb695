"""The whole-movie split (``photon_split_whole``): an unbalanced split, ``A`` with most photons, against the truth."""

import json

import numpy as np
import pytest
from test_photon_split import make_movie, oracle_denoiser

from pmdcompress.report import photon_split as ps
from pmdcompress.report.html import summary_lines

GAIN, OFFSET, READ_NOISE = 4.0, 100.0, 3.0


def flat_movie(seed=0, *, shape=(400, 40, 40), blur=0.0):
    """ADU movie of a static photon rate (2-8 photons per pixel per frame) and nothing else; ``blur`` spreads each
    detected photon over the 4 neighbours (noise shared between them)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    rate = 2.0 + 6.0 * ndimage.gaussian_filter(rng.random(shape[1:]), 4)
    rate = (rate - rate.min()) / (rate.max() - rate.min()) * 6.0 + 2.0
    counts = rng.poisson(np.broadcast_to(rate, shape)).astype(np.float64)
    if blur:
        mix = np.array([[0, blur, 0], [blur, 1 - 4 * blur, blur], [0, blur, 0]])
        counts = ndimage.convolve(counts, mix[None], mode="nearest")
    return np.round(OFFSET + GAIN * counts + rng.normal(0, READ_NOISE, shape)).astype(np.uint16)


def _pooled(x, y):
    """sum_p cov_t(x_p, y_p) over the pixels (float64)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return float(np.sum(np.mean((x - x.mean(axis=0)) * (y - y.mean(axis=0)), axis=0)))


@pytest.mark.parametrize(("blur", "own_units", "method"), [(0.0, False, "binomial"), (0.12, False, "correlated"),
                                                           (0.0, True, "gaussian"), (0.12, True, "gaussian")])
@pytest.mark.parametrize("fraction", [0.8, 0.9])
def test_an_unbalanced_split_shares_the_photons_and_no_noise(blur, own_units, method, fraction):
    """A gets ``p`` of the signal and of the noise variance, B the rest, and the two share no noise."""
    adu = flat_movie(1, blur=blur)
    counts = ps.prepare_counts(adu, own_units=own_units)
    assert counts.ok and counts.method == method
    a, b = ps.split(counts, 3, fraction=fraction)
    n = np.asarray(counts.counts, np.float64)
    assert abs(float(np.mean(a)) / float(np.mean(n)) - fraction) < 0.003
    assert abs(_pooled(a, a) / _pooled(n, n) - fraction) < 0.02
    assert abs(_pooled(b, b) / _pooled(n, n) - (1 - fraction)) < 0.02 * (1 - fraction) / 0.2
    assert abs(_pooled(a, b)) / np.sqrt(_pooled(a, a) * _pooled(b, b)) < 0.01
    # and no noise shared between neighbours either (the halves check of the report)
    shared = ps.halves_correlations(a, b, radius=1)
    assert max(abs(v) for v in shared.values()) < ps.HALVES_LIMIT
    # B's noise variance is what the score subtracts: mean_t(B) for counts, (1 - p) of the model's otherwise
    noise = counts.noise_of_half(fraction)
    expected = np.mean(b, axis=0) if noise is None else noise
    assert abs(float(np.sum(np.var(b, axis=0, ddof=1))) / float(np.sum(expected)) - 1) < 0.03


def test_a_fraction_outside_0_1_is_refused():
    counts = ps.prepare_counts(flat_movie(0, shape=(40, 16, 16)))
    with pytest.raises(ValueError, match="fraction"):
        ps.split(counts, 0, fraction=1.0)


@pytest.mark.parametrize(("blur", "alpha", "temporal_sigma"), [(0.0, 0.3, 0.0), (0.0, 0.3, 2.0), (0.1, 0.3, 2.0)])
def test_the_whole_split_matches_the_truth_of_the_denoiser_on_its_share_of_the_photons(blur, alpha, temporal_sigma):
    """Signal removed and error reduction (at the whole movie's photon level) against the truth of ``dA``."""
    adu, clean, feet = make_movie(4, blur=blur)
    kept = {}
    oracle = oracle_denoiser(feet, alpha, temporal_sigma)

    def denoise(a):
        kept["a"], kept["den"] = a, oracle(a)
        return kept["den"]

    p = ps.WHOLE_FRACTION
    result = ps.whole_split(adu, denoise, seed=2)
    assert result["ok"], result["reason"]
    assert result["fraction"] == p and result["counts"]["split"] == "gaussian"
    a, den = kept["a"], kept["den"]
    every = np.ones(a.shape[1:], bool)
    true_removed = ps.shared_signal_removed(a, p * clean, den, every)
    s = result["all"]
    if blur:
        # shared noise: as the balanced split's (0.024 high on this movie, 4 seeds), within 0.03 of the truth
        assert abs(s["signal_removed"] - true_removed) < 0.035
    else:
        assert s["signal_removed_low"] <= true_removed <= s["signal_removed_high"]
        assert abs(s["signal_removed"] - true_removed) < 0.02
    # dA / p against the clean movie, over the whole movie's noise (raw - clean): the whole-level error reduction,
    # from B's fifth of the photons (4 seeds of this movie: 0.92-1.63 of the truth, mean 1.19)
    true_er = float(np.mean((adu - clean) ** 2) / np.mean((den / p - clean) ** 2))
    assert s["error_reduction_low"] <= true_er <= s["error_reduction_high"]
    assert 0.7 < s["error_reduction"] / true_er < 1.4, (s["error_reduction"], true_er)


def _footprint_snr(x, feet):
    """Per footprint, the signal variance of its least-squares trace over its noise variance (first differences):
    proportional to the photons a movie holds (``p`` for a split part with ``p`` of them)."""
    x = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    c = (x - x.mean(axis=0)) @ np.linalg.pinv(feet.reshape(len(feet), -1))
    noise = np.mean(np.diff(c, axis=0) ** 2, axis=0) / 2
    return np.var(c, axis=0) / noise - 1


def test_the_whole_split_reads_the_whole_movies_loss_where_the_half_reads_more():
    """A denoiser that keeps a source only above an SNR (a rank test does): at half the photons it drops the
    dimmest, at 80 % and on the whole movie it keeps them all.  The balanced split reads the half's loss; the
    whole split reads the whole movie's (none)."""
    adu, clean, feet = make_movie(6)
    threshold = 0.75 * float(_footprint_snr(adu, feet).min())

    def denoise(a):
        keep = _footprint_snr(a, feet) > threshold
        return oracle_denoiser(feet[keep])(a)

    every = np.ones(adu.shape[1:], bool)
    assert denoise(adu.astype(np.float64)).shape == adu.shape
    truth_whole = ps.shared_signal_removed(adu.astype(np.float64), clean, denoise(adu.astype(np.float64)), every)
    whole = ps.whole_split(adu, denoise, seed=1)
    half = ps.photon_split(adu, denoise, seed=1)
    assert whole["ok"] and half["ok"]
    assert abs(truth_whole) < 0.01
    s = whole["all"]
    assert abs(s["signal_removed"] - truth_whole) < 0.03 and s["signal_removed_low"] <= truth_whole
    assert half["all"]["signal_removed"] > truth_whole + 0.05


def _section(removed, low, high, *, er=(12.0, 10.0, 14.0), valid=True, fraction=0.8):
    scores = {"pixels": 100, "valid": valid, "error_reduction": er[0], "error_reduction_low": er[1],
              "error_reduction_high": er[2], "signal_variance": 1.0, "signal_removed": removed,
              "signal_removed_low": low, "signal_removed_high": high}
    return {"ok": True, "fraction": fraction, "all": dict(scores), "active": dict(scores),
            "counts": {"split": "gaussian"}}


def _whole_line(section):
    report = {"metrics": {"snr_gain_median": {"value": 2.0}, **ps.whole_metrics(section)}}
    return next(line for line in summary_lines(report) if line.startswith("whole movie"))


def test_the_printed_line_names_the_whole_movie_and_its_share_of_the_photons():
    line = _whole_line(_section(0.05, 0.01, 0.09))
    assert "5.0% (1.0 to 9.0%) most active" in line and "80% of the photons" in line
    assert "12.0x (10-14x) all pixels" in line


def test_a_whole_figure_too_noisy_to_resolve_prints_not_resolved():
    line = _whole_line(_section(0.2, -0.2, 0.6, er=(12.0, 1.5, 90.0)))
    assert "signal removed not resolved (-20.0 to 60.0%) most active" in line
    assert "error reduction at least 1.5x (1.5-90x)" in line
    assert "20.0%" not in line.split("(")[0]


def test_an_error_estimate_below_zero_leaves_the_signal_removed_standing():
    """B holds a fifth of the photons: its scaled noise variance weighs 4x on the error estimate, which may read
    below 0 (a denoiser with no error, or a noise model off by a fraction of a percent); the error reduction is then
    not resolved and says why, the signal removed (no pixel's noise variance in it) stays a measurement."""
    adu, clean, feet = make_movie(4)
    p = ps.WHOLE_FRACTION
    result = ps.whole_split(adu, lambda a: np.broadcast_to(p * clean, a.shape), seed=0)  # the truth itself
    assert result["ok"], result["reason"]
    s = result["all"]
    assert s["signal_removed_valid"] and abs(s["signal_removed"]) < 0.01
    assert ps.headline(s, "signal_removed")["resolved"]
    if s["error_reduction"] is None:
        assert "error_reduction_reason" in result
        assert "error_reduction" in ps.whole_metrics(result)["photon_split_whole_error_reduction"]["description"]
    assert not ps.headline(s, "error_reduction")["resolved"] or s["error_reduction_low"] > 50
    # the same set's numbers at the whole movie's level: mse / p^2, mse_raw / p
    scores = {"pixels": 1, "valid": False, "mse": -1e-3, "mse_se": 1e-4, "mse_raw": 1.0, "error_reduction": None,
              "signal_variance": 0.5, "signal_removed": 0.04, "signal_removed_low": 0.01, "signal_removed_high": 0.07}
    ps._to_whole_level(scores, 0.8)
    assert scores["mse"] == pytest.approx(-1e-3 / 0.64) and scores["mse_raw"] == pytest.approx(1.25)
    assert ps.headline(scores, "signal_removed") == {"value": 0.04, "interval": [0.01, 0.07], "resolved": True}


def test_parts_that_share_noise_withhold_every_number(monkeypatch):
    """The halves check guards the whole split as it does the balanced one."""
    adu, clean, feet = make_movie(4, blur=0.15)
    counts = ps.prepare_counts(adu, own_units=True)
    counts.correlations = {k: 0.0 for k in counts.correlations}  # a model that misses the shared noise
    counts.white = True
    result = ps.whole_split(adu, oracle_denoiser(feet, 0.3), counts=counts)
    assert not result["ok"] and "share noise" in result["reason"]
    assert result["all"] == {"pixels": result["all"]["pixels"], "valid": False}
    assert not ps.headline(result["all"], "signal_removed")["resolved"]


@pytest.fixture(scope="module")
def report_sim(tmp_path_factory):
    import pmdcompress
    from pmdcompress.simulate import simulate_movie

    folder = tmp_path_factory.mktemp("whole")
    movie = folder / "sim.tif"
    simulate_movie(movie, n_frames=600, shape=(48, 48), n_neurons=8, seed=5)
    store = pmdcompress.compress(movie, folder / "sim.pmd.zarr", method="svd", temporal_filter=False,
                                 patch_shape=24, overlap=6)
    return movie, store


def test_the_report_adds_the_whole_split_beside_an_unchanged_balanced_split(report_sim, tmp_path):
    from click.testing import CliRunner

    from pmdcompress.cli.app import main
    from pmdcompress.pipeline.report import make_report

    movie, store = report_sim
    with_whole = make_report(movie, store, tmp_path / "rep", heldout=False)
    section = with_whole["photon_split_whole"]
    assert section["ok"], section["reason"]
    assert section["fraction"] == ps.WHOLE_FRACTION and section["crop"] == with_whole["photon_split"]["crop"]
    metrics = with_whole["metrics"]
    for key in ("signal_removed", "signal_removed_active", "error_reduction", "error_reduction_active"):
        assert metrics[f"photon_split_whole_{key}_interval"]["definition"] == "photon-splitting-whole"
        assert isinstance(metrics[f"photon_split_whole_{key}_resolved"]["value"], bool)
    assert abs(metrics["photon_split_whole_signal_removed"]["value"]) < 0.1  # an svd store of a 600-frame movie
    assert any(line.startswith("whole movie (split)") for line in with_whole["summary"])
    assert with_whole["format_version"] == 5
    # The CLI's flag leaves it out; the balanced split is the same to the last digit either way.
    result = CliRunner().invoke(main, ["-q", "report", str(movie), str(store.path), "-o", str(tmp_path / "plain"),
                                       "--no-heldout", "--no-whole-split"])
    assert result.exit_code == 0, result.output
    plain = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert "photon_split_whole" not in plain and "photon_split_whole_ok" not in plain["metrics"]
    assert plain["photon_split"] == json.loads(json.dumps(with_whole["photon_split"]))
