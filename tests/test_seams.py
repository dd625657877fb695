"""Regressions found by end-to-end QA at the seams between packages (pipeline, formats, CLI, README)."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

import pmdcompress
from conftest import blobs_movie
from pmdcompress.cli import main
from pmdcompress.demix import hals
from pmdcompress.demix.matching import load_regions
from pmdcompress.errors import InputError
from pmdcompress.pipeline import heldout
from pmdcompress.pipeline.batch import plan_batch


def _store(tmp_path, frame_rate):
    movie, _ = blobs_movie(n_frames=60, shape=(24, 24), n_sources=2)
    store = pmdcompress.compress(movie, tmp_path / "m.pmd.zarr", workers=1, patch_shape=24, frame_rate=frame_rate)
    return movie, store


def test_heldout_fits_see_half_the_rate(tmp_path, monkeypatch):
    movie, store = _store(tmp_path, 30.0)
    real, rates = heldout.compress, []

    def spy(frames, output, **kwargs):
        rates.append(kwargs.get("frame_rate"))
        return real(frames, output, **kwargs)

    monkeypatch.setattr(heldout, "compress", spy)
    assert heldout.heldout_validation(movie, store, workers=1) is not None
    assert rates == [15.0, 15.0]  # every other frame


def test_heldout_fits_of_an_unknown_rate_do_not_warn(tmp_path, caplog):
    # `pmd report` printed "<array>: frame rate unknown ... stored as unknown" twice: once per in-memory fit.
    movie, store = _store(tmp_path, None)
    caplog.clear()  # the store's own compress warns, rightly
    with caplog.at_level(logging.INFO, logger="pmdcompress"):  # INFO: the known-rate line must not format None
        assert heldout.heldout_validation(movie, store, workers=1) is not None
    assert not [r for r in caplog.records if "frame rate" in r.getMessage()]


def test_batch_folders_of_same_named_movies_say_which_movie(tmp_path):
    for rec in ("m1", "m2"):
        (tmp_path / rec).mkdir()
        np.save(tmp_path / rec / "movie.npy", np.zeros((12, 4, 4), np.float32))
    jobs = plan_batch([tmp_path / "m1" / "movie.npy", tmp_path / "m2" / "movie.npy"])
    assert [j.name for j in jobs] == ["m1/movie", "m2/movie"]  # not movie-<digest>
    same = plan_batch([{"path": tmp_path / "m1" / "movie.npy", "plane": 0},
                       {"path": tmp_path / "m1" / "movie.npy", "plane": 1}])
    assert len({j.name for j in same}) == 2  # one file twice: still told apart



README = Path(__file__).resolve().parents[1] / "README.md"


def _options(command) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"-v", "-q", "--help"}


def test_readme_commands_use_options_that_exist():
    text = README.read_text()
    problems = []
    # the example lines (indented `pmd CMD ...`) and every `--option` named in a `### pmd CMD` section
    for line in re.findall(r"^ {4}pmd (.+(?:\\\n.+)*)", text, flags=re.M):
        name, *rest = line.split()
        command = main.commands.get(name)
        if command is None:
            problems.append(f"pmd {name}: no such command")
            continue
        problems += [f"pmd {name} {o}" for o in re.findall(r"(?<![\w-])--[a-z][\w-]*", " ".join(rest))
                     if o not in _options(command)]
    for names, body in re.findall(r"^### (`pmd .*)\n((?:(?!^##).*\n)*)", text, flags=re.M):
        commands = [main.commands[w] for w in re.findall(r"`pmd ([a-z]+)", names) if w in main.commands]
        known = set().union(*map(_options, commands))
        problems += [f"### pmd {names}: {o}" for o in re.findall(r"`(--[a-z][\w-]*)", body) if o not in known]
    assert not problems


def test_readme_command_line_block_runs_in_order():
    # each example writes its own output: `pmd report -o report/` after `pmd denoise --report report/` was refused
    block = README.read_text().split("## Command line", 1)[1].split("`pmd COMMAND --help`", 1)[0]
    outputs = re.findall(r"(?:-o|--report) (\S+)", block)
    assert outputs and len(outputs) == len(set(outputs))


def test_background_of_fewer_frames_than_its_rank():
    # `pmd simulate --kind voltage` (400 frames at 1 kHz) then `pmd demix --kind voltage` crashed (exit 1) reshaping
    # 2 modes of a 2-frame binned movie into the 3 of the default background rank.
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((12 * 10, 5)), rng.standard_normal((5, 2))
    bg = hals.init_background(u, v, 3, 1.0, (12, 10), rng=rng)
    assert bg.spatial.shape == (2, 12, 10) and bg.temporal.shape == (2, 2)


def test_regions_of_another_field_of_view_are_refused(tmp_path):
    # `pmd evaluate small.demix.zarr --truth neurofinder regions.json` scored F1 0.075 against the ROIs that
    # happened to overlap the small field instead of saying the truth belongs to another movie.
    path = tmp_path / "regions.json"
    path.write_text(json.dumps([{"coordinates": [[2, 3], [2, 4]]}, {"coordinates": [[150, 200], [151, 200]]}]))
    with pytest.raises(InputError, match=r"regions.json: ROI 1 .* outside the 96x96 field of view"):
        load_regions(path, dims=(96, 96))
    assert load_regions(path, dims=(160, 210)).masks.shape == (160 * 210, 2)
