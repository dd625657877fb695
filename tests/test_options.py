"""Option records and parsers (pmdcompress.options) and how the CLI names options in its messages."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pmdcompress.cli import main
from pmdcompress.errors import InputError, OptionError
from pmdcompress.options import (
    CompressOptions,
    DemixOptions,
    output_dtype,
    parse_crop,
    parse_pair,
    parse_range,
    positive_int,
)


@pytest.mark.parametrize("value, expected", [
    (None, (0, 100)), ("", (0, 100)), ("10:20", (10, 20)), (":5", (0, 5)), ("-10:", (90, 100)),
    (" 3 : 7 ", (3, 7)), (slice(2, 9), (2, 9)), ("50:1000", (50, 100)),
    ((2, 9), (2, 9)), ([None, -10], (0, 90)), ((np.int64(4), 8.0), (4, 8)),
])
def test_parse_range_accepts_python_slices(value, expected):
    assert parse_range(value, 100) == expected


@pytest.mark.parametrize("value, problem", [
    ("10", "is not a 'start:stop' range"), ("a:b", "is not a 'start:stop' range"),
    ("20:10", "selects no frames of the 100"), (slice(0, 10, 2), "a step is not supported"),
    (3, "must be a slice, a \\(start, stop\\) pair or a 'start:stop' string"),
    ("1:2:3", "'1:2:3': a step is not supported"), ("1:2:x", "is not a 'start:stop' range"),
    ((1, 2, 3), "must be a slice, a \\(start, stop\\) pair"), ((2, "x"), "bounds must be integers"),
    ((2, 5.5), "bounds must be integers"), ((9, 2), "'9:2' selects no frames"),
])
def test_parse_range_refuses_what_selects_nothing_or_is_not_a_range(value, problem):
    with pytest.raises(OptionError, match=problem) as ei:
        parse_range(value, 100, "frames", source="movie.tif")
    assert str(ei.value).startswith("movie.tif: frames ")
    assert ei.value.render({"frames": "--frames"}).startswith("movie.tif: --frames ")


def test_parse_crop_names_rows_and_columns():
    assert parse_crop("2:10,:", (20, 30)) == ((2, 10), (0, 30))
    assert parse_crop(None, (20, 30)) == ((0, 20), (0, 30))
    assert parse_crop(((2, 10), (None, 5)), (20, 30)) == ((2, 10), (0, 5))
    with pytest.raises(OptionError, match="crop '5:5' selects no rows of the 20"):
        parse_crop("5:5,1:2", (20, 30))
    with pytest.raises(OptionError, match="expected y0:y1,x0:x1"):
        parse_crop("1:2", (20, 30))


@pytest.mark.parametrize("value, expected", [
    (32, (32, 32)), ("32", (32, 32)), ("32x48", (32, 48)), ("32X48", (32, 48)), ("32,48", (32, 48)),
    ((32, 48), (32, 48)), ([16], (16, 16)), (np.int64(8), (8, 8)), (24.0, (24, 24)),
])
def test_parse_pair_reads_n_or_hxw(value, expected):
    assert parse_pair(value, "patch_shape") == expected


@pytest.mark.parametrize("value", ["32x48x5", "x", "", "3.5", 3.5, True, (1, 2, 3), "a", None])
def test_parse_pair_refuses_anything_else(value):
    with pytest.raises(OptionError, match="patch_shape .*expected N or HxW"):
        parse_pair(value, "patch_shape")


def test_output_dtype_defaults_differ_by_caller_but_parse_alike():
    assert output_dtype(None, "uint16", default="original") == np.uint16
    assert output_dtype(None, "uint16", default="float32") == np.float32
    assert output_dtype("original", "int16") == np.int16
    assert output_dtype("float64", "int16") == np.float64
    with pytest.raises(OptionError, match="dtype 'nope' is not a numpy dtype"):
        output_dtype("nope", "int16")


def test_compress_options_refuse_inconsistent_values_naming_parameters():
    assert CompressOptions.create(patch_shape="24x16", overlap=4).patch_shape == (24, 16)
    with pytest.raises(OptionError, match=r"^overlap 8 must be smaller than patch_shape 4$"):
        CompressOptions.create(patch_shape=4, overlap=8)
    with pytest.raises(OptionError, match=r"^max_rank must be >= 1, got 0$"):
        CompressOptions.create(max_rank=0)
    with pytest.raises(OptionError, match=r"^method 'nmf': expected one of pmd, svd$"):
        CompressOptions.create(method="nmf")
    with pytest.raises(OptionError, match="unexpected keyword argument 'patch'"):
        CompressOptions.create(patch=32)


def test_demix_options_are_checked_in_one_place():
    assert DemixOptions.create(kind="1p", fs=10).kind == "1p"
    for bad, problem in [({"kind": "3p"}, "kind '3p'"), ({"fs": 0}, "fs 0"), ({"fs": float("nan")}, "fs nan"),
                         ({"cell_radius": -1}, "cell_radius -1"),
                         ({"background_model": "x"}, "background_model 'x'")]:
        with pytest.raises(OptionError, match=problem):
            DemixOptions.create(**bad)


def test_option_errors_survive_pickling_with_their_parameters():
    err = pickle.loads(pickle.dumps(OptionError("{overlap} 8 must be smaller than {patch_shape} 4",
                                                "overlap", "patch_shape")))
    assert isinstance(err, InputError) and err.parameters == ("overlap", "patch_shape")
    flags = {"patch_shape": "--patch", "overlap": "--overlap"}
    assert err.render(flags) == "--overlap 8 must be smaller than --patch 4"
    with pytest.raises(OptionError, match="workers must be >= 1, got 0"):
        positive_int(0, "workers")


@pytest.fixture(scope="module")
def tiny_movie(tmp_path_factory):
    path = tmp_path_factory.mktemp("opts") / "tiny.npy"
    np.save(path, np.random.default_rng(0).poisson(5.0, (20, 12, 12)).astype(np.uint16))
    return path


@pytest.mark.parametrize("args, line", [
    (["--patch", "32x48x5"], "pmd: error: --patch '32x48x5': expected N or HxW, e.g. 32 or 32x48"),
    (["--patch", "4", "--overlap", "8"], "pmd: error: --overlap 8 must be smaller than --patch 4"),
    (["--max-rank", "0"], "pmd: error: --max-rank must be >= 1, got 0"),
    (["--workers", "0"], "pmd: error: --workers must be >= 1, got 0"),
    (["--frames", "9:3"], "selects no frames of the 20 there are"),
])
def test_cli_names_flags_in_option_errors(tiny_movie, tmp_path, args, line):
    result = CliRunner().invoke(main, ["compress", str(tiny_movie), "-o", str(tmp_path / "o.pmd.zarr"), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and line in lines[0]
    assert not (tmp_path / "o.pmd.zarr").exists()


def test_cli_help_and_version_import_no_numerics():
    code = ("import sys; from pmdcompress.cli import main\n"
            "heavy = [m for m in ('numpy', 'numba', 'zarr', 'scipy', 'dask') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    version = CliRunner().invoke(main, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("pmd, version ")
