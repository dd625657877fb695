"""Run the whole chain as a new user would, on every kind of recording, and tabulate what went wrong.

Each case is a movie (simulated with ``pmd simulate``'s regimes, or a small hand-made rig file: ScanImage
volumes, OME-TIFF with Z or C axes, HDF5, NWB, suite2p binaries, trailing singleton axes) and a chain of
``pmd`` commands run as subprocesses, exactly as typed: ``compress``, ``info``, ``report``, ``denoise``,
``decompress``, ``demix --export suite2p,nwb,caiman`` and ``evaluate``.  Per command: exit code, CPU seconds
(children's user + system), and the last line of its messages.  Per case: the store's ratio by bytes against
the input file and what looked wrong: an exit code other than 0 (or other than 2 where the case expects a
refusal), a traceback without ``-v``, a refusal that does not name the file, a store larger than its movie,
NaN or negative numbers in ``info --json`` or ``report.json`` where none may be, a warning the case expects
(how an ambiguous file was read, or what harms the result) that was not given.

Round two (session 11) adds what real labs bring besides clean simulations: an 8-bit zebrafish movie, widefield
with vignetting, a dark corner and global hemodynamics, motion-corrected edges filled with 0 or NaN, clipped
(saturated) samples, dead/hot columns, a bidirectional line offset, offset-binary and negative int16 samples,
dark first frames and a laser-power step, a PCO timestamp, 12-bit samples in the high bits, a 50000-frame voltage
ROI, ScanImage with 4 channels or multi-ROI, a Bruker T-series (one OME-TIFF per frame and channel), big-endian
TIFF, HDF5 files holding more than the movie, and ``pmd batch`` over a mixed folder.

Every case that compresses is reported twice (session 12): ``pmd report MOVIE STORE -o DIR`` with the file as
typed, and ``pmd denoise STORE -o ... --report DIR`` with the movie found beside the store (stores are written
beside their movie, as ``pmd compress``'s default output is); per report: exit code, the message on failure,
each photon-split headline number (``photon_split`` and ``photon_split_whole``: a number where resolved, "not
resolved" or "refused: why") and the report's CPU seconds.  Round three (session 12, ``--round 3``) compresses
parts of files on every reader: ``--frames`` (with a step too), ``--crop``, ScanImage plane/channel with both,
HDF5 and Zarr ``--dataset``, NWB, Bruker, TIFF-sequence and suite2p inputs with a selection, and the crop that the
zero/NaN-border warnings name.

    PMD_NUM_WORKERS=1 python benchmarks/bench_new_user.py                 # every case, a few minutes
    PMD_NUM_WORKERS=1 python benchmarks/bench_new_user.py --cases 3p,wide  # cases whose name has these
    PMD_NUM_WORKERS=1 python benchmarks/bench_new_user.py --round 2 --out benchmarks/results/new_user_s11.json
    PMD_NUM_WORKERS=1 python benchmarks/bench_new_user.py --round 3 --skip-demix --out results/new_user_s12_r3.json
    python benchmarks/bench_new_user.py --full                           # widefield at 512 x 512

Writes ``benchmarks/results/new_user.json`` (``--out``); the scratch folder (``--work``) is deleted at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pmdcompress.simulate import simulate_movie  # noqa: E402

PMD = [sys.executable, str(ROOT / "bin" / "pmd")]
PMD_ROOT = ROOT  # the tree whose pmd runs (--tree: another checkout, side by side)


# ---------------------------------------------------------------------------
# Inputs a user brings.
# ---------------------------------------------------------------------------


def _sim(work: Path, name: str, kind: str, frames: int, shape=(64, 64), **kw) -> tuple[Path, Path, np.ndarray]:
    path = work / f"{name}.sim.tif"
    if not path.exists():
        simulate_movie(path, n_frames=frames, shape=shape, kind=kind, seed=kw.pop("seed", 0), **kw)
    return path, work / f"{name}.sim.truth.zarr", tifffile.imread(path)


def _as_dtype(movie: np.ndarray, dtype: str) -> np.ndarray:
    """The movie as a rig that saves ``dtype`` would write it."""
    m = movie.astype(np.float64)
    if dtype == "uint8":
        lo, hi = np.percentile(m, [0.01, 99.99])
        return np.clip(np.round((m - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    if dtype == "int16":
        return np.round(m - np.median(m)).astype(np.int16)
    if dtype == "float32-dff":  # a dF/F movie: small, signed floats
        f0 = np.percentile(m, 20, axis=0)
        return ((m - f0) / np.maximum(f0, 1)).astype(np.float32)
    return m.astype(dtype)


@dataclass
class Case:
    name: str
    kind: str  # what a user would call the recording
    make: object  # work -> (movie path, truth path or None)
    compress: list = field(default_factory=list)  # extra options of pmd compress
    demix: list = field(default_factory=list)  # extra options of pmd demix
    expect_refusal: bool = False  # compress must stop with exit 2 and one line naming the file
    expect_warning: str = ""  # compress must say this (how an ambiguous file was read)
    expect_cells: bool = True  # demix must find some of the truth's sources
    batch: bool = False  # the input is a folder for ``pmd batch "folder/*"``, not one movie


def _simulated(name, kind, frames, shape=(64, 64), dtype=None, **kw):
    def make(work: Path):
        path, truth, movie = _sim(work, name, kind, frames, shape, **kw)
        if dtype is None:
            return path, truth
        # the truth's clean movie is in the simulation's ADU: it scores the demix's masks, not the report
        out = work / f"{name}.{dtype}.tif"
        fs = kw.get("fs")
        tifffile.imwrite(out, _as_dtype(movie, dtype), imagej=dtype in ("uint8", "float32"),
                         metadata={"axes": "TYX", **({"finterval": 1 / fs} if fs else {})} if dtype in
                         ("uint8", "float32") else None)
        return out, truth
    return make


def _ome(axes: str):
    """An OME-TIFF holding a 2p movie with the given leading axes (``Z``: a z-stack only; ``TC``, ``TZ``)."""
    def make(work: Path):
        path, truth, movie = _sim(work, "ome_src", "2p", 200, (48, 48), n_neurons=15)
        if axes == "ZYX":
            data = movie[:40]
        elif axes == "CYX":
            data = movie[:2]
        elif axes == "TCYX":
            data = np.stack([movie, movie // 2], axis=1)
        elif axes == "TZYX":
            data = np.stack([movie, movie[::-1]], axis=1)
        else:
            data = movie
        out = work / f"ome_{axes}.ome.tif"
        tifffile.imwrite(out, data, ome=True, metadata={"axes": axes, "TimeIncrement": 0.1})
        return out, truth
    return make


def _imagej_z_only(work: Path):
    path, truth, movie = _sim(work, "ome_src", "2p", 200, (48, 48), n_neurons=15)
    out = work / "imagej_zstack.tif"
    tifffile.imwrite(out, movie[:40], imagej=True, metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"})
    return out, truth


def _array_file(ext: str, layout: str):
    """``.npy``/``.h5``/``.zarr`` holding the 2p movie as (T, Y, X, 1), (T, Y, X), (1, T, Y, X), ..."""
    def make(work: Path):
        path, truth, movie = _sim(work, "arr_src", "2p", 300, (48, 48), n_neurons=15)
        data = {"TYX": movie, "TYX1": movie[..., None], "1TYX": movie[None], "T1YX": movie[:, None],
                "TY1": movie[:, :, :1]}[layout]
        out = work / f"{layout}{ext}"
        if ext == ".npy":
            np.save(out, data)
        elif ext == ".h5":
            import h5py
            with h5py.File(out, "w") as fh:
                fh["mov"] = data
        elif ext == ".tif":
            tifffile.imwrite(out, data)
        return out, (None if layout == "TY1" else truth)  # one column of the field: the truth is another movie's
    return make


def _scanimage(n_slices: int, n_channels: int):
    def make(work: Path):
        from rig_files import interleave, scanimage_frame_data, write_scanimage

        path, truth, movie = _sim(work, "si_src", "2p", 200, (48, 48), n_neurons=15)
        vol = np.zeros((movie.shape[0], n_slices, n_channels) + movie.shape[1:], np.int16)
        for z in range(n_slices):
            for c in range(n_channels):
                vol[:, z, c] = np.roll(movie, z * 5, axis=2) // (c + 1)
        out = work / f"scanimage_z{n_slices}c{n_channels}.tif"
        fd = scanimage_frame_data(n_channels=n_channels, n_slices=n_slices, flyback=1 if n_slices > 1 else 0,
                                  frame_rate=30.0 * (n_slices + 1))
        write_scanimage(out, interleave(vol, flyback=1 if n_slices > 1 else 0), fd, frame_rate=30.0)
        return out, truth
    return make


def _tiff_sequence(work: Path):
    """One 2-D TIFF per frame, as cameras and Micro-Manager save an image sequence."""
    path, truth, movie = _sim(work, "seq_src", "2p", 300, (48, 48), n_neurons=15)
    folder = work / "tiff_sequence"
    folder.mkdir(exist_ok=True)
    for i, frame in enumerate(movie):
        tifffile.imwrite(folder / f"img_{i}.tif", frame)
    return folder, truth


def _suite2p(work: Path):
    path, truth, movie = _sim(work, "s2p_src", "2p", 300, (48, 48), n_neurons=15)
    plane = work / "suite2p" / "plane0"
    plane.mkdir(parents=True, exist_ok=True)
    movie.astype("<i2").tofile(plane / "data.bin")
    np.save(plane / "ops.npy", np.array({"Ly": 48, "Lx": 48, "nframes": 300, "fs": 30.0}, dtype=object),
            allow_pickle=True)
    return plane / "data.bin", truth


def _nwb(work: Path):
    import datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import OpticalChannel, TwoPhotonSeries

    path, truth, movie = _sim(work, "nwb_src", "2p", 300, (48, 48), n_neurons=15)
    out = work / "rec.nwb"
    nwb = NWBFile(session_description="s10", identifier="x",
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    device = nwb.create_device(name="scope")
    plane = nwb.create_imaging_plane(name="plane", optical_channel=OpticalChannel(name="ch", description="g",
                                     emission_lambda=520.0), description="p", device=device, excitation_lambda=920.0,
                                     indicator="GCaMP6s", location="V1")
    nwb.add_acquisition(TwoPhotonSeries(name="TwoPhotonSeries", data=movie.transpose(0, 2, 1), imaging_plane=plane,
                                        unit="n.a.", rate=30.0))
    with NWBHDF5IO(str(out), "w") as io:
        io.write(nwb)
    return out, truth



# ---------------------------------------------------------------------------
# Round two (session 11): what real labs bring besides clean simulations.
# ---------------------------------------------------------------------------


def _edited(name: str, kind: str, frames: int, shape, edit, *, out_name: str, dtype=None, imagej_rate=None, **kw):
    """A simulated movie changed as a rig or a preprocessing step changes it (``edit(movie as float64) -> movie``),
    saved as ``dtype``; the truth is the simulation's (it scores the demix's masks, not the report)."""
    def make(work: Path):
        path, truth, movie = _sim(work, name, kind, frames, shape, **kw)
        out = work / out_name
        data = edit(movie.astype(np.float64), np.random.default_rng(1))
        data = np.asarray(data).astype(dtype or movie.dtype)
        kwargs = {"imagej": True, "metadata": {"axes": "TYX", "finterval": 1 / imagej_rate}} if imagej_rate else {}
        tifffile.imwrite(out, data, **kwargs)
        return out, truth
    return make


def _zebrafish(m, rng):
    """A light-sheet / two-photon zebrafish movie as saved by many rigs: 8 bits, the full range used."""
    return _as_dtype(m, "uint8")


def _vignette(shape, strength=0.7):
    y, x = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot((y - shape[0] / 2) / shape[0], (x - shape[1] / 2) / shape[1]) / 0.7071
    return 1 - strength * r ** 2


def _widefield_rig(m, rng):
    """Widefield through a cranial window: vignetting, a dark corner outside the window (offset + read noise
    only), and global hemodynamic/breathing fluctuations of a few percent on every pixel."""
    t, ny, nx = m.shape
    offset = 100.0
    tt = np.arange(t) / 20.0
    glob = 1 + 0.04 * np.sin(2 * np.pi * 0.15 * tt) + 0.02 * np.sin(2 * np.pi * 9.0 * tt + 1.0)
    out = offset + (m - offset) * _vignette((ny, nx))[None] * glob[:, None, None]
    y, x = np.mgrid[:ny, :nx]
    dark = (y + x) < ny // 3  # a dark corner: the window's edge
    out[:, dark] = offset + rng.normal(0, 4.0, (t, int(dark.sum())))
    return np.clip(np.round(out), 0, 65535)


def _zero_edges(m, rng):
    """Motion-corrected one-photon movie whose shifted-in edges are 0 (suite2p, NoRMCorre with zero fill):
    each frame's border width follows its shift, 0-6 pixels per side."""
    out = m.copy()
    t = len(m)
    shifts = np.cumsum(rng.normal(0, 0.6, (t, 2)), axis=0)
    shifts = np.clip(np.round(shifts - shifts.mean(axis=0)), -6, 6).astype(int)
    for i, (dy, dx) in enumerate(shifts):
        if dy > 0:
            out[i, :dy] = 0
        elif dy < 0:
            out[i, dy:] = 0
        if dx > 0:
            out[i, :, :dx] = 0
        elif dx < 0:
            out[i, :, dx:] = 0
    return out


