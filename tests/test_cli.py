"""The pmd command: round trips and every bad-input path (exit code 2, one line)."""

import json
import os

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import pmdcompress
import pmdcompress.cli.app as app
from conftest import blobs_movie, shared_movie
from pmdcompress.cli import main


def run(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def movie_tif(tmp_path_factory):
    noisy, _ = blobs_movie(n_frames=300)
    path = tmp_path_factory.mktemp("cli") / "movie.tif"
    tifffile.imwrite(path, np.clip(noisy, 0, 65535).astype(np.uint16))
    return path


@pytest.fixture(scope="module")
def store_path(movie_tif):
    out = movie_tif.with_name("movie.pmd.zarr")
    run("-q", "compress", movie_tif, "-o", out, "--patch", "24", "--overlap", "6")
    return out


def test_compress_info_decompress_round_trip(movie_tif, store_path, tmp_path):
    info = json.loads(run("info", store_path, "--json").output)
    assert info["shape"] == [300, 48, 56] and info["input_dtype"] == "uint16"
    assert info["input"]["name"] == "movie.tif" and len(info["input"]["sha256"]) == 64
    assert "ratio" in run("info", store_path).output
    store = pmdcompress.open(store_path)
    expected = np.clip(np.floor(store[100:150, 8:40, 0:30] + 0.5), 0, 65535).astype(np.uint16)
    for ext in ("tif", "npy", "zarr"):
        out = tmp_path / f"part.{ext}"
        run("-q", "decompress", store_path, "-o", out, "--frames", "100:150", "--crop", "8:40,0:30")
        with pmdcompress.open_movie(out) as got:
            assert got.shape == (50, 32, 30) and got.dtype == np.uint16
            np.testing.assert_array_equal(got.read(0, 50), expected)
    out = tmp_path / "f32.npy"
    run("-q", "decompress", store_path, "-o", out, "--dtype", "float32")
    np.testing.assert_allclose(np.load(out), store[:], rtol=1e-6, atol=1e-3)


def test_overlap_takes_n_or_hxw_as_the_patch_does(movie_tif, tmp_path):
    # the API took both forms; the command line took an integer only (click's type=int refused "6x4")
    out = tmp_path / "rect.pmd.zarr"
    run("-q", "compress", movie_tif, "-o", out, "--patch", "24x16", "--overlap", "6x4", "--method", "svd")
    info = json.loads(run("info", out, "--json").output)
    assert (info["patch_shape"], info["overlap"]) == ([24, 16], [6, 4])
    assert "--overlap 'ax4': expected N or HxW" in run("compress", movie_tif, "-o", tmp_path / "x.pmd.zarr",
                                                       "--overlap", "ax4", code=2).output


def test_decompress_refuses_to_overwrite(store_path, tmp_path):
    out = tmp_path / "x.npy"
    run("-q", "decompress", store_path, "-o", out, "--frames", ":10")
    result = run("decompress", store_path, "-o", out, "--frames", ":10", code=2)
    assert "--overwrite" in result.output
    run("-q", "decompress", store_path, "-o", out, "--frames", ":10", "--overwrite")


def bad_inputs(tmp_path):
    cases = {}
    cases["missing"] = (tmp_path / "nope.tif", "no such file")
    text = tmp_path / "notes.tif"
    text.write_text("this is not an image\n")
    cases["not a tiff"] = (text, "notes.tif")
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.random.default_rng(0).integers(0, 4000, (40, 32, 32), dtype=np.uint16))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated"] = (cut, "cut.tif")
    flat = tmp_path / "image.tif"
    tifffile.imwrite(flat, np.zeros((32, 32), np.uint16))
    cases["2-D"] = (flat, "2-D")
    hyper = tmp_path / "hyper.tif"
    tifffile.imwrite(hyper, np.zeros((20, 3, 16, 16), np.uint16), imagej=True, metadata={"axes": "TZYX"})
    cases["4-D"] = (hyper, "--plane")
    nan = tmp_path / "nan.tif"
    data = np.random.default_rng(1).normal(100, 5, (30, 16, 16)).astype(np.float32)
    data[12, 4, 4] = np.nan
    tifffile.imwrite(nan, data)
    cases["NaN"] = (nan, "frame 12 contains NaN")
    short = tmp_path / "short.tif"
    tifffile.imwrite(short, np.zeros((5, 16, 16), np.uint16))
    cases["few frames"] = (short, "5 frames")
    return cases


