"""The fault corpus: bad inputs, bad options, damaged stores, outputs and permissions, full disks,
signals and concurrent runs.

Every case runs one ``pmd`` command (in-process through click's runner; in a
subprocess only where a second process or a real signal from outside is the
point) in a fresh copy of a small workspace, and asserts

- the exit code (2 for the user's and the data's problems, 130/143 for
  SIGINT/SIGTERM, 0 where the input is fine or the problem only deserves a warning);
- the message: exactly one line on stderr for a failure, matching the case's pattern;
- that nothing was lost: every file of the workspace has the same bytes as
  before (except the output a case may replace);
- that nothing was left behind: no ``.partial``, ``.old``, ``.stale`` or lock file.

The pauses and signals use the test hook of :mod:`pmdcompress.checkpoints` (a
named stage), never sleeps or deadlines.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from pausing import PausedRun, run_pmd
from pmdcompress import checkpoints
from pmdcompress.cli import main
from pmdcompress.io import atomic
from pmdcompress.pipeline.compress import compress
from pmdcompress.simulate import simulate_movie

LEFTOVER_SUFFIXES = (".partial", ".old", ".stale", ".lock")

# ---------------------------------------------------------------------------
# The workspace: a tiny movie in three formats, its store, a rank-0 store, labels.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    simulate_movie(root / "movie.tif", n_frames=40, shape=(24, 24), n_neurons=3, seed=1)
    movie = tifffile.imread(root / "movie.tif")
    np.save(root / "movie.npy", movie)
    compress(root / "movie.tif", root / "movie.pmd.zarr", patch_shape=12, overlap=4, max_rank=6, method="svd",
             workers=1)
    simulate_movie(root / "other.tif", n_frames=40, shape=(24, 24), n_neurons=2, seed=2)
    flat = np.random.default_rng(0).poisson(20.0, (40, 16, 16)).astype(np.uint16)
    np.save(root / "flat.npy", flat)
    compress(root / "flat.npy", root / "flat.pmd.zarr", method="svd", workers=1)
    labels = np.zeros((24, 24), np.int32)
    labels[3:8, 3:8], labels[12:18, 10:15] = 1, 2
    np.save(root / "labels.npy", labels)
    return root


@pytest.fixture
def ws(pristine, tmp_path, monkeypatch):
    """A fresh copy of the workspace, as the current folder."""
    root = tmp_path / "ws"
    shutil.copytree(pristine, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file; hidden ones (locks, partial outputs) are left to :func:`leftovers`."""
    out = {}
    for path in sorted(root.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if path.is_file() and not path.is_symlink() and not hidden:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(root: Path, allowed=()) -> list[str]:
    found = []
    for path in root.rglob(".*"):
        name = path.name
        if any(name.endswith(s) or f"{s}." in name for s in LEFTOVER_SUFFIXES):
            if str(path.relative_to(root)) not in allowed:
                found.append(str(path.relative_to(root)))
    return sorted(found)


def invoke(args) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


@dataclass
class Case:
    category: str
    name: str
    args: list
    code: int
    line: str | None = None  # a regex the single error line (or, exit 0, some stderr line) must match
    setup: object = None  # callable(ws, monkeypatch) run before the command
    changes: tuple = ()  # workspace paths the command may create or replace (outputs)
    allowed: tuple = ()  # leftovers that belong to someone else and must stay
    check: object = None  # callable(ws) with extra assertions after the command
    xfail: str | None = None


CASES: list[Case] = []


def case(*args, **kwargs):
    CASES.append(Case(*args, **kwargs))


# -- helpers for setups -------------------------------------------------------


def write_npy(name, array):
    def setup(ws, mp):
        np.save(ws / name, array)
    return setup


def write_bytes(name, data: bytes):
    def setup(ws, mp):
        (ws / name).write_bytes(data)
    return setup


def chain(*setups):
    def setup(ws, mp):
        for s in setups:
            s(ws, mp)
    return setup


def truncate(name, fraction=0.5):
    def setup(ws, mp):
        data = (ws / name).read_bytes()
        (ws / name).write_bytes(data[: int(len(data) * fraction)])
    return setup


RNG = np.random.default_rng(7)
MOVIE = (RNG.poisson(8.0, (40, 16, 16))).astype(np.uint16)


def with_value(value, frame=5):
    movie = MOVIE.astype(np.float32)
    movie[frame, 3, 4] = value
    return movie


# =========================== bad inputs =========================================
B = "bad input"
case(B, "missing file", ["compress", "nothing.tif", "-o", "o.pmd.zarr"], 2, r"nothing\.tif")
case(B, "empty file", ["compress", "empty.tif", "-o", "o.pmd.zarr"], 2, r"empty\.tif",
     setup=write_bytes("empty.tif", b""))
case(B, "random bytes as TIFF", ["compress", "junk.tif", "-o", "o.pmd.zarr"], 2, r"junk\.tif",
     setup=write_bytes("junk.tif", bytes(RNG.integers(0, 256, 5000, dtype=np.uint8))))
case(B, "truncated TIFF", ["compress", "cut.tif", "-o", "o.pmd.zarr"], 2, r"cut\.tif: truncated",
     setup=lambda ws, mp: (ws / "cut.tif").write_bytes((ws / "movie.tif").read_bytes()[:30000]))
case(B, "text file named .tif", ["compress", "text.tif", "-o", "o.pmd.zarr"], 2, r"text\.tif",
     setup=write_bytes("text.tif", b"frame,value\n1,2\n" * 50))
case(B, "2-D .npy", ["compress", "img.npy", "-o", "o.pmd.zarr"], 2, r"img\.npy: a single 2-D image",
     setup=write_npy("img.npy", MOVIE[0]))
case(B, "4-D .npy", ["compress", "v.npy", "-o", "o.pmd.zarr"], 2, r"v\.npy: 4-D",
     setup=write_npy("v.npy", MOVIE.reshape(2, 20, 16, 16)))
case(B, "pickled .npy movie", ["compress", "p.npy", "-o", "o.pmd.zarr"], 2, r"p\.npy: unsupported dtype object",
     setup=lambda ws, mp: np.save(ws / "p.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True))
case(B, "complex movie", ["compress", "c.npy", "-o", "o.pmd.zarr"], 2, r"c\.npy: unsupported dtype complex64",
     setup=write_npy("c.npy", MOVIE.astype(np.complex64)))
case(B, "too few frames", ["compress", "short.npy", "-o", "o.pmd.zarr"], 2, r"short\.npy: 9 frames",
     setup=write_npy("short.npy", MOVIE[:9]))
case(B, "NaN in a frame", ["compress", "nan.npy", "-o", "o.pmd.zarr"], 2, r"nan\.npy: frame 5 contains NaN",
     setup=write_npy("nan.npy", with_value(np.nan)))
case(B, "infinity in a frame", ["compress", "inf.npy", "-o", "o.pmd.zarr"], 2, r"inf\.npy: frame 5",
     setup=write_npy("inf.npy", with_value(np.inf)))
case(B, "1x1 pixel frames", ["compress", "px.npy", "-o", "o.pmd.zarr"], 2, r"px\.npy: frames of 1x1 pixel",
     setup=write_npy("px.npy", MOVIE[:, :1, :1]))
case(B, "no frames", ["compress", "zero.npy", "-o", "o.pmd.zarr"], 2, r"zero\.npy: empty",
     setup=write_npy("zero.npy", MOVIE[:0]))
case(B, "a folder that is no movie", ["compress", "folder", "-o", "o.pmd.zarr"], 2, r"folder",
     setup=lambda ws, mp: (ws / "folder").mkdir())
case(B, "unknown extension", ["compress", "m.xyz", "-o", "o.pmd.zarr"], 2, r"m\.xyz",
     setup=write_bytes("m.xyz", b"\0" * 1000))
case(B, "float16 movie is accepted", ["compress", "h.npy", "-o", "h.pmd.zarr"], 0, r"h\.npy -> h\.pmd\.zarr",
     setup=write_npy("h.npy", MOVIE.astype(np.float16)), changes=("h.pmd.zarr",))
case(B, "big-endian movie is accepted", ["compress", "be.npy", "-o", "be.pmd.zarr"], 0, r"be\.pmd\.zarr",
     setup=write_npy("be.npy", MOVIE.astype(">u2")), changes=("be.pmd.zarr",))
case(B, "decompress a movie, not a store", ["decompress", "movie.tif", "-o", "o.tif"], 2, r"movie\.tif")
case(B, "info of a missing store", ["info", "none.pmd.zarr"], 2, r"none\.pmd\.zarr")
case(B, "demix a movie, not a store", ["demix", "movie.npy", "-o", "d.demix.zarr"], 2, r"movie\.npy")
case(B, "evaluate a pickled .npy", ["evaluate", "p.npy", "--truth", "movie.truth.zarr"], 2, r"p\.npy",
     setup=lambda ws, mp: np.save(ws / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True))
case(B, "evaluate a malicious pickle", ["evaluate", "evil.npy", "--truth", "movie.truth.zarr"], 2,
     r"evil\.npy: refusing to unpickle 'posix\.system'",
     setup=lambda ws, mp: (ws / "evil.npy").write_bytes(_evil_npy()))
case(B, "report on another movie of the same shape", ["report", "other.tif", "movie.pmd.zarr", "-o", "rep",
     "--no-heldout"], 0, r"other\.tif is not the movie movie\.pmd\.zarr was made from", changes=("rep",))
case(B, "report on a movie of another shape", ["report", "flat.npy", "movie.pmd.zarr", "-o", "rep"], 2,
     r"flat\.npy: shape \(40, 16, 16\) does not match")
case(B, "denoise a truncated TIFF", ["denoise", "cut.tif", "-o", "d.tif"], 2, r"cut\.tif: truncated",
     setup=lambda ws, mp: (ws / "cut.tif").write_bytes((ws / "movie.tif").read_bytes()[:30000]))
case(B, "demix a store without components", ["demix", "flat.pmd.zarr", "-o", "f.demix.zarr", "--no-figures"], 0,
     r"flat\.pmd\.zarr: the store holds no components", changes=("f.demix.zarr",),
     check=lambda ws: _n_components(ws / "f.demix.zarr") == 0)
case(B, "export a demix without components", ["demix", "flat.pmd.zarr", "-o", "f.demix.zarr", "--no-figures",
                                             "--fs", "30", "--export", "nwb,suite2p,caiman"], 0,
     r"flat\.pmd\.zarr: the store holds no components",
     changes=("f.demix.zarr", "f.demix.nwb", "f.demix.suite2p", "f.demix.caiman.hdf5"),
     check=lambda ws: (ws / "f.demix.nwb").is_file() and _n_components(ws / "f.demix.zarr") == 0)
case(B, "evaluate against a missing truth", ["evaluate", "labels.npy", "--truth", "none.json"], 2, r"none\.json")


def _evil_npy() -> bytes:
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buffer = io.BytesIO()
    header = {"descr": "|O", "fortran_order": False, "shape": (1,)}
    np.lib.format.write_array_header_1_0(buffer, header)
    payload = pickle.dumps([Evil()], protocol=2)
    return buffer.getvalue() + payload


def _n_components(path: Path) -> bool:
    from pmdcompress.demix import open_demix

    return open_demix(path).n_components


# =========================== bad options ========================================
O = "bad option"
C = ["compress", "movie.npy", "-o", "o.pmd.zarr"]
case(O, "patch with three sides", C + ["--patch", "32x48x5"], 2, r"--patch '32x48x5': expected N or HxW")
case(O, "patch not a number", C + ["--patch", "big"], 2, r"--patch 'big': expected N or HxW")
case(O, "patch of one pixel", C + ["--patch", "1"], 2, r"--patch '1': must be at least 2")
case(O, "patch below the overlap", C + ["--patch", "4"], 2, r"--overlap 8 must be smaller than --patch 4")
case(O, "overlap above the patch", C + ["--overlap", "40"], 2, r"--overlap 40 must be smaller than --patch 32")
case(O, "negative overlap", C + ["--overlap", "-1"], 2, r"--overlap '?-1'?: must be at least 0")
case(O, "max rank 0", C + ["--max-rank", "0"], 2, r"--max-rank must be >= 1, got 0")
case(O, "fit frames 5", C + ["--fit-frames", "5"], 2, r"--fit-frames must be >= 10, got 5")
case(O, "fit bin 0", C + ["--fit-bin", "0"], 2, r"--fit-bin must be >= 1, got 0")
case(O, "consecutive failures 0", C + ["--consecutive-failures", "0"], 2, r"--consecutive-failures must be >= 1")
case(O, "compress with 0 workers", C + ["--workers", "0"], 2, r"--workers must be >= 1, got 0")
case(O, "decompress with 0 workers", ["decompress", "movie.pmd.zarr", "-o", "o.tif", "--workers", "0"], 2,
     r"--workers must be >= 1, got 0")
case(O, "denoise with 0 workers", ["denoise", "movie.npy", "-o", "o.tif", "--workers", "0"], 2,
     r"--workers must be >= 1, got 0")
case(O, "frames backwards", C + ["--frames", "10:5"], 2, r"movie\.npy: --frames '10:5' selects no frames")
case(O, "frames not a range", C + ["--frames", "abc"], 2, r"--frames 'abc' is not a 'start:stop' range")
case(O, "frames with a step", C + ["--frames", "1:20:2"], 2, r"--frames '1:20:2': a step is not supported")
case(O, "compress at 0 Hz", C + ["--fs", "0"], 2,
     r"^pmd: error: movie\.npy: --fs 0\.0: expected a positive number of frames per second$")
case(O, "info of a store with --plane", ["info", "movie.pmd.zarr", "--plane", "1"], 2,
     r"^pmd: error: movie\.pmd\.zarr: --plane applies to a movie file, not to a store or a demix result$")
case(O, "PMD_NUM_WORKERS not a number", C, 2, r"^pmd: error: PMD_NUM_WORKERS must be an integer, got 'all'$",
     setup=lambda ws, mp: mp.setenv("PMD_NUM_WORKERS", "all"))
case(O, "PMD_NUM_WORKERS zero", C, 2, r"^pmd: error: PMD_NUM_WORKERS must be >= 1, got 0$",
     setup=lambda ws, mp: mp.setenv("PMD_NUM_WORKERS", "0"))
case(O, "decompress frames past the end", ["decompress", "movie.pmd.zarr", "-o", "o.tif", "--frames", "50:60"], 2,
     r"movie\.pmd\.zarr: --frames '50:60' selects no frames of the 40")
case(O, "empty crop", ["decompress", "movie.pmd.zarr", "-o", "o.tif", "--crop", "5:5,:"], 2,
     r"movie\.pmd\.zarr: --crop '5:5' selects no rows")
case(O, "crop with one range", ["decompress", "movie.pmd.zarr", "-o", "o.tif", "--crop", "1:2"], 2,
     r"--crop '1:2': expected y0:y1,x0:x1")
case(O, "output dtype unknown", ["decompress", "movie.pmd.zarr", "-o", "o.tif", "--dtype", "nope"], 2,
     r"--dtype 'nope' is not a numpy dtype")
case(O, "output dtype complex", ["decompress", "movie.pmd.zarr", "-o", "o.tif", "--dtype", "complex64"], 2,
     r"unsupported output dtype complex64")
if np.dtype(np.longdouble).itemsize > 8:  # x86 Linux: 80-bit extended precision (float64 elsewhere)
    case(O, "output dtype of 128 bits", ["decompress", "movie.pmd.zarr", "-o", "o.npy", "--dtype", "longdouble"], 2,
         rf"o\.npy: unsupported output dtype {np.dtype(np.longdouble)}; need an integer or float dtype of at most 64 "
         r"bits")
case(O, "simulate no frames", ["simulate", "s.tif", "--frames", "0", "--shape", "16x16"], 2,
     r"--frames must be an integer >= 1, got 0")
case(O, "simulate 1x1 frames", ["simulate", "s.tif", "--frames", "10", "--shape", "1x1"], 2,
     r"--shape must be a pair \(Y, X\) of at least 8 px")
case(O, "simulate shape with three sides", ["simulate", "s.tif", "--shape", "8x8x8"], 2, r"--shape '8x8x8'")
case(O, "simulate NaN photons", ["simulate", "s.tif", "--frames", "10", "--shape", "16x16", "--photons", "nan"], 2,
     r"--photons must be a positive number, got nan")
case(O, "simulate negative photons", ["simulate", "s.tif", "--frames", "10", "--shape", "16x16", "--photons", "-1"],
     2, r"--photons must be a positive number")
case(O, "simulate negative neurons", ["simulate", "s.tif", "--frames", "10", "--shape", "16x16", "--neurons", "-1"],
     2, r"--neurons must be >= 0")
D = ["demix", "movie.pmd.zarr", "-o", "d.demix.zarr"]
case(O, "demix frame rate 0", D + ["--fs", "0"], 2, r"--fs 0\.0: expected a positive frame rate")
case(O, "demix frame rate NaN", D + ["--fs", "nan"], 2, r"--fs nan: expected a positive frame rate")
case(O, "demix negative cell radius", D + ["--cell-radius", "-1"], 2, r"--cell-radius -1\.0: expected a positive")
case(O, "demix unknown export", D + ["--export", "matlab"], 2, r"--export 'matlab': expected any of")
case(O, "demix NWB export without pynwb", D + ["--export", "nwb"], 2, r"NWB export needs pynwb",
     setup=lambda ws, mp: mp.setitem(sys.modules, "pynwb", None))
case(O, "demix zero iterations", D + ["--max-iter", "0"], 2, r"--max-iter must be >= 1, got 0")
case(O, "evaluate IoU 0", ["evaluate", "labels.npy", "--truth", "movie.truth.zarr", "--iou", "0"], 2,
     r"--iou 0\.0: expected a value in \(0, 1\]")
case(O, "denoise a store with --store", ["denoise", "movie.pmd.zarr", "-o", "d.tif", "--store", "x.pmd.zarr"], 2,
     r"--store applies only when denoising a movie")
case(O, "denoise a movie with --movie", ["denoise", "movie.npy", "-o", "d.tif", "--movie", "movie.tif"], 2,
     r"--movie applies only when denoising an existing store")
for flag in (["--truth", "movie.truth.zarr"], ["--movie-preview"], ["--no-heldout"]):
    case(O, f"denoise {flag[0]} without a report", ["denoise", "movie.npy", "-o", "d.tif", *flag], 2,
         rf"^pmd: error: {flag[0]} applies only to the report: add --report FOLDER, or leave it out$")
case(O, "demix --nwb-metadata without the NWB export", D + ["--fs", "30", "--nwb-metadata", "meta.yaml"], 2,
     r"^pmd: error: --nwb-metadata applies only to the NWB export: add nwb to --export, or leave it out$",
     setup=write_bytes("meta.yaml", b"session_description: a test\n"))
case(O, "denoise a store with --movie but no report", ["denoise", "movie.pmd.zarr", "-o", "d.tif", "--movie",
                                                        "movie.tif"], 2, r"--movie applies only to the report")
case(O, "batch option not a pair", ["batch", "movie.npy", "-o", "out", "--set", "patch=wide"], 2,
     r"patch_shape='wide': expected N or HxW")
case(O, "batch unknown step", ["batch", "movie.npy", "-o", "out", "--steps", "squash"], 2, r"unknown step 'squash'")
case(O, "batch max rank 0", ["batch", "movie.npy", "-o", "out", "--set", "max_rank=0"], 2,
     r"max_rank must be >= 1, got 0")


# =========================== damaged stores =====================================
S = "damaged store"


def store_file(*parts):
    return Path("movie.pmd.zarr", *parts)


def first_chunk(array: str) -> Path:
    chunks = sorted(p for p in Path("movie.pmd.zarr", array, "c").rglob("*") if p.is_file())
    return chunks[0]


def rm_chunk(array):
    def setup(ws, mp):
        first_chunk(array).unlink()
    return setup


def damage_chunk(array, how):
    def setup(ws, mp):
        chunk = first_chunk(array)
        data = chunk.read_bytes()
        if how == "truncate":
            chunk.write_bytes(data[: len(data) // 2])
        elif how == "random":
            chunk.write_bytes(bytes(RNG.integers(0, 256, len(data), dtype=np.uint8)))
        else:  # one flipped byte in the middle
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0xFF
            chunk.write_bytes(bytes(flipped))
    return setup


def edit_attrs(edit):
    def setup(ws, mp):
        path = store_file("zarr.json")
        meta = json.loads(path.read_text())
        edit(meta["attributes"])
        path.write_text(json.dumps(meta))
    return setup


def nan_in(array):
    def setup(ws, mp):
        import zarr

        arr = zarr.open_array(str(store_file(array)), mode="r+")
        data = arr[...]
        data.flat[data.size // 2] = np.nan
        arr[...] = data
    return setup


DEC = ["decompress", "movie.pmd.zarr", "-o", "o.tif"]
CHUNK = r"movie\.pmd\.zarr.*(chunk|spatial|temporal)"
case(S, "missing spatial chunk (decompress)", DEC, 2, CHUNK, setup=rm_chunk("spatial"))
case(S, "missing temporal chunk (decompress)", DEC, 2, CHUNK, setup=rm_chunk("temporal"))
case(S, "missing spatial chunk (demix)", D, 2, CHUNK, setup=rm_chunk("spatial"))
case(S, "missing mean chunk (decompress)", DEC, 2, r"movie\.pmd\.zarr.*mean", setup=rm_chunk("mean"))
case(S, "truncated spatial chunk (decompress)", DEC, 2, CHUNK, setup=damage_chunk("spatial", "truncate"))
case(S, "random bytes in a temporal chunk (decompress)", DEC, 2, CHUNK, setup=damage_chunk("temporal", "random"))
case(S, "one flipped byte in a spatial chunk (decompress)", DEC, 2, CHUNK, setup=damage_chunk("spatial", "flip"))
case(S, "truncated temporal chunk (demix)", D, 2, CHUNK, setup=damage_chunk("temporal", "truncate"))
case(S, "truncated spatial chunk (report)", ["report", "movie.tif", "movie.pmd.zarr", "-o", "rep"], 2, CHUNK,
     setup=damage_chunk("spatial", "truncate"))
# Version-2 factors are integers; their float per-component steps carry a NaN into the movie.
case(S, "NaN in the spatial factors (decompress)", DEC, 2, r"movie\.pmd\.zarr.*(NaN|finite)",
     setup=nan_in("spatial_scale"))
case(S, "NaN in the temporal factors (decompress to float32)", DEC + ["--dtype", "float32"], 2,
     r"movie\.pmd\.zarr.*(NaN|finite)", setup=nan_in("temporal_scale"))
case(S, "no zarr.json", DEC, 2, r"movie\.pmd\.zarr", setup=lambda ws, mp: store_file("zarr.json").unlink())
case(S, "zarr.json not JSON", DEC, 2, r"movie\.pmd\.zarr",
     setup=lambda ws, mp: store_file("zarr.json").write_text("{not json"))
case(S, "zarr.json without our attributes", DEC, 2, r"movie\.pmd\.zarr: not a pmdcompress store",
     setup=edit_attrs(lambda a: a.pop("pmdcompress")))
case(S, "a demix result given as a store", DEC, 2,
     r"movie\.pmd\.zarr: a demix result \(pmd demix's output\), not a store; give the \.pmd\.zarr it was made from",
     setup=edit_attrs(lambda a: a.update({"pmdcompress-demix": a.pop("pmdcompress")})))
case(S, "a store given as the movie to compress", ["compress", "movie.pmd.zarr", "-o", "again.pmd.zarr"], 2,
     r"movie\.pmd\.zarr: a pmd store \(the compressed movie pmd compress wrote\), not a movie; read it with "
     r"pmdcompress\.open, or pmd decompress it to a movie file")
case(S, "a store's array as the movie to compress",
     ["compress", "movie.pmd.zarr", "--dataset", "temporal", "-o", "again.pmd.zarr"], 2, r"a pmd store .* not a movie")
case(S, "report's arguments swapped", ["report", "movie.pmd.zarr", "movie.npy", "-o", "r"], 2,
     r"movie\.npy: a file, not a store .*: the arguments are MOVIE then STORE; movie\.pmd\.zarr looks like the store")
case(S, "unknown format version", DEC, 2, r"movie\.pmd\.zarr.*version",
     setup=edit_attrs(lambda a: a["pmdcompress"].update(format_version=99)))
case(S, "spatial array missing", DEC, 2, r"movie\.pmd\.zarr.*spatial",
     setup=lambda ws, mp: shutil.rmtree(store_file("spatial")))
case(S, "temporal array missing (info)", ["info", "movie.pmd.zarr"], 2, r"movie\.pmd\.zarr.*temporal",
     setup=lambda ws, mp: shutil.rmtree(store_file("temporal")))
case(S, "another format's name", DEC, 2, r"movie\.pmd\.zarr",
     setup=edit_attrs(lambda a: a["pmdcompress"].update(format="someone-elses-store")))
case(S, "recorded shape disagrees with the factors", DEC, 2, r"movie\.pmd\.zarr",
     setup=edit_attrs(lambda a: a["pmdcompress"].update(shape=[40, 30, 24])))
case(S, "a file where the store should be", DEC, 2, r"movie\.pmd\.zarr",
     setup=lambda ws, mp: (shutil.rmtree(ws / "movie.pmd.zarr"), (ws / "movie.pmd.zarr").write_text("x")))
case(S, "an empty folder as the store", ["demix", "empty.pmd.zarr", "-o", "d.demix.zarr"], 2, r"empty\.pmd\.zarr",
     setup=lambda ws, mp: (ws / "empty.pmd.zarr").mkdir())


# =========================== outputs and permissions ============================
P = "outputs"
IS_INPUT = r"is the input .*choose another output path"
case(P, "compress onto its input TIFF", ["compress", "movie.tif", "-o", "movie.tif", "--overwrite"], 2,
     r"movie\.tif: " + IS_INPUT)
case(P, "compress onto its input .npy", ["compress", "movie.npy", "-o", "movie.npy"], 2, r"movie\.npy: " + IS_INPUT)
case(P, "decompress onto its store", ["decompress", "movie.pmd.zarr", "-o", "movie.pmd.zarr", "--overwrite"], 2,
     IS_INPUT)
case(P, "decompress inside its store", ["decompress", "movie.pmd.zarr", "-o", "movie.pmd.zarr/x.tif"], 2,
     r"is inside the input movie\.pmd\.zarr")
case(P, "compress into the folder holding the input", ["compress", "movie.tif", "-o", ".", "--overwrite"], 2,
     r"contains the input movie\.tif")
case(P, "denoise onto its input", ["denoise", "movie.npy", "-o", "movie.npy", "--overwrite"], 2, IS_INPUT)
case(P, "denoise's report around its input", ["denoise", "movie.npy", "-o", "d.tif", "--report", ".",
     "--overwrite"], 2, r"\.: contains the input movie\.npy")
case(P, "report onto its store", ["report", "movie.tif", "movie.pmd.zarr", "-o", "movie.pmd.zarr", "--overwrite"],
     2, IS_INPUT)
case(P, "demix onto its store", ["demix", "movie.pmd.zarr", "-o", "movie.pmd.zarr", "--overwrite"], 2, IS_INPUT)
case(P, "output through a symbolic link to the input", ["denoise", "movie.npy", "-o", "link.npy", "--overwrite"], 2,
     r"link\.npy: " + IS_INPUT, setup=lambda ws, mp: (ws / "link.npy").symlink_to(ws / "movie.npy"))
case(P, "output a hard link of the input", ["denoise", "movie.npy", "-o", "hard.npy", "--overwrite"], 2,
     r"hard\.npy: " + IS_INPUT, setup=lambda ws, mp: os.link(ws / "movie.npy", ws / "hard.npy"))
case(P, "existing store without --overwrite", ["compress", "movie.tif", "-o", "movie.pmd.zarr"], 2,
     r"movie\.pmd\.zarr: output exists; pass --overwrite to replace it")
case(P, "existing movie without --overwrite", ["decompress", "movie.pmd.zarr", "-o", "other.tif"], 2,
     r"other\.tif: output exists; pass --overwrite")
case(P, "existing report without --overwrite", ["report", "movie.tif", "movie.pmd.zarr", "-o", "rep"], 2,
     r"rep: output exists", setup=lambda ws, mp: (ws / "rep").mkdir())
case(P, "existing simulation without --overwrite", ["simulate", "movie.tif", "--frames", "10", "--shape", "16x16"],
     2, r"movie\.tif: output exists")
case(P, "demo does not replace its store", ["demo", "d1"], 2, r"demo\.pmd\.zarr: output exists",
     setup=lambda ws, mp: (ws / "d1").mkdir() or shutil.copytree(ws / "movie.pmd.zarr", ws / "d1" / "demo.pmd.zarr"))
case(P, "--overwrite never replaces a foreign folder", ["compress", "movie.tif", "-o", "mine", "--overwrite"], 2,
     r"mine: is a folder pmd did not write",
     setup=lambda ws, mp: (ws / "mine").mkdir() or (ws / "mine" / "thesis.docx").write_text("years of work"))
case(P, "--overwrite of a folder with a movie", ["decompress", "movie.pmd.zarr", "-o", "dir.tif", "--overwrite"], 2,
     r"dir\.tif: is a folder and the output is a file",
     setup=lambda ws, mp: (ws / "dir.tif").mkdir() or (ws / "dir.tif" / "a").write_text("a"))
case(P, "--overwrite of a file with a store", ["compress", "movie.tif", "-o", "f.pmd.zarr", "--overwrite"], 2,
     r"f\.pmd\.zarr: is a file and the output is a folder", setup=write_bytes("f.pmd.zarr", b"keep"))
case(P, "--overwrite replaces pmd's own store", ["compress", "movie.npy", "-o", "movie.pmd.zarr", "--overwrite",
     "--method", "svd"], 0, r"movie\.pmd\.zarr", changes=("movie.pmd.zarr",))
case(P, "--overwrite replaces pmd's own report", ["report", "movie.tif", "movie.pmd.zarr", "-o", "rep",
     "--overwrite", "--no-heldout"], 0, r"report in rep", changes=("rep",),
     setup=lambda ws, mp: (ws / "rep").mkdir() or (ws / "rep" / "report.json").write_text(
         json.dumps({"format": "pmdcompress-report"})))
case(P, "missing parent folder", ["decompress", "movie.pmd.zarr", "-o", "no/such/o.tif"], 2,
     r"parent folder no/such does not exist")
case(P, "parent is a file", ["decompress", "movie.pmd.zarr", "-o", "movie.tif/o.tif"], 2,
     r"movie\.tif is not a folder")
case(P, "read-only output folder", ["compress", "movie.tif", "-o", "ro/o.pmd.zarr"], 2,
     r"cannot write in folder ro \(permission denied\)",
     setup=lambda ws, mp: ((ws / "ro").mkdir(), _deny_writes(mp, ws / "ro")))
case(P, "permission denied while writing", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 2,
     r"o\.tif: permission denied",
     setup=lambda ws, mp: _fail_writer(mp, "_TiffWriter", errno.EACCES))
case(P, "read-only file system while writing", ["decompress", "movie.pmd.zarr", "-o", "o.npy"], 2,
     r"o\.npy: read-only file system", setup=lambda ws, mp: _fail_writer(mp, "_NpyWriter", errno.EROFS))


def _deny_writes(mp, folder: Path):
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path).resolve() == folder.resolve() and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    mp.setattr(atomic.os, "access", access)


def _fail_writer(mp, cls, code, after=1):
    from pmdcompress.io import writers

    klass = getattr(writers, cls)
    real = klass._write
    calls = {"n": 0}

    def write(self, block):
        calls["n"] += 1
        if calls["n"] >= after:
            raise OSError(code, os.strerror(code), str(self.path))
        return real(self, block)

    mp.setattr(klass, "_write", write)


# =========================== full disks =========================================
F = "full disk"


def _tiny_free(mp, free=1000):
    real = shutil.disk_usage

    def disk_usage(path):
        usage = real(path)
        return type(usage)(usage.total, usage.total - free, free)

    mp.setattr(atomic.shutil, "disk_usage", disk_usage)


def _enospc(mp, module, name, code=errno.ENOSPC):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    mp.setattr(module, name, fail)


def _store_module():
    from pmdcompress.pipeline import compress as compression

    return compression


def _demix_result_module():
    from pmdcompress.demix import result

    return result


NOSPACE = r"no space left on device while writing it"
case(F, "compress: the largest store does not fit", ["compress", "movie.tif", "-o", "o.pmd.zarr"], 2,
     r"o\.pmd\.zarr: needs up to .* \(a store at --max-rank 50 and its scratch\) but only 0\.0 MB are free",
     setup=lambda ws, mp: _tiny_free(mp))
case(F, "decompress to .npy does not fit", ["decompress", "movie.pmd.zarr", "-o", "o.npy"], 2,
     r"o\.npy: needs up to .* \(the uncompressed movie\)", setup=lambda ws, mp: _tiny_free(mp))
case(F, "decompress to TIFF does not fit", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 2,
     r"o\.tif: needs up to", setup=lambda ws, mp: _tiny_free(mp))
case(F, "denoise does not fit", ["denoise", "movie.npy", "-o", "o.npy"], 2, r"needs up to",
     setup=lambda ws, mp: _tiny_free(mp))
case(F, "disk fills while writing .npy", ["decompress", "movie.pmd.zarr", "-o", "o.npy"], 2, r"o\.npy: " + NOSPACE,
     setup=lambda ws, mp: _fail_writer(mp, "_NpyWriter", errno.ENOSPC))
case(F, "disk fills while writing TIFF", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 2, r"o\.tif: " + NOSPACE,
     setup=lambda ws, mp: _fail_writer(mp, "_TiffWriter", errno.ENOSPC))
case(F, "disk fills while writing Zarr", ["decompress", "movie.pmd.zarr", "-o", "o.zarr"], 2,
     r"o\.zarr: " + NOSPACE, setup=lambda ws, mp: _fail_writer(mp, "_ZarrWriter", errno.ENOSPC))
case(F, "no room to reserve the .npy", ["decompress", "movie.pmd.zarr", "-o", "o.npy"], 2, r"o\.npy: " + NOSPACE,
     setup=lambda ws, mp: _enospc(mp, os, "posix_fallocate"))
case(F, "disk quota exceeded", ["decompress", "movie.pmd.zarr", "-o", "o.npy"], 2, r"o\.npy: disk quota exceeded",
     setup=lambda ws, mp: _fail_writer(mp, "_NpyWriter", errno.EDQUOT))
case(F, "disk fills while writing the store", ["compress", "movie.npy", "-o", "o.pmd.zarr", "--method", "svd"], 2,
     r"o\.pmd\.zarr: " + NOSPACE, setup=lambda ws, mp: _enospc(mp, _store_module(), "finish_store"))
case(F, "disk fills while replacing a store", ["compress", "movie.npy", "-o", "movie.pmd.zarr", "--overwrite",
     "--method", "svd"], 2, r"movie\.pmd\.zarr: " + NOSPACE,
     setup=lambda ws, mp: _enospc(mp, _store_module(), "finish_store"))
case(F, "disk fills while writing the demix result", D + ["--no-figures"], 2, r"d\.demix\.zarr: " + NOSPACE,
     setup=lambda ws, mp: _enospc(mp, _demix_result_module(), "write_result"))
case(F, "disk fills while replacing a movie", ["decompress", "movie.pmd.zarr", "-o", "other.tif", "--overwrite"],
     2, r"other\.tif: " + NOSPACE, setup=lambda ws, mp: _fail_writer(mp, "_TiffWriter", errno.ENOSPC))
case(F, "disk fills while simulating", ["simulate", "s.tif", "--frames", "20", "--shape", "16x16"], 2,
     r"s\.tif: " + NOSPACE, setup=lambda ws, mp: _enospc(mp, tifffile, "imwrite"))
case(F, "disk fills while denoising", ["denoise", "movie.npy", "-o", "o.tif", "--method", "svd"], 2,
     r"o\.tif: " + NOSPACE, setup=lambda ws, mp: _fail_writer(mp, "_TiffWriter", errno.ENOSPC))
case(F, "file too large for the file system", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 2,
     r"o\.tif: file too large", setup=lambda ws, mp: _fail_writer(mp, "_TiffWriter", errno.EFBIG))


# =========================== signals (in-process) ===============================
G = "signals"


def _signal_at(stage, sig, pattern=None):
    """Deliver ``sig`` to this process when the run reaches ``stage`` (for the file matching ``pattern``)."""
    def setup(ws, mp):
        real = checkpoints.checkpoint

        def checkpoint(name, target=None):
            if name == stage and (pattern is None or Path(str(target)).name == pattern):
                os.kill(os.getpid(), sig)
            return real(name, target)

        mp.setattr(checkpoints, "checkpoint", checkpoint)
    return setup


SIGNAL_RUNS = {
    "compress": (["compress", "movie.npy", "-o", "o.pmd.zarr", "--method", "svd"], "o.pmd.zarr"),
    "decompress to TIFF": (["decompress", "movie.pmd.zarr", "-o", "o.tif"], "o.tif"),
    "decompress to .npy": (["decompress", "movie.pmd.zarr", "-o", "o.npy"], "o.npy"),
    "decompress to Zarr": (["decompress", "movie.pmd.zarr", "-o", "o.zarr"], "o.zarr"),
    "demix": (D + ["--no-figures"], "d.demix.zarr"),
    "denoise": (["denoise", "movie.pmd.zarr", "-o", "o.tif"], "o.tif"),
    "report": (["report", "movie.tif", "movie.pmd.zarr", "-o", "rep", "--no-heldout"], "rep"),
    "simulate": (["simulate", "s.tif", "--frames", "20", "--shape", "16x16"], "s.tif"),
}
for what, (args, out) in SIGNAL_RUNS.items():
    case(G, f"SIGTERM as {what} commits", args, 143, r"terminated \(SIGTERM\); partial outputs removed",
         setup=_signal_at("commit", signal.SIGTERM, out))
    case(G, f"SIGINT as {what} commits", args, 130, r"interrupted \(SIGINT\); partial outputs removed",
         setup=_signal_at("commit", signal.SIGINT, out))
case(G, "SIGTERM before compress computes", ["compress", "movie.npy", "-o", "o.pmd.zarr"], 143, r"terminated",
     setup=_signal_at("locked", signal.SIGTERM, "o.pmd.zarr"))
case(G, "SIGINT before decompress computes", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 130, r"interrupted",
     setup=_signal_at("locked", signal.SIGINT, "o.tif"))
case(G, "SIGTERM while replacing a store keeps the old one", ["compress", "movie.npy", "-o", "movie.pmd.zarr",
     "--overwrite", "--method", "svd"], 143, r"terminated", setup=_signal_at("commit", signal.SIGTERM))
case(G, "SIGINT while replacing a movie keeps the old one", ["decompress", "movie.pmd.zarr", "-o", "other.tif",
     "--overwrite"], 130, r"interrupted", setup=_signal_at("commit", signal.SIGINT))


# =========================== concurrent runs (in-process) =======================
R = "concurrent"


@pytest.fixture(scope="module")
def holder():
    """A live process on this host (waiting on its stdin) that 'holds' locks in the cases."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc.pid
    proc.stdin.close()
    proc.wait()


def _lock(out, **record):
    def setup(ws, mp):
        pid = record.get("pid", HOLDER["pid"])
        data = {"host": socket.gethostname(), "pid": pid, "pid_start": atomic._process_start(pid),
                "started_at": "2026-01-01T00:00:00+0000", **record}
        atomic.lock_path(Path(out)).write_text(json.dumps(data))
    return setup


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _partial(out, pid=None, host=None):
    def setup(ws, mp):
        p = pid if pid is not None else _dead_pid()
        tag = f"{p}-{host or atomic._host_id()}-{uuid.uuid4().hex[:8]}"
        path = Path(f".{out}.{tag}.partial")
        path.mkdir()
        (path / "junk").write_bytes(b"\0" * 1000)
    return setup


HOLDER: dict = {}
BUSY = r"being written by another pmd \(pid \d+ on host"
for what, (args, out) in SIGNAL_RUNS.items():
    case(R, f"{what} while another process writes the output", args, 2, re_out := rf"{out}: " + BUSY,
         setup=_lock(out), allowed=(f".{out}.lock",))
case(R, "a lock from another host", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 2,
     r"o\.tif: locked by pmd \(pid 4242 on host elsewhere.*remove the lock: rm .*\.o\.tif\.lock",
     setup=_lock("o.tif", host="elsewhere", pid=4242), allowed=(".o.tif.lock",),
     check=lambda ws: (ws / ".o.tif.lock").exists())
case(R, "a dead process's lock is taken over", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 0, r"-> o\.tif",
     setup=lambda ws, mp: _lock("o.tif", pid=_dead_pid())(ws, mp), changes=("o.tif",))
case(R, "a dead process's partial output is removed", ["compress", "movie.npy", "-o", "o.pmd.zarr", "--method",
     "svd"], 0, r"-> o\.pmd\.zarr", setup=chain(lambda ws, mp: _lock("o.pmd.zarr", pid=_dead_pid())(ws, mp),
                                                 _partial("o.pmd.zarr")), changes=("o.pmd.zarr",))
case(R, "a partial output without a lock is removed", ["decompress", "movie.pmd.zarr", "-o", "o.zarr"], 0,
     r"-> o\.zarr", setup=_partial("o.zarr"), changes=("o.zarr",))
case(R, "a reused process id does not hold the lock", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 0,
     r"-> o\.tif", setup=_lock("o.tif", pid_start="1"), changes=("o.tif",))
case(R, "an unreadable lock counts as stale", ["decompress", "movie.pmd.zarr", "-o", "o.tif"], 0, r"-> o\.tif",
     setup=write_bytes(".o.tif.lock", b"\x00garbage"), changes=("o.tif",))
case(R, "a live process's partial output is kept", ["decompress", "movie.pmd.zarr", "-o", "o.zarr"], 0,
     r"-> o\.zarr", setup=lambda ws, mp: _partial("o.zarr", pid=HOLDER["pid"])(ws, mp), changes=("o.zarr",),
     check=lambda ws: len(list(ws.glob(".o.zarr.*.partial"))) == 1, allowed=("*",))
case(R, "another host's partial output is kept", ["decompress", "movie.pmd.zarr", "-o", "o.zarr"], 0,
     r"-> o\.zarr", setup=_partial("o.zarr", host="0badc0de"), changes=("o.zarr",),
     check=lambda ws: len(list(ws.glob(".o.zarr.*.partial"))) == 1, allowed=("*",))
case(R, "an output a dead run had moved aside is restored", ["decompress", "movie.pmd.zarr", "-o", "other.tif"], 2,
     r"other\.tif: output exists",
     setup=lambda ws, mp: os.replace(ws / "other.tif", ws / ".other.tif.1234abcd.old"),
     check=lambda ws: (ws / "other.tif").exists(), changes=("other.tif",))
case(R, "the result is held while its figures are free", D + ["--figures"], 2, r"d\.demix\.zarr: " + BUSY,
     setup=_lock("d.demix.zarr"), allowed=(".d.demix.zarr.lock",),
     check=lambda ws: not (ws / "d.demix.contours.png").exists())

# -- session 9: files and options of kinds a new user brings (each once a traceback or a silent wrong result) ---
case(B, "float movie too large for float32 sums", ["compress", "huge.npy", "-o", "o.pmd.zarr", "--method", "svd"], 2,
     r"huge\.npy: values of magnitude [\d.]+e\+20 in frames 0-39; pmd compress needs \|values\| < 1e\+15",
     setup=write_npy("huge.npy", MOVIE.astype(np.float32) * np.float32(1e20)))
case(O, "compress negative seed", C + ["--seed", "-1"], 2, r"--seed must be >= 0, got -1")
case(O, "demix cell radius wider than the field", D + ["--cell-radius", "1000"], 2,
     r"movie\.pmd\.zarr: --cell-radius 1000: a soma that wide does not fit in the 24x24 field of view")
case(O, "demix correlation threshold NaN", D + ["--corr-threshold", "nan"], 2,
     r"--corr-threshold nan: expected a number in \[0, 1\)")
case(O, "demix correlation threshold no pixel reaches", D + ["--corr-threshold", "2"], 2,
     r"--corr-threshold 2\.0: expected a number in \[0, 1\)")
case(O, "evaluate negative centroid distance", ["evaluate", "labels.npy", "--truth", "labels.npy", "--mode",
                                                "centroid", "--max-distance", "-1"], 2,
     r"--max-distance -1\.0: expected a positive distance")
case(O, "simulate a movie named .npy", ["simulate", "s.npy", "--frames", "10", "--shape", "16x16"], 2,
     r"s\.npy: a simulated movie is written as TIFF; name it \.tif")
case(O, "simulate a movie named .zarr", ["simulate", "s.zarr", "--frames", "10", "--shape", "16x16"], 2,
     r"s\.zarr: a simulated movie is written as TIFF")


def _external_h5(ws, mp):
    h5py = pytest.importorskip("h5py")
    with h5py.File(ws / "ext.h5", "w") as f:  # its frames live in a raw file that is gone
        f.create_dataset("mov", MOVIE.shape, dtype=MOVIE.dtype, external=[("gone.raw", 0, MOVIE.nbytes)])


def _frame_by_frame(name, frames):
    def setup(ws, mp):
        with tifffile.TiffWriter(ws / name) as tw:
            for frame in frames:
                tw.write(frame)
    return setup


case(B, "HDF5 frames that cannot be read", ["compress", "ext.h5", "-o", "o.pmd.zarr"], 2,
     r"ext\.h5:/mov: frames 0-\d+ cannot be read \(OSError", setup=_external_h5)
case(B, "a TIFF written frame by frame is a movie", ["compress", "loop.tif", "-o", "loop.pmd.zarr", "--method", "svd"],
     0, r"loop\.tif -> loop\.pmd\.zarr: 40x16x16", setup=_frame_by_frame("loop.tif", MOVIE),
     changes=("loop.pmd.zarr",))
case(B, "TIFF pages of different shapes", ["compress", "mixed.tif", "-o", "o.pmd.zarr"], 2,
     r"mixed\.tif: pages of different shapes or types: pages 0-39 are 16x16 uint16, page 40 is 8x8",
     setup=_frame_by_frame("mixed.tif", [*MOVIE, *MOVIE[:5, :8, :8]]))
EVAL = ["evaluate", "labels.npy", "--truth"]
case(B, "evaluate against an empty label image", EVAL + ["none.npy"], 2,
     r"none\.npy: no regions; a ground truth needs at least one cell",
     setup=write_npy("none.npy", np.zeros((24, 24), np.int32)))
case(B, "evaluate against an empty JSON list", EVAL + ["none.json"], 2, r"none\.json: no regions",
     setup=write_bytes("none.json", b"[]"))
case(B, "evaluate against an empty ImageJ ROI zip", EVAL + ["RoiSet.zip"], 2, r"RoiSet\.zip: no regions",
     setup=write_bytes("RoiSet.zip", b"PK\x05\x06" + b"\0" * 18))
case(B, "evaluate against a region without pixels", EVAL + ["e.json"], 2,
     r"e\.json: region 1 has no pixel in the field of view \(1 such of 2\)",
     setup=write_bytes("e.json", b'[{"coordinates": [[3, 3], [3, 4]]}, {"coordinates": []}]'))
case(B, "evaluate against labels of another field of view", EVAL + ["small.npy"], 2,
     r"small\.npy: image sizes differ: regions in a 10x10 field of view, but labels\.npy is 24x24: ground truth "
     r"of another movie",
     setup=write_npy("small.npy", np.ones((10, 10), np.int32)))
case(P, "decompress over the raw movie the store was made from", ["decompress", "movie.pmd.zarr", "-o", "movie.tif",
                                                                   "--overwrite"], 2,
     r"movie\.tif: is the raw movie movie\.pmd\.zarr was made from; a reconstruction never replaces it, even with "
     r"--overwrite")
case(P, "denoise a store over its raw movie", ["denoise", "movie.pmd.zarr", "-o", "movie.tif", "--overwrite"], 2,
     r"movie\.tif: is the raw movie movie\.pmd\.zarr was made from")
case(P, "compress to a .tif name", ["compress", "movie.npy", "-o", "o.tif"], 2,
     r"o\.tif: this output is a folder \(a Zarr store, a result or a report folder\), but \.tif names a file format")
case(P, "demix to a .npy name", ["demix", "movie.pmd.zarr", "-o", "d.npy"], 2, r"d\.npy: this output is a folder")
case(B, "info of a file neither a movie nor a store", ["info", "notes.txt"], 2, r"^pmd: error: notes\.txt: ",
     setup=write_bytes("notes.txt", b"not a movie\n"))
case(P, "demo into a file", ["demo", "movie.tif"], 2, r"movie\.tif: is a file, not a folder")
case(P, "demo in a missing folder", ["demo", "no/such/demo"], 2, r"no/such/demo: parent folder no/such does not exist")


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------


def _param(c: Case):
    marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
    return pytest.param(c, id=f"{c.category}: {c.name}", marks=marks)


@pytest.mark.parametrize("c", [_param(c) for c in CASES])
def test_fault(c: Case, ws, monkeypatch, holder):
    HOLDER["pid"] = holder
    if c.setup is not None:
        c.setup(ws, monkeypatch)
    before = snapshot(ws)
    code, lines = invoke(c.args)
    text = "\n".join(lines)
    assert code == c.code, text
    if c.code != 0:
        assert len(lines) == 1, text
        assert lines[0].startswith("pmd: "), text
    if c.line is not None:
        assert any(re.search(c.line, line) for line in lines), text
    after = snapshot(ws)
    for name, digest in before.items():
        if any(name == ch or name.startswith(ch + "/") for ch in c.changes):
            continue
        assert after.get(name) == digest, f"{name} changed or vanished"
    if c.code != 0 and not c.changes:
        assert set(after) == set(before), f"new files: {sorted(set(after) - set(before))}"
    if "*" not in c.allowed:
        assert leftovers(ws, c.allowed) == []
    if c.check is not None:
        assert c.check(ws) not in (False,)


def test_the_corpus_covers_every_category():
    counts = {}
    for c in CASES:
        counts[c.category] = counts.get(c.category, 0) + 1
    assert len(CASES) >= 150, counts
    assert min(counts.values()) >= 15 and len(counts) == 7, counts


# ---------------------------------------------------------------------------
# From outside: real processes, real signals, a real small disk
# ---------------------------------------------------------------------------


def test_a_second_run_is_refused_while_the_first_writes_then_the_first_finishes(ws, tmp_path):
    first = PausedRun(["compress", "movie.npy", "-o", "o.pmd.zarr", "--frames", "0:20", "--method", "svd"],
                      "commit:o.pmd.zarr", tmp_path / "fifos", cwd=ws)
    try:
        first.wait_paused()
        code, err = run_pmd(["compress", "movie.npy", "-o", "o.pmd.zarr", "--frames", "20:40"], cwd=ws)
        assert code == 2 and re.fullmatch(rf"pmd: error: o\.pmd\.zarr: {BUSY}.*\n", err), err
        first.resume()
        code, err = first.finish()
    finally:
        if first.proc.poll() is None:
            first.kill()
    assert code == 0, err
    from pmdcompress import open as open_store

    assert open_store(ws / "o.pmd.zarr").shape[0] == 20  # the first run's store, whole
    assert leftovers(ws) == []


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_from_outside_cleans_up(ws, tmp_path, sig, code, word):
    before = snapshot(ws)
    run = PausedRun(["decompress", "movie.pmd.zarr", "-o", "other.tif", "--overwrite"], "commit:other.tif",
                    tmp_path / "fifos", cwd=ws)
    try:
        run.wait_paused()
        assert any(p.name.endswith(".partial") for p in ws.glob(".other.tif.*"))
        run.proc.send_signal(sig)
        returncode, err = run.finish()
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert returncode == code and err.splitlines() == [f"pmd: {word} ({sig.name}); partial outputs removed"], err
    assert snapshot(ws) == before and leftovers(ws) == []  # the old other.tif kept


def test_what_a_killed_run_left_is_cleaned_by_the_next(ws, tmp_path):
    run = PausedRun(["compress", "movie.npy", "-o", "o.pmd.zarr", "--method", "svd"], "commit:o.pmd.zarr",
                    tmp_path / "fifos", cwd=ws)
    run.wait_paused()
    run.proc.kill()  # SIGKILL: no cleanup possible
    run.kill()
    assert leftovers(ws)  # its lock and its partial store
    code, err = run_pmd(["compress", "movie.npy", "-o", "o.pmd.zarr", "--method", "svd"], cwd=ws)
    assert code == 0, err
    assert leftovers(ws) == [] and (ws / "o.pmd.zarr" / "zarr.json").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs, where mounting is permitted (root, in a container that allows it)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (the injected-ENOSPC cases cover the same paths)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize("args, line", [
    (["decompress", "movie.pmd.zarr", "-o", "{small}/o.npy", "--dtype", "float64"], r"o\.npy: needs up to"),
    (["decompress", "movie.pmd.zarr", "-o", "{small}/o.tif", "--dtype", "float64"], r"o\.tif: needs up to"),
    (["simulate", "{small}/s.tif", "--frames", "200", "--shape", "64x64"], r"s\.tif: no space left on device"),
    (["compress", "movie.npy", "-o", "{small}/o.pmd.zarr", "--max-rank", "500"], r"o\.pmd\.zarr: needs up to"),
])
def test_a_real_full_disk(ws, small_disk, args, line):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 64 * 1024)  # something of the user's already there
    before = snapshot(ws)
    code, lines = invoke([a.replace("{small}", str(small_disk)) for a in args])
    assert code == 2 and len(lines) == 1 and re.search(line, lines[0]), lines
    assert snapshot(ws) == before and leftovers(small_disk) == []
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_batch_retry_is_not_stopped_by_a_lock_its_killed_worker_left_on_another_node(ws):
    from pmdcompress.pipeline.batch import read_status, run_batch

    folder = ws / "out" / "movie"
    folder.mkdir(parents=True)
    record = {"host": "node17", "pid": 4242, "started_at": "2026-01-01T00:00:00+0000"}
    atomic.lock_path(folder / "movie.pmd.zarr").write_text(json.dumps(record))
    (folder / ".movie.pmd.zarr.4242-0badc0de-12345678.partial").mkdir()
    summary = run_batch(str(ws / "movie.npy"), ws / "out", scheduler="sync",
                        options={"patch_shape": 12, "overlap": 4, "method": "svd"})
    assert summary["done"] == ["movie"] and read_status(folder)["state"] == "done"
    assert leftovers(ws / "out", allowed=("movie/.lock",)) == []  # the batch's own folder lock stays