def _nan_edges(m, rng):
    return np.where(_zero_edges(m, rng) == 0, np.nan, m).astype(np.float32)


def _saturated(m, rng):
    """A detector (or 12-bit digitizer) that clips: the brightest 1% of samples read 4095."""
    top = np.percentile(m, 99)
    return np.clip(np.round(200 + (m - 100) * 3895 / (top - 100)), 0, 4095)


def _bad_columns(m, rng):
    """A dead column (constant 0), a hot column (constant 65535) and a stuck row of the offset."""
    out = m.copy()
    out[:, :, 10] = 0
    out[:, :, 40] = 65535
    out[:, 30, :] = 100
    return out


def _bidirectional(m, rng):
    """Resonant bidirectional scanning with a phase error: every other line shifted by 2 pixels."""
    out = m.copy()
    out[:, 1::2] = np.roll(m[:, 1::2], 2, axis=2)
    return out


def _offset_binary(m, rng):
    """Signed 16-bit samples stored as uint16 with 32768 added (offset binary), as some rigs save them."""
    return m - 100 + 32768


def _negative_int16(m, rng):
    """ScanImage-style int16: the PMT offset subtracted, so the background sits below 0 (about -60)."""
    return m - 160


def _power_step(m, rng):
    """Laser power raised 2x at the middle of the recording, and 8 dark frames at the start (shutter closed)."""
    out = m.copy()
    half = len(m) // 2
    out[half:] = 100 + (m[half:] - 100) * 2
    out[:8] = 100 + rng.normal(0, 4.0, out[:8].shape)
    return np.clip(np.round(out), 0, 65535)


