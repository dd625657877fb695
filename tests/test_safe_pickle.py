"""The restricted loader reads what suite2p writes and refuses pickles that name anything else."""

import os
import pickle

import numpy as np
import pytest

from pmdcompress.errors import InputError
from pmdcompress.io.safe_pickle import load_npy, load_pickle


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_suite2p_like_ops_and_stat_round_trip(tmp_path):
    import datetime

    # suite2p 1.1.0 stores when it ran (a datetime with a timezone) and how long each step took (timedeltas).
    when = datetime.datetime(2026, 12, 6, 7, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    ops = {"Ly": 231, "Lx": 280, "fs": 7.0, "nframes": np.int64(600), "meanImg": np.arange(6.0).reshape(2, 3),
           "tau": 1.0, "filelist": ["a.tif"], "xrange": [0, 280], "save_path": "/x/suite2p/plane0",
           "date_proc": when, "timing": {"registration": datetime.timedelta(seconds=3.5)}}
    np.save(tmp_path / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    stat = np.array([{"ypix": np.array([1, 2], dtype=np.int32), "xpix": np.array([3, 4]), "lam": np.ones(2),
                      "med": [1, 3], "radius": 2.5} for _ in range(3)], dtype=object)
    np.save(tmp_path / "stat.npy", stat, allow_pickle=True)

    loaded = load_npy(tmp_path / "ops.npy")
    assert isinstance(loaded, dict) and loaded["Ly"] == 231 and loaded["filelist"] == ["a.tif"]
    np.testing.assert_array_equal(loaded["meanImg"], ops["meanImg"])
    assert loaded["nframes"] == 600
    assert loaded["date_proc"] == when and loaded["timing"]["registration"].total_seconds() == 3.5
    rois = load_npy(tmp_path / "stat.npy")
    assert rois.shape == (3,) and rois[2]["ypix"].dtype == np.int32
    np.testing.assert_array_equal(rois[1]["xpix"], [3, 4])


def test_plain_arrays_are_read_as_data(tmp_path):
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4)
    np.save(tmp_path / "a.npy", arr)
    np.testing.assert_array_equal(load_npy(tmp_path / "a.npy"), arr)
    assert isinstance(load_npy(tmp_path / "a.npy", mmap_mode="r"), np.memmap)


@pytest.mark.parametrize("payload", [_Evil(), [1, _Evil()], {"ops": _Evil()}])
def test_a_pickle_naming_anything_else_is_refused(tmp_path, payload):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([payload, 1], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"evil\.npy: refusing to unpickle 'posix\.system'"):
        load_npy(path)
    with pytest.raises(InputError, match="refusing"):
        load_pickle(pickle.dumps(payload), "x.pkl")


def test_garbage_is_an_input_error_naming_the_file(tmp_path):
    path = tmp_path / "junk.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + b"garbage")
    with pytest.raises(InputError, match="junk.npy"):
        load_npy(path)
    with pytest.raises(InputError, match="no such file"):
        load_npy(tmp_path / "missing.npy")
