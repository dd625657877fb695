"""Reports of a part of a movie file (session 12, ``benchmarks/bench_new_user.py --round 3``): every case that
compresses is reported, and what broke is fixed here.

A store made with ``--frames`` or ``--crop`` from a simulated movie was reported against the simulation's
ground truth of the whole file, which the report refused ("ground truth has shape (600, 64, 64), the movie (400,
64, 64)"): the truth of the part read is now used, with the same numbers as a truth cut to that part.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pmdcompress.cli import main
from pmdcompress.errors import InputError
from pmdcompress.io.readers import open_movie
from pmdcompress.pipeline import report as pipeline_report
from pmdcompress.simulate import load_truth, simulate_movie
from pmdcompress.simulate.groundtruth import evaluate_against_truth


def run(*args, code=0):
    result = CliRunner().invoke(main, ["-q", *map(str, args)])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    path = folder / "m.tif"
    simulate_movie(path, n_frames=120, shape=(40, 40), kind="2p", n_neurons=8, seed=3)
    return path


def test_truth_part_is_the_truth_of_the_frames_and_crop_read(simulated):
    truth = load_truth(simulated)
    movie = open_movie(simulated, frames="10:110", crop="4:36,6:30")
    part = pipeline_report.open_truth(truth, movie.shape, movie)  # the whole file's truth, opened for the part
    assert part.shape == movie.shape == (100, 32, 24)
    assert np.array_equal(part.read(5, 9), np.asarray(truth.clean[15:19, 4:36, 6:30], np.float32))
    seen = truth.footprints[:, 4:36, 6:30].reshape(len(truth.footprints), -1).max(axis=1) > 0
    assert np.array_equal(part.footprints, truth.footprints[seen][:, 4:36, 6:30])
    assert np.array_equal(part.traces, truth.traces[seen, 10:110])
    assert np.array_equal(part.neuropil_traces, truth.neuropil_traces[:, 10:110])
    assert pipeline_report.truth_part(truth, (0, 120)).shape == truth.shape  # no crop: whole frames
    # Scores against the part are those of the part's arrays against the clean movie cut by hand.
    raw = np.asarray(movie.read(0, 100), np.float32)
    scores = evaluate_against_truth(raw, raw, part)
    clean = np.asarray(truth.clean[10:110, 4:36, 6:30], np.float64)
    assert scores["noise_rms_raw"] == pytest.approx(float(np.sqrt(np.mean((raw - clean) ** 2))), rel=1e-6)
    assert len(scores["trace_corr_raw"]) == int(seen.sum())


def test_another_movies_truth_is_still_refused(simulated, tmp_path):
    movie = open_movie(simulated, frames="0:100", crop="0:30,0:30")
    other = tmp_path / "o.tif"
    simulate_movie(other, n_frames=120, shape=(36, 36), kind="2p", n_neurons=4, seed=1)
    with pytest.raises(InputError, match=r"ground truth has shape \(120, 36, 36\), the movie \(100, 30, 30\)"):
        pipeline_report.open_truth(load_truth(other), movie.shape, movie)
    # of the part's own shape: taken as the part's truth, and refused by its values
    simulate_movie(other, n_frames=100, shape=(30, 30), kind="2p", n_neurons=4, seed=1, overwrite=True)
    with pytest.raises(InputError, match="the ground truth does not fit"):
        pipeline_report.open_truth(load_truth(other), movie.shape, movie)


@pytest.mark.parametrize("selection", [("--frames", "10:110"), ("--crop", "4:36,6:30"),
                                       ("--frames", "20:120", "--crop", "0:32,8:40")])
def test_report_and_denoise_of_a_part_use_the_truth_of_that_part(simulated, tmp_path, selection):
    store = tmp_path / "part.pmd.zarr"
    run("compress", simulated, "-o", store, *selection)
    truth = simulated.with_name("m.truth.zarr")
    run("report", simulated, store, "-o", tmp_path / "rep", "--truth", truth, "--no-heldout", "--no-whole-split")
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["inputs"]["truth"] == str(truth)
    reduction = report["metrics"]["truth_noise_rms_reduction"]["value"]
    assert np.isfinite(reduction) and reduction > 2
    # pmd denoise of the movie with the same selection, and of the store, accept that truth too.
    run("denoise", simulated, "-o", tmp_path / "d.tif", "--report", tmp_path / "rep2", "--truth", truth,
        "--no-heldout", *selection)
    run("denoise", store, "-o", tmp_path / "d2.tif", "--report", tmp_path / "rep3", "--truth", truth,
        "--movie", simulated, "--no-heldout")
    again = json.loads((tmp_path / "rep3" / "report.json").read_text())
    assert again["metrics"]["truth_noise_rms_reduction"]["value"] == pytest.approx(reduction, rel=1e-9)


def _two_photon_movie(t=80, size=32, seed=0):
    """A small Poisson movie with one active cell, as int16 (what rigs write)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cell = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / 12.0)
    trace = np.convolve(rng.random(t) < 0.06, np.exp(-np.arange(15) / 4.0))[:t]
    return (rng.poisson(20 + 60 * trace[:, None, None] * cell) + 100).astype(np.int16)


