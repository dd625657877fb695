"""From the pass's sums to the report's metrics, maps, curves and flagged regions (each defined in
``docs/snr.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..preprocess import band_dof
from .kernels import DENOISED, DIFFERENCE, RAW, RESIDUAL, local_correlation, neighbour_correlations, smooth
from .noise import filter_fractions, hat_diagonal, mean_kept_fraction, rank_map
from .passes import PassResult, Plan
from .photon_transfer import fit_photon_transfer

#: Fraction of pixels called "most active" (highest raw SNR).
ACTIVE_FRACTION = 0.01


#: Residual std / raw noise std outside [LOW, HIGH] is flagged.
RESIDUAL_LOW, RESIDUAL_HIGH = 0.95, 1.10


#: Residual local correlation above the noise's by more than this flags removed signal.
CORRELATION_FLAG = 0.1

#: Effective values of the band that each locally pooled noise estimate behind the residual ratios should rest on:
#: with fewer, the median over pixels of a ratio of two noisy estimates reads low (pure noise of 20 frames, fit by
#: nothing: 0.944 per pixel, 0.971 pooled over 1 px).
RATIO_VALUES = 200.0


def ratio_width(n_frames: int, segment: int) -> float:
    """Gaussian width (pixels, at least 1) over which the residual ratios pool their noise estimates.

    A Gaussian of width ``s`` pools about ``4 pi s^2`` pixels; each pixel's band holds
    :func:`pmdcompress.preprocess.band_dof` values (16 for 63 frames, 4.7 for 20).
    """
    values = band_dof(int(n_frames), int(segment)) if n_frames >= 4 else 1.0
    return max(1.0, math.sqrt(RATIO_VALUES / max(values, 1.0) / (4.0 * math.pi)))


def metric(value, definition: str, description: str, units: str | None = None) -> dict:
    """One reported number with the anchor of its definition in docs/snr.md."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        value = None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    out = {"value": value, "definition": definition, "description": description}
    if units:
        out["units"] = units
    return out


def _median(a, mask=None) -> float:
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a) if mask is None else (np.isfinite(a) & mask)
    return float(np.median(a[ok])) if ok.any() else math.nan


def _mean(a, mask=None) -> float:
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a) if mask is None else (np.isfinite(a) & mask)
    return float(np.mean(a[ok])) if ok.any() else math.nan


def _ratio(a: float, b: float) -> float:
    if b == 0 or not math.isfinite(b):
        return math.nan
    return a / b


def active_mask(snr_raw: np.ndarray, fraction: float = ACTIVE_FRACTION) -> np.ndarray:
    """The ``fraction`` of pixels with the highest raw SNR (at least one pixel)."""
    finite = np.isfinite(snr_raw)
    if not finite.any():
        return np.zeros(snr_raw.shape, bool)
    k = max(1, int(round(fraction * finite.sum())))
    threshold = np.sort(snr_raw[finite])[::-1][k - 1]
    return finite & (snr_raw >= threshold)


def flagged_regions(flags: np.ndarray, ratio: np.ndarray, *, min_pixels: int = 3, limit: int = 20) -> list[dict]:
    """Connected groups (8-connectivity) of pixels flagged for removed signal, largest first."""
    from scipy import ndimage

    labels, n = ndimage.label(flags > 0, structure=np.ones((3, 3), bool))
    regions = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == i
        size = int(mask.sum())
        if size < min_pixels:
            continue
        ys, xs = np.nonzero(mask)
        regions.append({
            "centre_yx": [round(float(ys.mean()) + sl[0].start, 1), round(float(xs.mean()) + sl[1].start, 1)],
            "bbox": [sl[0].start, sl[0].stop, sl[1].start, sl[1].stop],
            "pixels": size,
            "mean_residual_ratio": round(float(np.mean(ratio[sl][mask])), 4),
        })
    regions.sort(key=lambda r: -r["pixels"])
    return regions[:limit]


@dataclass
class _NoiseEstimate:
    """Per-pixel noise of raw, denoised and residual (from the Welch spectra, else the store's)."""

    sigma: np.ndarray  # (Y, X) raw noise std
    noise: np.ndarray | None = None  # (3, Y, X) noise std of raw, denoised, residual
    band: np.ndarray | None = None  # (3, Y, X) lower over upper band power
    pooled: np.ndarray | None = None  # (3, bins) spectra pooled over pixels
    segments: int = 0
    lo: int = 0
    hi: int = 0

    @property
    def safe_sigma(self) -> np.ndarray:
        return np.where(self.sigma > 0, self.sigma, np.nan)


