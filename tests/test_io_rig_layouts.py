"""Files as rigs and analysis tools lay them out: which data a reader picks, and that it says so.

Bruker/Prairie T-series (one OME-TIFF per frame and channel, each holding the XML of the whole series) and HDF5
files holding more than the movie (a mean image, timestamps, a second movie).
"""

from __future__ import annotations

import numpy as np
import pytest

from pmdcompress.errors import InputError
from pmdcompress.io.readers import open_movie
from rig_files import write_ome_series


def _movie(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(np.uint16)


def test_a_bruker_t_series_folder_is_read_as_its_ome_series(tmp_path, caplog):
    """Each file names every file of the series; read one by one, each would hold the whole series (and both
    channels' files would be one movie). The folder, or any one of its files, is the (T, C) series: a channel
    must be picked, and the input's size is that of all files."""
    movie = _movie((7, 2, 6, 5))
    files = write_ome_series(tmp_path / "ts", movie)
    with pytest.raises(InputError, match=r"ts: .*C axis has 2 channels; pick one with channel \(0-1\)"):
        open_movie(tmp_path / "ts")
    total = sum(f.stat().st_size for f in files)
    for source in (tmp_path / "ts", files[5]):
        with caplog.at_level("INFO", logger="pmdcompress"), open_movie(source, channel=1) as m:
            assert m.shape == (7, 6, 5)
            np.testing.assert_array_equal(m.read(0, 7), movie[:, 1])
            assert m.input_identity()["size_bytes"] == total
        assert any("one OME-TIFF series in 14 files" in r.getMessage() for r in caplog.records)
    with open_movie(tmp_path / "ts", channel=0, frames="2:5") as m:
        np.testing.assert_array_equal(m.read(0, 3), movie[2:5, 0])


def test_a_bruker_t_series_with_a_file_missing_is_refused_naming_it(tmp_path):
    files = write_ome_series(tmp_path / "ts", _movie((5, 1, 4, 4)))
    files[3].unlink()
    with pytest.raises(InputError, match=r"1 of the files of its OME-TIFF series are missing "
                                         r"\(TSeries-001_Cycle00001_Ch1_000004\.ome\.tif\)") as ei:
        open_movie(tmp_path / "ts")
    assert "\n" not in str(ei.value) and str(tmp_path / "ts") in str(ei.value)


def test_other_tiffs_beside_an_ome_series_are_left_out_with_a_warning(tmp_path, caplog):
    import tifffile

    movie = _movie((5, 1, 4, 4))
    write_ome_series(tmp_path / "ts", movie)
    tifffile.imwrite(tmp_path / "ts" / "ZZ_reference.tif", movie[0, 0])
    with caplog.at_level("WARNING", logger="pmdcompress"), open_movie(tmp_path / "ts") as m:
        np.testing.assert_array_equal(m.read(0, 5), movie[:, 0])
    assert any("5 of its 6 TIFF files are one OME-TIFF series" in r.getMessage() and "1 others" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize(("layout", "read", "warning"), [
    ({"data": "mean", "mov": "movie"}, "mov", None),  # CaImAn-like: a mean image beside the movie
    ({"mov": "mean", "data": "movie"}, "data", None),
    ({"imaging": "movie", "timestamps": "t"}, "imaging", "read dataset 'imaging' (9x6x5), its only dataset shaped"
                                                         " like a movie"),
    ({"mov": "movie", "data": "other"}, "mov", "read dataset 'mov' (9x6x5); it also holds 'data'"),
])
def test_hdf5_reads_the_movie_and_says_which_when_there_was_a_choice(tmp_path, caplog, layout, read, warning):
    h5py = pytest.importorskip("h5py")
    movie, other = _movie((9, 6, 5)), _movie((9, 6, 5), seed=1)
    values = {"movie": movie, "other": other, "mean": movie.mean(axis=0), "t": np.arange(9) / 30}
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as fh:
        for key, what in layout.items():
            fh[key] = values[what]
    with caplog.at_level("WARNING", logger="pmdcompress"), open_movie(path) as m:
        assert m.input_identity()["dataset"] == f"/{read}"
        np.testing.assert_array_equal(m.read(0, 9), movie)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ([f"{path}: {warning}; choose another with --dataset"] if warning else [])
