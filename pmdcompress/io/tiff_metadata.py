"""What rig metadata in a TIFF says about its layout and frame rate.

- ScanImage (2016 and later): which channels were saved, how many slices make a
  volume, how many flyback frames follow each volume, and the frame or volume
  rate.  Pages are interleaved channel fastest, then slice, then flyback, then
  time; :func:`scanimage_layout` turns that into the (base page, page stride)
  of one plane and channel, and refuses to guess when several are interleaved.
- ImageJ hyperstacks (``finterval`` or ``fps``), OME-TIFF (``TimeIncrement``)
  and pmdcompress's own TIFFs (``frame_rate`` in the JSON description): the
  frame rate.

The ScanImage keys and their meaning follow the ScanImage BigTIFF specification
and what roiextractors (BSD-3) learned from ScanImage's developers: the saved
channels are ``SI.hChannels.channelSave`` (not channelsActive), a movie is
volumetric when ``SI.hStackManager.enable`` is true and there is more than one
slice, and ``numFramesPerVolumeWithFlyback - numFramesPerVolume`` flyback frames
end every volume.
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ..errors import InputError

log = logging.getLogger("pmdcompress")

# OME TimeIncrementUnit -> seconds.
_OME_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class TiffLayout:
    """One (plane, channel) of an interleaved TIFF: frame ``t`` is page ``base + t * stride``."""

    n_frames: int
    base: int
    stride: int
    plane: int | None
    channel: int | None
    frame_rate: float | None
    frame_rate_source: str | None
    description: str


def _flat_ints(value) -> list[int]:
    """``1``, ``[1, 2]`` or ``[[1], [2]]`` (MATLAB row or column vectors) -> [1, 2]."""
    if isinstance(value, (list, tuple)):
        out: list[int] = []
        for v in value:
            out += _flat_ints(v)
        return out
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    return [int(value)]


def _number(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def scanimage_frame_data(tif) -> dict | None:
    """The non-varying ``SI.*`` frame data of a ScanImage TIFF, or None when there are none.

    From ScanImage's own header (BigTIFF files of ScanImage 2016+), else from the
    first page's Software tag, where ScanImage repeats them.
    """
    if not tif.is_scanimage:
        return None
    try:
        frame_data = (tif.scanimage_metadata or {}).get("FrameData") or {}
    except Exception:  # a damaged ScanImage header: fall back to the tags
        frame_data = {}
    if not frame_data:
        import tifffile

        software = tif.pages.first.software or ""
        if software.startswith("SI."):
            try:
                frame_data = tifffile.matlabstr2py(software)
            except Exception:
                frame_data = {}
    return frame_data if isinstance(frame_data, dict) and frame_data else None


def scanimage_layout(frame_data: dict, n_pages: int, name: str, *, plane, channel) -> TiffLayout:
    """Where one plane and channel of a ScanImage acquisition lies among its ``n_pages`` pages."""
    get = frame_data.get
    saved = _flat_ints(get("SI.hChannels.channelSave", 1)) or [1]
    n_channels = len(saved)
    n_slices = int(_number(get("SI.hStackManager.actualNumSlices")) or _number(get("SI.hStackManager.numSlices")) or 1)
    enable = get("SI.hStackManager.enable", get("SI.hFastZ.enable", False))
    volumetric = bool(enable) and n_slices > 1
    if volumetric:
        per_slice = get("SI.hStackManager.framesPerSlice", 1)
        if _number(per_slice) != 1:
            raise InputError(
                f"{name}: ScanImage volume with {per_slice} frames per slice (a slow stack); only fast volumes"
                " with one frame per slice are supported"
            )
        per_volume = int(_number(get("SI.hStackManager.numFramesPerVolume")) or n_slices)
        with_flyback = int(_number(get("SI.hStackManager.numFramesPerVolumeWithFlyback")) or per_volume)
        flyback = max(with_flyback - per_volume, 0)
        n_planes = n_slices
        rate = _number(get("SI.hRoiManager.scanVolumeRate"))
        rate_key = "SI.hRoiManager.scanVolumeRate"
    else:
        n_planes, flyback = 1, 0
        rate = _number(get("SI.hRoiManager.scanFrameRate"))
        average = _number(get("SI.hScan2D.logAverageFactor")) or 1.0
        if rate is not None:
            rate /= average
        rate_key = "SI.hRoiManager.scanFrameRate" + (f" / logAverageFactor {average:g}" if average != 1 else "")

    if bool(get("SI.hRoiManager.mroiEnable", False)):
        log.warning("%s: a multi-ROI ScanImage acquisition: each page holds the ROIs stacked with fly-to lines"
                    " between them, and is read as one frame (split the ROIs with ScanImage's tools first)", name)
    cycle = (n_planes + flyback) * n_channels
    n_frames, extra = divmod(n_pages, cycle)
    what = (f"{n_planes} planes" + (f" (+{flyback} flyback)" if flyback else "") + " and " if n_planes > 1 else "")
    what += f"{n_channels} channel{'s' if n_channels > 1 else ''} (ScanImage channel {', '.join(map(str, saved))})"
    missing = []
    if n_planes > 1 and plane is None:
        missing.append(f"{{plane}} (0-{n_planes - 1})")
    if n_channels > 1 and channel is None:
        missing.append(f"{{channel}} (0-{n_channels - 1})")
    if missing:
        raise InputError(f"{name}: ScanImage file with {what} interleaved; pick one with " + " and ".join(missing),
                         "plane", "channel")
    for value, n, what_one, option in ((plane, n_planes, "plane", "{plane}"), (channel, n_channels, "channel",
                                                                               "{channel}")):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
            raise InputError(
                f"{name}: {option} {value!r} out of range; the ScanImage file has {n} {what_one}"
                f"{'s' if n != 1 else ''} (0-{n - 1})", what_one
            )
    if n_frames < 1:
        raise InputError(f"{name}: ScanImage file has {n_pages} pages, fewer than one {cycle}-page volume")
    if extra:
        log.warning("%s: the last %d of %d pages form an incomplete %s; they are left out",
                    name, extra, n_pages, "volume" if n_planes > 1 else "set of channels")
    p = int(plane or 0)
    c = int(channel or 0)
    desc = f"ScanImage, {what}" + (f", plane {p}" if n_planes > 1 else "") + (
        f", channel {c} (ScanImage channel {saved[c]})" if n_channels > 1 else "")
    return TiffLayout(
        n_frames=n_frames, base=p * n_channels + c, stride=cycle,
        plane=plane if n_planes > 1 or plane is not None else None,
        channel=channel if n_channels > 1 or channel is not None else None,
        frame_rate=rate, frame_rate_source=f"ScanImage {rate_key}" if rate else None, description=desc,
    )


def tiff_frame_rate(tif) -> tuple[float | None, str | None]:
    """Frame rate (Hz) and where it came from, from ImageJ, OME or pmdcompress metadata; (None, None)."""
    try:
        ij = tif.imagej_metadata if tif.is_imagej else None
    except Exception:
        ij = None
    if ij:
        interval = _number(ij.get("finterval"))
        if interval is not None:
            return 1.0 / interval, "ImageJ finterval"
        fps = _number(ij.get("fps"))
        if fps is not None:
            return fps, "ImageJ fps"
        info = ij.get("Info")
        rate = _json_rate(info) if isinstance(info, str) else None
        if rate is not None:
            return rate, "pmdcompress metadata"
    if tif.is_ome:
        rate = _ome_rate(tif.ome_metadata)
        if rate is not None:
            return rate, "OME TimeIncrement"
    if tif.is_shaped:
        rate = _json_rate(tif.pages.first.description)
        if rate is not None:
            return rate, "pmdcompress metadata"
    return None, None


def ngff_frame_rate(attrs: dict) -> float | None:
    """1 / the time scale of an OME-Zarr image's first level, when its time axis is in seconds (else None)."""
    try:
        ms = attrs.get("ome", attrs).get("multiscales", [])[0]
        axes = ms["axes"]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        for axis, step in zip(axes, scale, strict=True):
            if axis.get("type") == "time":
                factor = _OME_TIME_UNITS.get({"second": "s", "millisecond": "ms"}.get(axis.get("unit"), ""))
                step = _number(step)
                return 1.0 / (step * factor) if factor and step else None
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    return None


def _json_rate(text: str) -> float | None:
    try:
        d = json.loads(text)
    except (TypeError, ValueError):
        return None
    return _number(d.get("frame_rate")) if isinstance(d, dict) else None


def _ome_rate(xml: str | None) -> float | None:
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("}Pixels") or el.tag == "Pixels":
            step = _number(el.get("TimeIncrement"))
            if step is None:
                return None
            unit = _OME_TIME_UNITS.get(el.get("TimeIncrementUnit", "s"))
            return None if unit is None else 1.0 / (step * unit)
    return None
