"""Plain numpy twins of the numba kernels and of the store's model (slow, obvious)."""

from __future__ import annotations

import numpy as np


def spatial_roughness(u, patch_shape):
    h, w = patch_shape
    out = []
    for c in range(u.shape[1]):
        img = u[:, c].reshape(h, w).astype(np.float64)
        tv = np.abs(np.diff(img, axis=0)).sum() + np.abs(np.diff(img, axis=1)).sum()
        n_edges = h * (w - 1) + w * (h - 1)
        l1 = np.abs(img).sum()
        out.append(np.inf if (l1 == 0 or n_edges == 0) else (tv / n_edges) / (l1 / (h * w)))
    return np.array(out)


def temporal_roughness(v):
    v = np.asarray(v, np.float64)
    out = []
    for c in range(v.shape[1]):
        x = v[:, c]
        l1 = np.abs(x).sum()
        out.append(np.inf if (l1 == 0 or len(x) < 3) else np.abs(np.diff(x, 2)).sum() / l1)
    return np.array(out)


def dense_model(store):
    """The whole movie from a store's factors, straight from docs/format.md."""
    t, y, x = store.shape
    h, w = store.patch_shape
    out = np.zeros((t, y, x), np.float64)
    temporal = np.asarray(store.temporal[...], np.float64)
    for p, (y0, x0) in enumerate(store.patch_origins):
        k0, k1 = store.component_offsets[p], store.component_offsets[p + 1]
        u = store.spatial[:, k0:k1].astype(np.float64)
        patch = (u @ temporal[k0:k1]).T.reshape(t, h, w)
        weight = store.weights_y[p][:, None] * store.weights_x[p][None, :]
        out[:, y0 : y0 + h, x0 : x0 + w] += weight * patch
    model = store.mean + store.noise * out
    if store.trend is not None:  # piecewise linear between knots, constant beyond them
        frames = np.arange(t)
        for yy in range(y):
            for xx in range(x):
                model[:, yy, xx] += np.interp(frames, store.trend_frames, store.trend[:, yy, xx])
    return model