@dataclass
class _ErrorModel:
    """The error of the denoised movie: neighbour-frame validation, the noise it kept and the signal it lost."""

    signal: np.ndarray
    snr_raw: np.ndarray
    rho: tuple
    df: np.ndarray
    filtered: bool
    fractions: np.ndarray | None
    mse_nf: np.ndarray
    s2: np.ndarray
    res_sq: np.ndarray
    lost: np.ndarray
    floor: np.ndarray
    mse: np.ndarray
    gain: np.ndarray
    curv: np.ndarray
    mse_cc: np.ndarray
    act: np.ndarray
    ok: np.ndarray


@dataclass
class _Flags:
    """Where the residual holds more (removed signal) or less (kept noise) than the raw noise."""

    ratio: np.ndarray
    flags: np.ndarray
    by_correlation: np.ndarray
    regions: list


def summarize(res: PassResult, store, plan: Plan, *, has_movie: bool) -> dict:
    """Turn the sums of :func:`stream` into maps and numbers.

    Returns
    -------
    dict
        ``maps`` (name -> (Y, X) array), ``metrics`` (name -> :func:`metric`),
        ``curves`` (spectra, photon-transfer curve), ``regions`` (flagged regions),
        ``heldout_maps`` (crop maps).
    """
    n_frames, height, width = store.shape
    shape = (height, width)
    sums = res.moments / n_frames
    maps: dict[str, np.ndarray] = {"mean": np.asarray(store.mean, np.float64)}
    metrics: dict[str, dict] = {}
    curves: dict = {}
    var_den = (sums[3] - sums[2] ** 2).reshape(shape)
    maps["var_denoised"] = var_den
    maps["rank"] = rank_map(store)
    est = _noise_estimate(res, store, shape, curves)
    maps["noise_raw"] = est.sigma

    # Store-only: what the factors and the stored raw noise allow.
    maps["snr_denoised_signal"] = np.sqrt(np.maximum(var_den, 0)) / est.safe_sigma
    corr_frames = res.neighbour_frames
    if res.neighbours is not None and corr_frames > 1:
        maps["corr_denoised"] = local_correlation(res.neighbours[DENOISED], corr_frames)
        metrics["local_corr_denoised_mean"] = metric(_mean(maps["corr_denoised"]), "local-correlation",
                                                     "mean 8-neighbour correlation image of the denoised movie")
    metrics["denoised_signal_over_raw_noise_median"] = metric(
        _median(maps["snr_denoised_signal"]), "denoised-signal",
        "median over pixels of std_t(denoised) / raw noise std")
    if not has_movie:
        return {"maps": maps, "metrics": metrics, "curves": curves, "regions": [], "heldout_maps": {}}

    var_raw = (sums[1] - sums[0] ** 2).reshape(shape)
    maps["var_raw"] = var_raw
    err = _error_maps(res, store, plan, est, var_raw, sums[5].reshape(shape), maps)
    width = ratio_width(n_frames, plan.segment)
    flags = _residual_flags(err, est, maps, width)
    _residual_maps(res, plan, n_frames, est, var_raw, var_den, sums[5].reshape(shape), maps, width)
    metrics.update(_noise_numbers(est, plan, maps, err))
    metrics.update(_gain_numbers(err, maps))
    metrics.update(_residual_numbers(flags, maps, corr_frames))
    return {"maps": maps, "metrics": metrics, "curves": curves, "regions": flags.regions, "heldout_maps": {}}


