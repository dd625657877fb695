"""Miniscope (UCLA Miniscope, V3/V4 DAQ) recordings: ``.avi`` videos read through PyAV (the ``miniscope`` extra).

A recording folder holds ``0.avi``, ``1.avi``, ... (about 1000 frames each) and a
``metaData.json`` with the frame rate; one ``.avi`` can also be opened alone.  The
DAQ software writes 8-bit grayscale frames, uncompressed (``GREY``) or lossless
(FFV1), so decoding gives back exactly the recorded values.  PyAV (FFmpeg's
libraries in a wheel, well kept) does the decoding; frames are decoded in order,
and a read that goes back in time reopens the file, so streaming passes (the
pipeline's access pattern) decode every frame once.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from pathlib import Path

import numpy as np

from ..errors import InputError

log = logging.getLogger("pmdcompress")

_GRAY_FORMATS = {"gray": ("gray", np.uint8), "gray8": ("gray", np.uint8), "gray16le": ("gray16le", np.uint16),
                 "gray16be": ("gray16le", np.uint16)}


def _av(name: str):
    try:
        import av
    except ImportError as exc:
        raise ImportError(f"{name}: reading Miniscope .avi needs PyAV; install it with: pip install "
                          "'pmdcompress[miniscope]'") from exc
    return av


def recording_files(path: Path, name: str) -> list[Path]:
    """The ``.avi`` files of a recording: the file itself, or a folder's numbered videos in order."""
    if path.is_file():
        return [path]
    numbered = [(int(p.stem), p) for p in path.glob("*.avi") if p.stem.isdigit()]
    if not numbered:
        raise InputError(f"{name}: a folder without numbered Miniscope videos (0.avi, 1.avi, ...)")
    numbered.sort()
    indices = [i for i, _ in numbered]
    if indices != list(range(indices[0], indices[0] + len(indices))):
        missing = sorted(set(range(indices[0], indices[-1] + 1)) - set(indices))
        listing = ", ".join(f"{i}.avi" for i in missing)
        raise InputError(f"{name}: Miniscope videos missing from the sequence: {listing}")
    return [p for _, p in numbered]


def metadata_rate(folder: Path) -> float | None:
    """``frameRate`` of a Miniscope ``metaData.json`` (a number or e.g. ``"30FPS"``), else None."""
    meta = folder / "metaData.json"
    if not meta.is_file():
        return None
    try:
        value = json.loads(meta.read_text()).get("frameRate")
    except (OSError, ValueError, AttributeError):
        return None
    m = re.match(r"\s*([0-9.]+)", str(value)) if value is not None else None
    rate = float(m.group(1)) if m else None
    return rate if rate and math.isfinite(rate) and rate > 0 else None


class MiniscopeFrames:
    """Lazy (T, Y, X) frames of one or more ``.avi`` files; ``frames[t0:t1]`` decodes only those."""

    def __init__(self, files: list[Path], name: str):
        av = _av(name)
        self._av, self._files, self._name = av, files, name
        self._lock = threading.Lock()
        counts, shape, fmt, rate = [], None, None, None
        for f in files:
            try:
                with av.open(str(f)) as container:
                    stream = container.streams.video[0]
                    n = int(stream.frames or 0)
                    if n <= 0:  # no count in the header: count packets (no decoding)
                        n = sum(1 for p in container.demux(stream) if p.size)
                    this = (int(stream.height), int(stream.width))
                    pix = stream.codec_context.pix_fmt
                    if rate is None and stream.average_rate:
                        rate = float(stream.average_rate)
            except (av.error.FFmpegError, IndexError, OSError) as exc:
                raise InputError(f"{f}: not a readable video ({' '.join(str(exc).split())[:160]})") from None
            if shape is not None and this != shape:
                raise InputError(f"{f}: frames of {this[0]}x{this[1]}, but {files[0].name} has {shape[0]}x{shape[1]}")
            shape, fmt = this, fmt or pix
            counts.append(n)
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.shape = (int(self._starts[-1]), *shape)
        self._format, dtype = _GRAY_FORMATS.get(fmt, ("rgb24", np.uint8))
        if self._format == "rgb24":
            log.info("%s: %s video; the first colour channel is read as the frame", name, fmt)
        self.dtype = np.dtype(dtype)
        self.ndim = 3
        self.stream_rate = rate
        self._open_index = None  # file currently open, its frame iterator and next frame number
        self._container = self._frames = None
        self._next = 0

    def _seek(self, index: int, frame: int):
        """Position the decoder of file ``index`` so that the next frame it yields is ``frame``."""
        if self._open_index != index or frame < self._next:
            self.close()
            self._container = self._av.open(str(self._files[index]))
            self._frames = self._container.decode(self._container.streams.video[0])
            self._open_index, self._next = index, 0
        while self._next < frame:
            next(self._frames)
            self._next += 1

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("Miniscope frames are read by contiguous slices of frames")
        t0, t1, _ = key.indices(self.shape[0])
        out = np.empty((max(t1 - t0, 0), *self.shape[1:]), self.dtype)
        with self._lock:
            t = t0
            while t < t1:
                index = int(np.searchsorted(self._starts, t, side="right") - 1)
                local = t - int(self._starts[index])
                stop = min(t1, int(self._starts[index + 1]))
                self._seek(index, local)
                for k in range(t, stop):
                    try:
                        frame = next(self._frames)
                    except StopIteration:
                        raise InputError(f"{self._files[index]}: video ends before frame {k - self._starts[index]}"
                                         " (file cut short?)") from None
                    self._next += 1
                    pixels = frame.to_ndarray(format=self._format)
                    out[k - t0] = pixels[..., 0] if pixels.ndim == 3 else pixels
                t = stop
        return out

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._frames = self._open_index = None


def open_miniscope(path: Path, name: str):
    """``(frames, frame_rate, rate source)`` of a Miniscope ``.avi`` or recording folder."""
    files = recording_files(path, name)
    frames = MiniscopeFrames(files, name)
    folder = path if path.is_dir() else path.parent
    rate = metadata_rate(folder)
    if rate is not None:
        return frames, rate, "Miniscope metaData.json frameRate"
    if frames.stream_rate:
        return frames, frames.stream_rate, "AVI frame rate"
    return frames, None, None
