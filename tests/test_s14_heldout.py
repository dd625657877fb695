"""The held-out benchmark's data handling (``benchmarks/bench_demix_heldout.py``): the full field read back exactly
from a repository's history, neurofinder_dev's 50 %-inside crop rule for labels, the labels' visible-activity z,
the far-from-labels area, and the one-line skip when the repository is absent."""

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

from bench_demix_heldout import crop_labels, read_field, unlabelled_area, visible_z  # noqa: E402


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
