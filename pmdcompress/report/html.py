"""The report folder: ``report.json`` (every number with its definition), ``index.html``, figures, maps.

``index.html`` is a single static page (no scripts, no external resources) that
shows the five key numbers, the figures and a table of every metric.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ..formats.report import write_report
from .photon_split import headline_text

#: Maps saved (float32) in ``maps.npz`` beside the report.
SAVED_MAPS = (
    "mean", "noise_raw", "noise_denoised", "noise_residual", "residual_ratio_pixel", "var_raw", "var_denoised",
    "signal_power", "snr_raw", "snr_denoised", "gain", "mse", "mse_neighbour", "mse_model",
    "mse_curvature_corrected", "signal_curvature", "lost_signal", "df", "df_filtered", "rank", "residual_ratio",
    "residual_noise_ratio",
    "residual_band_ratio", "residual_lag1", "flags", "active", "corr_raw", "corr_denoised", "corr_residual",
    "corr_difference", "corr_noise", "corr_noise_fit", "snr_denoised_signal", "noise_photon_transfer",
    "pmd_style_gain", "mse_true",
    "noise_true", "signal_power_true", "gain_true", "snr_raw_true",
)

SECTIONS = (
    ("Noise", ("noise_raw_median", "noise_denoised_median", "noise_residual_median", "noise_correlation",
               "spectrum_segments", "spectrum_segment_frames")),
    ("Photon transfer", ("photon_transfer_ok", "camera_gain", "camera_offset", "photons_per_pixel_mean",
                         "photon_noise_over_psd_noise")),
    ("SNR", ("snr_gain_median", "snr_gain_active", "snr_gain_global", "snr_gain_median_curvature_corrected",
             "snr_gain_active_curvature_corrected", "active_pixels", "snr_raw_median",
             "snr_denoised_median", "snr_raw_active", "snr_denoised_active", "signal_power_median",
             "denoised_signal_over_raw_noise_median", "pmd_style_gain_median")),
    ("What was removed", ("residual_ratio_median", "residual_ratio_noise_only", "residual_ratio_within",
                          "flagged_signal_removed",
                          "flagged_by_correlation", "flagged_noise_kept", "flagged_regions",
                          "residual_noise_ratio_median", "residual_band_ratio", "raw_band_ratio",
                          "residual_lag1_median", "local_corr_raw_mean", "local_corr_denoised_mean",
                          "local_corr_residual_mean", "local_corr_noise", "local_corr_difference",
                          "local_corr_residual_excess", "local_corr_noise_through_fit",
                          "local_corr_residual_excess_through_fit",
                          "correlation_frames")),
    ("Validation", ("mse_over_noise", "mse_over_noise_neighbour", "mse_over_noise_model",
                    "mse_over_noise_model_unfiltered", "lost_signal_over_noise", "temporal_filter_kept_median",
                    "mse_over_noise_curvature", "heldout_crop", "mse_over_noise_heldout",
                    "mse_over_noise_neighbour_crop")),
)


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        a = abs(value)
        return f"{value:.4g}" if (a == 0 or 1e-3 <= a < 1e5) else f"{value:.3e}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _value(metrics: dict, key: str):
    entry = metrics.get(key)
    return None if entry is None else entry["value"]


def summary_lines(report: dict) -> list[str]:
    """The five numbers a user wants first (plus ground truth when there is one), as text lines."""
    m = report["metrics"]
    lines = []

    def num(key, fmt="{:.2f}"):
        v = _value(m, key)
        return fmt.format(v) if isinstance(v, int | float) and not isinstance(v, bool) else "n/a"

    if "snr_gain_median" in m:
        lines.append(f"SNR gain            {num('snr_gain_median')}x median pixel, {num('snr_gain_active')}x on "
                     f"the most active {num('active_pixels', '{:d}')} pixels")
        lines.append(f"noise removed       residual std / raw noise {num('residual_ratio_median', '{:.3f}')} "
                     f"(median; noise alone through this fit: {num('residual_ratio_noise_only', '{:.3f}')}); "
                     f"{num('residual_ratio_within', '{:.1%}')} of pixels within 0.95-1.10, "
                     f"{num('flagged_signal_removed', '{:.2%}')} flagged for removed signal")
        lines.append(f"residual structure  local correlation {num('local_corr_residual_mean', '{:.3f}')} "
                     f"(noise alone: {num('local_corr_noise', '{:.3f}')}; through this fit: "
                     f"{num('local_corr_noise_through_fit', '{:.3f}')}), spectrum low/high "
                     f"{num('residual_band_ratio', '{:.3f}')} (1 = white)")
        held = num("mse_over_noise_heldout", "{:.4f}")
        lines.append(f"error estimate      MSE / noise variance {num('mse_over_noise', '{:.4f}')} "
                     f"(held-out even/odd fits: {held})")
        def split(key, name, prefix="photon_split"):
            entry = {"value": _value(m, f"{prefix}_{key}"),
                     "interval": _value(m, f"{prefix}_{key}_interval"),
                     "resolved": _value(m, f"{prefix}_{key}_resolved")}
            return headline_text(entry, name)

        if _value(m, "photon_split_ok"):
            lines.append(f"photon splitting    error reduction {split('error_reduction', 'error_reduction')} all "
                         f"pixels, {split('error_reduction_active', 'error_reduction')} most active; signal "
                         f"removed {split('signal_removed_active', 'signal_removed')} (most active, half the "
                         "photons)")
        elif "photon_split_ok" in m:
            lines.append(f"photon splitting    not valid here: {m['photon_split_ok']['description']}")
        if _value(m, "photon_split_whole_ok"):
            share = _value(m, "photon_split_whole_fraction")
            active = split("signal_removed_active", "signal_removed", "photon_split_whole")
            every = split("signal_removed", "signal_removed", "photon_split_whole")
            er = split("error_reduction", "error_reduction", "photon_split_whole")
            lines.append(f"whole movie (split) signal removed {active} most active, {every} all pixels; error "
                         f"reduction {er} all pixels (the denoiser on {share:.0%} of the photons, scored on the rest)")
        elif "photon_split_whole_ok" in m:
            lines.append(f"whole movie (split) not valid here: {m['photon_split_whole_ok']['description']}")
    else:
        lines.append("no raw movie: SNR gains, residual and validation need it (--movie)")
        lines.append(f"denoised signal     std / raw noise {num('denoised_signal_over_raw_noise_median')} "
                     f"(median pixel)")
    inputs = report.get("inputs", {})
    if "frame_rate" in inputs:
        rate = inputs["frame_rate"]
        shape = "x".join(str(n) for n in inputs.get("shape", []))
        lines.append(f"movie               {shape} (T x Y x X), "
                     + (f"{rate:g} frames/s" if isinstance(rate, int | float) else "frame rate unknown"))
    store = report.get("store", {})
    ratio = store.get("compression_ratio_bytes")
    lines.append(f"compression         rank {store.get('total_rank')} over {store.get('n_patches')} patches, "
                 + (f"{ratio:.1f}x smaller than the input" if ratio else "in memory"))
    if "truth_noise_rms_reduction" in m:
        lines.append(f"ground truth        noise RMS reduction {num('truth_noise_rms_reduction')}x, SNR gain "
                     f"{num('truth_snr_gain_median')}x median pixel / {num('truth_snr_gain_active')}x active, "
                     f"median trace corr. {num('truth_median_trace_corr_raw', '{:.3f}')} raw -> "
                     f"{num('truth_median_trace_corr_denoised', '{:.3f}')} denoised")
    return lines


def write_json(folder: Path, report: dict) -> None:
    """``report.json``: NaN and infinities are written as null or strings (strict JSON)."""
    write_report(folder, report)


def write_maps(folder: Path, maps: dict) -> None:
    """``maps.npz``: the per-pixel maps as float32."""
    arrays = {k: np.asarray(maps[k], np.float32) for k in SAVED_MAPS if k in maps}
    np.savez_compressed(folder / "maps.npz", **arrays)


def write_html(folder: Path, report: dict, figures: list[tuple[str, str]]) -> None:
    """``index.html``: key numbers, figures with captions, and every metric with its definition."""
    m = report["metrics"]
    esc = html.escape
    inputs = report.get("inputs", {})
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>pmd report: {esc(str(inputs.get('movie') or inputs.get('store')))}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px;color:#222}"
        "pre{background:#f4f4f4;padding:.8em;overflow-x:auto}img{max-width:100%;border:1px solid #ddd}"
        "figure{margin:1.2em 0}figcaption{font-size:.9em;color:#444;max-width:1100px}"
        "table{border-collapse:collapse;font-size:.85em}td,th{border-bottom:1px solid #ddd;padding:.25em .6em;"
        "text-align:left;vertical-align:top}code{font-size:.95em}</style></head><body>",
        "<h1>pmdcompress denoising report</h1>",
        "<p>",
        f"movie: <code>{esc(str(inputs.get('movie')))}</code>; store: <code>{esc(str(inputs.get('store')))}</code>",
        f"; ground truth: <code>{esc(str(inputs.get('truth')))}</code>" if inputs.get("truth") else "",
        f"; shape (T, Y, X) {esc(str(inputs.get('shape')))}.</p>",
        "<h2>Summary</h2><pre>" + esc("\n".join(report.get("summary", []))) + "</pre>",
        "<p>Definitions: <code>docs/snr.md</code> in the pmdcompress sources (the anchor of each number is in "
        "the tables below and in <code>report.json</code>).</p>",
        "<h2>Figures</h2>",
    ]
    for name, caption in figures:
        parts.append(f"<figure><img src='{esc(name)}' alt='{esc(name)}'><figcaption>{esc(caption)}</figcaption>"
                     "</figure>")
    parts.append("<h2>Numbers</h2>")
    shown = set()
    for title, keys in SECTIONS + (("Ground truth", tuple(k for k in m if k.startswith("truth_"))),
                                   ("Other", ())):
        if title == "Other":
            keys = tuple(k for k in m if k not in shown)
        rows = [k for k in keys if k in m]
        if not rows:
            continue
        parts.append(f"<h3>{esc(title)}</h3><table><tr><th>name</th><th>value</th><th>units</th>"
                     "<th>definition</th><th>meaning</th></tr>")
        for k in rows:
            e = m[k]
            shown.add(k)
            parts.append(f"<tr><td><code>{esc(k)}</code></td><td>{esc(_fmt(e['value']))}</td>"
                         f"<td>{esc(e.get('units', ''))}</td><td><code>#{esc(e['definition'])}</code></td>"
                         f"<td>{esc(e['description'])}</td></tr>")
        parts.append("</table>")
    regions = report.get("regions") or []
    if regions:
        parts.append("<h3>Regions flagged for removed signal</h3><table><tr><th>centre (y, x)</th><th>pixels</th>"
                     "<th>bounding box</th><th>mean residual std / noise</th></tr>")
        for r in regions:
            parts.append(f"<tr><td>{esc(_fmt(r['centre_yx']))}</td><td>{r['pixels']}</td>"
                         f"<td>{esc(_fmt(r['bbox']))}</td><td>{r['mean_residual_ratio']:.3f}</td></tr>")
        parts.append("</table>")
    timings = report.get("timings", {})
    if timings:
        parts.append("<h3>Timings (s)</h3><p>" + esc(", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
                     + "</p>")
    parts.append(f"<p style='color:#888'>pmdcompress {esc(str(report.get('software_version')))}, "
                 f"{esc(str(report.get('created')))}</p></body></html>")
    (folder / "index.html").write_text("\n".join(p for p in parts if p), encoding="utf-8")


def write_folder(folder: Path, report: dict, maps: dict, figures: list[tuple[str, str]]) -> None:
    """Everything but the figures (already drawn into ``folder``)."""
    folder = Path(folder)
    report["figures"] = [{"file": f, "caption": c} for f, c in figures]
    write_json(folder, report)
    write_maps(folder, maps)
    write_html(folder, report, figures)
