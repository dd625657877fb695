"""The simulated truth says which sources are dendrites (``source_kind``, truth format ``pmd-simulate/2``), and
``pmd evaluate`` scores the somata alone beside every source."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

import pmdcompress.demix as dm
from pmdcompress.cli.app import PMDGroup
from pmdcompress.cli.demix import evaluate_command
from pmdcompress.demix.matching import Regions, load_regions
from pmdcompress.errors import StoreFormatError
from pmdcompress.formats.truth import DENDRITE, SOMA, create_truth, finish_truth, read_truth
from pmdcompress.simulate import movie as sim_movie
from pmdcompress.simulate import simulate_movie


def _elongation(mask: np.ndarray) -> float:
    """Square root of the ratio of the principal second moments of a 2-D mask's pixels."""
    y, x = np.nonzero(mask)
    ev = np.linalg.eigvalsh(np.cov(np.stack([y, x]).astype(np.float64)) + np.eye(2) / 12.0)
    return float(np.sqrt(ev[1] / ev[0]))


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A small 2p-real movie (somata and dendrites) and its truth."""
    movie = tmp_path_factory.mktemp("somata") / "real.tif"
    simulate_movie(movie, n_frames=40, shape=(96, 96), kind="2p-real", seed=1)
    return movie.with_name("real.truth.zarr")


@pytest.mark.parametrize("kind", ["2p-real", "dendritic"])
def test_source_kind_is_the_simulators_draw_and_dendrites_are_elongated(tmp_path, monkeypatch, kind):
    drawn = []  # the start of every dendrite the simulator draws: the centre of the source it replaces

    def record(rng, regime, start, shape):
        drawn.append(tuple(np.float32(start)))
        return dendrite(rng, regime, start, shape)

    dendrite = sim_movie._dendrite
    monkeypatch.setattr(sim_movie, "_dendrite", record)
    info = simulate_movie(tmp_path / "m.tif", n_frames=20, shape=(64, 64), kind=kind, seed=2)
    truth = read_truth(tmp_path / "m.truth.zarr")
    assert truth.format_version == 2 and truth.attrs["version"] == "pmd-simulate/2"
    kinds = truth.source_kind
    assert kinds.dtype == np.uint8 and kinds.shape == (truth.footprints.shape[0],)
    centers = np.asarray(zarr.open_group(str(truth.path), mode="r")["centers"])
    recorded = {i for i, c in enumerate(map(tuple, centers)) if c in set(drawn)}
    assert len(drawn) == len(recorded) == info["n_dendrites"] > 0
    assert set(np.flatnonzero(kinds == DENDRITE)) == recorded and set(np.unique(kinds)) <= {SOMA, DENDRITE}
    assert (kinds == SOMA).any()  # both kinds draw somata too (15 % of dendritic's sources)
    masks = truth.footprints > 0.2
    elongation = np.array([_elongation(m) for m in masks])
    size = masks.sum(axis=(1, 2))
    soma, dend = kinds == SOMA, kinds == DENDRITE
    assert elongation[soma].max() < 2.0  # compact ellipses
    # thin, curved segments: most read elongated, and all are thinner than the somata for their size
    assert np.median(elongation[dend]) > 3.0 and (elongation[dend] >= 2.0).mean() >= 0.8
    fill = size / (np.pi * np.array([(m.any(axis=1).sum() * m.any(axis=0).sum()) / 4 for m in masks]))
    assert np.median(fill[dend]) < 0.5 < fill[soma].min()


def _prediction(truth_path, rng_seed=0) -> Regions:
    """Regions as a detector might find them: most somata, some dendrites, and a few blobs on nothing."""
    true = load_regions(truth_path)
    rng = np.random.default_rng(rng_seed)
    soma, dend = np.flatnonzero(true.kinds == SOMA), np.flatnonzero(true.kinds == DENDRITE)
    chosen = np.concatenate([rng.choice(soma, size=(3 * soma.size) // 4, replace=False),
                             rng.choice(dend, size=max(1, dend.size // 3), replace=False)])
    masks = true.masks.tocsc()[:, chosen]
    height, width = true.dims
    blobs = []
    for _ in range(3):
        y, x = rng.integers(4, height - 4), rng.integers(4, width - 4)
        image = np.zeros((height, width), bool)
        image[y - 2 : y + 3, x - 2 : x + 3] = True
        blobs.append(image.ravel())
    import scipy.sparse as sp

    masks = sp.hstack([masks, sp.csc_matrix(np.stack(blobs, axis=1))], format="csc").astype(bool)
    return Regions(masks, true.dims)


def _as_version_1(path, out, keep=None):
    """A version-1 side-car (no source_kind) of the truth at PATH, holding only the sources KEEP (default all)."""
    truth = read_truth(path)
    keep = np.arange(truth.footprints.shape[0]) if keep is None else keep
    small = {"footprints": truth.footprints[keep], "traces": truth.traces[keep], "spikes": truth.spikes[keep],
             "background": truth.background, "neuropil_spatial": truth.neuropil_spatial,
             "neuropil_traces": truth.neuropil_traces}
    t, y, x = truth.shape
    group, clean = create_truth(out, small, t, y, x, time_chunk=t)
    clean[...] = truth.read(0, t)
    finish_truth(group, {**truth.attrs, "version": "pmd-simulate/1"})
    return out


def test_somata_block_is_the_evaluation_against_the_somata_cut_by_hand(real, tmp_path):
    pred = _prediction(real)
    scores = dm.evaluate(pred, real)
    kinds = read_truth(real).source_kind
    somata = np.flatnonzero(kinds == SOMA)
    assert scores["n_true_dendrites"] == int((kinds == DENDRITE).sum()) > 0
    assert scores["n_true"] == kinds.size and scores["somata"]["n_true"] == somata.size
    by_hand = dm.evaluate(pred, _as_version_1(real, tmp_path / "somata.truth.zarr", somata))
    assert "somata" not in by_hand and "n_true_dendrites" not in by_hand  # version 1: no kinds, no block
    block = scores["somata"]
    for pair in by_hand["pairs"]:
        pair["true"] = int(somata[pair["true"]])  # the block names the sources by the whole truth's numbers
    assert block == {k: v for k, v in by_hand.items() if k not in ("mode", "iou_threshold", "max_distance")}
    # every prediction counts: the detections on dendrites are false positives among the somata
    assert block["n_pred"] == scores["n_pred"] == pred.n and block["fp"] > scores["fp"]
    assert block["tp"] <= scores["tp"] and block["f1"] > scores["f1"]  # the detector found most somata
    assert all(kinds[p["true"]] == SOMA for p in block["pairs"])


def test_a_crop_keeps_each_sources_kind(real):
    """The truth of a whole file cut to a store's crop (``pmd compress --crop``) keeps what each kept source is."""
    from pmdcompress.demix.matching import crop_regions

    whole = load_regions(real)
    cut, outside = crop_regions(whole, [[10, 58], [20, 68]], (48, 48))
    inside = np.zeros(whole.dims, bool)
    inside[10:58, 20:68] = True
    kept = [j for j in range(whole.n) if inside.ravel()[whole.masks[:, j].nonzero()[0]].any()]
    assert cut.n == len(kept) == whole.n - outside and 0 < outside
    np.testing.assert_array_equal(cut.kinds, whole.kinds[kept])
    assert (cut.kinds == DENDRITE).any() and (cut.kinds == SOMA).any()


