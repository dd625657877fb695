"""Writers of small but genuine rig and registration files for the interop tests.

- :func:`write_scanimage`: a ScanImage BigTIFF laid out as ScanImage 2016+ writes it
  (the ScanImage BigTIFF specification): the 16-byte BigTIFF header, then ScanImage's
  own header at byte 16 (magic 0x07030301, version, lengths) holding the non-varying
  frame data (``SI.* = ...`` MATLAB assignments) and the ROI-group JSON, then one IFD
  per page with the varying frame data in ImageDescription, the frame data again in
  Software and the ROI JSON in Artist.  Pages are interleaved channel fastest, then
  slice, then flyback frames, then time.  tifffile detects it as ScanImage and
  roiextractors' ScanImageImagingExtractor reads it.
"""

from __future__ import annotations

import json
import struct

import numpy as np

_SI_MAGIC = 0x07030301


def scanimage_frame_data(*, n_channels=1, n_slices=1, flyback=0, frame_rate=30.0, volume_rate=None,
                         frames_per_slice=1, average=1, channel_save=None, stack_enable=None, column=True) -> str:
    """The non-varying ``SI.*`` frame data of an acquisition (MATLAB syntax, as ScanImage writes it).

    ``column``: channelSave as a column vector ``[1;2]`` (ScanImage 2016-2020) or a row ``[1 2]``.
    """
    save = list(range(1, n_channels + 1)) if channel_save is None else list(channel_save)
    save_text = str(save[0]) if len(save) == 1 else "[" + (";" if column else " ").join(str(c) for c in save) + "]"
    volumetric = n_slices > 1 if stack_enable is None else stack_enable
    if volume_rate is None:
        volume_rate = frame_rate / (n_slices + flyback) if n_slices > 1 else frame_rate
    lines = [
        "SI.VERSION_MAJOR = 2023",
        "SI.VERSION_MINOR = 1",
        "SI.acqState = 'grab'",
        "SI.hChannels.channelName = {'Channel 1' 'Channel 2' 'Channel 3' 'Channel 4'}",
        f"SI.hChannels.channelSave = {save_text}",
        "SI.hChannels.channelsActive = [1;2;3;4]",
        f"SI.hFastZ.enable = {'true' if volumetric else 'false'}",
        f"SI.hRoiManager.scanFrameRate = {frame_rate}",
        f"SI.hRoiManager.scanVolumeRate = {volume_rate}",
        f"SI.hScan2D.logAverageFactor = {average}",
        "SI.hScan2D.logFramesPerFile = Inf",
        f"SI.hStackManager.enable = {'true' if volumetric else 'false'}",
        f"SI.hStackManager.framesPerSlice = {frames_per_slice}",
        f"SI.hStackManager.numFramesPerVolume = {n_slices}",
        f"SI.hStackManager.numFramesPerVolumeWithFlyback = {n_slices + flyback}",
        f"SI.hStackManager.numSlices = {n_slices}",
        f"SI.hStackManager.actualNumSlices = {n_slices}",
        "SI.hStackManager.stackMode = 'fast'",
    ]
    return "\n".join(lines) + "\n"


def interleave(movie: np.ndarray, flyback: int = 0) -> np.ndarray:
    """(T, Z, C, Y, X) -> the pages ScanImage writes: channel fastest, then slice, then flyback, then time.

    Flyback pages are filled with -1 so a reader that keeps them is caught.
    """
    t, z, c, y, x = movie.shape
    cycle = np.full((t, z + flyback, c, y, x), -1, movie.dtype)
    cycle[:, :z] = movie
    return cycle.reshape(-1, y, x)