def _noise_estimate(res: PassResult, store, shape, curves: dict) -> _NoiseEstimate:
    """Noise std maps from the pass's Welch spectra (and the pooled spectra into CURVES), else the store's noise."""
    if res.spectra is None or not res.spectra.n_segments:
        return _NoiseEstimate(sigma=np.asarray(store.noise, np.float64))
    noise = res.spectra.noise_std().reshape(3, *shape)
    # The raw noise leaves out fast signals a region shares (a one-photon microscope's flicker): they are
    # signal to keep, and counted as noise they hide their own removal (preprocess.coherent_noise_std).
    noise[0] = res.spectra.raw_noise_coherent().reshape(shape)
    band = res.spectra.band_ratio().reshape(3, *shape)
    curves["spectra"] = {"frequency": res.spectra.frequencies.tolist(), "raw": None, "denoised": None, "residual": None}
    pooled = res.spectra.pooled_spectra(shape[0] * shape[1])
    for g, name in enumerate(("raw", "denoised", "residual")):
        curves["spectra"][name] = pooled[g].tolist()
    return _NoiseEstimate(sigma=noise[0], noise=noise, band=band, pooled=pooled, segments=res.spectra.n_segments,
                          lo=res.spectra.lo, hi=res.spectra.hi)


def _error_maps(res: PassResult, store, plan: Plan, est: _NoiseEstimate, var_raw, msq_res, maps: dict) -> _ErrorModel:
    """Signal, SNR, degrees of freedom, the error model and the SNR gain maps (added to MAPS in report order)."""
    n_frames = store.shape[0]
    shape = var_raw.shape
    sigma = est.sigma
    signal = np.maximum(var_raw - sigma**2, 0.0)
    maps["signal_power"] = signal
    snr_raw = np.sqrt(signal) / est.safe_sigma
    maps["snr_raw"] = snr_raw

    # Noise correlation between neighbours (frame differences remove slow signal).
    corr_frames = res.neighbour_frames
    if res.neighbours is not None and corr_frames > 2:
        rho = neighbour_correlations(res.neighbours[DIFFERENCE], corr_frames - 1)
        for name, g in (("raw", RAW), ("residual", RESIDUAL), ("difference", DIFFERENCE)):
            n = corr_frames - (g == DIFFERENCE)
            maps[f"corr_{name}"] = local_correlation(res.neighbours[g], n)
        maps["corr_noise"] = maps["corr_difference"]
        if res.noise_neighbours is not None and res.noise_frames > 2:
            # Noise alone: the differences less the fast signals a region shares (flicker, background).
            rho = neighbour_correlations(res.noise_neighbours, res.noise_frames)
            maps["corr_noise"] = local_correlation(res.noise_neighbours, res.noise_frames)
        if res.noise_fit_neighbours is not None and res.noise_fit_frames > 2:
            # The same noise less what the fit keeps of it: the residual of noise alone (FitProjection).
            maps["corr_noise_fit"] = local_correlation(res.noise_fit_neighbours, res.noise_fit_frames)
    else:
        rho = (0.0, 0.0, 0.0, 0.0)
    # The per-pixel mean is fitted too: it keeps 1 / n_frames of the noise (a 20-frame movie's residual of pure
    # noise reads sqrt(1 - 1/20) = 0.975 of the noise), less where the store smooths it (mean_kept_fraction).
    mean_kept = mean_kept_fraction(store)
    df = hat_diagonal(store, rho) + (maps["rank"] + mean_kept) / n_frames
    maps["df"] = df
    filtered = bool(store.metadata.parameters.get("temporal_filter"))
    fractions = None
    if filtered:
        fractions = filter_fractions(store)
        maps["df_filtered"] = hat_diagonal(store, rho, fractions) + (maps["rank"] + mean_kept) / n_frames

    # Error of the denoised movie: neighbour-frame validation of the full fit.
    n_pairs = max(res.pair_count, 1)
    a = (res.moments[7] / n_pairs).reshape(shape)
    b = (res.moments[8] / n_pairs).reshape(shape)
    mse_nf = a - b / 3.0
    maps["mse_neighbour"] = mse_nf
    s2 = smooth(sigma**2)  # per-pixel noise variance, smoothed like the error estimate
    # Lost signal: the residual's mean square in excess of the noise it should hold,
    # counted where the excess is significant (3 robust standard deviations of the
    # excess map, whose bulk is estimation noise).
    if res.spectra is not None and res.spectra.n_segments:
        res_sq = res.spectra.residual_std().reshape(shape) ** 2
    else:
        res_sq = msq_res
    kept = maps.get("df_filtered", df)
    lost = _lost_signal(smooth(res_sq) - s2 * (1.0 - kept))
    maps["lost_signal"] = lost
    floor = s2 * kept + lost
    maps["mse_model"] = floor
    # A temporal filter couples D(t) to the neighbouring frames, which biases the
    # neighbour-frame estimate low: then the model alone (noise kept through the
    # projections and the filter, plus lost signal).
    mse = floor.copy() if filtered else np.maximum(smooth(mse_nf), floor)
    maps["mse"] = mse
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.sqrt(s2 / mse)
    gain[~np.isfinite(gain)] = np.nan
    maps["gain"] = gain
    maps["snr_denoised"] = snr_raw * gain
    # The neighbour-frame estimate is high by 2/3 of the signal's frame-to-frame curvature;
    # the denoised movie's curvature, less that of the noise it kept, bounds it.
    curv_frames = max(sum(max(b - a - 2, 0) for a, b in plan.bounds), 1)
    curv = np.maximum(smooth((res.moments[9] / curv_frames).reshape(shape)) - 1.5 * s2 * df, 0.0)
    maps["signal_curvature"] = curv
    mse_cc = floor.copy() if filtered else np.maximum(smooth(mse_nf) - 2.0 / 3.0 * curv, floor)
    maps["mse_curvature_corrected"] = mse_cc
    # Chosen on the raw movie, on a lightly smoothed SNR map: selecting on the noisy
    # per-pixel map would favour pixels whose noise happens to be underestimated.
    act = active_mask(smooth(snr_raw, 1.0))
    maps["active"] = act.astype(np.float64)
    ok = np.isfinite(mse) & np.isfinite(s2)
    return _ErrorModel(signal=signal, snr_raw=snr_raw, rho=rho, df=df, filtered=filtered, fractions=fractions,
                       mse_nf=mse_nf, s2=s2, res_sq=res_sq, lost=lost, floor=floor, mse=mse, gain=gain, curv=curv,
                       mse_cc=mse_cc, act=act, ok=ok)