def test_version_1_side_car_evaluates_as_before(real, tmp_path):
    """A version-1 truth (no source_kind) reads with every source a cell; its scores are the version-2 ones
    without the somata block; the shipped version-1 fixture scores with no block."""
    old = _as_version_1(real, tmp_path / "old.truth.zarr")
    truth = read_truth(old)
    assert truth.format_version == 1 and truth.source_kind is None
    pred = _prediction(real)
    new_scores = dm.evaluate(pred, real)
    old_scores = dm.evaluate(pred, old)
    assert old_scores == {k: v for k, v in new_scores.items() if k not in ("somata", "n_true_dendrites")}
    fixtures = Path(__file__).parent / "fixtures" / "v1"
    assert read_truth(fixtures / "sim.truth.zarr").format_version == 1
    scores = dm.evaluate(fixtures / "sim.demix.zarr", fixtures / "sim.truth.zarr")
    assert "somata" not in scores and "n_true_dendrites" not in scores and scores["n_true"] == 3


def test_version_2_fixture_reads_with_the_version_1_arrays_and_no_dendrites():
    """``tests/fixtures/v2/sim.truth.zarr``: the version-1 fixture's movie simulated again by session 13's code."""
    fixtures = Path(__file__).parent / "fixtures"
    old, new = read_truth(fixtures / "v1" / "sim.truth.zarr"), read_truth(fixtures / "v2" / "sim.truth.zarr")
    assert (old.format_version, new.format_version) == (1, 2)
    np.testing.assert_array_equal(new.source_kind, np.zeros(3, np.uint8))
    for name in ("footprints", "traces", "spikes", "neuropil_spatial", "neuropil_traces"):
        np.testing.assert_array_equal(getattr(new, name), getattr(old, name))
    scores = dm.evaluate(fixtures / "v1" / "sim.demix.zarr", fixtures / "v2" / "sim.truth.zarr")
    assert scores["n_true_dendrites"] == 0  # no dendrites: the somata are every source
    assert scores["somata"] == {k: v for k, v in scores.items()
                                if k not in ("mode", "iou_threshold", "max_distance", "somata", "n_true_dendrites")}