def write_scanimage(path, pages: np.ndarray, frame_data: str, *, frame_rate: float = 30.0,
                    roi_groups: dict | None = None) -> None:
    """Write ``pages`` (N, Y, X) int16 as a ScanImage BigTIFF (see the module docstring)."""
    pages = np.ascontiguousarray(pages, dtype="<i2")
    n, rows, cols = pages.shape
    roi = json.dumps(roi_groups or {"RoiGroups": {"imagingRoiGroup": {"ver": 1, "name": "Default"}}})
    fd_bytes = frame_data.encode() + b"\0"
    roi_bytes = roi.encode() + b"\0"
    out = bytearray()
    out += b"II" + struct.pack("<HHH", 43, 8, 0) + struct.pack("<Q", 0)  # first IFD offset patched below
    out += struct.pack("<IIII", _SI_MAGIC, 3, len(fd_bytes), len(roi_bytes))
    out += fd_bytes + roi_bytes
    prev_next = 8  # where the offset of the next IFD goes
    software = frame_data.encode() + b"\0"
    artist = roi.encode() + b"\0"
    for i in range(n):
        description = (
            f"frameNumbers = {i + 1}\nacquisitionNumbers = 1\nframeNumberAcquisition = {i + 1}\n"
            f"frameTimestamps_sec = {i / frame_rate:.6f}\nacqTriggerTimestamps_sec = \n"
            "nextFileMarkerTimestamps_sec = \nendOfAcquisition = 0\nendOfAcquisitionMode = 0\n"
            "dcOverVoltage = 0\nepoch = [2026 1 1 0 0 0]\n"
        ).encode() + b"\0"
        if len(out) % 2:
            out += b"\0"
        ifd = len(out)
        struct.pack_into("<Q", out, prev_next, ifd)
        n_tags = 14
        extra = ifd + 8 + 20 * n_tags + 8
        blobs = [description, software, artist]  # tag values too long for the IFD, right after it
        desc_off = extra
        soft_off = desc_off + len(description)
        art_off = soft_off + len(software)
        data_off = art_off + len(artist)
        nbytes = rows * cols * 2
        entries = [
            (256, 4, 1, struct.pack("<I", cols)),
            (257, 4, 1, struct.pack("<I", rows)),
            (258, 3, 1, struct.pack("<H", 16)),
            (259, 3, 1, struct.pack("<H", 1)),
            (262, 3, 1, struct.pack("<H", 1)),
            (270, 2, len(description), struct.pack("<Q", desc_off)),
            (273, 16, 1, struct.pack("<Q", data_off)),
            (277, 3, 1, struct.pack("<H", 1)),
            (278, 4, 1, struct.pack("<I", rows)),
            (279, 16, 1, struct.pack("<Q", nbytes)),
            (284, 3, 1, struct.pack("<H", 1)),
            (305, 2, len(software), struct.pack("<Q", soft_off)),
            (315, 2, len(artist), struct.pack("<Q", art_off)),
            (339, 3, 1, struct.pack("<H", 2)),
        ]
        assert len(entries) == n_tags
        out += struct.pack("<Q", n_tags)
        for tag, typ, count, value in entries:
            out += struct.pack("<HHQ", tag, typ, count) + value.ljust(8, b"\0")
        prev_next = len(out)
        out += struct.pack("<Q", 0)
        for b in blobs:
            out += b
        out += pages[i].tobytes()
    with open(path, "wb") as fh:
        fh.write(out)


def write_ome_series(folder, movie: np.ndarray, *, prefix: str = "TSeries-001_Cycle00001",
                     time_increment: float = 1 / 30) -> list:
    """Write (T, C, Y, X) ``movie`` as Bruker/Prairie View writes a T-series: one single-frame OME-TIFF per
    frame and channel (``<prefix>_Ch<c+1>_<t+1:06d>.ome.tif``), each holding the OME-XML of the whole series
    (a TiffData with the UUID and name of every file).  Returns the file paths, time-major."""
    from pathlib import Path

    import tifffile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t, c, ny, nx = movie.shape
    files = [(ti, ci, f"{prefix}_Ch{ci + 1}_{ti + 1:06d}.ome.tif") for ti in range(t) for ci in range(c)]
    uuids = [f"urn:uuid:00000000-0000-0000-0000-{i + 1:012d}" for i in range(len(files))]
    tiffdata = "".join(f'<TiffData FirstC="{ci}" FirstT="{ti}" FirstZ="0" IFD="0" PlaneCount="1"><UUID FileName="'
                       f'{fname}">{uid}</UUID></TiffData>' for (ti, ci, fname), uid in zip(files, uuids, strict=True))
    dtype = {"uint16": "uint16", "int16": "int16", "uint8": "uint8", "float32": "float"}[str(movie.dtype)]
    for (ti, ci, fname), uid in zip(files, uuids, strict=True):
        xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"'
               f' UUID="{uid}"><Image ID="Image:0"><Pixels DimensionOrder="XYCZT" ID="Pixels:0" SizeC="{c}"'
               f' SizeT="{t}" SizeX="{nx}" SizeY="{ny}" SizeZ="1" Type="{dtype}" TimeIncrement="{time_increment}">'
               + "".join(f'<Channel ID="Channel:0:{k}" SamplesPerPixel="1"/>' for k in range(c))
               + tiffdata + "</Pixels></Image></OME>")
        tifffile.imwrite(folder / fname, movie[ti, ci], description=xml, metadata=None)
    return [folder / fname for _, _, fname in files]
