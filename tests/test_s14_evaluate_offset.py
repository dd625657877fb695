"""`pmd evaluate` reports a systematic offset between matched regions and their truth (a label convention such as
1-based coordinates), without changing any score."""

import json

import numpy as np
import scipy.sparse as sp
from click.testing import CliRunner

import pmdcompress.demix as dm
from pmdcompress.cli import PMDGroup
from pmdcompress.cli.demix import evaluate_command
from pmdcompress.demix.matching import OFFSET_MIN_PAIRS, shift_masks

DIMS = (64, 64)
# A grid of 16 discs, apart enough that a one-pixel shift never makes a neighbour the better match.
CENTERS = [(8 + 15 * i, 8 + 15 * j) for i in range(4) for j in range(4)]


def _discs(centers, radius=4.5):
    yy, xx = np.mgrid[: DIMS[0], : DIMS[1]]
    return np.stack([(yy - y) ** 2 + (xx - x) ** 2 <= radius**2 for y, x in centers])


def _write(path, masks):
    """A label image (``.npy``: it gives the image size) or neurofinder JSON (``.json``) of ``masks``."""
    if path.suffix == ".npy":
        labels = np.zeros(DIMS, np.int32)
        for j, m in enumerate(masks):
            labels[m] = j + 1
        np.save(path, labels)
    else:
        path.write_text(json.dumps([{"coordinates": np.argwhere(m).tolist()} for m in masks]))
    return path


def test_shift_masks_matches_moving_the_images():
    rng = np.random.default_rng(0)
    images = rng.random((5, *DIMS)) < 0.2
    flat = sp.csc_matrix(images.reshape(5, -1).T)
    for dy, dx in [(0, 0), (1, -2), (-3, 4), (0, 63), (-64, 0)]:
        expected = np.zeros_like(images)  # plain numpy twin: copy the overlapping window, the rest stays empty
        ys, yd = slice(max(-dy, 0), DIMS[0] - max(dy, 0)), slice(max(dy, 0), DIMS[0] - max(-dy, 0))
        xs, xd = slice(max(-dx, 0), DIMS[1] - max(dx, 0)), slice(max(dx, 0), DIMS[1] - max(-dx, 0))
        expected[:, yd, xd] = images[:, ys, xs]
        got = shift_masks(flat, DIMS, dy, dx).toarray().T.reshape(5, *DIMS).astype(bool)
        assert np.array_equal(got, expected), (dy, dx)


def test_labels_one_pixel_down_and_right_are_reported_and_scored_unchanged(tmp_path):
    pred = _write(tmp_path / "pred.npy", _discs(CENTERS))
    truth = _write(tmp_path / "truth.json", _discs([(y + 1, x + 1) for y, x in CENTERS]))
    scores = dm.evaluate(pred, truth)
    assert scores["tp"] == len(CENTERS) and scores["f1"] == 1.0
    assert scores["mean_iou"] < 0.75  # what the offset costs: the score itself is not corrected
    assert np.allclose(scores["median_centroid_offset"], [-1.0, -1.0])
    assert scores["offset_pixels"] == [-1, -1] and scores["systematic_offset"] is True
    assert scores["mean_iou_truth_moved"] == 1.0

    aligned = dm.evaluate(pred, pred)
    assert aligned["median_centroid_offset"] == [0.0, 0.0] and aligned["systematic_offset"] is False
    assert aligned["mean_iou_truth_moved"] == aligned["mean_iou"] == 1.0


def test_too_few_pairs_are_not_called_systematic(tmp_path):
    few = CENTERS[: OFFSET_MIN_PAIRS - 1]
    pred = _write(tmp_path / "pred.npy", _discs(few))
    truth = _write(tmp_path / "truth.json", _discs([(y + 1, x + 1) for y, x in few]))
    scores = dm.evaluate(pred, truth)
    assert scores["tp"] == len(few) and scores["systematic_offset"] is False


def test_cli_says_so_in_one_line_only_for_a_systematic_offset(tmp_path):
    group = PMDGroup("pmd")
    group.add_command(evaluate_command)
    pred = _write(tmp_path / "pred.npy", _discs(CENTERS))
    truth = _write(tmp_path / "truth.json", _discs([(y + 1, x + 1) for y, x in CENTERS]))
    runner = CliRunner()
    r = runner.invoke(group, ["evaluate", str(pred), "--truth", str(truth)])
    assert r.exit_code == 0, r.output
    notes = [line for line in r.stderr.splitlines() if line.startswith("pmd: note:")]
    assert len(notes) == 1 and "-1.0 rows, -1.0 columns" in notes[0] and "moved -1, -1" in notes[0]
    assert json.loads(r.stdout)["f1"] == 1.0
    r = runner.invoke(group, ["evaluate", str(pred), "--truth", str(pred)])
    assert r.exit_code == 0 and "note:" not in r.stderr


def test_the_raw_image_benchmark_finds_labels_drawn_beside_their_cells():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_label_offset import shift_scores

    cells = _discs(CENTERS).any(axis=0)
    labels = _discs([(y + 1, x - 2) for y, x in CENTERS]).any(axis=0)  # one row down, two columns left
    image = cells.astype(float) + 0.1 * np.random.default_rng(1).standard_normal(DIMS)
    scores = shift_scores(image, labels, reach=3)
    best = np.unravel_index(np.argmax(scores), scores.shape)
    assert (best[0] - 3, best[1] - 3) == (-1, 2)  # the move that puts the labels back on the cells
    assert scores[3, 3] < scores[best]
