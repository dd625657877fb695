"""Reading an imaging series from an NWB file (pynwb, the ``nwb`` extra).

NWB stores ``TwoPhotonSeries`` / ``OnePhotonSeries`` data as (frames, x, y[, z]),
x being the image's width (the NWB schema; roiextractors and NeuroConv read and
write it so), so frames are transposed to (T, Y, X) here.  The rate is the
series' ``rate``, or from its ``timestamps`` when it has those instead.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

SERIES_TYPES = ("TwoPhotonSeries", "OnePhotonSeries")


class _TransposedFrames:
    """Lazy (T, Y, X) view of an NWB (T, X, Y[, Z]) dataset; slicing reads only those frames."""

    def __init__(self, data, plane: int | None):
        self._data = data
        self._plane = plane
        t, x, y = (int(n) for n in data.shape[:3])
        self.shape = (t, y, x)
        self.dtype = np.dtype(data.dtype)
        self.ndim = 3

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("NWB frames are read by slices of frames")
        block = self._data[key] if self._plane is None else self._data[key, :, :, self._plane]
        return np.ascontiguousarray(np.asarray(block).transpose(0, 2, 1))


def _candidates(nwbfile) -> dict:
    """Imaging series by name: in /acquisition, then in processing modules (motion-corrected ones)."""
    found = {}
    for name, obj in nwbfile.acquisition.items():
        if type(obj).__name__ in SERIES_TYPES:
            found[name] = obj
    for module in nwbfile.processing.values():
        for iname, interface in module.data_interfaces.items():
            if type(interface).__name__ in SERIES_TYPES:
                found.setdefault(f"{module.name}/{iname}", interface)
            for sub in getattr(interface, "corrected_image_stacks", {}).values() if hasattr(
                    interface, "corrected_image_stacks") else []:
                corrected = getattr(sub, "corrected", None)
                if corrected is not None and type(corrected).__name__ in SERIES_TYPES:
                    found.setdefault(f"{module.name}/{iname}/{sub.name}", corrected)
    return found


def open_nwb_series(path, name: str, *, series: str | None, plane: int | None):
    """``(frames, frame_rate, rate_source, closer, series_name)`` of one imaging series of an NWB file."""
    try:
        from pynwb import NWBHDF5IO
    except ImportError as exc:
        raise ImportError(f"{name}: reading NWB needs pynwb; install it with: pip install 'pmdcompress[nwb]'") from exc
    try:
        io = NWBHDF5IO(str(path), "r")
        nwbfile = io.read()
    except Exception as exc:
        raise InputError(f"{name}: not a readable NWB file ({' '.join(str(exc).split())[:200]})") from exc
    try:
        found = _candidates(nwbfile)
        if not found:
            raise InputError(f"{name}: no TwoPhotonSeries or OnePhotonSeries in the NWB file")
        if series is None:
            if len(found) > 1:
                raise InputError(f"{name}: {len(found)} imaging series ({', '.join(found)});"
                                 " choose one with {dataset}",
                                 "dataset")
            series = next(iter(found))
        if series not in found:
            raise InputError(f"{name}: no imaging series {series!r}; series found: {', '.join(found)}")
        obj = found[series]
        data = obj.data
        if getattr(obj, "external_file", None) is not None and (data is None or len(data.shape) < 3):
            raise InputError(f"{name}: series {series!r} points to external files; open those files instead")
        ndim = len(data.shape)
        if ndim == 4:
            nz = int(data.shape[3])
            if plane is None:
                raise InputError(f"{name}: series {series!r} is volumetric ({nz} planes); pick one with {{plane}}"
                                 f" (0-{nz - 1})", "plane")
            if not 0 <= plane < nz:
                raise InputError(f"{name}: {{plane}} {plane} out of range; the series has {nz} planes (0-{nz - 1})",
                                 "plane")
        elif ndim == 3:
            if plane not in (None, 0):
                raise InputError(f"{name}: {{plane}} {plane} out of range; the series has 1 plane", "plane")
            plane = None
        else:
            raise InputError(f"{name}: series {series!r} has {ndim}-D data {tuple(data.shape)}; need (T, x, y)")
        rate, source = _series_rate(obj)
        return _TransposedFrames(data, plane), rate, source, io.close, series
    except BaseException:
        io.close()
        raise


def _series_rate(obj) -> tuple[float | None, str | None]:
    rate = getattr(obj, "rate", None)
    if rate is not None and math.isfinite(float(rate)) and float(rate) > 0:
        return float(rate), "NWB rate"
    stamps = getattr(obj, "timestamps", None)
    if stamps is not None and len(stamps) > 1:
        n = min(len(stamps), 10000)
        steps = np.diff(np.asarray(stamps[:n], np.float64))
        step = float(np.median(steps)) if steps.size else 0.0
        if step > 0:
            return 1.0 / step, "NWB timestamps (median interval)"
    return None, None
