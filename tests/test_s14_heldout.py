"""The held-out benchmark's data handling (``benchmarks/bench_demix_heldout.py``): the full field read back exactly
from a repository's history, neurofinder_dev's 50 %-inside crop rule for labels, the labels' visible-activity z,
the far-from-labels area, the one-line skip when the repository is absent; and its suite2p side: the one-line skip
when suite2p's python is absent or lacks suite2p, any tool's ROIs scored against a crop, and every ROI of a suite2p
folder scored apart from those its classifier accepts."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_demix_heldout import (  # noqa: E402
    agreement,
    crop_labels,
    line,
    parse_settings,
    read_field,
    score_regions,
    suite2p_python,
    unlabelled_area,
    visible_z,
)
from bench_demix_suite2p import SUITE2P, all_rois_folder  # noqa: E402


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_field_is_read_back_exactly_from_two_commits(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4000, size=(3, 6, 5), dtype=np.uint16)
    (tmp_path / "images").mkdir()
    for k in (2, 0, 1):  # written out of order: read back in name order
        tifffile.imwrite(tmp_path / "images" / f"image{k:05d}.tiff", frames[k])
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "frames")
    frames_commit = _git(tmp_path, "rev-parse", "HEAD")
    _git(tmp_path, "rm", "-rq", "images")  # the real repository deleted them later too
    labels = [{"id": 9000, "coordinates": [[1, 2], [1, 3]]}]
    (tmp_path / "regions").mkdir()
    (tmp_path / "regions" / "regions.json").write_text(json.dumps(labels))
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "labels")
    field, got = read_field(tmp_path / ".git", frames_commit, "HEAD")
    assert field.dtype == np.uint16
    np.testing.assert_array_equal(field, frames)
    assert got == labels


def test_labels_are_kept_when_half_inside_clipped_and_renumbered():
    inside_6 = [[r, c] for r in (10, 11) for c in (18, 19, 20, 21, 22)]  # columns 18, 19 outside cols 20:30
    inside_4 = [[r, c] for r in (10, 11) for c in (15, 16, 17, 20, 21)]  # 4 of 10 inside
    all_in = [[25, 25], [25, 26]]
    labels = [{"id": 9000, "coordinates": inside_6}, {"id": 9001, "coordinates": inside_4},
              {"id": 9002, "coordinates": all_in}]
    out = crop_labels(labels, (5, 30), (20, 30))
    assert [lab["id"] for lab in out] == [1, 2]
    assert [lab["source_id"] for lab in out] == [9000, 9002]
    assert sorted(map(tuple, out[0]["coordinates"])) == sorted((r - 5, c - 20) for r, c in inside_6 if c >= 20)
    assert out[1]["coordinates"] == [[20, 5], [20, 6]]
    # exactly half inside is kept (neurofinder_dev's rule is ">= 50 %")
    half = [{"id": 1, "coordinates": [[10, 19], [10, 20]]}]
    assert len(crop_labels(half, (0, 30), (20, 30))) == 1


def test_visible_z_marks_a_label_with_a_transient_and_not_a_quiet_one(tmp_path):
    rng = np.random.default_rng(1)
    t, dims = 300, (40, 40)
    movie = 100 + rng.standard_normal((t, *dims)).astype(np.float32)
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    firing = (yy - 10) ** 2 + (xx - 10) ** 2 <= 9
    quiet = (yy - 28) ** 2 + (xx - 28) ** 2 <= 9
    movie[150:153][:, firing] += 3.0  # 3 noise SDs per pixel, 29 pixels: about 16 SDs of the mask mean
    regions = [{"id": k + 1, "coordinates": np.argwhere(m).tolist()} for k, m in enumerate((firing, quiet))]
    path = tmp_path / "regions.json"
    path.write_text(json.dumps(regions))
    z = visible_z(movie, path)
    assert z[0] > 10
    assert z[1] < 5
    # a transient in the ring (and outside every label) is subtracted: it lowers the label's z
    ring = ((yy - 28) ** 2 + (xx - 28) ** 2 > 16) & ((yy - 28) ** 2 + (xx - 28) ** 2 <= 49)
    movie[150:153][:, ring] += 3.0
    assert visible_z(movie, path)[1] < z[1]


def test_unlabelled_area_is_beyond_two_label_diameters():
    dims = (60, 60)
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    disc = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 16).ravel()  # 49 px: equivalent diameter 7.9
    masks = sp.csc_matrix(disc[:, None])
    far = unlabelled_area(masks, dims)
    diameter = 2 * np.sqrt(disc.sum() / np.pi)
    dist = np.sqrt((yy - 10) ** 2 + (xx - 10) ** 2) - 4  # distance to the disc's edge, about
    assert not far[dist <= 2 * diameter - 1].any()
    assert far[dist >= 2 * diameter + 1].all()


def test_missing_repository_is_one_line_and_no_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_demix_heldout.py"), "--repo",
                           str(tmp_path / "absent"), "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0
    assert proc.stdout.startswith("skipped: ") and proc.stdout.count("\n") == 1
    assert str(tmp_path / "absent") in proc.stdout
    assert not (tmp_path / "x.json").exists()


def test_suite2p_python_absent_or_without_suite2p_is_one_line(tmp_path):
    assert suite2p_python(None) == (None, None)
    absent = tmp_path / "venv" / "bin" / "python"
    exe, why = suite2p_python(str(absent))
    assert exe is None and why.startswith("suite2p skipped: ") and str(absent) in why and "\n" not in why
    exe, why = suite2p_python(sys.executable)  # the test's own python has no suite2p
    try:
        import suite2p  # noqa: F401

        has_suite2p = True
    except ImportError:
        has_suite2p = False
    if has_suite2p:
        assert exe == sys.executable and why is None
    else:
        assert exe is None and why == f"suite2p skipped: {sys.executable} cannot import suite2p"
    fake = tmp_path / "python"  # a python whose "import suite2p" succeeds
    fake.write_text("#!/bin/sh\necho 1.1.0\n")
    fake.chmod(0o755)
    assert suite2p_python(str(fake)) == (str(fake), None)


def test_suite2p_skip_prints_one_line_before_the_repository_check(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_demix_heldout.py"), "--repo",
                           str(tmp_path / "absent"), "--suite2p-python", str(tmp_path / "nopython"), "--out",
                           str(tmp_path / "x.json")],
                          capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("suite2p skipped: ") and str(tmp_path / "nopython") in lines[0]
    assert lines[1].startswith("skipped: ")
    assert not (tmp_path / "x.json").exists()


def _disc(dims, cy, cx, r):
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    return np.argwhere((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)


def test_suite2p_rois_scored_all_and_accepted_against_a_crop(tmp_path):
    dims = (80, 80)
    crop = tmp_path / "crop"
    crop.mkdir()
    labels = [_disc(dims, 10, 10, 4), _disc(dims, 10, 30, 4), _disc(dims, 30, 10, 4)]
    (crop / "regions.json").write_text(json.dumps([{"id": k + 1, "coordinates": c.tolist()}
                                                   for k, c in enumerate(labels)]))
    (crop / "active.json").write_text(json.dumps({"active": [0, 2]}))
    # suite2p ROIs: label 0 exactly, label 2 shifted by one pixel, a false one beside label 1 (its neighbour,
    # not far) and a false one in the empty corner (far from every label); the classifier rejects label 2's
    rois = [labels[0], labels[2] + [1, 0], _disc(dims, 10, 40, 4), _disc(dims, 70, 70, 4)]
    plane = tmp_path / "suite2p" / "plane0"
    plane.mkdir(parents=True)
    stat = np.empty(len(rois), dtype=object)
    for k, c in enumerate(rois):
        stat[k] = {"ypix": c[:, 0].astype(np.int32), "xpix": c[:, 1].astype(np.int32)}
    np.save(plane / "stat.npy", stat, allow_pickle=True)
    np.save(plane / "ops.npy", np.array({"Ly": dims[0], "Lx": dims[1]}, dtype=object), allow_pickle=True)
    np.save(plane / "iscell.npy", np.array([[1, 0.9], [0, 0.2], [1, 0.7], [1, 0.6]], np.float32))

    accepted, matched = score_regions(plane, crop)
    assert (accepted["n_pred"], accepted["tp"], accepted["n_true"]) == (3, 1, 3)
    assert matched == {0}
    assert accepted["active_found"] == 1 and accepted["recall_active"] == 0.5
    assert accepted["false_far_from_labels"] == 1
    assert accepted["mean_iou"] == 1.0

    folder = all_rois_folder(plane, tmp_path / "all_rois")
    assert sorted(p.name for p in folder.iterdir()) == ["ops.npy", "stat.npy"]
    every, matched = score_regions(folder, crop)
    assert (every["n_pred"], every["tp"]) == (4, 2)
    assert matched == {0, 1}
    assert every["active_found"] == 2
    assert every["f1"] == 2 * 2 / (4 + 3)
    # the folder is rebuilt in place: a stale iscell.npy there is removed, links replaced
    np.save(folder / "iscell.npy", np.zeros((4, 2), np.float32))
    assert score_regions(all_rois_folder(plane, folder), crop)[0]["n_pred"] == 4
    # a row without pmd's detection sources prints dashes there, and the process's CPU time
    row = line("crop", "s2p all", every, {"cpu_s": 12.5})
    assert row.split()[:4] == ["crop", "s2p", "all", f"{every['f1']:.3f}"]
    assert row.count("-") == 2 and row.rstrip().endswith("12.5")

    # the two tools' agreement: "ours" finds label 0, label 1 and the far corner's ROI; suite2p's accepted ROIs
    # are label 0, the neighbour beside label 1 and the corner ROI
    ours_rois = [labels[0], labels[1], _disc(dims, 70, 70, 4)]
    ours_plane = tmp_path / "ours" / "plane0"
    ours_plane.mkdir(parents=True)
    stat = np.empty(len(ours_rois), dtype=object)
    for k, c in enumerate(ours_rois):
        stat[k] = {"ypix": c[:, 0], "xpix": c[:, 1]}
    np.save(ours_plane / "stat.npy", stat, allow_pickle=True)
    np.save(ours_plane / "ops.npy", np.array({"Ly": dims[0], "Lx": dims[1]}, dtype=object), allow_pickle=True)
    g = agreement(ours_plane, plane, crop)
    assert g == {"labelled": {"n": 2, "also_found": 1}, "false": {"n": 1, "also_found": 1}}
    h = agreement(plane, ours_plane, crop)
    assert h == {"labelled": {"n": 1, "also_found": 1}, "false": {"n": 2, "also_found": 1}}


def test_suite2p_settings_parse_as_json_or_text():
    assert parse_settings([]) == {}
    got = parse_settings(["detection.sparsery_settings.spatial_scale=2", "tau=1.5", "classification.x=null",
                          "name=abc"])
    assert got == {"detection.sparsery_settings.spatial_scale": 2, "tau": 1.5, "classification.x": None,
                   "name": "abc"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_settings(["spatial_scale"])


def test_suite2p_runner_sets_fs_and_dotted_settings_and_refuses_unknown_ones(tmp_path):
    # a stand-in suite2p package: run_s2p writes the settings it was given
    pkg = tmp_path / "fake" / "suite2p"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import json, pathlib\n"
        "def run_s2p(db, settings):\n"
        "    pathlib.Path(db['save_path0'], 'got.json').write_text(json.dumps({'db': db, 'settings': settings}))\n")
    (pkg / "parameters.py").write_text(
        "def default_settings():\n"
        "    return {'fs': 10.0, 'torch_device': 'cuda', 'detection': {'sparsery_settings': {'spatial_scale': 0}}}\n"
        "def default_db():\n"
        "    return {'data_path': [], 'save_path0': ''}\n")
    env = {"PYTHONPATH": str(tmp_path / "fake"), "PATH": "/usr/bin:/bin"}

    def run(*extra):
        return subprocess.run([sys.executable, "-c", SUITE2P, "DATA", str(tmp_path), "7", *extra],
                              capture_output=True, text=True, env=env)

    assert run().returncode == 0
    got = json.loads((tmp_path / "got.json").read_text())
    assert got["settings"] == {"fs": 7.0, "torch_device": "cpu",
                               "detection": {"sparsery_settings": {"spatial_scale": 0}}}
    assert got["db"] == {"data_path": ["DATA"], "save_path0": str(tmp_path)}
    assert run(json.dumps({"detection.sparsery_settings.spatial_scale": 2})).returncode == 0
    got = json.loads((tmp_path / "got.json").read_text())
    assert got["settings"]["detection"]["sparsery_settings"]["spatial_scale"] == 2
    bad = run(json.dumps({"detection.sparsery_settings.spatial_scal": 2}))
    assert bad.returncode != 0 and "no setting detection.sparsery_settings.spatial_scal" in bad.stderr
