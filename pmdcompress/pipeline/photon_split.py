"""The report's photon-splitting section: a split crop re-compressed with the store's parameters.

The measure itself is :mod:`pmdcompress.report.photon_split`; this module hands
it the denoiser (a compression, which the report package never runs itself) and
the scratch folder where the split's movies are kept on disk
(:mod:`pmdcompress.report.frame_files`), so that the report's memory does not
grow with the crop.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
from pathlib import Path

from ..errors import OutputError
from ..io.atomic import partial_path
from ..report.frame_files import FrameFile, Frames
from ..report.photon_split import report_section
from .compress import compress

__all__ = ["photon_split_section", "split_scratch", "store_denoiser"]


def store_denoiser(store, *, workers=None):
    """``denoise(A)``: compress ``A`` in memory with the store's parameters and reconstruct it.

    ``A`` in a file (:class:`~pmdcompress.report.frame_files.FrameFile`) is compressed through the compression's
    own reader (a chunk of frames at a time) and its reconstruction is read back a chunk at a time
    (:class:`~pmdcompress.report.frame_files.Frames`); an array is compressed and reconstructed whole.
    """
    params = store.metadata.parameters
    options = {k: params[k] for k in ("method", "max_rank", "consecutive_failures", "fit_frames", "false_pass",
                                       "seed", "temporal_filter", "detrend") if k in params}
    options["patch_shape"] = tuple(store.patch_shape)
    options["overlap"] = tuple(store.metadata.overlap)

    def denoise(a):
        if isinstance(a, FrameFile):
            fit = compress(a.memmap(), None, workers=workers, hash_input=False, **options)
            return Frames(fit.read, fit.shape, "float32")
        fit = compress(a, None, workers=workers, hash_input=False, **options)
        return fit.read(0, a.shape[0])

    return denoise


@contextlib.contextmanager
def split_scratch(beside=None):
    """A fresh scratch folder for the split's movies, removed on leaving (an error or an interrupt included).

    Beside ``beside`` (the report's output: hidden, named by this process and ending in ``.scratch.partial``,
    as the compression's scratch, so that ``pmd batch`` cleans a killed run's leftovers); without it, or where
    that folder cannot be made (the report's own output then says why), in the system's temporary folder.
    """
    folder = None
    if beside is not None:
        folder = partial_path(Path(beside))
        folder = folder.with_name(folder.name.removesuffix(".partial") + ".scratch.partial")
        try:
            folder.mkdir()
        except OSError:
            folder = None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="pmd-split-", suffix=".scratch"))
    try:
        yield folder
    except OSError as exc:
        # A full disk while writing a scratch file: say whose scratch and where, not an unnamed write.
        if isinstance(exc, OutputError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        reason = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        raise OutputError(f"{beside if beside is not None else folder}: {reason} for the photon split's scratch "
                          f"files in {folder.parent} (partial outputs removed)") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def photon_split_section(movie, store, *, workers=None, whole: bool = False, scratch=None) -> dict:
    """The ``photon_split`` section of ``report.json`` for ``store`` and its raw ``movie``; with ``whole``, its
    ``whole`` entry is the whole-movie split (``photon_split_whole``: one more compression of the crop).

    The split's movies are kept in ``scratch`` (a folder), or in a temporary folder made and removed here
    (:func:`split_scratch`)."""
    denoise = store_denoiser(store, workers=workers)
    if scratch is not None:
        return report_section(movie, store, denoise, whole=whole, scratch=scratch)
    with split_scratch() as folder:
        return report_section(movie, store, denoise, whole=whole, scratch=folder)
