"""Every export and viewer format read back by the field's own reader, on outputs made here.

pynwb + nwbinspector (DANDI configuration), roiextractors (NWB, CaImAn and suite2p segmentation
extractors), ome-zarr-models (NGFF 0.5) and napari's plugin engine npe2 (the reader hook, without a
display or napari's Qt stack).  suite2p's own GUI loader needs torch: benchmarks/interop_suite2p_gui.py
runs it in a separate venv.  The movie is 48x56 (not square) so that a transposed mask cannot pass.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import numpy as np
import pytest
import zarr

import pmdcompress
from pmdcompress.cli import main
from pmdcompress.demix import demix
from pmdcompress.errors import InputError
from pmdcompress.simulate import simulate_movie
from rig_files import interleave, scanimage_frame_data, write_scanimage

SESSION_YAML = """\
session_description: V1 layer 2/3, drifting gratings, awake head-fixed
session_start_time: 2026-03-14T10:31:00-05:00
experimenter: ["Doe, Jane"]
institution: Example University
lab: Example Lab
experiment_description: Orientation tuning in V1 with GCaMP6f
keywords: [two-photon, calcium imaging, V1]
subject:
  subject_id: m123
  species: Mus musculus
  sex: F
  age: P90D
imaging:
  indicator: GCaMP6f
  location: VISp
  excitation_lambda: 920
  emission_lambda: 510
  device: Bruker Ultima 2P+
  pixel_size_um: [1.1, 1.2]
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A simulated 400x48x56 movie at 30 Hz, its store, and a demix result with every export."""
    pytest.importorskip("pynwb")
    pytest.importorskip("h5py")
    root = tmp_path_factory.mktemp("interop")
    movie = root / "m.tif"
    simulate_movie(movie, n_frames=400, shape=(48, 56), n_neurons=8, photons=3.0, seed=1)
    store = pmdcompress.compress(movie, root / "m.pmd.zarr", workers=1)
    (root / "session.yaml").write_text(SESSION_YAML)
    result = demix(store, root / "m.demix.zarr", export="caiman,suite2p,nwb", nwb_metadata=root / "session.yaml",
                   figures=False)
    assert result.n_components >= 3
    return {"root": root, "store": store, "result": result}


def _masks_yxn(result):
    return np.moveaxis(result.footprint_images(), 0, -1)


# ----------------------------------------------------------------------------- frame rate


def test_the_rate_travels_from_the_movie_to_every_output(run):
    res = run["result"]
    assert run["store"].frame_rate == 30.0  # from the TIFF's metadata, not a default
    assert res.fs == 30.0 and res.metadata["fs_source"] == "store"


def test_unknown_rate_is_said_and_never_invented(tmp_path, caplog, capsys):
    movie = np.random.default_rng(0).poisson(20, (60, 24, 24)).astype(np.uint16)
    np.save(tmp_path / "m.npy", movie)
    with caplog.at_level(logging.WARNING, logger="pmdcompress"):
        store = pmdcompress.compress(tmp_path / "m.npy", tmp_path / "m.pmd.zarr", workers=1, patch_shape=24)
    assert store.frame_rate is None and store.info()["frame_rate"] is None
    assert any("frame rate unknown" in r.getMessage() for r in caplog.records)
    with pytest.raises(SystemExit) as ei:
        main(["info", str(tmp_path / "m.pmd.zarr")])
    assert ei.value.code == 0
    assert "frame rate      unknown" in capsys.readouterr().out
    with pytest.raises(InputError, match="the nwb export needs the frame rate.*give it with fs$") as ei:
        demix(store, tmp_path / "m.demix.zarr", export="nwb", figures=False)
    assert ei.value.render({"fs": "--fs"}).endswith("give it with --fs")  # what the CLI prints
    res = demix(store, tmp_path / "m.demix.zarr", export="caiman", figures=False)
    assert res.fs is None and res.metadata["dff"]["window_s"] is None
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "m.demix.caiman.hdf5", "r") as f:
        assert np.isnan(f["params/data/fr"][()]) and f.attrs["frame_rate"] == "unknown"
    # --fs wins over the store
    store2 = pmdcompress.compress(tmp_path / "m.npy", tmp_path / "m2.pmd.zarr", workers=1, patch_shape=24,
                                  frame_rate=7.5)
    assert store2.frame_rate == 7.5


def test_scanimage_volume_plane_through_the_cli(tmp_path, capsys):
    rng = np.random.default_rng(4)
    mov = rng.poisson(50, (40, 3, 1, 24, 20)).astype(np.int16)
    path = tmp_path / "vol_00001.tif"
    write_scanimage(path, interleave(mov, flyback=1),
                    scanimage_frame_data(n_slices=3, flyback=1, frame_rate=60.0, volume_rate=15.0))
    with pytest.raises(SystemExit) as ei:
        main(["compress", str(path), "-o", str(tmp_path / "a.pmd.zarr")])
    assert ei.value.code == 2
    assert "pick one with --plane (0-2)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        main(["-q", "compress", str(path), "--plane", "1", "-o", str(tmp_path / "p1.pmd.zarr"), "--patch", "20"])
    assert ei.value.code == 0
    store = pmdcompress.open(tmp_path / "p1.pmd.zarr")
    assert store.shape == (40, 24, 20) and store.frame_rate == 15.0
    assert store.metadata.input["plane"] == 1
    # the store's mean is plane 1's mean, not a mix of planes and flyback frames (to half its step: store format 4
    # rounds it to noise * mean_step, ~0.2 of the mean's own noise)
    np.testing.assert_allclose(store.mean, mov[:, 1, 0].mean(axis=0),
                               atol=float((store.noise * store.metadata.mean_step).max()) / 2 + 1e-4)


# ----------------------------------------------------------------------------- NWB


def test_nwb_passes_nwbinspector_dandi(run):
    nwbinspector = pytest.importorskip("nwbinspector")
    path = run["root"] / "m.demix.nwb"
    messages = list(nwbinspector.inspect_nwbfile(path, config=nwbinspector.load_config("dandi")))
    serious = [m for m in messages if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION")]
    assert serious == [], [f"{m.importance.name} {m.check_function_name}: {m.message}" for m in serious]


def test_nwb_without_metadata_is_not_dandi_ready_and_says_so(run, tmp_path, caplog):
    nwbinspector = pytest.importorskip("nwbinspector")
    from pmdcompress.demix.export import write_nwb

    path = tmp_path / "bare.nwb"
    with caplog.at_level(logging.WARNING, logger="pmdcompress"):
        write_nwb(run["result"], path)
    assert any("not DANDI-ready" in r.getMessage() for r in caplog.records)
    names = {m.check_function_name for m in nwbinspector.inspect_nwbfile(path, config=nwbinspector.load_config(
        "dandi")) if m.importance.name == "CRITICAL"}
    assert "check_subject_exists" in names  # the inspector is really looking


def test_nwb_metadata_reach_the_file(run):
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(run["root"] / "m.demix.nwb"), "r") as io:
        nwb = io.read()
        assert nwb.subject.subject_id == "m123" and nwb.subject.species == "Mus musculus"
        assert nwb.session_start_time == datetime.datetime(2026, 3, 14, 10, 31,
                                                           tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
        plane = nwb.imaging_planes["ImagingPlane"]
        assert plane.indicator == "GCaMP6f" and plane.location == "VISp" and plane.imaging_rate == 30.0
        np.testing.assert_allclose(plane.grid_spacing[:], [1.2e-6, 1.1e-6])  # NWB's [x, y]
        rrs = nwb.processing["ophys"]["Fluorescence"]["RoiResponseSeries"]
        assert rrs.rate == 30.0 and rrs.data.shape == (400, run["result"].n_components)


def test_nwb_metadata_errors_name_the_file_and_key(tmp_path):
    from pmdcompress.demix.nwb_metadata import load_nwb_metadata

    bad = tmp_path / "s.yaml"
    bad.write_text("session_start_time: 2026-03-14T10:31:00\n")
    with pytest.raises(InputError, match=r"s\.yaml: session_start_time .* has no time zone"):
        load_nwb_metadata(bad)
    bad.write_text("subject:\n  subjectid: m1\n")
    with pytest.raises(InputError, match=r"s\.yaml: unknown key subject\.'subjectid'; known: subject_id"):
        load_nwb_metadata(bad)
    bad.write_text("imaging:\n  excitation_lambda: 0.92\n")
    with pytest.raises(InputError, match="imaging.excitation_lambda 0.92: expected a wavelength in nm"):
        load_nwb_metadata(bad)


# ----------------------------------------------------------------------------- roiextractors


@pytest.mark.parametrize("kind", ["nwb", "caiman", "suite2p"])
def test_roiextractors_reads_masks_the_right_way_round(run, kind):
    roiextractors = pytest.importorskip("roiextractors")
    root, res = run["root"], run["result"]
    if kind == "nwb":
        from pmdcompress.demix.export import nwb_image_masks

        ex = roiextractors.NwbSegmentationExtractor(root / "m.demix.nwb")
        want = np.moveaxis(nwb_image_masks(res), 0, -1)  # the footprints on their (ellipse) masks
    elif kind == "caiman":
        ex = roiextractors.CaimanSegmentationExtractor(root / "m.demix.caiman.hdf5")
        want = _masks_yxn(res)
    else:
        ex = roiextractors.Suite2pSegmentationExtractor(root / "m.demix.suite2p")
        want = _masks_yxn(res)  # suite2p masks are lam weights on the thresholded footprint
        want = np.where(np.moveaxis(np.asarray(res.masks().todense()).T.reshape(-1, 48, 56), 0, -1) > 0, want, 0)
    masks = np.asarray(ex.get_roi_image_masks())
    assert masks.shape == (48, 56, res.n_components)
    np.testing.assert_allclose(masks, want, rtol=1e-5, atol=1e-6)
    assert ex.get_sampling_frequency() == pytest.approx(30.0)
    raw = np.asarray(ex.get_traces(name="raw") if kind != "suite2p" else ex.get_traces(name="raw"))
    assert raw.shape == (400, res.n_components)


def test_roiextractors_reads_nwb_traces_and_images(run):
    roiextractors = pytest.importorskip("roiextractors")
    res = run["result"]
    ex = roiextractors.NwbSegmentationExtractor(run["root"] / "m.demix.nwb")
    np.testing.assert_allclose(ex.get_traces(name="raw"), res.raw_traces.T, rtol=1e-6)
    np.testing.assert_allclose(ex.get_traces(name="dff"), res.dff.T, rtol=1e-6)
    np.testing.assert_allclose(ex.get_traces(name="denoised"), res.traces.T, rtol=1e-6)
    np.testing.assert_allclose(ex.get_images_dict()["mean"], res.images["mean"], rtol=1e-6)


# ----------------------------------------------------------------------------- suite2p, CaImAn


def test_suite2p_folder_for_its_gui(run):
    from pmdcompress.io.safe_pickle import load_npy

    res, folder = run["result"], run["root"] / "m.demix.suite2p" / "plane0"
    ops = load_npy(folder / "ops.npy")
    assert ops["fs"] == 30.0 and ops["Ly"] == 48 and ops["Lx"] == 56
    assert len(ops["diameter"]) == 2 and ops["diameter"][0] > 0
    assert Path(ops["save_path"]) == folder.resolve()  # the final folder, not the temporary one
    f, fneu = np.load(folder / "F.npy"), np.load(folder / "Fneu.npy")
    # what suite2p's GUI and users compute is our raw trace
    np.testing.assert_allclose(f - 0.7 * fneu, res.raw_traces, rtol=1e-5, atol=1e-3)


def test_caiman_hdf5_carries_s_when_spikes_were_inferred(run, tmp_path):
    h5py = pytest.importorskip("h5py")
    from pmdcompress.demix.export import write_caiman

    res = run["result"]
    spikes = np.random.default_rng(0).random(res.traces.shape).astype(np.float32)
    inferred = getattr(res, "spikes", None)
    res.spikes = spikes
    try:
        write_caiman(res, tmp_path / "c.hdf5")
    finally:
        res.spikes = inferred
    with h5py.File(tmp_path / "c.hdf5", "r") as f:
        np.testing.assert_array_equal(f["estimates/S"][...], spikes)
        assert f["params/data/fr"][()] == 30.0
    roiextractors = pytest.importorskip("roiextractors")
    ex = roiextractors.CaimanSegmentationExtractor(tmp_path / "c.hdf5")
    np.testing.assert_allclose(ex.get_traces(name="deconvolved"), spikes.T)


# ----------------------------------------------------------------------------- OME-Zarr, napari


def test_decompressed_zarr_is_ome_zarr(run, tmp_path):
    pytest.importorskip("ome_zarr_models")
    from ome_zarr_models.v05.image import Image

    from pmdcompress.pipeline.decompress import decompress

    out = tmp_path / "den.zarr"
    decompress(run["store"], out, dtype="float32", workers=1)
    image = Image.from_zarr(zarr.open_group(str(out), mode="r"))
    ms = image.ome_attributes.multiscales[0]
    assert [a.name for a in ms.axes] == ["t", "y", "x"]
    assert ms.axes[0].unit == "second"
    assert ms.datasets[0].coordinateTransformations[0].scale == pytest.approx([1 / 30, 1.0, 1.0])
    arr = zarr.open_array(str(out / "0"), mode="r")  # the movie itself
    assert arr.metadata.dimension_names == ("t", "y", "x")
    np.testing.assert_allclose(arr[100:110], run["store"][100:110], rtol=1e-6)
    with pmdcompress.open_movie(out) as m:  # our own reader finds the array in the group
        assert m.shape == run["store"].shape and m.frame_rate == pytest.approx(30.0)  # from the NGFF time scale


def test_napari_reader_hook_opens_a_store_as_one_lazy_movie(run):
    npe2 = pytest.importorskip("npe2")
    import dask.array as da
    from npe2 import PluginManager, PluginManifest

    import pmdcompress.napari as reader_module

    manifest = PluginManifest.from_file(Path(reader_module.__file__).with_name("napari.yaml"))
    pm = PluginManager.instance()
    if manifest.name not in pm._manifests:
        pm.register(manifest)
    path = str(run["store"].path)
    layers = npe2.io_utils.read([path], plugin_name="pmdcompress", stack=False)
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image" and isinstance(data, da.Array) and data.shape == run["store"].shape
    assert data.chunksize[0] <= 8 and data.chunksize[1:] == run["store"].shape[1:]  # a slider step renders <= 8
    assert kwargs["scale"] == pytest.approx((1 / 30, 1.0, 1.0))
    np.testing.assert_allclose(data[123].compute(), run["store"][123], rtol=1e-6)
    assert reader_module.get_reader(str(run["root"] / "m.tif")) is None  # other files are left to other readers
    with pytest.raises(ValueError, match="not a compatible reader"):
        npe2.io_utils.read([str(run["root"] / "m.tif")], plugin_name="pmdcompress", stack=False)


def test_to_dask_crops_touch_only_their_tiles(run, monkeypatch):
    store = run["store"]
    calls = []
    read = store.read

    def counting_read(t0=0, t1=None, crop_y=None, crop_x=None, **kw):
        calls.append((t0, t1, crop_y, crop_x))
        return read(t0, t1, crop_y, crop_x, **kw)

    monkeypatch.setattr(store, "read", counting_read)
    d = store.to_dask(chunks=(400, 16, 16))
    np.testing.assert_allclose(d[:, 20:26, 3:9].compute(scheduler="synchronous"), read(0, 400, (20, 26), (3, 9)),
                               rtol=1e-6)
    pixels = sum((c[2][1] - c[2][0]) * (c[3][1] - c[3][0]) for c in calls if c[1] and c[1] > c[0])
    assert pixels <= 2 * 16 * 16  # a few tiles, not whole 48x56 frames
    assert store.to_dask().chunksize == (256, 48, 56)  # default (256, 64, 64) capped by this small movie


def test_evaluate_reads_our_nwb_export_the_right_way_round(run):
    """``pmd evaluate`` on the NWB export must find the same regions as on the result itself."""
    from pmdcompress.demix import evaluate
    from pmdcompress.demix.matching import load_regions

    res, nwb = run["result"], run["root"] / "m.demix.nwb"
    try:
        load_regions(nwb)
    except InputError as exc:
        if "unknown region format" in str(exc):
            pytest.skip("pmd evaluate does not read NWB files in this build")
        raise
    scores = evaluate(res, nwb)  # the result against its own export: every region matched
    assert scores["tp"] == res.n_components and scores["fp"] == 0 and scores["fn"] == 0
