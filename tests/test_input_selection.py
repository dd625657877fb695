"""A part of a movie file (frames, a crop, one plane and channel) is compressed, recorded in the store, and read
again by ``pmd report``: a report of a store of one plane of a ScanImage volume used to stop at the file's
ambiguity ("pick one with plane and channel"), though the store knows which it was made from."""

import pickle

import numpy as np
import pytest
from click.testing import CliRunner

import pmdcompress
from pmdcompress.cli import main
from pmdcompress.errors import OptionError
from pmdcompress.io.readers import open_movie
from rig_files import interleave, scanimage_frame_data, write_scanimage


def run(*args, code=0):
    result = CliRunner().invoke(main, ["-q", *map(str, args)])
    assert result.exit_code == code, result.output
    return result


def test_a_crop_reads_the_rows_and_columns_it_names():
    movie = np.arange(6 * 10 * 12, dtype=np.float32).reshape(6, 10, 12)
    m = open_movie(movie, crop="2:9,3:")
    assert m.shape == (6, 7, 9) and m.crop == ((2, 9), (3, 12))
    assert np.array_equal(m.read(1, 4), movie[1:4, 2:9, 3:]) and m.read(0, 6).flags.c_contiguous
    assert np.array_equal(m.view(0, 6), movie[:, 2:9, 3:])
    again = pickle.loads(pickle.dumps(m))  # workers reopen the movie: the crop travels with it
    assert again.shape == m.shape and np.array_equal(again.read(0, 6), movie[:, 2:9, 3:])
    assert open_movie(movie, crop="0:10,0:12").crop is None  # the whole frame is no crop
    assert "crop" not in open_movie(movie).input_identity()
    assert open_movie(movie, frames="2:5", crop=":5,:").input_identity()["crop"] == [[0, 5], [0, 12]]
    with pytest.raises(OptionError, match="crop"):
        open_movie(movie, crop="4:2,0:5")


def test_report_reads_the_plane_channel_and_frames_the_store_was_made_from(tmp_path):
    rng = np.random.default_rng(0)
    t, y, x = 120, 40, 40
    yy, xx = np.mgrid[:y, :x]
    cell = np.exp(-((yy - 20) ** 2 + (xx - 18) ** 2) / 18.0)
    trace = np.convolve(rng.random(t) < 0.05, np.exp(-np.arange(20) / 5.0))[:t]
    volume = rng.poisson(30, (t, 3, 2, y, x)).astype(np.int16) + 100
    volume[:, 1, 0] += (200 * trace[:, None, None] * cell).astype(np.int16)
    path = tmp_path / "scan.tif"
    write_scanimage(path, interleave(volume, 1), scanimage_frame_data(n_channels=2, n_slices=3, flyback=1))
    store = tmp_path / "p1.pmd.zarr"
    run("compress", path, "-o", store, "--plane", "1", "--channel", "0", "--frames", "10:110")
    recorded = pmdcompress.open(store).info()["input"]
    assert (recorded["plane"], recorded["channel"], recorded["frames"]) == (1, 0, [10, 110])
    info = [line for line in run("info", store).output.splitlines() if line.startswith("ratio")]
    assert "(100 x 40 x 40 int16, plane 1, channel 0, frames 10:110)" in info[0]
    result = run("report", path, store, "-o", tmp_path / "rep", "--no-heldout", "--no-whole-split")
    assert (tmp_path / "rep" / "report.json").exists(), result.output
    # Another file of another name is opened as given: its own shape decides (here, refused as not matching).
    other = tmp_path / "other.npy"
    np.save(other, volume[:, 1, 0])
    assert "does not match" in run("report", other, store, "-o", tmp_path / "rep2", code=2).output


def test_evaluate_cuts_whole_file_truth_to_the_stores_crop(tmp_path):
    """``pmd evaluate`` of a demix of a ``--crop`` store stopped with "image sizes differ" against the file's own
    ground truth; neurofinder JSON was clipped to the crop's size without the shift, scoring misplaced regions."""
    import json

    import zarr

    from pmdcompress.demix import evaluate
    from pmdcompress.demix.matching import Regions, crop_regions

    movie = tmp_path / "m.tif"
    pmdcompress.simulate_movie(movie, n_frames=600, shape=(48, 48), n_neurons=10, seed=3)
    run("compress", movie, "-o", tmp_path / "c.pmd.zarr", "--crop", "6:48,0:42")
    run("demix", tmp_path / "c.pmd.zarr", "-o", tmp_path / "c.demix.zarr", "--fs", 30, "--export", "suite2p")
    side_car = evaluate(tmp_path / "c.demix.zarr", movie)
    assert side_car["crop"] == [[6, 48], [0, 42]] and side_car["tp"] >= 4
    # The same cells as whole-file neurofinder JSON: the same matches.
    footprints = zarr.open_group(str(tmp_path / "m.truth.zarr"), mode="r")["footprints"][...]
    regions = [{"coordinates": np.argwhere(f > 0.2 * f.max()).tolist()} for f in footprints]
    (tmp_path / "regions.json").write_text(json.dumps(regions))
    labels = evaluate(tmp_path / "c.demix.zarr", tmp_path / "regions.json")
    assert labels["tp"] == side_car["tp"] and labels["n_true"] == side_car["n_true"]
    exported = evaluate(tmp_path / "c.demix.suite2p", movie)  # the export's ops record the crop
    assert exported["crop"] == side_car["crop"] and exported["tp"] == side_car["tp"]
    said = CliRunner().invoke(main, ["evaluate", str(tmp_path / "c.demix.zarr"), "--truth", str(movie)])
    assert said.exit_code == 0 and "(the store's crop, rows 6:48, columns 0:42; 0 outside it left out)" in said.output
    # A region wholly outside the crop is left out and counted; one across its edge keeps its inside part.
    whole = Regions(None, None, coordinates=[np.array([[1, 1], [2, 2]]), np.array([[5, 3], [6, 3], [7, 3]])])
    cut, outside = crop_regions(whole, [[6, 40], [0, 34]], (34, 34))
    assert outside == 1 and cut.n == 1 and cut.masks[:, 0].nonzero()[0].tolist() == [3, 34 + 3]
