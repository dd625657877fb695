"""Readers for what rigs and registration tools write: ScanImage, suite2p binaries, CaImAn memmaps, NWB.

Each test writes the file the way its tool does (tests/rig_files.py for ScanImage), reads it back through
``open_movie`` and compares with the frames that went in; where the field's own reader is installed
(roiextractors, pynwb) it reads the same file and must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from pmdcompress.errors import InputError
from pmdcompress.io.readers import open_movie
from rig_files import interleave, scanimage_frame_data, write_scanimage


def _movie(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(np.int16)


# ----------------------------------------------------------------------------- ScanImage


@pytest.fixture
def volume_file(tmp_path):
    """3 slices + 1 flyback frame, 2 saved channels, 9 volumes at 10 Hz."""
    mov = _movie((9, 3, 2, 12, 10))
    path = tmp_path / "file_00001.tif"
    write_scanimage(path, interleave(mov, flyback=1),
                    scanimage_frame_data(n_channels=2, n_slices=3, flyback=1, frame_rate=40.0, volume_rate=10.0))
    return path, mov


def test_scanimage_file_is_detected_by_tifffile(volume_file):
    path, _ = volume_file
    with tifffile.TiffFile(path) as tif:
        assert tif.is_scanimage and tif.is_bigtiff
        assert tif.scanimage_metadata["FrameData"]["SI.hStackManager.numSlices"] == 3


@pytest.mark.parametrize("plane", [0, 1, 2])
@pytest.mark.parametrize("channel", [0, 1])
def test_scanimage_volume_plane_and_channel(volume_file, plane, channel):
    path, mov = volume_file
    with open_movie(path, plane=plane, channel=channel) as m:
        assert m.shape == (9, 12, 10)
        np.testing.assert_array_equal(m.read(0, 9), mov[:, plane, channel])
        np.testing.assert_array_equal(m.view(3, 6), mov[3:6, plane, channel])
        assert m.frame_rate == 10.0  # the volume rate, not the 40 Hz frame rate
        assert "scanVolumeRate" in m.frame_rate_source
        assert m.input_identity()["plane"] == plane


def test_scanimage_ambiguity_names_the_options(volume_file):
    path, _ = volume_file
    with pytest.raises(InputError, match=r"3 planes .*2 channels.*--plane \(0-2\) and --channel \(0-1\)"):
        open_movie(path)
    with pytest.raises(InputError, match=r"pick one with --channel \(0-1\)$"):
        open_movie(path, plane=0)
    with pytest.raises(InputError, match=r"--plane 3 out of range; the ScanImage file has 3 planes"):
        open_movie(path, plane=3, channel=0)


def test_scanimage_agrees_with_roiextractors(tmp_path):
    roiextractors = pytest.importorskip("roiextractors")
    mov = _movie((6, 3, 2, 8, 10), seed=1)
    path = tmp_path / "vol_00001.tif"
    # roiextractors 0.10 reads channelSave only as a row vector ([1 2]).
    write_scanimage(path, interleave(mov, flyback=2),
                    scanimage_frame_data(n_channels=2, n_slices=3, flyback=2, frame_rate=50.0, column=False))
    for plane in range(3):
        theirs = roiextractors.ScanImageImagingExtractor(path, channel_name="Channel 2", plane_index=plane)
        with open_movie(path, plane=plane, channel=1) as ours:
            np.testing.assert_array_equal(ours.read(0, ours.shape[0]), theirs.get_series())
            assert ours.frame_rate == pytest.approx(theirs.get_sampling_frequency())


def test_scanimage_planar_two_channels_and_averaging(tmp_path):
    mov = _movie((20, 1, 2, 8, 8), seed=2)
    path = tmp_path / "planar.tif"
    pages = interleave(mov)
    write_scanimage(path, np.concatenate([pages, pages[:1]]),  # one page of an unfinished frame pair
                    scanimage_frame_data(n_channels=2, frame_rate=30.0, average=2, channel_save=[2, 3]))
    with pytest.raises(InputError, match=r"2 channels \(ScanImage channel 2, 3\).*--channel \(0-1\)"):
        open_movie(path)
    with open_movie(path, channel=0) as m:
        np.testing.assert_array_equal(m.read(0, 20), mov[:, 0, 0])
        assert m.frame_rate == 15.0
    with pytest.raises(InputError, match="--plane 1 out of range; the ScanImage file has 1 plane"):
        open_movie(path, plane=1, channel=0)


def test_scanimage_single_channel_plane_needs_no_option(tmp_path):
    mov = _movie((15, 1, 1, 6, 7), seed=3)
    path = tmp_path / "one.tif"
    write_scanimage(path, interleave(mov), scanimage_frame_data(frame_rate=29.7))
    with open_movie(path) as m:
        np.testing.assert_array_equal(m.read(0, 15), mov[:, 0, 0])
        assert m.frame_rate == pytest.approx(29.7)
        assert m.plane is None and m.channel is None


# ----------------------------------------------------------------------------- TIFF rates


def test_imagej_and_ome_rates(tmp_path):
    mov = _movie((10, 6, 5)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", mov, imagej=True, metadata={"axes": "TYX", "finterval": 0.05})
    tifffile.imwrite(tmp_path / "o.ome.tif", mov, ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 25, "TimeIncrementUnit": "ms"})
    tifffile.imwrite(tmp_path / "plain.tif", mov)
    with open_movie(tmp_path / "ij.tif") as m:
        assert m.frame_rate == pytest.approx(20.0) and m.frame_rate_source == "ImageJ finterval"
    with open_movie(tmp_path / "o.ome.tif") as m:
        assert m.frame_rate == pytest.approx(40.0) and m.frame_rate_source == "OME TimeIncrement"
    with open_movie(tmp_path / "plain.tif") as m:
        assert m.frame_rate is None and m.input_identity()["frame_rate"] is None
    with open_movie(tmp_path / "plain.tif", frame_rate=12.5) as m:
        assert m.frame_rate == 12.5 and m.frame_rate_source == "given"
    with pytest.raises(InputError, match="frame_rate -1"):
        open_movie(tmp_path / "plain.tif", frame_rate=-1)


# ----------------------------------------------------------------------------- suite2p / CaImAn


def test_suite2p_binary_with_ops(tmp_path):
    mov = _movie((14, 9, 11), seed=4)
    plane = tmp_path / "suite2p" / "plane0"
    plane.mkdir(parents=True)
    mov.tofile(plane / "data.bin")
    np.save(plane / "ops.npy", np.array({"Ly": 9, "Lx": 11, "nframes": 14, "fs": 7.5}, dtype=object),
            allow_pickle=True)
    with open_movie(plane / "data.bin") as m:
        assert m.format == "suite2p" and m.shape == (14, 9, 11)
        np.testing.assert_array_equal(m.read(0, 14), mov)
        assert m.frame_rate == 7.5


def test_suite2p_1x_db_and_settings(tmp_path):
    mov = _movie((8, 5, 6), seed=5)
    mov.tofile(tmp_path / "data.bin")
    np.save(tmp_path / "db.npy", np.array({"Ly": 5, "Lx": 6, "nframes": 8}, dtype=object), allow_pickle=True)
    np.save(tmp_path / "settings.npy", np.array({"fs": 15.0, "tau": 1.0}, dtype=object), allow_pickle=True)
    with open_movie(tmp_path / "data.bin") as m:
        np.testing.assert_array_equal(m.read(0, 8), mov)
        assert m.frame_rate == 15.0


def test_suite2p_binary_without_ops_needs_the_shape(tmp_path):
    mov = _movie((8, 5, 6), seed=6)
    mov.tofile(tmp_path / "data.bin")
    with pytest.raises(InputError, match=r"--frame-shape HxW .* --fs"):
        open_movie(tmp_path / "data.bin")
    with pytest.raises(InputError, match="not a whole number of 7x6 int16 frames"):
        open_movie(tmp_path / "data.bin", frame_shape=(7, 6))
    with open_movie(tmp_path / "data.bin", frame_shape=(5, 6), frame_rate=3.0) as m:
        np.testing.assert_array_equal(m.read(0, 8), mov)
        assert m.frame_rate == 3.0


def test_suite2p_ops_is_read_through_the_restricted_loader(tmp_path):
    mov = _movie((4, 3, 3))
    mov.tofile(tmp_path / "data.bin")

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    arr = np.empty((), dtype=object)
    arr[()] = {"Ly": 3, "Lx": 3, "x": Evil()}
    np.save(tmp_path / "ops.npy", arr, allow_pickle=True)
    with pytest.raises(InputError, match="refusing to unpickle 'builtins.print'"):
        open_movie(tmp_path / "data.bin")


@pytest.mark.parametrize("order", ["C", "F"])
def test_caiman_mmap(tmp_path, order):
    mov = _movie((13, 7, 9), seed=7).astype(np.float32)
    t, d1, d2 = mov.shape
    path = tmp_path / f"Yr_d1_{d1}_d2_{d2}_d3_1_order_{order}_frames_{t}_.mmap"
    # CaImAn's layout: a (pixels, T) matrix in the named order, pixels flattened in Fortran order.
    yr = np.memmap(path, dtype=np.float32, mode="w+", shape=(d1 * d2, t), order=order)
    yr[:] = np.stack([f.ravel(order="F") for f in mov], axis=1)
    yr.flush()
    del yr
    with open_movie(path) as m:
        assert m.format == "caiman" and m.shape == (13, 7, 9)
        np.testing.assert_array_equal(m.read(0, 13), mov)
        np.testing.assert_array_equal(m.view(2, 5), mov[2:5])
        assert m.frame_rate is None


def test_caiman_mmap_name_and_size_are_checked(tmp_path):
    bad = tmp_path / "movie.mmap"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match="not a CaImAn memmap name"):
        open_movie(bad)
    short = tmp_path / "Yr_d1_4_d2_4_d3_1_order_F_frames_10_.mmap"
    short.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match="its name says 4x4x10 float32"):
        open_movie(short)


# ----------------------------------------------------------------------------- NWB


def _write_nwb(path, data_txy, rate=None, timestamps=None, name="TwoPhotonSeries", kind="TwoPhotonSeries"):
    import datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import OnePhotonSeries, OpticalChannel, TwoPhotonSeries

    nwb = NWBFile(session_description="test", identifier="x",
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    device = nwb.create_device(name="scope")
    plane = nwb.create_imaging_plane(name="plane", optical_channel=OpticalChannel(name="ch", description="green",
                                                                                 emission_lambda=520.0),
                                     description="", device=device, excitation_lambda=920.0, indicator="GCaMP6f",
                                     location="V1", imaging_rate=rate or 0.0)
    cls = TwoPhotonSeries if kind == "TwoPhotonSeries" else OnePhotonSeries
    kwargs = {"rate": rate} if rate is not None else {"timestamps": timestamps}
    nwb.add_acquisition(cls(name=name, data=data_txy, imaging_plane=plane, unit="n.a.", **kwargs))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def test_nwb_two_photon_series_is_transposed_to_tyx(tmp_path):
    pytest.importorskip("pynwb")
    mov = _movie((11, 6, 9), seed=8)  # (T, Y, X)
    path = tmp_path / "rec.nwb"
    _write_nwb(path, mov.transpose(0, 2, 1), rate=12.0)  # NWB stores (T, x, y)
    with open_movie(path) as m:
        assert m.format == "nwb" and m.shape == (11, 6, 9)
        np.testing.assert_array_equal(m.read(0, 11), mov)
        assert m.frame_rate == 12.0 and m.frame_rate_source == "NWB rate"
    roiextractors = pytest.importorskip("roiextractors")
    theirs = roiextractors.NwbImagingExtractor(path)
    np.testing.assert_array_equal(theirs.get_series(), mov)


def test_nwb_one_photon_timestamps_and_volume(tmp_path):
    pytest.importorskip("pynwb")
    mov = _movie((10, 5, 4, 3), seed=9)  # (T, Y, X, Z)
    path = tmp_path / "vol.nwb"
    _write_nwb(path, mov.transpose(0, 2, 1, 3), timestamps=np.arange(10) * 0.2, kind="OnePhotonSeries",
               name="OnePhotonSeries")
    with pytest.raises(InputError, match=r"volumetric \(3 planes\); pick one with --plane \(0-2\)"):
        open_movie(path)
    with open_movie(path, plane=2) as m:
        np.testing.assert_array_equal(m.read(0, 10), mov[..., 2])
        assert m.frame_rate == pytest.approx(5.0)
    with pytest.raises(InputError, match="no imaging series 'nope'; series found: OnePhotonSeries"):
        open_movie(path, plane=0, dataset="nope")


def test_options_that_do_not_apply_are_refused(tmp_path):
    mov = _movie((8, 5, 6))
    np.save(tmp_path / "m.npy", mov)
    with pytest.raises(InputError, match="--frame-shape applies only to raw binaries"):
        open_movie(tmp_path / "m.npy", frame_shape=(5, 6))
    with pytest.raises(InputError, match="--channel applies only to TIFF hyperstacks and ScanImage"):
        open_movie(tmp_path / "m.npy", channel=0)


# ----------------------------------------------------------------------------- Miniscope


def _write_avi(path, frames, rate, codec="rawvideo"):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "gray"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_miniscope_recording_folder(tmp_path):
    pytest.importorskip("av")
    mov = np.random.default_rng(10).integers(0, 256, (25, 12, 16)).astype(np.uint8)
    folder = tmp_path / "My_V4_Miniscope"
    folder.mkdir()
    for i, (a, b) in enumerate([(0, 10), (10, 20), (20, 25)]):  # the DAQ splits recordings into numbered files
        _write_avi(folder / f"{i}.avi", mov[a:b], 20, codec="ffv1" if i == 1 else "rawvideo")
    (folder / "metaData.json").write_text('{"deviceName": "My_V4_Miniscope", "frameRate": "30FPS"}')
    with open_movie(folder) as m:
        assert m.format == "miniscope" and m.shape == (25, 12, 16) and m.dtype == np.uint8
        np.testing.assert_array_equal(m.read(0, 25), mov)
        np.testing.assert_array_equal(m.read(8, 22), mov[8:22])  # across files, and back in time
        np.testing.assert_array_equal(m.read(3, 5), mov[3:5])
        assert m.frame_rate == 30.0 and "metaData.json" in m.frame_rate_source
    with open_movie(folder / "1.avi") as m:  # one file alone: the folder's metaData.json still gives the rate
        np.testing.assert_array_equal(m.read(0, 10), mov[10:20])
    (folder / "1.avi").unlink()
    with pytest.raises(InputError, match="missing from the sequence: 1.avi"):
        open_movie(folder)


def test_a_damaged_avi_is_one_line(tmp_path):
    pytest.importorskip("av")
    path = tmp_path / "0.avi"
    path.write_bytes(b"RIFF....AVI ")
    with pytest.raises(InputError, match=r"0\.avi: not a readable video"):
        open_movie(path)


def test_nwb_motion_corrected_stack_is_offered_by_name(tmp_path):
    pytest.importorskip("pynwb")
    import datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.base import TimeSeries
    from pynwb.ophys import CorrectedImageStack, MotionCorrection, OpticalChannel, TwoPhotonSeries

    mov = _movie((12, 6, 9), seed=11)
    nwb = NWBFile(session_description="t", identifier="x",
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    plane = nwb.create_imaging_plane(name="plane", optical_channel=OpticalChannel(name="ch", description="g",
                                                                                 emission_lambda=520.0),
                                     description="", device=nwb.create_device(name="scope"), excitation_lambda=920.0,
                                     indicator="GCaMP6f", location="V1", imaging_rate=10.0)
    raw = TwoPhotonSeries(name="TwoPhotonSeries", data=mov.transpose(0, 2, 1), imaging_plane=plane, unit="n.a.",
                          rate=10.0)
    nwb.add_acquisition(raw)
    corrected = TwoPhotonSeries(name="corrected", data=(mov + 1).transpose(0, 2, 1), imaging_plane=plane,
                                unit="n.a.", rate=10.0)
    shifts = TimeSeries(name="xy_translation", data=np.zeros((12, 2)), unit="pixels", rate=10.0)
    module = nwb.create_processing_module(name="ophys", description="registered")
    module.add(MotionCorrection(corrected_image_stacks=[CorrectedImageStack(corrected=corrected, original=raw,
                                                                            xy_translation=shifts)]))
    with NWBHDF5IO(str(tmp_path / "mc.nwb"), "w") as io:
        io.write(nwb)
    with pytest.raises(InputError, match=r"2 imaging series \(TwoPhotonSeries, ophys/MotionCorrection/"
                                         r"CorrectedImageStack\); choose one with --dataset"):
        open_movie(tmp_path / "mc.nwb")
    with open_movie(tmp_path / "mc.nwb", dataset="ophys/MotionCorrection/CorrectedImageStack") as m:
        np.testing.assert_array_equal(m.read(0, 12), mov + 1)
        assert m.frame_rate == 10.0