def _lost_signal(excess: np.ndarray) -> np.ndarray:
    """The excess where it is significant: above 3 robust standard deviations of the map's bulk."""
    finite_excess = excess[np.isfinite(excess)]
    if finite_excess.size:
        centre = float(np.median(finite_excess))
        spread = 1.4826 * float(np.median(np.abs(finite_excess - centre)))
    else:
        centre = spread = 0.0
    return np.where(excess > centre + 3 * spread, np.maximum(excess, 0.0), 0.0)


def _residual_flags(err: _ErrorModel, est: _NoiseEstimate, maps: dict, width: float = 1.0) -> _Flags:
    """What was removed: residual RMS over the raw noise, flagged outside [RESIDUAL_LOW, RESIDUAL_HIGH].

    The ratio of local (Gaussian, ``width`` px: :func:`ratio_width`) averages, on
    the same frames: the per-pixel ratio is noisy (a few % for 1500 frames) while
    removed signal and kept noise are spatially extended.
    """
    res_sq, sigma = err.res_sq, est.sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        maps["residual_ratio_pixel"] = np.sqrt(res_sq) / est.safe_sigma
        ratio = np.sqrt(smooth(res_sq, width) / smooth(sigma**2, width))
    maps["residual_ratio"] = ratio
    flags = np.zeros(ratio.shape, np.int8)
    flags[ratio < RESIDUAL_LOW] = -1
    flags[ratio > RESIDUAL_HIGH] = 1
    by_correlation = np.zeros(ratio.shape, bool)
    if "corr_residual" in maps:
        # Neurons left in the residual: its local correlation well above the noise's.
        excess_corr = maps["corr_residual"] - _median(maps["corr_noise"])
        by_correlation = np.isfinite(excess_corr) & (excess_corr > CORRELATION_FLAG)
        flags[by_correlation] = 1
    maps["flags"] = flags.astype(np.float64)
    return _Flags(ratio=ratio, flags=flags, by_correlation=by_correlation, regions=flagged_regions(flags, ratio))


