"""Figures of the report: PNG files drawn with matplotlib's Agg canvas (no pyplot, no display).

matplotlib is imported inside the functions, so importing pmdcompress (or
running ``pmd --help``) never pays for it.  Each ``*_figure`` function takes
the analysis (see :func:`pmdcompress.report.analyse`) and a folder, writes one
file and returns ``(file name, caption)``, or None when the data for it are
missing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DPI = 80
PANEL = 3.2  # inches per image panel


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    # A fixed layout: constrained layout costs more than the drawing itself.
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=0.04, right=0.97, bottom=0.12, top=0.88, wspace=0.3, hspace=0.35)
    return fig


def _save(fig, folder: Path, name: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(folder / name, dpi=DPI)
    return name


def _limits(image, lo=1.0, hi=99.0, symmetric=False):
    finite = np.asarray(image, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    if symmetric:
        v = float(np.percentile(np.abs(finite), hi)) or 1.0
        return -v, v
    a, b = (float(v) for v in np.percentile(finite, [lo, hi]))
    return (a, b) if b > a else (a, a + 1.0)


def _show(fig, ax, image, title, *, cmap="gray", vmin=None, vmax=None, norm=None, label=None, colorbar=True):
    """An image panel; without a colour bar the title gives the colour range."""
    if vmin is None and vmax is None and norm is None:
        vmin, vmax = _limits(image)
    if norm is not None:
        # Zero or negative values under a log scale show as the lowest colour, not as holes.
        import matplotlib

        cmap = matplotlib.colormaps[cmap].with_extremes(bad=matplotlib.colormaps[cmap](0.0))
        image = np.where(np.isfinite(image) & (image > 0), image, norm.vmin)
    im = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, norm=norm, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        ax.set_title(title, fontsize=9)
        cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
        cb.ax.tick_params(labelsize=7)
        if label:
            cb.set_label(label, fontsize=7)
    else:
        lo, hi = im.get_clim()
        ax.set_title(f"{title}\n[{lo:.3g}, {hi:.3g}]{' ' + label if label else ''}", fontsize=8)
    return im


def _panels(n, aspect):
    return _figure(PANEL * n, PANEL * aspect + 0.3)


def images_figure(data: dict, folder: Path):
    """Mean image and the local correlation images of raw, denoised and residual."""
    maps = data["maps"]
    names = [("corr_raw", "raw"), ("corr_denoised", "denoised"), ("corr_residual", "residual")]
    present = [(k, t) for k, t in names if k in maps]
    h, w = maps["mean"].shape
    fig = _panels(1 + len(present), h / w)
    axes = fig.subplots(1, 1 + len(present), squeeze=False)[0]
    _show(fig, axes[0], maps["mean"], "mean image", label="ADU", colorbar=False)
    # Raw and residual share a scale (set by the raw image); the denoised movie is much
    # smoother, so its correlations are higher everywhere and get their own scale.
    tops = {k: max(_limits(maps[k], hi=99.5)[1], 0.05) for k, _ in present}
    shared = tops.get("corr_raw", max(tops.values(), default=1.0))
    for ax, (key, title) in zip(axes[1:], present, strict=True):
        top = tops[key] if key == "corr_denoised" else shared
        _show(fig, ax, maps[key], f"local correlation: {title}", cmap="magma", vmin=0.0, vmax=top, colorbar=False)
    return _save(fig, folder, "images.png"), (
        "Mean image and 8-neighbour local correlation images (raw and residual on the same colour scale; the "
        "smoother denoised movie on its own). Neurons light up in the raw and denoised images; in the residual "
        "they should not.")


def _outline(ax, mask, color: str, width: float) -> None:
    """Outline the True region of a map (nothing where there is none, or where the frame is one pixel wide or
    high: a contour needs a grid of 2 x 2 at least, and a movie of one column has none)."""
    if mask is not None and min(np.shape(mask)) >= 2 and np.any(mask):
        ax.contour(mask, levels=[0.5], colors=color, linewidths=width)


def snr_figure(data: dict, folder: Path):
    """SNR maps (raw, denoised), the gain map and their histograms."""
    from matplotlib.colors import LogNorm

    maps = data["maps"]
    if "snr_raw" not in maps:
        if "snr_denoised_signal" not in maps:
            return None
        h, w = maps["mean"].shape
        fig = _panels(1, h / w)
        ax = fig.subplots()
        _show(fig, ax, maps["snr_denoised_signal"], "std(denoised) / stored raw noise", cmap="viridis")
        return _save(fig, folder, "snr.png"), (
            "Signal of the denoised movie over the raw noise stored with the factors (no raw movie: no gains).")
    h, w = maps["mean"].shape
    fig = _figure(PANEL * 4, PANEL * h / w + 0.3)
    axes = fig.subplots(1, 4)
    snr_raw, snr_den, gain = maps["snr_raw"], maps["snr_denoised"], maps["gain"]
    both = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (snr_raw, snr_den)])
    lo_s, hi_s = (float(np.percentile(both, 2)), float(np.percentile(both, 99.8))) if both.size else (0.01, 1.0)
    snr_norm = LogNorm(vmin=max(lo_s, 1e-3), vmax=max(hi_s, 2 * lo_s, 2e-3))
    _show(fig, axes[0], snr_raw, "SNR raw (log scale)", cmap="viridis", norm=snr_norm)
    _show(fig, axes[1], snr_den, "SNR denoised (log scale)", cmap="viridis", norm=snr_norm)
    g = gain[np.isfinite(gain) & (gain > 0)]
    lo, hi = (float(np.percentile(g, 1)), float(np.percentile(g, 99.5))) if g.size else (1.0, 10.0)
    _show(fig, axes[2], gain, "SNR gain", cmap="plasma", norm=LogNorm(vmin=max(lo, 0.5), vmax=max(hi, lo * 1.01)))
    _outline(axes[2], maps.get("active"), "white", 0.5)
    ax = axes[3]
    pos = [v[np.isfinite(v) & (v > 0)] for v in (snr_raw, snr_den)]
    if all(p.size for p in pos):
        lo = max(min(float(np.percentile(p, 1)) for p in pos), 1e-3)
        hi = max(float(np.percentile(p, 99.9)) for p in pos)
        bins = np.geomspace(lo, max(hi, lo * 10), 60)
        ax.hist(pos[0], bins=bins, histtype="step", color="0.4", label="raw")
        ax.hist(pos[1], bins=bins, histtype="step", color="C0", label="denoised")
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    m = data["metrics"]
    def num(key):
        v = m.get(key, {}).get("value")
        return f"{v:.2f}" if isinstance(v, int | float) else "n/a"

    ax.set_title(f"per-pixel SNR; gain median {num('snr_gain_median')}, active {num('snr_gain_active')}",
                 fontsize=8)
    ax.set_xlabel("SNR (signal std / noise std)", fontsize=8)
    ax.tick_params(labelsize=7)
    return _save(fig, folder, "snr.png"), (
        "SNR per pixel: signal std over the raw noise std (raw), over the estimated error of the denoised movie "
        "(denoised). The gain map is their ratio; white contours: the most active pixels, chosen on the raw movie.")


def residual_figure(data: dict, folder: Path):
    """Raw noise, residual std / raw noise with flags, residual correlation and spectra."""
    maps, curves = data["maps"], data["curves"]
    if "residual_ratio" not in maps:
        return None
    h, w = maps["mean"].shape
    spectra = curves.get("spectra")
    n = 3 + (spectra is not None)
    fig = _figure(PANEL * n, PANEL * h / w + 0.3)
    axes = fig.subplots(1, n)
    _show(fig, axes[0], maps["noise_raw"], "raw noise std (PSD)", cmap="cividis", label="ADU")
    _show(fig, axes[1], maps["residual_ratio"], "residual std / raw noise", cmap="RdBu_r", vmin=0.8, vmax=1.2)
    flags = maps.get("flags")
    _outline(axes[1], flags > 0 if flags is not None else None, "black", 0.6)
    corr = maps.get("corr_residual")
    if corr is not None:
        # What pure noise gives: the median over pixels of the correlation image of frame differences
        # (which keep the noise and little of the slow signal) less their regionally shared part.
        noise_map = maps.get("corr_noise", maps.get("corr_difference"))
        noise_level = float(np.nanmedian(noise_map)) if noise_map is not None else 0.0
        excess = corr - noise_level
        _show(fig, axes[2], excess, "residual local corr. (minus noise's)", cmap="RdBu_r",
              vmin=-0.1, vmax=0.1)
    else:
        axes[2].axis("off")
    if spectra is not None:
        ax = axes[3]
        f = np.asarray(spectra["frequency"])
        for key, colour in (("raw", "0.4"), ("denoised", "C0"), ("residual", "C3")):
            v = np.asarray(spectra[key])
            ax.plot(f[1:], v[1:], color=colour, label=key, lw=1)
        ax.set_yscale("log")
        ax.axvline(0.25, color="0.7", lw=0.5, ls="--")
        ax.set_xlabel("cycles per frame", fontsize=8)
        ax.set_ylabel("power / raw noise variance", fontsize=8)
        ax.set_title("spectra pooled over pixels", fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    return _save(fig, folder, "residual.png"), (
        "What was removed. Residual std / raw noise std is 1 where only noise was removed; black contours: "
        "pixels flagged for removed signal (ratio above 1.10, or residual local correlation 0.1 above the "
        "noise's). The residual's local correlation, minus what the noise alone gives, lights up neurons left in "
        "the residual. A white residual has a flat spectrum at 1.")


def ranks_figure(data: dict, folder: Path, store):
    """Components per patch."""
    maps = data["maps"]
    h, w = maps["mean"].shape
    fig = _panels(1, h / w)
    ax = fig.subplots()
    _show(fig, ax, maps["rank"], f"components per patch (total {store.metadata.total_rank})", cmap="viridis",
          colorbar=False)
    ph, pw = store.patch_shape
    origins, ranks = store.patch_origins, store.patch_ranks
    if len(ranks) <= 400:
        for (y0, x0), r in zip(origins, ranks, strict=True):
            ax.text(x0 + pw / 2 - 0.5, y0 + ph / 2 - 0.5, str(int(r)), ha="center", va="center", fontsize=6,
                    color="white")
    return _save(fig, folder, "ranks.png"), (
        f"Components kept per patch ({len(ranks)} patches of {ph}x{pw} pixels, overlap-weighted).")


def traces_figure(data: dict, folder: Path):
    """Raw, denoised and residual traces of the most active regions."""
    tr = data.get("traces")
    if not tr or not len(tr["denoised"]):
        return None
    den = tr["denoised"]
    raw = tr.get("raw")
    n = len(den)
    t0, t1 = tr["frames"]
    t = np.arange(t0, t1)
    fig = _figure(PANEL * 4, 1.5 * n + 0.4)
    fig.subplots_adjust(left=0.07, bottom=0.5 / (1.5 * n + 0.4), top=1 - 0.35 / (1.5 * n + 0.4))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for i, ax in enumerate(axes):
        y, x = tr["centres"][i]
        if raw is not None:
            ax.plot(t, raw[i], color="0.65", lw=0.6, label="raw")
            res = raw[i] - den[i]
            span = float(np.percentile(raw[i], 99.5) - np.percentile(raw[i], 0.5)) or 1.0
            ax.plot(t, res + float(np.percentile(raw[i], 0.5)) - 0.3 * span, color="C3", lw=0.5, label="residual")
        ax.plot(t, den[i], color="C0", lw=0.9, label="denoised")
        r = tr["radius"]
        ax.set_ylabel(f"({y}, {x})", fontsize=7)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7, ncols=3, loc="upper right")
            ax.set_title(f"mean of {2 * r + 1}x{2 * r + 1} pixels around the most active regions (raw SNR)",
                         fontsize=9)
    axes[-1].set_xlabel("frame", fontsize=8)
    return _save(fig, folder, "traces.png"), (
        "Traces of the most active regions, chosen on the raw movie: raw (grey), denoised (blue) and residual "
        "(red, shifted down). The residual should look like the raw noise, with no transients.")


def frames_figure(data: dict, folder: Path):
    """Raw | denoised | residual of one frame."""
    fr = data.get("frame")
    if not fr:
        return None
    keys = [k for k in ("raw", "denoised", "residual") if k in fr]
    h, w = fr["denoised"].shape
    fig = _panels(len(keys), h / w)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    vmin, vmax = _limits(fr.get("raw", fr["denoised"]), 0.5, 99.8)
    for ax, key in zip(axes, keys, strict=True):
        if key == "residual":
            lo, hi = _limits(fr[key], hi=99.5, symmetric=True)
            _show(fig, ax, fr[key], f"residual, frame {fr['frame']}", cmap="RdBu_r", vmin=lo, vmax=hi,
                  colorbar=False)
        else:
            _show(fig, ax, fr[key], f"{key}, frame {fr['frame']}", vmin=vmin, vmax=vmax, colorbar=False)
    return _save(fig, folder, "frames.png"), (
        "One frame (where the most active regions are brightest): raw and denoised on the same scale, and the "
        "residual.")


def validation_figure(data: dict, folder: Path):
    """Photon-transfer curve and the estimates of the denoised movie's error."""
    curves, m = data["curves"], data["metrics"]
    pt = curves.get("photon_transfer")
    estimates = [(k, label) for k, label in (
        ("mse_over_noise_neighbour", "neighbour frames"), ("mse_over_noise_model", "projection noise"),
        ("mse_over_noise", "used for gains"), ("mse_over_noise_heldout", "even/odd fits (crop)"),
        ("truth_mse_over_noise", "ground truth")) if k in m and m[k]["value"] is not None]
    if not estimates and not (pt and "mean" in pt):
        return None
    fig = _figure(PANEL * 2.6, PANEL)
    axes = fig.subplots(1, 2)
    ax = axes[0]
    if pt and "mean" in pt:
        mean, var, used = np.asarray(pt["mean"]), np.asarray(pt["variance"]), np.asarray(pt["used"], bool)
        ax.plot(mean[~used], var[~used], ".", color="0.7", ms=3, label="not used")
        ax.plot(mean[used], var[used], ".", color="C0", ms=3, label="bins")
        if pt.get("ok"):
            x = np.array([pt["offset"], mean[used].max()])
            ax.plot(x, pt["gain"] * (x - pt["offset"]), color="C3", lw=1,
                    label=f"g = {pt['gain']:.3g} ADU/photon, z = {pt['offset']:.4g} ADU")
        ax.set_xlabel("pair mean (ADU)", fontsize=8)
        ax.set_ylabel("pair variance (ADU^2)", fontsize=8)
        ax.legend(fontsize=7)
        ax.set_title("photon transfer", fontsize=9)
    else:
        ax.text(0.5, 0.5, "photon transfer not possible\n" + str(m.get("photon_transfer_ok", {}).get(
            "description", "")), ha="center", va="center", fontsize=8, wrap=True)
        ax.axis("off")
    ax.tick_params(labelsize=7)
    ax = axes[1]
    if estimates:
        values = [m[k]["value"] for k, _ in estimates]
        ax.barh(range(len(values)), values, color=["C3" if k.startswith("truth") else "C0" for k, _ in estimates])
        ax.set_yticks(range(len(values)), [label for _, label in estimates], fontsize=7)
        ax.set_xlabel("MSE of the denoised movie / raw noise variance", fontsize=8)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.4f}", va="center", fontsize=7)
        ax.set_title("error of the denoised movie", fontsize=9)
        ax.tick_params(labelsize=7)
    return _save(fig, folder, "validation.png"), (
        "Left: variance against mean of consecutive-frame pairs, binned, with a robust line (camera gain and "
        "offset). Right: estimates of the denoised movie's mean squared error relative to the raw noise.")