def _pco_timestamp(m, rng):
    """A PCO sCMOS camera in binary timestamp mode: the first 14 pixels of every frame hold the frame number and
    time as BCD bytes (0-153), not light."""
    out = m.copy()
    for i in range(len(m)):
        digits = f"{i + 1:08d}" + f"{(i * 50) % 1000000:06d}" + "0" * 14
        out[i, 0, :14] = [int(digits[2 * k]) * 16 + int(digits[2 * k + 1]) for k in range(14)]
    return out


def _msb_aligned(m, rng):
    """A 12-bit camera whose samples are stored in the high bits of uint16 (every value a multiple of 16)."""
    return np.clip(np.round(m), 0, 4095) * 16


def _dark_start(m, rng):
    """The shutter opens 8 frames into the recording: those frames hold the offset and read noise only."""
    out = m.copy()
    out[:8] = 100 + rng.normal(0, 4.0, out[:8].shape)
    return np.clip(np.round(out), 0, 65535)


def _bigendian(work: Path):
    path, truth, movie = _sim(work, "arr_src", "2p", 300, (48, 48), n_neurons=15)
    out = work / "bigendian.tif"
    tifffile.imwrite(out, movie, byteorder=">")
    return out, truth


def _h5_several(layout: str):
    """HDF5 files holding more than the movie: a mean image as 'data' beside the movie, or the movie under a
    name that is not a default beside timestamps."""
    def make(work: Path):
        import h5py

        path, truth, movie = _sim(work, "arr_src", "2p", 300, (48, 48), n_neurons=15)
        out = work / f"h5_{layout}.h5"
        with h5py.File(out, "w") as fh:
            if layout == "mean-as-data":  # 'data' is a 2-D mean image, the movie is 'mov'
                fh["data"] = movie.mean(axis=0)
                fh["mov"] = movie
            elif layout == "mov-and-data":  # two movies: the raw 'mov' and a registered 'data'
                fh["mov"] = movie
                fh["data"] = movie[:, ::-1]
            elif layout == "imaging":  # a non-default name, plus timestamps
                fh["imaging"] = movie
                fh["timestamps"] = np.arange(len(movie)) / 30.0
        return out, truth
    return make


