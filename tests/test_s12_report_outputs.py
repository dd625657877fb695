"""Outputs whose names begin alike (session 12): ``pmd denoise -o NAME.tif --report NAME``.

The report folder's lock cleans what dead writers of ``NAME`` left (``.NAME.*.partial``, ``.NAME.*.old``); it
took ``.NAME.tif.<pid>-...partial``, the movie being written beside it, for one of those and removed it: the
command stopped with "NAME.tif: nothing was written" after the report folder was in place.
"""

import json
import os

import numpy as np
from click.testing import CliRunner

from pmdcompress.cli import main
from pmdcompress.io.atomic import output_lock, partial_path


def run(*args, code=0):
    result = CliRunner().invoke(main, ["-q", *map(str, args)])
    assert result.exit_code == code, result.output
    return result


def test_denoise_writes_a_movie_and_a_report_folder_of_the_same_stem(tmp_path):
    rng = np.random.default_rng(0)
    movie = rng.poisson(30, (60, 32, 32)).astype(np.uint16)
    movie[:, 10:18, 10:18] += (40 * (np.sin(np.arange(60) / 4.0) > 0.5)).astype(np.uint16)[:, None, None]
    np.save(tmp_path / "m.npy", movie)
    run("compress", tmp_path / "m.npy", "-o", tmp_path / "m.pmd.zarr")
    run("denoise", tmp_path / "m.pmd.zarr", "-o", tmp_path / "out.tif", "--report", tmp_path / "out",
        "--no-heldout")
    assert (tmp_path / "out.tif").is_file()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["inputs"]["shape"] == [60, 32, 32]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_lock_leaves_other_outputs_partials_and_moved_aside_files(tmp_path):
    target = tmp_path / "x"
    live = partial_path(tmp_path / "x.tif")  # this process's movie being written
    live.write_bytes(b"frames")
    aside = tmp_path / ".x.tif.0123abcd.old"  # x.tif's old version, moved aside while it is replaced
    aside.write_bytes(b"old movie")
    dead = tmp_path / f".x.{os.getpid() + 10**7}-{partial_path(target).name.split('-')[1]}-deadbeef.partial"
    dead.write_bytes(b"left by a dead writer of x")
    with output_lock(target):
        pass
    assert live.read_bytes() == b"frames" and aside.read_bytes() == b"old movie"
    assert not target.exists()
    assert not dead.exists()  # x's own leftover is still cleaned


def test_report_of_a_movie_one_pixel_wide(tmp_path):
    """A (T, Y, 1) movie (one column of a field): compressed, and its report stopped with exit 1 in the SNR
    figure ("Input z must be at least a (2, 2) shaped array") and, with the held-out fits, in their compression
    ("patch_shape (32, 1): must be at least 2"): outlines are drawn only on 2-D maps, and such a movie has no
    held-out fits."""
    rng = np.random.default_rng(1)
    movie = rng.poisson(30, (200, 24, 1)).astype(np.uint16)
    movie[:, 8:14] += (30 * (np.sin(np.arange(200) / 5.0) > 0.6)).astype(np.uint16)[:, None, None]
    np.save(tmp_path / "col.npy", movie)
    run("compress", tmp_path / "col.npy", "-o", tmp_path / "col.pmd.zarr")
    run("report", tmp_path / "col.npy", tmp_path / "col.pmd.zarr", "-o", tmp_path / "rep")
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["inputs"]["shape"] == [200, 24, 1] and (tmp_path / "rep" / "snr.png").is_file()