def truth_figure(data: dict, folder: Path):
    """Estimated maps against the ground truth."""
    from matplotlib.colors import LogNorm

    maps, curves = data["maps"], data["curves"]
    if "gain_true" not in maps:
        return None
    h, w = maps["mean"].shape
    fig = _figure(PANEL * 4, PANEL * max(h / w, 0.8) + 0.3)
    axes = fig.subplots(1, 4)
    g = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (maps["gain"], maps["gain_true"])])
    norm = LogNorm(vmin=max(float(np.percentile(g, 1)), 0.5), vmax=float(np.percentile(g, 99.5)))
    _show(fig, axes[0], maps["gain"], "SNR gain, estimated", cmap="plasma", norm=norm)
    _show(fig, axes[1], maps["gain_true"], "SNR gain, ground truth", cmap="plasma", norm=norm)
    ax = axes[2]
    est, true = maps["noise_raw"].ravel(), maps["noise_true"].ravel()
    step = max(1, est.size // 5000)
    ax.plot(true[::step], est[::step], ",", color="C0", alpha=0.5)
    lim = [float(np.nanmin(true)), float(np.nanmax(true))]
    ax.plot(lim, lim, color="C3", lw=0.8)
    ax.set_xlabel("true noise std (ADU)", fontsize=8)
    ax.set_ylabel("estimated (PSD)", fontsize=8)
    ax.set_title("raw noise per pixel", fontsize=9)
    ax.tick_params(labelsize=7)
    ax = axes[3]
    tc = curves.get("truth", {})
    if "trace_corr_raw" in tc:
        a = np.asarray(tc["trace_corr_raw"], float)
        b = np.asarray(tc["trace_corr_denoised"], float)
        ax.plot(a, b, ".", ms=4, color="C0")
        ax.plot([min(np.nanmin(a), np.nanmin(b)), 1], [min(np.nanmin(a), np.nanmin(b)), 1], color="C3", lw=0.8)
        ax.set_xlabel("raw", fontsize=8)
        ax.set_ylabel("denoised", fontsize=8)
        ax.set_title("per-neuron trace correlation with truth", fontsize=9)
    else:
        ax.axis("off")
    ax.tick_params(labelsize=7)
    return _save(fig, folder, "truth.png"), (
        "Against the ground truth of a simulated movie: estimated and true SNR gain maps (same scale), estimated "
        "against true raw noise per pixel, and each neuron's trace correlation with the truth, raw vs denoised.")


def movie_preview(data: dict, folder: Path, *, max_side: int = 192):
    """Animated GIF of a short clip: raw | denoised | residual side by side."""
    from PIL import Image

    clip = data.get("clip")
    if not clip:
        return None
    den = clip["denoised"]
    keys = [k for k in ("raw", "denoised", "residual") if k in clip]
    ref = clip.get("raw", den)
    lo, hi = (float(v) for v in np.percentile(ref, [0.5, 99.8]))
    hi = hi if hi > lo else lo + 1
    r_lim = float(np.percentile(np.abs(clip["residual"]), 99.5)) if "residual" in clip else 1.0
    frames = []
    for i in range(den.shape[0]):
        tiles = []
        for key in keys:
            if key == "residual":
                v = (clip[key][i] / (2 * (r_lim or 1.0)) + 0.5)
            else:
                v = (clip[key][i] - lo) / (hi - lo)
            tiles.append(np.clip(v * 255, 0, 255).astype(np.uint8))
            tiles.append(np.full((den.shape[1], 4), 255, np.uint8))
        frames.append(Image.fromarray(np.concatenate(tiles[:-1], axis=1), mode="L"))
    scale = max(1, math.floor(max_side / max(den.shape[1:])))
    if scale > 1:
        frames = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
    frames[0].save(folder / "preview.gif", save_all=True, append_images=frames[1:], duration=50, loop=0,
                   optimize=False)
    t0, t1 = clip["frames"]
    return "preview.gif", f"Frames {t0}-{t1 - 1}: {' | '.join(keys)} (crop {clip['crop']})."


def photon_split_figure(data: dict, folder: Path):
    """Error reduction (with its range) and signal removed, all pixels and most active, from the split (and from the
    whole-movie split, where the report has one)."""
    from .photon_split import headline, headline_text

    section = data.get("photon_split")
    if not section:
        return None
    fig = _figure(PANEL * 2.6, PANEL)
    axes = fig.subplots(1, 2)
    if not section.get("ok"):
        for ax in axes:
            ax.axis("off")
        axes[0].text(0.0, 0.5, "photon splitting: no valid number\n" + str(section.get("reason", "")),
                     ha="left", va="center", fontsize=8, wrap=True)
        return _save(fig, folder, "photon_split.png"), "Photon splitting was not possible on this movie (reason above)."
    labels = ("all pixels", "most active 10 %")
    sets = [section["all"], section["active"]]
    ax = axes[0]
    for i, s in enumerate(sets):
        er = s.get("error_reduction")
        if er is None:  # this set's estimate was not positive: no number, said so (never a made-up bar)
            ax.text(i, 0.0, "  no valid number", va="bottom", fontsize=7)
            continue
        lo, hi = s.get("error_reduction_low") or er, s.get("error_reduction_high") or er
        ax.errorbar([i], [er], yerr=[[er - lo], [hi - er]], fmt="o", color="C0", capsize=4)
        ax.text(i, er, f"  {er:.1f}x", va="center", fontsize=7)
    ax.set_xticks(range(2), labels, fontsize=7)
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylabel("error reduction (raw MSE / denoised MSE)", fontsize=8)
    ax.set_title("photon splitting: error reduction", fontsize=9)
    ax.tick_params(labelsize=7)
    ax = axes[1]
    whole = data.get("photon_split_whole")
    short = ("all", "most active")
    bars = [(s, f"{label}\n(half)", False) for s, label in zip(sets, short, strict=True)]
    if whole:
        share = f" {whole.get('fraction', 0):.0%}" if whole.get("ok") else ""
        bars += [(whole.get(name, {}), f"{label}\n(whole{share})", True)
                 for name, label in zip(("all", "active"), short, strict=True)]
    for i, (s, _, is_whole) in enumerate(bars):
        head = headline(s, "signal_removed")
        if not is_whole and s.get("signal_removed") is None:
            ax.text(i, 0.0, "no valid number", ha="center", va="bottom", fontsize=7)  # never a bar at zero
            continue
        if is_whole and not head["resolved"]:  # too noisy to name: said so, with its interval where it has one
            ax.text(i, 0.0, headline_text(head, "signal_removed").replace(" (", "\n("), ha="center", va="bottom",
                    fontsize=6)
            continue
        v = 100 * s["signal_removed"]
        ax.bar([i], [v], color="C9" if is_whole else ["C0", "C3"][i % 2])
        lo, hi = head["interval"]
        if is_whole and lo is not None and hi is not None:
            ax.errorbar([i], [v], yerr=[[v - 100 * lo], [100 * hi - v]], fmt="none", color="k", capsize=3, lw=0.8)
        ax.text(i, v, f"{v:.1f} %", ha="center", va="bottom", fontsize=7)
    ax.axhline(10, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(range(len(bars)), [label for _, label, _ in bars], fontsize=6)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylabel("signal removed (%)", fontsize=8)
    ax.set_title("signal left in the residual (shared with neighbours)", fontsize=9)
    ax.tick_params(labelsize=7)
    c = section["counts"]
    if c.get("units") == "ADU":  # no shot-noise curve: the movie itself, split by Gaussian fission
        what = ("the raw movie in its own units (no photon counts: its noise does not follow its mean; Gaussian "
                "split with the measured noise covariance, neighbour noise correlation "
                f"{c['neighbour_correlation']:.3f})")
    else:
        what = (f"the raw counts (gain {c['gain']:.3g} ADU/photon, {c['photons_per_pixel']:.2f} photons per pixel "
                f"per frame, {c['split']} split, neighbour noise correlation {c['neighbour_correlation']:.3f})")
    return _save(fig, folder, "photon_split.png"), (
        f"Photon splitting on the crop {section['crop']} ({section['frames']} frames), scored on its central "
        f"region {section.get('scored', section['crop'])} (a margin of {section.get('margin', [0] * 4)} pixels "
        f"denoised around it keeps the crop's cut cells out of the score): {what} split into halves A and B; A is "
        "compressed with the store's parameters and scored against B (bars: +- 2 standard errors over time blocks). "
        "Signal removed: the residual A - dA's covariance with B at the pixels above and below, over A's (the "
        "signal each pixel shares with its neighbours; no pixel's own noise variance enters it)."
        + _whole_caption(data.get("photon_split_whole")))


def _whole_caption(whole) -> str:
    """The figure caption's sentence on the whole-movie split (``photon_split_whole``), if the report has one."""
    if not whole:
        return ""
    if not whole.get("ok"):
        return f" Whole movie: no valid number ({whole.get('reason', '')})."
    p = whole["fraction"]
    return (f" The halves measure the denoiser on half the photons, which removes more than the store made from the "
            f"whole movie: the bars marked '(whole)' split A with {p:.0%} of the photons from B with the rest "
            "(Gaussian fission in the movie's own units), denoise A and score it on B (+- 2 standard errors over "
            "16-px tiles; 'not resolved' where the interval is wider than 30 points). That is the figure for the "
            "whole movie (an upper bound: it has fewer photons).")


def render_all(data: dict, folder: Path, store, *, movie_preview_gif: bool = False,
               before_validation=None) -> list[tuple[str, str]]:
    """Write every figure that the data allow; returns ``(file, caption)`` pairs in display order.

    ``before_validation`` (optional) is called before the validation figure, the only
    one that shows the held-out numbers; the others are drawn first.
    """
    import matplotlib

    matplotlib.rcParams["savefig.facecolor"] = "white"
    folder = Path(folder)
    makers = {
        "images": lambda: images_figure(data, folder), "snr": lambda: snr_figure(data, folder),
        "residual": lambda: residual_figure(data, folder), "traces": lambda: traces_figure(data, folder),
        "frames": lambda: frames_figure(data, folder), "truth": lambda: truth_figure(data, folder),
        "ranks": lambda: ranks_figure(data, folder, store), "validation": lambda: validation_figure(data, folder),
        "photon_split": lambda: photon_split_figure(data, folder),
    }
    drawn = {}
    for name, make in makers.items():
        if name == "validation" and before_validation is not None:
            before_validation()
        drawn[name] = make()
    order = ("images", "snr", "residual", "traces", "frames", "validation", "photon_split", "truth", "ranks")
    out = [drawn[name] for name in order if drawn[name] is not None]
    if movie_preview_gif:
        item = movie_preview(data, folder)
        if item is not None:
            out.append(item)
    return out