def _bruker_series(work: Path):
    """Bruker/Prairie T-series: one single-frame OME-TIFF per frame, each carrying the OME-XML of the whole
    series, both channels' files in one folder (read: --channel)."""
    from rig_files import write_ome_series

    path, truth, movie = _sim(work, "seq_src", "2p", 300, (48, 48), n_neurons=15)
    folder = work / "bruker_tseries"
    write_ome_series(folder, np.stack([movie // 3, movie], axis=1))
    return folder, truth


def _scanimage_mroi(work: Path):
    from rig_files import scanimage_frame_data, write_scanimage

    path, truth, movie = _sim(work, "si_src", "2p", 200, (48, 48), n_neurons=15)
    fd = scanimage_frame_data().replace("SI.hStackManager.stackMode", "SI.hRoiManager.mroiEnable = true\n"
                                        "SI.hStackManager.stackMode")
    # two 48 x 24 ROIs stacked with 8 fly-to lines between them, in one page
    pages = np.concatenate([movie[:, :, :24], np.zeros((len(movie), 8, 24), movie.dtype), movie[:, :, 24:]], axis=1)
    out = work / "scanimage_mroi.tif"
    write_scanimage(out, pages.astype(np.int16), fd, frame_rate=30.0)
    return out, None


def _zarr(layout: str):
    """A Zarr v3 array holding the movie, or a group holding it beside a mean image (read with --dataset)."""
    def make(work: Path):
        import zarr

        path, truth, movie = _sim(work, "arr_src", "2p", 300, (48, 48), n_neurons=15)
        out = work / f"zarr_{layout}.zarr"
        if not out.exists():
            if layout == "array":
                arr = zarr.create_array(store=str(out), shape=movie.shape, dtype=movie.dtype, chunks=(50, 48, 48))
                arr[:] = movie
            else:  # a group: the movie 'mov' and its mean image 'mean'
                group = zarr.open_group(store=str(out), mode="w")
                group.create_array("mov", shape=movie.shape, dtype=movie.dtype, chunks=(50, 48, 48))[:] = movie
                group.create_array("mean", shape=movie.shape[1:], dtype="f8")[:] = movie.mean(axis=0)
        return out, truth
    return make


#: The first case of round two (session 11) and of round three (session 12) in :func:`cases`.
ROUND_TWO_FIRST = "zebrafish-uint8"
ROUND_THREE_FIRST = "sel-frames"


def cases(full: bool) -> list[Case]:
    wide_shape = (512, 512) if full else (256, 256)
    return [
        Case("2p-somatic", "two-photon somatic, uint16", _simulated("2p", "2p", 600, n_neurons=20)),
        Case("2p-dendritic", "two-photon dendritic, uint16", _simulated("dend", "dendritic", 600, n_neurons=30)),
        Case("1p-uint16", "one-photon microendoscope, uint16", _simulated("1p", "1p", 600, n_neurons=15),
             demix=["--kind", "1p"]),
        Case("1p-uint8", "one-photon microendoscope, 8-bit, noise shared", _simulated(
            "1pc", "1p-correlated", 600, dtype="uint8", fs=20.0, n_neurons=15), demix=["--kind", "1p"]),
        Case("3p-dim", "three-photon, 0.2 photons/px, 2 Hz, 300 frames", _simulated(
            "3p", "3p", 300, (96, 96))),
        Case("3p-very-dim", "three-photon, 0.1 photons/px, 1 Hz, 150 frames", _simulated(
            "3pvd", "3p", 150, (96, 96), photons=0.1, fs=1.0)),
        Case("widefield", f"widefield {wide_shape[0]}x{wide_shape[1]}, 20 Hz, uint16", _simulated(
            "wide", "widefield", 300, wide_shape, fs=20.0, n_neurons=60), expect_cells=False),
        Case("widefield-float", "widefield as dF/F float32, 128x128", _simulated(
            "widef", "widefield", 300, (128, 128), fs=20.0, n_neurons=30, dtype="float32-dff"), expect_cells=False),
        Case("voltage", "voltage 1 kHz, 3000 frames", _simulated("volt", "voltage", 3000, n_neurons=8),
             demix=["--kind", "voltage"]),
        Case("short-20", "two-photon, 20 frames", _simulated("short", "2p", 20, n_neurons=20), expect_cells=False),
        Case("long-8000", "two-photon 32x32, 8000 frames", _simulated("long", "2p", 8000, (32, 32), n_neurons=10)),
        Case("2p-float64", "two-photon as float64", _simulated("2p", "2p", 600, dtype="float64", n_neurons=20)),
        Case("2p-int16", "two-photon as int16 with negative values", _simulated("2p", "2p", 600, dtype="int16",
                                                                                  n_neurons=20)),
        Case("2p-float32", "two-photon as float32 (ImageJ)", _simulated("2p", "2p", 600, dtype="float32",
                                                                         n_neurons=20)),
        Case("scanimage-z3c2", "ScanImage 3 planes x 2 channels, flyback", _scanimage(3, 2),
             compress=["--plane", "1", "--channel", "0"]),
        Case("scanimage-z3c2-noopt", "ScanImage volume without --plane/--channel", _scanimage(3, 2),
             expect_refusal=True),
        Case("ome-TCYX", "OME-TIFF T x C", _ome("TCYX"), compress=["--channel", "1"]),
        Case("ome-TZYX", "OME-TIFF T x Z", _ome("TZYX"), compress=["--plane", "0"]),
        Case("ome-ZYX", "OME-TIFF with only a Z axis (a z-stack)", _ome("ZYX"), expect_warning="read as 40 frames"),
        Case("ome-CYX", "OME-TIFF with only a C axis", _ome("CYX"), expect_refusal=True),
        Case("imagej-ZYX", "ImageJ stack saved with only Z", _imagej_z_only, expect_warning="read as 40 frames"),
        Case("npy-TYX1", "(T, Y, X, 1) .npy", _array_file(".npy", "TYX1")),
        Case("npy-1TYX", "(1, T, Y, X) .npy", _array_file(".npy", "1TYX")),
        Case("tif-TYX1", "(T, Y, X, 1) TIFF", _array_file(".tif", "TYX1")),
        Case("h5-TYX", "HDF5 'mov' (T, Y, X)", _array_file(".h5", "TYX")),
        Case("h5-TYX1", "HDF5 'mov' (T, Y, X, 1)", _array_file(".h5", "TYX1")),
        Case("npy-TY1", "(T, Y, 1) .npy: one column", _array_file(".npy", "TY1"), expect_cells=False,
             expect_warning="300 frames of 48x1 pixels"),
        Case("tiff-sequence", "a folder of 300 single-frame TIFFs", _tiff_sequence),
        Case("suite2p-bin", "suite2p data.bin + ops.npy", _suite2p),
        Case("nwb", "NWB TwoPhotonSeries", _nwb),
        # round two (session 11)
        Case("zebrafish-uint8", "zebrafish light-sheet/2p, uint8, 240x76x87 (issue 13's case)", _edited(
            "zf", "2p-dense", 240, (76, 87), _zebrafish, out_name="zebrafish_uint8.tif", dtype="uint8",
            photons=3.0, n_neurons=60)),
        Case("widefield-rig", "widefield 128x128, vignetted, dark corner, global hemodynamics", _edited(
            "widef", "widefield", 300, (128, 128), _widefield_rig, out_name="widefield_rig.tif", fs=20.0,
            n_neurons=30, imagej_rate=20.0), expect_cells=False),
        Case("1p-zero-edges", "one-photon, motion-corrected, shifted-in edges = 0", _edited(
            "1p", "1p", 600, (64, 64), _zero_edges, out_name="1p_zero_edges.tif", n_neurons=15),
            demix=["--kind", "1p"], expect_warning="border of whole rows/columns equal to 0"),
        Case("1p-nan-edges", "one-photon, motion-corrected, shifted-in edges = NaN (float32)", _edited(
            "1p", "1p", 600, (64, 64), _nan_edges, out_name="1p_nan_edges.tif", dtype="float32",
            n_neurons=15), expect_refusal=True),
        Case("2p-saturated", "two-photon, 12-bit, brightest 1% clipped at 4095", _edited(
            "2p", "2p", 600, (64, 64), _saturated, out_name="2p_saturated.tif", n_neurons=20)),
        Case("2p-bad-columns", "two-photon with a dead column (0), a hot one (65535), a stuck row", _edited(
            "2p", "2p", 600, (64, 64), _bad_columns, out_name="2p_bad_columns.tif", n_neurons=20)),
        Case("2p-bidirectional", "resonant bidirectional scan, odd lines 2 px off", _edited(
            "2p", "2p", 600, (64, 64), _bidirectional, out_name="2p_bidi.tif", n_neurons=20),
            expect_warning="odd lines are shifted +2 px"),
        Case("2p-offset-binary", "signed samples stored as uint16 + 32768", _edited(
            "2p", "2p", 600, (64, 64), _offset_binary, out_name="2p_offset_binary.tif", n_neurons=20)),
        Case("2p-int16-below0", "ScanImage-like int16, background at -60", _edited(
            "2p", "2p", 600, (64, 64), _negative_int16, out_name="2p_int16_below0.tif", dtype="int16",
            n_neurons=20)),
        Case("2p-dark-start", "two-photon, shutter opens at frame 8", _edited(
            "2p", "2p", 600, (64, 64), _dark_start, out_name="2p_dark_start.tif", n_neurons=20),
            expect_warning="leave them out with --frames 8:"),
        Case("2p-power-step", "laser power 2x at mid-movie, 8 dark frames first", _edited(
            "2p", "2p", 600, (64, 64), _power_step, out_name="2p_power_step.tif", n_neurons=20),
            expect_warning="brightness steps at frame 300"),
        Case("1p-pco-timestamp", "one-photon sCMOS with PCO's binary timestamp in 14 pixels", _edited(
            "1p", "1p", 600, (64, 64), _pco_timestamp, out_name="1p_pco_timestamp.tif", n_neurons=15),
            demix=["--kind", "1p"]),
        Case("1p-12bit-msb", "one-photon, 12-bit samples in the high bits of uint16", _edited(
            "1p", "1p", 600, (64, 64), _msb_aligned, out_name="1p_msb.tif", n_neurons=15), demix=["--kind", "1p"]),
        Case("voltage-long-thin", "voltage ROI 1 kHz, 50000x32x32", _simulated(
            "vlong", "voltage", 50000, (32, 32), n_neurons=3), demix=["--kind", "voltage"]),
        Case("scanimage-c4", "ScanImage 1 plane x 4 channels", _scanimage(1, 4), compress=["--channel", "2"]),
        Case("scanimage-mroi", "ScanImage multi-ROI (2 ROIs stacked with fly-to lines)", _scanimage_mroi,
             expect_warning="multi-ROI", expect_cells=False),
        Case("bruker-ome-series", "Bruker/Prairie T-series: one OME-TIFF per frame and channel", _bruker_series,
             compress=["--channel", "1"]),
        Case("tif-bigendian", "big-endian TIFF", _bigendian),
        Case("h5-mean-as-data", "HDF5: 'data' a mean image, 'mov' the movie", _h5_several("mean-as-data")),
        Case("h5-mov-and-data", "HDF5: 'mov' and 'data' both movies", _h5_several("mov-and-data"),
             expect_warning="'mov'"),
        Case("batch-mixed", "pmd batch over a folder: movies, a cut TIFF, an image, an ambiguous HDF5, notes",
             _mixed_folder, batch=True),
        Case("h5-imaging", "HDF5: movie as 'imaging' beside 'timestamps'", _h5_several("imaging"),
             expect_warning="read dataset 'imaging'"),
        # round three (session 12): part of a file (frames, crop, plane, channel, dataset) on every reader, each
        # then reported from the file as typed (the report reads the part the store records)
        Case("sel-frames", "two-photon, --frames 100:500", _simulated("2p", "2p", 600, n_neurons=20),
             compress=["--frames", "100:500"]),
        Case("sel-crop", "two-photon, --crop 4:60,6:58", _simulated("2p", "2p", 600, n_neurons=20),
             compress=["--crop", "4:60,6:58"], expect_cells=False),
        Case("sel-frames-crop", "two-photon, --frames 50:550 --crop 0:48,16:64", _simulated(
            "2p", "2p", 600, n_neurons=20), compress=["--frames", "50:550", "--crop", "0:48,16:64"],
            expect_cells=False),
        Case("sel-frames-step", "two-photon, every other frame (--frames 0:600:2: no step, refused)", _simulated(
            "2p", "2p", 600, n_neurons=20), compress=["--frames", "0:600:2"], expect_refusal=True),
        Case("sel-scanimage-all", "ScanImage plane 2, channel 1, frames 10:190, crop", _scanimage(3, 2),
             compress=["--plane", "2", "--channel", "1", "--frames", "10:190", "--crop", "4:44,4:44"],
             expect_cells=False),
        Case("sel-scanimage-c4-crop", "ScanImage 4 channels, --channel 3 --crop", _scanimage(1, 4),
             compress=["--channel", "3", "--crop", "0:40,8:48"], expect_cells=False),
        Case("sel-ome-TZYX-frames", "OME-TIFF T x Z, --plane 1 --frames 20:180", _ome("TZYX"),
             compress=["--plane", "1", "--frames", "20:180"], expect_cells=False),
        Case("sel-h5-dataset", "HDF5 'mov' and 'data', --dataset data", _h5_several("mov-and-data"),
             compress=["--dataset", "data"], expect_cells=False),
        Case("sel-h5-dataset-frames", "HDF5 'imaging' beside 'timestamps', --dataset imaging --frames 0:200",
             _h5_several("imaging"), compress=["--dataset", "imaging", "--frames", "0:200"], expect_cells=False),
        Case("sel-zarr", "Zarr v3 array", _zarr("array")),
        Case("sel-zarr-dataset-crop", "Zarr group ('mov' + 'mean'), --dataset mov --crop 8:48,0:40", _zarr("group"),
             compress=["--dataset", "mov", "--crop", "8:48,0:40"], expect_cells=False),
        Case("sel-nwb-frames", "NWB TwoPhotonSeries, --frames 0:250", _nwb, compress=["--frames", "0:250"],
             expect_cells=False),
        Case("sel-bruker-frames", "Bruker T-series, --channel 0 --frames 0:200", _bruker_series,
             compress=["--channel", "0", "--frames", "0:200"], expect_cells=False),
        Case("sel-tiff-sequence-crop", "folder of single-frame TIFFs, --crop 0:40,0:40", _tiff_sequence,
             compress=["--crop", "0:40,0:40"], expect_cells=False),
        Case("sel-suite2p-frames", "suite2p data.bin, --frames 0:200", _suite2p, compress=["--frames", "0:200"],
             expect_cells=False),
        Case("sel-uint8-crop", "zebrafish uint8, --crop 8:68,8:80", _edited(
            "zf", "2p-dense", 240, (76, 87), _zebrafish, out_name="zebrafish_uint8.tif", dtype="uint8",
            photons=3.0, n_neurons=60), compress=["--crop", "8:68,8:80"], expect_cells=False),
        Case("sel-float32-frames", "two-photon float32 (ImageJ), --frames 0:300", _simulated(
            "2p", "2p", 600, dtype="float32", n_neurons=20), compress=["--frames", "0:300"], expect_cells=False),
        Case("sel-1p-zero-edges-crop", "one-photon, zero-filled edges, the warning's --crop", _edited(
            "1p", "1p", 600, (64, 64), _zero_edges, out_name="1p_zero_edges.tif", n_neurons=15),
            compress=["--crop", "6:58,6:58"], demix=["--kind", "1p"], expect_cells=False),
        Case("sel-nan-edges-crop", "one-photon, NaN edges (float32), --crop 6:58,6:58", _edited(
            "1p", "1p", 600, (64, 64), _nan_edges, out_name="1p_nan_edges.tif", dtype="float32",
            n_neurons=15), compress=["--crop", "6:58,6:58"], demix=["--kind", "1p"], expect_cells=False),
        Case("sel-dark-start-frames", "two-photon, shutter opens at frame 8, --frames 8:", _edited(
            "2p", "2p", 600, (64, 64), _dark_start, out_name="2p_dark_start.tif", n_neurons=20),
            compress=["--frames", "8:"], expect_cells=False),
        Case("sel-voltage-frames", "voltage 1 kHz, --frames 0:2000", _simulated("volt", "voltage", 3000, n_neurons=8),
             compress=["--frames", "0:2000"], demix=["--kind", "voltage"], expect_cells=False),
        Case("sel-short-frames", "two-photon 20 frames, --frames 2:18", _simulated("short", "2p", 20, n_neurons=20),
             compress=["--frames", "2:18"], expect_cells=False),
        Case("sel-1p-crop", "one-photon uint16, --crop 0:32,0:64", _simulated("1p", "1p", 600, n_neurons=15),
             compress=["--crop", "0:32,0:64"], demix=["--kind", "1p"], expect_cells=False),
    ]


# ---------------------------------------------------------------------------
# Running the chain.
# ---------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float = 1800) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(PMD_ROOT)})
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = -9, "", "timed out"
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return {"cmd": " ".join(Path(c).name if i < 2 else c for i, c in enumerate(cmd)), "rc": rc,
            "cpu_s": round(cpu, 2), "wall_s": round(time.perf_counter() - start, 2),
            "message": lines[-1][:300] if lines else "", "traceback": "Traceback" in err, "stdout": out,
            "stderr": err}


def _bad_numbers(obj, path="") -> list[str]:
    """Names of NaN or infinite numbers anywhere in a JSON-like object."""
    bad = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad += _bad_numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:50]):
            bad += _bad_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        bad.append(path)
    return bad


def run_case(case: Case, work: Path, demix: bool = True) -> dict:
    folder = work / case.name
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        movie, truth = case.make(work)
    except Exception as exc:  # noqa: BLE001 - a writer we cannot run here (pynwb missing, ...)
        return {"case": case.name, "kind": case.kind, "skipped": f"{type(exc).__name__}: {exc}"}
    make_s = time.perf_counter() - t0
    if case.batch:
        return _run_batch_case(case, movie, folder, round(make_s, 1))
    # Beside the movie, where ``pmd compress``'s default output puts it: ``pmd denoise STORE --report`` then finds
    # the raw movie by the name the store records, as it does for a user.
    store = movie.parent / f"{case.name}.pmd.zarr"
    steps, problems = [], []
    row = {"case": case.name, "kind": case.kind, "input": movie.name, "input_bytes": _size(movie),
           "make_s": round(make_s, 1)}

    def step(name, cmd, *, expect=0):
        r = _run(PMD + cmd)
        r["step"] = name
        steps.append(r)
        if r["rc"] != expect:
            problems.append(f"{name}: exit {r['rc']} (expected {expect}): {r['message']}")
        if r["traceback"]:
            problems.append(f"{name}: traceback without -v")
        if r["rc"] == 2 and movie.name not in r["message"] and store.name not in r["message"] and "pmd" not in \
                r["message"][:5]:
            problems.append(f"{name}: the refusal does not name the file: {r['message']}")
        return r

    r = step("compress", ["compress", str(movie), "-o", str(store), *case.compress],
             expect=2 if case.expect_refusal else 0)
    if case.expect_warning and case.expect_warning not in r["stderr"]:
        problems.append(f"compress did not say {case.expect_warning!r}")
    if case.expect_refusal or r["rc"] != 0:
        row.update(steps=_strip(steps), problems=problems)
        return row
    info = step("info", ["info", str(store), "--json"])
    try:
        meta = json.loads(info["stdout"])
        row["ratio"] = round(meta.get("compression_ratio_bytes", float("nan")), 2)
        row["shape"] = meta.get("shape")
        row["rank"] = meta.get("total_rank")
        row["frame_rate"] = meta.get("frame_rate")
        if row["ratio"] < 1:
            problems.append(f"store larger than the movie (ratio {row['ratio']})")
        problems += [f"info: {b} is not finite" for b in _bad_numbers(meta)]
    except (json.JSONDecodeError, TypeError) as exc:
        problems.append(f"info --json unreadable: {exc}")
    step("decompress", ["decompress", str(store), "-o", str(folder / "part.npy"), "--frames", "0:5"])
    # Every case that compresses is reported twice, as a user would: ``pmd report MOVIE STORE -o DIR`` (the file
    # as typed, the store's recorded plane/channel/dataset/frames/crop applied by the report) and ``pmd denoise
    # STORE -o ... --report DIR`` (the movie found beside the store).  Session 11 found two breaks (a ScanImage
    # plane, a --frames store) that whole-file inputs never reached.
    same_units = truth and movie.name.endswith(".sim.tif")  # a converted movie no longer matches its truth
    reports = {}
    for how, cmd in (("report", ["report", str(movie), str(store), "-o", str(folder / "report"),
                                 *(["--truth", str(truth)] if same_units else [])]),
                     ("denoise-report", ["denoise", str(store), "-o", str(folder / "denoised.tif"),
                                         "--report", str(folder / "denoised")])):
        r = step(how, cmd)
        rep = Path(cmd[cmd.index("--report") + 1] if "--report" in cmd else cmd[cmd.index("-o") + 1])
        reports[how] = entry = {"rc": r["rc"], "cpu_s": r["cpu_s"],
                                "message": r["message"] if r["rc"] != 0 else ""}
        if r["rc"] != 0:
            continue
        try:
            rj = json.loads((rep / "report.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"{how}: report.json unreadable: {exc}")
            continue
        entry.update(_split_status(rj))
        if rj.get("inputs", {}).get("movie") is None:
            problems.append(f"{how}: the report has no raw movie (not found beside the store)")
        problems += [f"{how}: {b} is not finite" for b in _bad_numbers(rj)]
        if how == "report":
            row["report"] = _report_numbers(rj)
            problems += _report_contradictions(row["report"], rj.get("metrics", {}))
            row["summary"] = rj.get("summary", [])
            problems += [f"report summary: {line!r}" for line in row["summary"] if "n/ax" in line]
    row["reports"] = reports
    if not demix:
        row["cpu_s"] = round(sum(s["cpu_s"] for s in steps), 1)
        row.update(steps=_strip(steps), problems=problems)
        return row
    fs = [] if row.get("frame_rate") else ["--fs", "30"]
    dm = folder / "m.demix.zarr"
    d = step("demix", ["demix", str(store), "-o", str(dm), "--export", "suite2p,nwb,caiman", *fs, *case.demix])
    if d["rc"] == 0 and truth and truth.exists():
        e = step("evaluate", ["evaluate", str(dm), "--truth", str(truth)])
        try:
            scores = json.loads(e["stdout"])
            row["f1"] = round(scores.get("f1", float("nan")), 3)
            if case.expect_cells and scores.get("n_true", 0) > 0 and scores.get("n_pred", 0) == 0:
                problems.append(f"demix found no cells; the truth has {scores['n_true']}")
        except json.JSONDecodeError:
            problems.append("evaluate printed no JSON")
        s2p = next(dm.parent.glob("**/stat.npy"), None)
        if s2p is not None:
            step("evaluate-suite2p", ["evaluate", str(s2p.parent), "--truth", str(truth)])
    row["cpu_s"] = round(sum(s["cpu_s"] for s in steps), 1)
    row.update(steps=_strip(steps), problems=problems)
    return row


def _run_batch_case(case: Case, inputs: Path, folder: Path, make_s: float) -> dict:
    """``pmd batch "inputs/*"``: the movies done, each failed one named with its reason, files no reader takes
    left out (said so), exit 2 when some failed."""
    r = _run(PMD + ["batch", str(inputs / "*"), "-o", str(folder / "out"), "--scheduler", "sync"])
    r["step"] = "batch"
    problems = []
    failed = [ln for ln in r["stderr"].splitlines() if "failed:" in ln and "compress failed" not in ln]
    if r["rc"] != 2 or r["traceback"]:
        problems.append(f"batch: exit {r['rc']}{' with a traceback' if r['traceback'] else ''}: {r['message']}")
    for ln in failed:
        if "pmd:   failed: " in ln and not any(p.name in ln for p in inputs.iterdir()):
            problems.append(f"batch: a failure that names no file: {ln}")
    if "left out 1 matched file that no reader takes (notes.txt)" not in r["stderr"]:
        problems.append("batch did not say it left notes.txt out")
    summary_path = folder / "out" / "batch-summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {"case": case.name, "kind": case.kind, "input": inputs.name, "make_s": make_s,
            "done": summary.get("done"), "failed": [f"{f['path']}: {f['error']}" for f in summary.get("failed", [])],
            "cpu_s": r["cpu_s"], "steps": _strip([r]), "problems": problems}


def _mixed_folder(work: Path):
    """A folder as a lab has it: two movies, a cut TIFF, a single image, an HDF5 holding two movies, notes."""
    path, truth, movie = _sim(work, "arr_src", "2p", 300, (48, 48), n_neurons=15)
    folder = work / "mixed"
    folder.mkdir(exist_ok=True)
    tifffile.imwrite(folder / "day1.tif", movie)
    np.save(folder / "day2.npy", movie[:200])
    (folder / "cut.tif").write_bytes((folder / "day1.tif").read_bytes()[:20000])
    tifffile.imwrite(folder / "mean.tif", movie.mean(axis=0).astype(np.float32))
    import h5py

    with h5py.File(folder / "two.h5", "w") as fh:
        fh["raw"] = movie
        fh["registered"] = movie
    (folder / "notes.txt").write_text("mouse 3, day 2")
    return folder, None


#: The photon-split headline numbers of report.json's metrics: the balanced split, then the whole-movie one.
SPLIT_KEYS = ("error_reduction", "error_reduction_active", "signal_removed", "signal_removed_active")


def _split_status(rj: dict) -> dict:
    """Each photon-split headline number of a report.json as the report gives it: a finite number where it is
    resolved, ``"not resolved"`` where it is not, ``"refused: why"`` where the split did not run, ``"absent"``."""
    metrics = rj.get("metrics", {})
    out = {}
    for prefix, section in (("photon_split", "photon_split"), ("photon_split_whole", "photon_split_whole")):
        ok = metrics.get(f"{prefix}_ok", {})
        if not ok:
            out[prefix] = "absent"
            continue
        if not ok.get("value"):
            out[prefix] = f"refused: {(rj.get(section) or {}).get('reason', '')}"[:200]
            continue
        entry = {}
        for key in SPLIT_KEYS:
            value = metrics.get(f"{prefix}_{key}", {}).get("value")
            resolved = metrics.get(f"{prefix}_{key}_resolved", {}).get("value")
            finite = isinstance(value, int | float) and math.isfinite(value)
            entry[key] = round(value, 4) if finite and resolved else "not resolved"
        out[prefix] = entry
    timings = rj.get("timings", {})
    out["photon_split_s"] = round(timings.get("photon_split_s", float("nan")), 2)
    return out


def _report_numbers(rj: dict) -> dict:
    flat = {}

    def walk(obj, prefix):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            flat[prefix] = obj
    walk(rj, "")
    keep = ("snr_gain", "residual_ratio", "error_reduction", "signal_removed", "photon", "truth")
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in flat.items()
            if any(s in k for s in keep) and len(k) < 80}


def _report_contradictions(nums: dict, metrics: dict | None = None) -> list[str]:
    out = []
    for k, v in nums.items():
        if k.endswith(("_low", "_high", "_pixel")):  # intervals and diagnostics may leave 0-1
            continue
        name = k.removeprefix("metrics.").removesuffix(".value")
        if (metrics or {}).get(f"{name}_resolved", {}).get("value") is False:
            continue  # the report calls it "not resolved": its value is no claim
        if isinstance(v, (int, float)) and math.isfinite(v):
            if ("error_reduction" in k or "snr_gain" in k) and v < 0:
                out.append(f"report: {k} = {v} is negative")
            if "signal_removed" in k and not -0.05 <= v <= 1.05 and not _interval_reaches_0_1(nums, k):
                out.append(f"report: {k} = {v} outside 0-1")
    return out


def _interval_reaches_0_1(nums: dict, key: str) -> bool:
    """Whether the +-2 SE interval of a signal-removed estimate reaches [0, 1]: a short, dim movie's estimate may
    then fall below 0 by chance (report.json keeps it; the printed line says "not resolved")."""
    base = key.removesuffix(".value")
    if base.startswith(("metrics.photon_split_signal_removed", "metrics.photon_split_whole_signal_removed")):
        which = "active" if base.endswith("_active") else "all"
        base = f"photon_split{'_whole' if '_whole_' in base else ''}.{which}.signal_removed"
    low, high = nums.get(base + "_low"), nums.get(base + "_high")
    return isinstance(low, int | float) and isinstance(high, int | float) and low <= 1.0 and high >= 0.0


def _strip(steps):
    return [{k: v for k, v in s.items() if k not in ("stdout", "stderr")} for s in steps]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="", help="comma-separated substrings of case names to run")
    ap.add_argument("--full", action="store_true", help="widefield at 512 x 512 (several CPU minutes)")
    ap.add_argument("--round", type=int, choices=(1, 2, 3), default=None,
                    help="only the cases of round one (session 10), two (session 11) or three (session 12: parts "
                         "of files)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "new_user.json"))
    ap.add_argument("--skip-demix", action="store_true", help="stop each chain after the reports (no demix, "
                    "evaluate)")
    ap.add_argument("--tree", default=None, help="run the pmd of another checkout (e.g. a baseline) on the same cases")
    args = ap.parse_args(argv)
    if args.tree:
        global PMD_ROOT
        PMD_ROOT = Path(args.tree).resolve()
        PMD[1] = str(PMD_ROOT / "bin" / "pmd")
    work = Path(args.work or tempfile.mkdtemp(prefix="pmd-new-user-"))
    work.mkdir(parents=True, exist_ok=True)
    wanted = [w for w in args.cases.split(",") if w]
    rows = []
    try:
        all_cases = cases(args.full)
        starts = [next(i for i, c in enumerate(all_cases) if c.name == first)
                  for first in (ROUND_TWO_FIRST, ROUND_THREE_FIRST)]
        for i, case in enumerate(all_cases):
            if wanted and not any(w in case.name for w in wanted):
                continue
            if args.round and 1 + sum(i >= s for s in starts) != args.round:
                continue
            row = run_case(case, work, demix=not args.skip_demix)
            rows.append(row)
            mark = "ok" if not row.get("problems") and "skipped" not in row else "PROBLEM"
            print(f"{row['case']:22s} ratio {row.get('ratio', '-')!s:>7s}  cpu {row.get('cpu_s', '-')!s:>6s}  "
                  f"f1 {row.get('f1', '-')!s:>5s}  {mark}", flush=True)
            for how, rep in row.get("reports", {}).items():
                split = rep.get("photon_split", "-")
                split = split if isinstance(split, str) else " ".join(f"{v}" for v in split.values())
                print(f"    {how:15s} exit {rep['rc']} cpu {rep['cpu_s']:6.1f}  split {split}  {rep['message']}",
                      flush=True)
            for p in row.get("problems", []) + ([row["skipped"]] if "skipped" in row else []):
                print(f"    {p}", flush=True)
            _write(args.out, rows)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {_write(args.out, rows)}")
    return 0


def _write(out: str, rows: list) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"argv": sys.argv[1:], "tree": str(PMD_ROOT), "cases": rows}, indent=1,
                               default=str) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
