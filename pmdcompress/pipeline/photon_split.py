"""The report's photon-splitting section: a split crop re-compressed with the store's parameters.

The measure itself is :mod:`pmdcompress.report.photon_split`; this module hands
it the denoiser (a compression, which the report package never runs itself).
"""

from __future__ import annotations

from ..report.photon_split import report_section
from .compress import compress

__all__ = ["photon_split_section", "store_denoiser"]


def store_denoiser(store, *, workers=None):
    """``denoise(A)``: compress ``A`` in memory with the store's parameters and reconstruct it."""
    params = store.metadata.parameters
    options = {k: params[k] for k in ("method", "max_rank", "consecutive_failures", "fit_frames", "false_pass",
                                       "seed", "temporal_filter", "detrend") if k in params}
    options["patch_shape"] = tuple(store.patch_shape)
    options["overlap"] = tuple(store.metadata.overlap)

    def denoise(a):
        fit = compress(a, None, workers=workers, hash_input=False, **options)
        return fit.read(0, a.shape[0])

    return denoise


def photon_split_section(movie, store, *, workers=None, whole: bool = False) -> dict:
    """The ``photon_split`` section of ``report.json`` for ``store`` and its raw ``movie``; with ``whole``, its
    ``whole`` entry is the whole-movie split (``photon_split_whole``: one more compression of the crop)."""
    return report_section(movie, store, store_denoiser(store, workers=workers), whole=whole)
