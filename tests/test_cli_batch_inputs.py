"""``pmd batch`` over a folder as a lab has it: movies beside notes and rig files, and movies that need an option."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from pmdcompress.cli import main
from pmdcompress.pipeline.batch import plan_batch, run_batch


def test_a_glob_leaves_out_files_no_reader_takes_and_says_so(tmp_path, caplog):
    np.save(tmp_path / "a.npy", np.zeros((20, 8, 8), np.uint16))
    (tmp_path / "notes.txt").write_text("mouse 3, day 2")
    (tmp_path / "TSeries.xml").write_text("<PVScan/>")
    (tmp_path / "b.tif").write_bytes(b"II*\x00")  # a movie format, damaged: kept, to fail by name
    with caplog.at_level("WARNING", logger="pmdcompress"):
        jobs = plan_batch(str(tmp_path / "*"), tmp_path / "out")
    assert sorted(j.path.name for j in jobs) == ["a.npy", "b.tif"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / '*'}: left out 2 matched files that no reader takes (TSeries.xml, notes.txt)"]
    # a pattern that matches only such files keeps them: each then fails, named
    assert [j.path.name for j in plan_batch(str(tmp_path / "*.txt"), tmp_path / "out")] == ["notes.txt"]


def test_a_failed_movie_names_the_batch_setting_that_fixes_it(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "two.h5", "w") as fh:
        fh["raw"] = np.zeros((30, 8, 8), np.uint16)
        fh["registered"] = np.zeros((30, 8, 8), np.uint16)
    summary = run_batch(str(tmp_path / "*.h5"), tmp_path / "out", scheduler="sync")
    (failed,) = summary["failed"]
    assert failed["error"].endswith("datasets found: raw, registered; choose one with --set dataset=...")
    result = CliRunner().invoke(main, ["batch", str(tmp_path / "*.h5"), "-o", str(tmp_path / "out2"), "--scheduler",
                                       "sync"])
    assert result.exit_code == 2
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("pmd:   failed: ")]
    assert line == (f"pmd:   failed: {tmp_path / 'two.h5'}: no HDF5 dataset 'mov' or 'data'; datasets found: raw, "
                    "registered; choose one with --set dataset=...")