@pytest.mark.parametrize("case", ["missing", "not a tiff", "truncated", "2-D", "4-D", "NaN", "few frames"])
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, case):
    path, needle = bad_inputs(tmp_path)[case]
    out = tmp_path / "out.pmd.zarr"
    result = run("compress", path, "-o", out, code=2)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("pmd: error:") and needle in lines[0] and path.name in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out.pmd.zarr*"))


def test_existing_output_needs_overwrite(movie_tif, store_path):
    before = sorted(p.name for p in store_path.rglob("*"))
    result = run("compress", movie_tif, "-o", store_path, code=2)
    assert "exists" in result.output and "--overwrite" in result.output
    assert sorted(p.name for p in store_path.rglob("*")) == before


def test_4d_movie_with_plane_works(tmp_path):
    noisy, _ = blobs_movie(n_frames=60, shape=(24, 24))
    stack = np.stack([noisy, noisy * 0 + 7], axis=1).clip(0, 65535).astype(np.uint16)
    path = tmp_path / "h.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TZYX"})
    run("-q", "compress", path, "-o", tmp_path / "h.pmd.zarr", "--plane", "1")
    np.testing.assert_allclose(pmdcompress.open(tmp_path / "h.pmd.zarr")[:], 7, atol=1e-3)


def test_info_ratio_says_it_is_against_the_plane_read_and_gives_the_whole_file(tmp_path):
    from rig_files import interleave, scanimage_frame_data, write_scanimage

    noisy, _ = blobs_movie(n_frames=60, shape=(24, 24))
    vol = np.stack([np.stack([noisy, noisy // 2], axis=1)] * 3, axis=1).clip(0, 4000).astype(np.int16)
    path = tmp_path / "file_00001.tif"
    write_scanimage(path, interleave(vol, flyback=1), scanimage_frame_data(n_channels=2, n_slices=3, flyback=1))
    store = tmp_path / "si.pmd.zarr"
    run("-q", "compress", path, "-o", store, "--plane", "1", "--channel", "0")
    info = json.loads(run("info", store, "--json").output)
    stored, read = info["bytes_on_disk"], 60 * 24 * 24 * 2
    assert info["bytes_input"] == read and info["compression_ratio_bytes"] == pytest.approx(read / stored)
    # 8 pages (3 planes x 2 channels + 2 flyback) per volume: the file is over 8 times the plane/channel read
    assert info["compression_ratio_vs_input_file"] == pytest.approx(path.stat().st_size / stored)
    assert info["compression_ratio_vs_input_file"] > 8 * info["compression_ratio_bytes"]
    line = next(s for s in run("info", store).output.splitlines() if s.startswith("ratio"))
    assert (f"{read / stored:.1f}x by bytes vs the data read (60 x 24 x 24 int16, plane 1, channel 0), "
            f"{path.stat().st_size / stored:.1f}x vs the whole input file, ") in line


def test_info_gives_no_whole_file_ratio_when_the_file_is_the_data(store_path, movie_tif):
    info = json.loads(run("info", store_path, "--json").output)
    assert info["compression_ratio_vs_input_file"] == pytest.approx(movie_tif.stat().st_size / info["bytes_on_disk"])
    line = next(s for s in run("info", store_path).output.splitlines() if s.startswith("ratio"))
    assert "vs the data read (300 x 48 x 56 uint16)" in line and "whole input file" not in line


def test_quiet_and_verbose_may_follow_the_command(movie_tif, tmp_path):
    """``pmd compress movie.tif -o s -q`` is ``pmd -q compress ...`` (click wants the group's flags first)."""
    from pmdcompress.cli.app import _global_flags_first

    assert _global_flags_first(["compress", "m.tif", "-q", "-o", "s"]) == ["-q", "compress", "m.tif", "-o", "s"]
    assert _global_flags_first(["-v", "info", "s", "-vv"]) == ["-v", "-vv", "info", "s"]
    assert _global_flags_first(["batch", "a", "--", "-q"]) == ["batch", "a", "--", "-q"]  # after --: a name
    quiet = CliRunner().invoke(main, ["compress", str(movie_tif), "-o", str(tmp_path / "q.pmd.zarr"), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    verbose = CliRunner().invoke(main, ["compress", str(tmp_path / "none.tif"), "-o", str(tmp_path / "v.pmd.zarr"),
                                        "-v"])
    assert verbose.exit_code == 2 and "Traceback" in verbose.stderr  # -v: the traceback too


def test_info_of_a_movie_says_how_pmd_reads_it(movie_tif, tmp_path):
    """Before compressing: the shape, type and frame rate pmd compress would take (an .npy has no rate)."""
    d = json.loads(run("info", movie_tif, "--json").output)
    assert (d["format"], d["shape"], d["dtype"]) == ("tiff", [300, 48, 56], "uint16")
    assert d["data_bytes"] == 300 * 48 * 56 * 2 and d["file_bytes"] == movie_tif.stat().st_size
    np.save(tmp_path / "m.npy", tifffile.imread(movie_tif)[:20])
    lines = run("info", tmp_path / "m.npy").output.splitlines()
    assert lines[1].startswith("shape (T,Y,X)   20 x 48 x 56  (uint16") and "unknown (give it with --fs)" in lines[2]


def test_nan_border_is_refused_with_its_size_and_the_fix(tmp_path):
    """CaImAn's border_nan=True: whole rows/columns of NaN at the edges, of a width that changes with the shift."""
    rng = np.random.default_rng(2)
    movie = rng.normal(100, 5, (40, 30, 36)).astype(np.float32)
    widths = rng.integers(0, 4, (40, 4))
    widths[5] = [0, 0, 0, 0]  # a frame the correction did not shift
    for frame, (top, bottom, left, right) in zip(movie, widths, strict=True):
        frame[:top], frame[30 - bottom:], frame[:, :left], frame[:, 36 - right:] = np.nan, np.nan, np.nan, np.nan
    np.save(tmp_path / "mc.npy", movie)
    out = tmp_path / "o.pmd.zarr"
    result = run("compress", tmp_path / "mc.npy", "-o", out, code=2)
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
    first = int(np.flatnonzero(np.isnan(movie).any(axis=(1, 2)))[0])
    n_bad_frames = int(np.isnan(movie).any(axis=(1, 2)).sum())
    t, b, lf, r = widths.max(axis=0)
    assert (f"mc.npy: frame {first} contains NaN or inf values ({int(np.isnan(movie[first]).sum())} of 1,080 pixels;"
            f" {n_bad_frames} of frames 0-39 have some): a NaN border (up to {t} rows at the top, {b} at the bottom, "
            f"{lf} columns at the left, {r} at the right)") in result.output
    assert f"--crop {t}:{30 - b},{lf}:{36 - r})" in result.output and "border_nan='copy'" in result.output
    assert np.isfinite(movie[:, t:30 - b, lf:36 - r]).all()
    # The crop the message names compresses; the store records it, and pmd report reads that part again.
    run("compress", tmp_path / "mc.npy", "-o", out, "--crop", f"{t}:{30 - b},{lf}:{36 - r}")
    store = pmdcompress.open(out)
    assert store.shape == (40, 30 - b - t, 36 - r - lf)
    assert store.info()["input"]["crop"] == [[int(t), int(30 - b)], [int(lf), int(36 - r)]]
    run("report", tmp_path / "mc.npy", out, "-o", tmp_path / "rep", "--no-heldout", "--no-whole-split")
    assert (tmp_path / "rep" / "report.json").exists()


def test_scattered_nan_is_refused_as_not_a_border(tmp_path):
    movie = np.random.default_rng(3).normal(100, 5, (30, 16, 16)).astype(np.float32)
    movie[9, 0, :] = np.nan  # a whole edge row, but with a stray inf inside the frame: not a border
    movie[9, 7, 7] = np.inf
    np.save(tmp_path / "spots.npy", movie)
    result = run("compress", tmp_path / "spots.npy", "-o", tmp_path / "o.pmd.zarr", code=2)
    assert ("spots.npy: frame 9 contains NaN or inf values (17 of 256 pixels; 1 of frames 0-29 has some), not a "
            "border of whole rows/columns") in result.output


def _compress_failing_with(error, tmp_path, monkeypatch, *flags, code):
    """Run ``pmd compress`` on a small movie while its pipeline raises ``error``."""
    import importlib

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(importlib.import_module("pmdcompress.pipeline.compress"), "_run", fail)
    noisy, _ = blobs_movie(n_frames=30, shape=(16, 16))
    np.save(tmp_path / "m.npy", noisy)
    return run(*flags, "compress", tmp_path / "m.npy", "-o", tmp_path / "o.pmd.zarr", code=code)


def test_unexpected_failure_is_exit_1_and_traceback_only_with_v(tmp_path, monkeypatch):
    quiet = _compress_failing_with(RuntimeError("kaboom"), tmp_path, monkeypatch, code=1)
    assert "kaboom" in quiet.output and "Traceback" not in quiet.output
    loud = _compress_failing_with(RuntimeError("kaboom"), tmp_path, monkeypatch, "-v", code=1)
    assert "Traceback" in loud.output


def test_real_two_photon_movie_round_trips(tmp_path):
    path = shared_movie("sima_ca1_example")
    run("-q", "compress", path, "-o", tmp_path / "s.pmd.zarr")
    store = pmdcompress.open(tmp_path / "s.pmd.zarr")
    raw = tifffile.imread(path).astype(np.float32)
    rec = store[:]
    assert rec.shape == raw.shape == (20, 128, 256)
    # Only noise removed: the residual is no larger than the raw noise level.
    resid = np.std(raw - rec, axis=0)
    noise = np.std(np.diff(raw, axis=0), axis=0) / np.sqrt(2)
    assert np.median(resid / noise) < 1.1
    # The mean image of 20 frames is noisy (its even and odd halves correlate at c = 0.52) and the store smooths
    # it (preprocess.mean_correction): the reconstruction's mean must correlate with the raw one as well as the
    # noise-free mean would, sqrt(2c / (1 + c)) (the halves hold the structure S and twice the mean's noise N:
    # c = S / (S + 2N)).
    c = np.corrcoef(raw[0::2].mean(0).ravel(), raw[1::2].mean(0).ravel())[0, 1]
    assert np.corrcoef(rec.mean(0).ravel(), raw.mean(0).ravel())[0, 1] > 0.95 * np.sqrt(2 * c / (1 + c))


def test_help_starts_without_numba():
    import subprocess
    import sys

    code = "import sys; from pmdcompress.cli import main; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# Runs ``pmd ARGS`` in a fresh interpreter, then prints the top-level packages it imported on its last line.
_IMPORTED_BY = """
import json, sys
from pmdcompress.cli import main
try:
    main(sys.argv[1:], prog_name="pmd")
except SystemExit as exc:
    code = exc.code
heavy = {"scipy.signal", "scipy.stats"} & set(sys.modules)
print("\\n" + json.dumps({"exit": code, "packages": sorted({m.split(".")[0] for m in sys.modules} | heavy)}))
"""
# Imported only by the commands and options that use them: figures (matplotlib), --scheduler (dask, distributed),
# the NWB and CaImAn exports (pynwb, h5py).  Each costs 0.3-1 CPU-s per command.
OPTIONAL_PACKAGES = {"matplotlib", "dask", "distributed", "pynwb", "h5py"}
NUMERIC_PACKAGES = {"numpy", "scipy", "numba", "zarr"}
# Submodules of scipy that compress and demix avoid (0.4-0.5 CPU-s of import each, a tenth of a short demix):
# packages_imported_by names them in full where they were imported.
HEAVY_SUBMODULES = {"scipy.signal", "scipy.stats"}


def packages_imported_by(*args) -> set[str]:
    """The top-level packages that ``pmd ARGS`` imports, in a fresh interpreter (the checkout first on its path)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(pmdcompress.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]), PMD_NUM_WORKERS="1")
    proc = subprocess.run([sys.executable, "-c", _IMPORTED_BY, *map(str, args)], capture_output=True, text=True,
                          env=env, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["exit"] in (0, None), proc.stderr
    return set(out["packages"])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["demix", "--help"], ["compress", "--help"]])
def test_help_imports_no_numeric_or_optional_package(args):
    imported = packages_imported_by(*args)
    assert imported & (NUMERIC_PACKAGES | OPTIONAL_PACKAGES) == set()


def test_store_commands_import_no_optional_package(movie_tif, store_path, tmp_path):
    """info, compress and demix (no figures, no --scheduler, no NWB or CaImAn export) leave the optional packages
    alone; demix --export caiman loads h5py and nothing else of them."""
    assert packages_imported_by("info", store_path) & OPTIONAL_PACKAGES == set()
    compressed = packages_imported_by("-q", "compress", movie_tif, "-o", tmp_path / "m.pmd.zarr", "--patch", "24",
                                      "--overlap", "6")
    assert compressed & (OPTIONAL_PACKAGES | HEAVY_SUBMODULES) == set() and "zarr" in compressed
    demixed = packages_imported_by("-q", "demix", store_path, "-o", tmp_path / "m.demix.zarr", "--fs", "10",
                                   "--export", "suite2p")
    assert demixed & (OPTIONAL_PACKAGES | HEAVY_SUBMODULES) == set() and (tmp_path / "m.demix.suite2p").is_dir()
    caiman = packages_imported_by("-q", "demix", store_path, "-o", tmp_path / "c.demix.zarr", "--fs", "10",
                                  "--export", "caiman")
    assert caiman & OPTIONAL_PACKAGES == {"h5py"}


_BLAS_POOLS_AFTER_PMD = """
import json, os, sys
from pmdcompress.cli import main
try:
    main(["info", "--help"])
except SystemExit:
    pass
import numpy  # noqa: F401 - loads the BLAS library and its pool
from threadpoolctl import threadpool_info
print(json.dumps({"env": {name: os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
                  "pools": [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]}))
"""


def _blas_pools_after_pmd(**env_overrides) -> dict:
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(pmdcompress.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in app.LIBRARY_THREAD_VARIABLES}
    env.update(PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]), **env_overrides)
    proc = subprocess.run([sys.executable, "-c", _BLAS_POOLS_AFTER_PMD], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pmd_sizes_blas_pools_to_one_thread_unless_the_user_did(monkeypatch):
    """A fresh pmd process starts BLAS with one thread (pmd's own workers are the parallelism; a pool per core only
    spins); a size the user chose is kept; a caller that loaded numpy first keeps its environment untouched."""
    fresh = _blas_pools_after_pmd()
    assert fresh["env"] == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    assert fresh["pools"] and set(fresh["pools"]) == {1}
    chosen = _blas_pools_after_pmd(OPENBLAS_NUM_THREADS="2")
    assert chosen["env"]["OPENBLAS_NUM_THREADS"] == "2" and chosen["env"]["OMP_NUM_THREADS"] == "1"
    for name in app.LIBRARY_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    app._one_library_thread()  # numpy is loaded in this process: too late to size its pools, so nothing is set
    assert not any(name in os.environ for name in app.LIBRARY_THREAD_VARIABLES)


def test_out_of_memory_is_the_users_problem_exit_2_one_line(tmp_path, monkeypatch):
    error = MemoryError("Unable to allocate 12.0 GiB for an array")
    result = _compress_failing_with(error, tmp_path, monkeypatch, code=2)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "out of memory" in lines[0] and "12.0 GiB" in lines[0], result.output
    assert "--fit-frames" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "o.pmd.zarr").exists() and not list(tmp_path.glob("*.partial*"))


def test_free_space_check_counts_the_scratch_beside_the_store(tmp_path, monkeypatch):
    import importlib

    from pmdcompress.options import CompressOptions
    from pmdcompress.preflight import scratch_size_bound, store_size_bound

    atomic = importlib.import_module("pmdcompress.io.atomic")
    noisy, _ = blobs_movie(n_frames=60, shape=(32, 32))
    np.save(tmp_path / "m.npy", noisy)
    opts = CompressOptions.create()
    store, scratch = store_size_bound(noisy.shape, opts), scratch_size_bound(noisy.shape, opts)
    # the fit buffer (every frame here) and the unfiltered factors of every patch at max_rank
    assert scratch >= noisy.size * 4 and scratch > 0
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: store + scratch // 2)  # the store fits, not both
    result = run("compress", tmp_path / "m.npy", "-o", tmp_path / "o.pmd.zarr", code=2)
    assert "and its scratch" in result.output and "--max-rank" in result.output
    assert not (tmp_path / "o.pmd.zarr").exists()
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: store + scratch)
    run("-q", "compress", tmp_path / "m.npy", "-o", tmp_path / "o.pmd.zarr")


def test_info_names_the_hdf5_dataset_read(tmp_path):
    """A file holding two movies: compress says which it read, the store records it and info shows it."""
    h5py = pytest.importorskip("h5py")
    noisy, _ = blobs_movie(n_frames=60, shape=(24, 24))
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as fh:
        fh["mov"] = noisy.clip(0, 4000).astype(np.uint16)
        fh["registered"] = noisy.clip(0, 4000).astype(np.uint16)
    store = tmp_path / "m.pmd.zarr"
    result = run("compress", path, "-o", store)
    assert f"{path}: read dataset 'mov' (60x24x24); it also holds 'registered'; choose another with --dataset" in \
        result.output
    assert json.loads(run("info", store, "--json").output)["input"]["dataset"] == "/mov"
    line = next(s for s in run("info", store).output.splitlines() if s.startswith("ratio"))
    assert "vs the data read (60 x 24 x 24 uint16, dataset /mov)" in line
