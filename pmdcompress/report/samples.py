"""Samples for the figures: the most active regions, their traces, frames and a short clip.
"""

from __future__ import annotations

import numpy as np


def pick_regions(score: np.ndarray, n: int = 4, *, radius: int = 1, min_distance: int = 8) -> list[tuple[int, int]]:
    """Centres of the ``n`` highest, mutually distant maxima of ``score`` (away from the border)."""
    score = np.array(score, np.float64)
    h, w = score.shape
    score[~np.isfinite(score)] = -np.inf
    score[:radius], score[h - radius :] = -np.inf, -np.inf
    score[:, :radius], score[:, w - radius :] = -np.inf, -np.inf
    out = []
    for _ in range(n):
        i = int(np.argmax(score))
        if not np.isfinite(score.flat[i]):
            break
        y, x = divmod(i, w)
        out.append((y, x))
        ys = slice(max(0, y - min_distance), y + min_distance + 1)
        score[ys, max(0, x - min_distance) : x + min_distance + 1] = -np.inf
    return out


def sample_traces(movie, store, centres, *, window: int = 1000, radius: int = 1) -> dict:
    """Raw, denoised and residual traces (mean of a small square) of a few regions over a frame window.

    Also picks the frame of the window where the regions are brightest, for the frame strip.
    """
    n_frames = store.shape[0]
    t0, t1 = 0, min(n_frames, window)
    raw, den = [], []
    for y, x in centres:
        ys, xs = (y - radius, y + radius + 1), (x - radius, x + radius + 1)
        den.append(store.read(t0, t1, ys, xs).reshape(t1 - t0, -1).mean(axis=1, dtype=np.float64))
    if movie is not None and centres:
        raw = [np.empty(t1 - t0) for _ in centres]
        for a in range(t0, t1, 128):  # a few frames at a time, whatever the frame size
            b = min(a + 128, t1)
            block = movie.view(a, b)
            for i, (y, x) in enumerate(centres):
                raw[i][a - t0 : b - t0] = (block[:, y - radius : y + radius + 1, x - radius : x + radius + 1]
                                           .reshape(b - a, -1).mean(axis=1, dtype=np.float64))
    den_arr = np.array(den) if den else np.zeros((0, t1 - t0))
    if len(den_arr):
        z = (den_arr - den_arr.mean(axis=1, keepdims=True)) / (den_arr.std(axis=1, keepdims=True) + 1e-12)
        peak = int(np.argmax(z.sum(axis=0)))
    else:
        peak = (t1 - t0) // 2
    return {"frames": [t0, t1], "centres": [list(c) for c in centres], "radius": radius,
            "raw": np.array(raw) if raw else None, "denoised": den_arr, "peak_frame": t0 + peak}


def sample_frames(movie, store, t: int) -> dict:
    """One frame of the raw movie, the denoised movie and the residual."""
    d = store.read(t, t + 1)[0]
    out = {"frame": int(t), "denoised": d}
    if movie is not None:
        y = movie.read(t, t + 1)[0].astype(np.float32)
        out.update(raw=y, residual=y - d)
    return out


def sample_clip(movie, store, centre_frame: int, *, n: int = 100, side: int = 192, centre_yx=None) -> dict:
    """A short clip (raw, denoised, residual) around a frame, cropped to at most ``side`` pixels."""
    n_frames, height, width = store.shape
    t0 = int(np.clip(centre_frame - n // 3, 0, max(n_frames - n, 0)))
    t1 = min(n_frames, t0 + n)
    cy, cx = centre_yx if centre_yx is not None else (height // 2, width // 2)
    y0 = int(np.clip(cy - side // 2, 0, max(height - side, 0)))
    x0 = int(np.clip(cx - side // 2, 0, max(width - side, 0)))
    ys, xs = (y0, min(height, y0 + side)), (x0, min(width, x0 + side))
    den = store.read(t0, t1, ys, xs)
    out = {"frames": [t0, t1], "crop": [*ys, *xs], "denoised": den}
    if movie is not None:
        raw = movie.read(t0, t1)[:, ys[0] : ys[1], xs[0] : xs[1]].astype(np.float32)
        out.update(raw=raw, residual=raw - den)
    return out