def test_report_of_a_zarr_group_reads_the_array_the_store_was_made_from(tmp_path):
    """A Zarr group holding the movie beside its mean image, compressed with --dataset: the store records the
    array and the report (and denoise --report) read it again (they stopped with "Zarr group holds 2 arrays")."""
    import zarr

    movie = _two_photon_movie()
    path = tmp_path / "rec.zarr"
    group = zarr.open_group(store=str(path), mode="w")
    group.create_array("mov", shape=movie.shape, dtype=movie.dtype, chunks=(40, 32, 32))[:] = movie
    group.create_array("mean", shape=movie.shape[1:], dtype="f8")[:] = movie.mean(axis=0)
    store = tmp_path / "rec.pmd.zarr"
    run("compress", path, "-o", store, "--dataset", "mov", "--crop", "0:32,4:32")
    assert "dataset mov" in run("info", store).output
    run("report", path, store, "-o", tmp_path / "rep", "--no-heldout", "--no-whole-split")
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert Path(report["inputs"]["movie"]).name == "rec.zarr" and report["inputs"]["shape"] == [80, 32, 28]
    run("denoise", store, "-o", tmp_path / "d.tif", "--report", tmp_path / "rep2", "--no-heldout")
    assert Path(json.loads((tmp_path / "rep2" / "report.json").read_text())["inputs"]["movie"]).name == "rec.zarr"


def test_report_of_an_nwb_file_with_two_series_reads_the_series_compressed(tmp_path):
    """An NWB file with two imaging series, compressed with --dataset: the store records the series, and the
    report reads that one (it stopped with "2 imaging series ...; choose one with dataset")."""
    pytest.importorskip("pynwb")
    import datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import OpticalChannel, TwoPhotonSeries

    movie = _two_photon_movie()
    nwb = NWBFile(session_description="t", identifier="x",
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    plane = nwb.create_imaging_plane(name="plane", optical_channel=OpticalChannel(name="ch", description="g",
                                                                                 emission_lambda=520.0),
                                     description="", device=nwb.create_device(name="scope"), excitation_lambda=920.0,
                                     indicator="GCaMP6f", location="V1", imaging_rate=30.0)
    for name, data in (("raw", movie), ("registered", movie[:, ::-1])):
        nwb.add_acquisition(TwoPhotonSeries(name=name, data=data.transpose(0, 2, 1), imaging_plane=plane,
                                            unit="n.a.", rate=30.0))
    path = tmp_path / "rec.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    store = tmp_path / "rec.pmd.zarr"
    run("compress", path, "-o", store, "--dataset", "registered", "--frames", "0:70")
    run("report", path, store, "-o", tmp_path / "rep", "--no-heldout", "--no-whole-split")
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["inputs"]["shape"] == [70, 32, 32]
    # the series compressed, not the other: the residual is noise (the other series' would hold the cell)
    assert report["metrics"]["residual_ratio_median"]["value"] < 1.1