def _group():
    @click.group(cls=PMDGroup)
    def pmd():
        pass

    pmd.add_command(evaluate_command)
    return pmd


def _labels(pred: Regions, path):
    """PRED as a label image (the later of two overlapping regions wins a pixel; the test's regions barely do)."""
    labels = np.zeros(pred.dims[0] * pred.dims[1], np.int32)
    masks = pred.masks.tocsc()
    for j in range(pred.n):
        labels[masks.indices[masks.indptr[j] : masks.indptr[j + 1]]] = j + 1
    np.save(path, labels.reshape(pred.dims))
    return path


def test_cli_line_says_sources_somata_and_dendrites(real, tmp_path):
    labels = _labels(_prediction(real), tmp_path / "pred.npy")
    r = CliRunner().invoke(_group(), ["evaluate", str(labels), "--truth", str(real)])
    assert r.exit_code == 0, r.output
    scores = json.loads(r.stdout)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    s = scores["somata"]
    assert lines[0] == (f"pmd: {scores['tp']} of {scores['n_true']} sources found ({s['tp']} of {s['n_true']} somata; "
                        f"{scores['n_true_dendrites']} dendrite segments not scored as somata), {scores['fp']} false; "
                        f"F1 {scores['f1']:.3f}, somata {s['f1']:.3f}")
    assert "pairs" not in scores and "pairs" not in s
    r = CliRunner().invoke(_group(), ["evaluate", str(labels), "--truth", str(real), "--pairs"])
    assert r.exit_code == 0 and json.loads(r.stdout)["somata"]["pairs"]
    # a truth with no dendrites, or that does not say (version 1), keeps today's line
    fixtures = Path(__file__).parent / "fixtures"
    for result, truth in [(labels, _as_version_1(real, tmp_path / "old.truth.zarr")),
                          (fixtures / "v1" / "sim.demix.zarr", fixtures / "v2" / "sim.truth.zarr")]:
        r = CliRunner().invoke(_group(), ["evaluate", str(result), "--truth", str(truth)])
        assert r.exit_code == 0 and re.fullmatch(r"pmd: \d+ of \d+ cells found, \d+ false; F1 [0-9.]+\n", r.stderr)


@pytest.mark.parametrize("damage, message", [
    ("version", r"simulated truth format version 9 \('pmd-simulate/9'\) is not supported.*upgrade pmdcompress"),
    ("missing", r"missing array 'source_kind'"),
    ("length", r"source_kind of shape \(2,\) .* for \d+ sources"),
    ("values", r"source_kind .* values \[0, 1, 7\]"),
])
def test_damaged_or_unknown_side_car_is_one_line_and_exit_2(real, tmp_path, damage, message):
    copy = tmp_path / "bad.truth.zarr"
    shutil.copytree(real, copy)
    group = zarr.open_group(str(copy), mode="r+")
    if damage == "version":
        group.attrs["version"] = "pmd-simulate/9"
    elif damage == "missing":
        del group["source_kind"]
    else:
        kinds = np.asarray(group["source_kind"])
        del group["source_kind"]
        if damage == "values":
            kinds[0] = 7
        group.create_array("source_kind", data=kinds[:2] if damage == "length" else kinds)
    with pytest.raises(StoreFormatError, match=message):
        read_truth(copy)
    labels = _labels(_prediction(real), tmp_path / "pred.npy")
    r = CliRunner().invoke(_group(), ["evaluate", str(labels), "--truth", str(copy)])
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1 and str(copy) in r.stderr and re.search(message, r.stderr)
