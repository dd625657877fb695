"""Figures of a demixing result (matplotlib, Agg backend): contours and traces."""

from __future__ import annotations

import numpy as np

# zlib level 1: at the default (6) encoding took a fifth of the figures' time, and the files were no smaller
# (neurofinder_dev: 857 kB at 6, 740 kB at 1).
PNG_OPTIONS = {"compress_level": 1}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def contours_png(result, path, *, dpi=100) -> None:
    """Mask outlines over the correlation image, each numbered by its index."""
    plt = _pyplot()
    labels = result.label_image()
    img = result.images.get("correlation", result.images.get("mean"))
    height, width = labels.shape
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    edge &= labels > 0
    overlay = np.zeros((height, width, 4))
    overlay[edge] = (1.0, 0.35, 0.0, 1.0)
    size = 8.0 * max(width / max(height, 1), 0.5)
    fig, ax = plt.subplots(figsize=(size, 8.0 * height / max(width, 1) * size / 8.0 + 0.4))
    lo, hi = np.percentile(img, [1, 99.5]) if img.size else (0, 1)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    ax.imshow(overlay, interpolation="nearest")
    fontsize = 7 if result.n_components < 150 else 5
    for j, (y, x) in enumerate(result.centers):
        ax.text(x, y, str(j), color="cyan", fontsize=fontsize, ha="center", va="center")
    ax.set_title(f"{result.n_components} components over the correlation image")
    ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95)
    fig.savefig(path, dpi=dpi, format="png", pil_kwargs=PNG_OPTIONS)
    plt.close(fig)


def traces_png(result, path, *, max_traces=60, dpi=100) -> None:
    """dF/F of the components (the ``max_traces`` of highest SNR), stacked, time in seconds."""
    plt = _pyplot()
    n = result.n_components
    snr = np.asarray(result.metrics.get("snr", np.zeros(n)))
    order = np.argsort(-snr, kind="stable")[:max_traces] if n else np.zeros(0, int)
    order = np.sort(order)
    t = np.arange(result.n_frames) / (result.fs or 1.0)
    # More points than pixels only slow the drawing: keep each bin's min and max.
    step = max(1, result.n_frames // 1500)
    n_bins = result.n_frames // step
    tb = np.repeat(t[: n_bins * step : step], 2)
    fig, ax = plt.subplots(figsize=(12, max(3, 0.25 * len(order) + 1)))
    for row, j in enumerate(order):
        d = np.asarray(result.dff[j], np.float64)
        lo, hi = (np.percentile(d, 1), np.percentile(d, 99.9)) if d.size else (0.0, 1.0)
        blocks = d[: n_bins * step].reshape(n_bins, step)
        env = np.stack([blocks.min(axis=1), blocks.max(axis=1)], axis=1).ravel()
        ax.plot(tb, row + 0.9 * (env - lo) / max(hi - lo, 1e-9), lw=0.5, color="k")
    ax.set_yticks(np.arange(len(order)))
    ax.set_yticklabels([str(j) for j in order], fontsize=6)
    ax.set_xlabel("time (s)" if result.fs else "frame (frame rate unknown)")
    ax.set_ylabel("component (dF/F, each scaled)")
    ax.set_xlim(t[0] if t.size else 0, t[-1] if t.size else 1)
    ax.set_ylim(-0.5, max(len(order), 1))
    title = f"dF/F of {len(order)} of {n} components"
    ax.set_title(title + (" (highest SNR)" if len(order) < n else ""))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.5 / fig.get_figheight(), top=1 - 0.35 / fig.get_figheight())
    fig.savefig(path, dpi=dpi, format="png", pil_kwargs=PNG_OPTIONS)
    plt.close(fig)