def _residual_maps(res: PassResult, plan: Plan, n_frames: int, est: _NoiseEstimate, var_raw, var_den, msq_res,
                   maps: dict, width: float = 1.0) -> None:
    """The residual's lag-1 correlation and, with spectra, its noise maps and trefide's SNR gain."""
    lag_pairs = max(n_frames - plan.n_chunks, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        maps["residual_lag1"] = (res.moments[6].reshape(var_raw.shape) / lag_pairs) / msq_res
    noise = est.noise
    if noise is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            maps["noise_denoised"] = noise[1]
            maps["noise_residual"] = noise[2]
            # pooled like residual_ratio: a per-pixel ratio of two short movies' band estimates has a low median
            maps["residual_noise_ratio"] = np.sqrt(smooth(noise[2] ** 2, width) / smooth(est.sigma**2, width))
            maps["residual_band_ratio"] = est.band[2]
            pmd_raw = np.sqrt(np.maximum(var_raw, 0)) / est.safe_sigma
            pmd_den = np.sqrt(np.maximum(var_den, 0)) / np.where(noise[1] > 0, noise[1], np.nan)
            maps["pmd_style_gain"] = pmd_den / pmd_raw


def _noise_numbers(est: _NoiseEstimate, plan: Plan, maps: dict, err: _ErrorModel) -> dict:
    """Noise levels, whiteness of the spectra and the neighbour noise correlation."""
    M = {}
    M["noise_raw_median"] = metric(_median(est.sigma), "noise-std", "median raw noise std (PSD upper half band, mean)",
                                   "ADU")
    noise, pooled, lo, hi = est.noise, est.pooled, est.lo, est.hi
    if noise is not None:
        M["noise_denoised_median"] = metric(_median(noise[1]), "noise-std",
                                            "median noise std of the denoised movie (PSD upper half band)", "ADU")
        M["noise_residual_median"] = metric(_median(noise[2]), "noise-std",
                                            "median noise std of the residual (PSD upper half band)", "ADU")
        M["residual_noise_ratio_median"] = metric(_median(maps["residual_noise_ratio"]), "residual-noise-ratio",
                                                  "median residual PSD noise / raw PSD noise")
        M["pmd_style_gain_median"] = metric(_median(maps["pmd_style_gain"]), "pmd-style-gain",
                                            "trefide's SNR gain (gameable by temporal smoothing; for comparison)")
        n_low, n_high = lo - 2, hi - lo
        white = [float(np.sum(pooled[g][2:lo]) / n_low / (np.sum(pooled[g][lo:hi]) / n_high)) for g in range(3)]
        M["residual_band_ratio"] = metric(white[2], "residual-whiteness",
                                          "residual power per bin, lower band over upper half band (1 = white)")
        M["raw_band_ratio"] = metric(white[0], "residual-whiteness", "the same for the raw movie")
        M["spectrum_segments"] = metric(est.segments, "noise-std", "Welch segments behind the noise estimates")
        M["spectrum_segment_frames"] = metric(plan.segment, "noise-std", "frames per Welch segment")
    M["noise_correlation"] = metric([round(r, 4) for r in err.rho], "noise-correlation",
                                    "noise correlation with the neighbour right, down, down-right, down-left")
    return M


def _gain_numbers(err: _ErrorModel, maps: dict) -> dict:
    """SNR before and after, the SNR gains and the error model behind them."""
    M = {}
    snr_raw, act, ok, s2, mse, mse_cc = err.snr_raw, err.act, err.ok, err.s2, err.mse, err.mse_cc
    M["signal_power_median"] = metric(_median(err.signal), "signal-power", "median raw signal power", "ADU^2")
    M["snr_raw_median"] = metric(_median(snr_raw), "snr", "median raw SNR (signal std / raw noise std)")
    M["snr_denoised_median"] = metric(_median(maps["snr_denoised"]), "snr", "median denoised SNR")
    M["snr_raw_active"] = metric(_median(snr_raw, act), "snr", "median raw SNR of the most active pixels")
    M["snr_denoised_active"] = metric(_median(maps["snr_denoised"], act), "snr",
                                      "median denoised SNR of the most active pixels")
    M["snr_gain_median"] = metric(_median(err.gain), "snr-gain", "SNR gain at the median pixel")
    M["snr_gain_active"] = metric(
        math.sqrt(_ratio(float(np.sum(s2[act & ok])), float(np.sum(mse[act & ok])))), "snr-gain",
        f"SNR gain over the {ACTIVE_FRACTION:.0%} most active pixels (chosen on the raw movie)")
    M["snr_gain_global"] = metric(math.sqrt(_ratio(float(np.sum(s2[ok])), float(np.sum(mse[ok])))), "snr-gain",
                                  "SNR gain over all pixels (estimated noise RMS reduction)")
    with np.errstate(invalid="ignore", divide="ignore"):
        gain_cc = np.sqrt(s2 / mse_cc)
    M["snr_gain_median_curvature_corrected"] = metric(
        _median(gain_cc), "curvature-correction", "SNR gain at the median pixel, signal curvature removed")
    M["snr_gain_active_curvature_corrected"] = metric(
        math.sqrt(_ratio(float(np.sum(s2[act & ok])), float(np.sum(mse_cc[act & ok])))), "curvature-correction",
        "SNR gain over the most active pixels, signal curvature removed")
    M["mse_over_noise_curvature"] = metric(
        _ratio(float(np.nansum(2.0 / 3.0 * err.curv)), float(np.nansum(s2))), "curvature-correction",
        "2/3 of the denoised movie's frame-to-frame curvature beyond its noise / raw noise variance")
    M["active_pixels"] = metric(int(act.sum()), "snr-gain", "pixels in the most-active set")
    M["mse_over_noise_neighbour"] = metric(_ratio(float(np.nansum(err.mse_nf)), float(np.nansum(s2))),
                                           "neighbour-frame-validation",
                                           "estimated MSE of the denoised movie / raw noise variance (all pixels)")
    M["mse_over_noise_model"] = metric(_ratio(float(np.nansum(err.floor)), float(np.nansum(s2))), "error-model",
                                       "noise kept through the projections (and temporal filter), plus lost "
                                       "signal, / raw noise variance (all pixels)")
    M["lost_signal_over_noise"] = metric(_ratio(float(np.nansum(err.lost)), float(np.nansum(s2))), "error-model",
                                         "significant residual excess over the noise (lost signal) / raw noise "
                                         "variance")
    if err.filtered:
        M["temporal_filter_kept_median"] = metric(
            float(np.median(err.fractions)) if len(err.fractions) else math.nan, "error-model",
            "median fraction of a factor's noise kept by the temporal filter (trend-filter degrees of freedom / T)")
        M["mse_over_noise_model_unfiltered"] = metric(
            _ratio(float(np.nansum(s2 * err.df + err.lost)), float(np.nansum(s2))), "error-model",
            "the same as if the temporal filter kept all the projections' noise (an upper bound)")
    M["mse_over_noise"] = metric(_ratio(float(np.nansum(mse)), float(np.nansum(s2))), "snr-gain",
                                 "error estimate behind the SNR gains / raw noise variance (all pixels)")
    return M


def _residual_numbers(fl: _Flags, maps: dict, corr_frames: int) -> dict:
    """How much of the residual is noise: the ratio, the flags and the residual's local correlation."""
    M = {}
    ratio, flags = fl.ratio, fl.flags
    finite = np.isfinite(ratio)
    n_pix = max(int(finite.sum()), 1)
    M["residual_ratio_median"] = metric(_median(ratio), "residual-ratio", "median residual std / raw noise std")
    kept = maps.get("df_filtered", maps.get("df"))
    if kept is not None:
        M["residual_ratio_noise_only"] = metric(_median(np.sqrt(np.maximum(1.0 - kept, 0.0))), "residual-ratio",
                                                "median sqrt(1 - df): the ratio if the residual were the noise alone "
                                                "(a fit keeps df of it)")
    M["residual_ratio_within"] = metric(float(np.mean((ratio[finite] >= RESIDUAL_LOW)
                                                      & (ratio[finite] <= RESIDUAL_HIGH))),
                                        "residual-ratio",
                                        f"fraction of pixels with {RESIDUAL_LOW} <= ratio <= {RESIDUAL_HIGH}")
    M["flagged_signal_removed"] = metric(float(np.sum(flags > 0) / n_pix), "residual-ratio",
                                         f"fraction of pixels flagged for removed signal: ratio > {RESIDUAL_HIGH}"
                                         f" or residual local correlation > noise's + {CORRELATION_FLAG}")
    M["flagged_by_correlation"] = metric(float(np.sum(fl.by_correlation) / n_pix), "residual-ratio",
                                         "of which flagged by the residual's local correlation")
    M["flagged_noise_kept"] = metric(float(np.sum(flags < 0) / n_pix), "residual-ratio",
                                     f"fraction of pixels flagged: ratio < {RESIDUAL_LOW} (noise kept)")
    M["flagged_regions"] = metric(len(fl.regions), "residual-ratio",
                                  "groups of >= 3 pixels flagged for removed signal")
    M["residual_lag1_median"] = metric(_median(maps["residual_lag1"]), "residual-whiteness",
                                       "median lag-1 autocorrelation of the residual")
    if "corr_residual" in maps:
        M["local_corr_raw_mean"] = metric(_mean(maps["corr_raw"]), "local-correlation",
                                          "mean 8-neighbour correlation image of the raw movie")
        M["local_corr_residual_mean"] = metric(_mean(maps["corr_residual"]), "local-correlation",
                                               "mean 8-neighbour correlation image of the residual")
        noise_level = _median(maps["corr_noise"])
        M["local_corr_noise"] = metric(noise_level, "local-correlation",
                                       "median of the image of frame differences less what each pixel shares with "
                                       "its annulus: what pure noise gives")
        M["local_corr_difference"] = metric(_median(maps["corr_difference"]), "local-correlation",
                                            "median of the frame-difference image (fast shared signals included)")
        M["local_corr_residual_excess"] = metric(
            _mean(maps["corr_residual"]) - noise_level, "local-correlation",
            "residual local correlation (mean) minus that of the noise")
        if "corr_noise_fit" in maps:
            through = _mean(maps["corr_noise_fit"])
            M["local_corr_noise_through_fit"] = metric(
                through, "local-correlation",
                "mean image of the same noise less what this fit keeps of it: the residual of noise alone (a fit "
                "keeps the smooth, shared part of correlated noise first)")
            M["local_corr_residual_excess_through_fit"] = metric(
                _mean(maps["corr_residual"]) - through, "local-correlation",
                "residual local correlation (mean) minus that of the noise alone through this fit")
        M["correlation_frames"] = metric(corr_frames, "local-correlation", "frames behind the correlation images")
    return M


def summarize_photon_transfer(res: PassResult, out: dict) -> None:
    """Add the photon-transfer fit to ``out`` (from :func:`summarize`)."""
    M = out["metrics"]
    if res.photon is None:
        M["photon_transfer_ok"] = metric(False, "photon-transfer", "needs integer data of at most 16 bits")
        return
    fit = fit_photon_transfer(res.photon, res.photon_lo)
    out["curves"]["photon_transfer"] = fit
    M["photon_transfer_ok"] = metric(fit["ok"], "photon-transfer", fit["reason"] or "fit done")
    if not fit["ok"]:
        return
    g, z = fit["gain"], fit["offset"]
    M["camera_gain"] = metric(g, "photon-transfer", "ADU per detected photon", "ADU/photon")
    M["camera_offset"] = metric(z, "photon-transfer", "ADU at zero photons (read noise folded in)", "ADU")
    maps = out["maps"]
    mean = maps["mean"]
    M["photons_per_pixel_mean"] = metric(float(np.mean(np.maximum(mean - z, 0)) / g), "photon-transfer",
                                         "mean detected photons per pixel per frame", "photons")
    with np.errstate(invalid="ignore"):
        pt_noise = np.sqrt(np.maximum(g * (mean - z), 0))
    maps["noise_photon_transfer"] = pt_noise
    M["photon_noise_over_psd_noise"] = metric(_median(pt_noise / np.where(maps["noise_raw"] > 0, maps["noise_raw"],
                                                                           np.nan)),
                                              "photon-transfer", "median sqrt(g (mean - z)) / PSD noise std")


def summarize_heldout(heldout: dict | None, out: dict, crop) -> None:
    """Add the held-out validation of the crop (:func:`pmdcompress.pipeline.heldout.heldout_validation`) to OUT."""
    if not heldout or heldout["n"] == 0:
        return
    (y0, y1), (x0, x1) = crop
    n = float(heldout["n"])
    a = heldout["sq"] / n
    b = heldout["base"] / n
    mse = a - b / 3.0
    maps = out["maps"]
    s2 = maps["noise_raw"][y0:y1, x0:x1] ** 2
    full = maps["mse_neighbour"][y0:y1, x0:x1]
    out["heldout_maps"] = {"mse_heldout": mse, "mse_neighbour": full, "crop": [y0, y1, x0, x1]}
    M = out["metrics"]
    M["heldout_crop"] = metric([y0, y1, x0, x1], "held-out-validation", "crop fitted on even and odd frames")
    M["mse_over_noise_heldout"] = metric(_ratio(float(np.nansum(mse)), float(np.nansum(s2))), "held-out-validation",
                                         "MSE of the half-frame fits / raw noise variance, on the crop")
    M["mse_over_noise_neighbour_crop"] = metric(_ratio(float(np.nansum(full)), float(np.nansum(s2))),
                                                "neighbour-frame-validation",
                                                "the full fit's neighbour-frame estimate on the same crop")


def summarize_truth(res: PassResult, out: dict, truth_scores: dict | None = None, *, crop=None) -> None:
    """Add per-pixel ground-truth maps and their agreement with the estimates to ``out``."""
    if res.truth is None:
        return
    n_frames = max(res.truth_frames, 1)
    maps, M = out["maps"], out["metrics"]
    shape = maps["mean"].shape
    t = res.truth / n_frames
    mse_true = t[0].reshape(shape)
    noise_true = np.sqrt(t[1]).reshape(shape)
    signal_true = np.maximum(t[3] - t[2] ** 2, 0).reshape(shape)
    maps["mse_true"] = mse_true
    maps["noise_true"] = noise_true
    maps["signal_power_true"] = signal_true
    with np.errstate(invalid="ignore", divide="ignore"):
        gain_true = np.sqrt(noise_true**2 / mse_true)
        maps["gain_true"] = np.where(np.isfinite(gain_true), gain_true, np.nan)
        maps["snr_raw_true"] = np.sqrt(signal_true) / noise_true
    act = maps["active"] > 0
    s2 = noise_true**2
    M["truth_noise_estimate_ratio_median"] = metric(_median(maps["noise_raw"] / noise_true), "truth",
                                                    "median estimated / true raw noise std")
    M["truth_snr_gain_median"] = metric(_median(maps["gain_true"]), "truth", "true SNR gain at the median pixel")
    M["truth_snr_gain_active"] = metric(math.sqrt(_ratio(float(s2[act].sum()), float(mse_true[act].sum()))),
                                        "truth", "true SNR gain over the same most-active pixels")
    M["truth_snr_gain_global"] = metric(math.sqrt(_ratio(float(s2.sum()), float(mse_true.sum()))), "truth",
                                        "true noise RMS reduction (all pixels)")
    M["truth_mse_over_noise"] = metric(_ratio(float(mse_true.sum()), float(s2.sum())), "truth",
                                       "true MSE of the denoised movie / true noise variance")
    g_est, g_true = np.log(maps["gain"]), np.log(maps["gain_true"])
    ok = np.isfinite(g_est) & np.isfinite(g_true)
    if ok.sum() > 2:
        M["truth_gain_map_correlation"] = metric(float(np.corrcoef(g_est[ok], g_true[ok])[0, 1]), "truth",
                                                 "correlation of log estimated and log true gain maps")
        sm = np.log(np.sqrt(smooth(s2) / smooth(mse_true)))
        ok2 = ok & np.isfinite(sm)
        M["truth_gain_map_correlation_smoothed"] = metric(float(np.corrcoef(g_est[ok2], sm[ok2])[0, 1]), "truth",
                                                          "the same against the equally smoothed true gain map")
    snr_est, snr_true = maps["snr_raw"], maps["snr_raw_true"]
    ok = np.isfinite(snr_est) & np.isfinite(snr_true)
    if ok.sum() > 2:
        M["truth_snr_raw_map_correlation"] = metric(float(np.corrcoef(snr_est[ok], snr_true[ok])[0, 1]), "truth",
                                                    "correlation of estimated and true raw SNR maps")
    if crop is not None:
        (y0, y1), (x0, x1) = crop
        M["truth_mse_over_noise_crop"] = metric(
            _ratio(float(mse_true[y0:y1, x0:x1].sum()), float(s2[y0:y1, x0:x1].sum())), "truth",
            "true MSE / noise variance of the full fit on the held-out crop")
    if truth_scores:
        for key, value in truth_scores.items():
            if isinstance(value, list):
                out["curves"].setdefault("truth", {})[key] = value
            else:
                M[f"truth_{key}"] = metric(value, "truth", key.replace("_", " "))
