"""Benchmark: every issue-13 criterion on a grid of simulated regimes, with the defaults only.

    PYTHONPATH=. python benchmarks/bench_sweep.py [--quick] [--only SUBSTRING ...] [--no-report]
                                                  [--out benchmarks/results/sweep.json]
    PYTHONPATH=. python benchmarks/bench_sweep.py --only CELL ... --variants defaults no_filter ... [--seeds 3]

The independent evaluation runs real movies of kinds that are not in ../shared (voltage at kHz, widefield,
dendritic/axonal, long one-photon, 8-bit and float inputs, other sizes and lengths).  This sweep stands in for
them: a compact grid over ``pmd simulate`` kinds x photon level x length (100, 600, 3000 frames) x input dtype
(uint16, uint8, int16, float32, each written as a TIFF) x spatially correlated noise (off; on: every photon's
noise shared 12 % with each 4-neighbour, the ``1p-correlated`` regime's ``noise_blur``).  Each kind has a base
cell (600 frames, uint16, its usual photon level, independent noise) and one cell per axis changed from it
(one factor at a time, so a failure names its cause), plus a few combined cells shaped like the evaluation's
movies (an 8-bit 240-frame movie, a long float32 one-photon movie, a long correlated voltage movie).

Each cell runs ``pmdcompress.compress`` from the TIFF (defaults, ``workers=1``), the report's analysis
(:func:`pmdcompress.report.analyse` without the held-out fits and figures: the blind numbers a user gets, and
the photon split), and scores every criterion against the ground truth (the input's dtype conversion is an
affine map of the simulated ADU, undone before scoring; an 8-bit movie's rounding counts as noise):

========  =============================================================  ===========================
column    measure                                                        pass
========  =============================================================  ===========================
ER        noise RMS / error RMS (``raw - clean`` over ``denoised - clean``)  >= 2
trace     median oracle trace correlation, denoised (raw)                >= min(0.99, raw)
spike     voltage: median spike amplitude kept in footprint traces       >= 0.95
res/n     median over pixels of residual RMS / true noise std            0.95 - 1.10
lc        residual local correlation - the true noise's                  within +-0.02
removed   true signal removed on the 10 % most active pixels             <= 0.10
ratio     input file bytes / store bytes                                 >= 3 (>= 100 frames), >= 1;
                                                                         two-photon kinds >= 600 frames:
                                                                         >= 20 (``2p ratio``)
quant     added MSE of the factor quantization / the error's MSE         < 0.01
========  =============================================================  ===========================

``quant`` compares the store with the same compression at the finest step (``ROUNDING_ERROR`` 1e-9,
clipped to the working step): the fit is identical, only the final rounding differs.  The blind numbers of
the report (residual/noise, the residual's local correlation excess, through the fit too, photon-split error
reduction and signal removed) are shown beside the truth's, not scored (they estimate the same things).

Prints a table (``x`` marks a failure) and a list of failures, writes ``results/sweep.json``.  On one core
the full grid takes ~15-25 CPU minutes, ``--quick`` (the base cells) ~3.

``--variants``: which decision removes the signal where a cell fails.  Each cell (on ``--seeds`` movies) runs
under each named setting of :data:`VARIANTS` (the defaults; no temporal filter; a looser rank test; and the
known-footprints reference, which keeps all the signal and all the traces' noise) and prints the truth's
error reduction, trace correlation, spike amplitude and signal removed on the most active pixels (also split
into the frame's border band and the rest), then the mean and range over seeds
(``results/sweep_variants.json``).  ``--spatial-budget F`` runs them with the PMD spatial step's 2-D TV budget
scaled by ``F``, ``--spatial-whiteness Z`` with that budget halved while the spatial step removes a part whose
neighbours correlate by more than ``Z`` standard errors (levers measured by session 10, not options of
``pmd compress``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_fidelity import footprint_traces, spike_amplitudes  # noqa: E402
from bench_real import local_correlation  # noqa: E402

#: Per kind: frame shape, sources, usual photons per pixel per frame (None: the kind's own).
KIND_BASE = {
    "2p": ((64, 64), 15, 1.0),
    "2p-dense": ((64, 64), 20, 2.0),
    "2p-real": ((96, 96), None, None),
    "2p-real-bright": ((96, 96), None, None),
    "dendritic": ((64, 64), 30, 3.0),
    "1p": ((64, 64), 12, 100.0),
    "widefield": ((64, 64), 6, 500.0),
    "voltage": ((64, 64), 8, 40.0),
}
#: The kinds that stand for two-photon movies (issue 13: those of >= 600 frames must give stores >= 20x smaller).
TWO_PHOTON = ("2p", "2p-dense", "2p-real", "2p-real-bright", "dendritic")
CORRELATED_NOISE = 0.12  # share of each photon's noise given to each 4-neighbour (the 1p-correlated regime)
DTYPES = ("uint16", "uint8", "int16", "float32")


@dataclasses.dataclass(frozen=True)
class Cell:
    kind: str
    frames: int = 600
    photons_factor: float = 1.0
    dtype: str = "uint16"
    correlated: bool = False
    seed: int = 0
    tag: str = "base"

    @property
    def name(self) -> str:
        return f"{self.kind} {self.tag}"


def grid(quick: bool = False) -> list[Cell]:
    """The cells: per kind a base and one change per axis; then combined cells shaped like real movies."""
    cells = []
    for i, kind in enumerate(KIND_BASE):
        base = Cell(kind, seed=i)
        cells.append(base)
        if quick:
            continue
        cells += [dataclasses.replace(base, frames=100, tag="100 fr"),
                  dataclasses.replace(base, frames=3000, tag="3000 fr"),
                  dataclasses.replace(base, photons_factor=0.25, tag="photons/4"),
                  dataclasses.replace(base, photons_factor=4.0, tag="photons*4"),
                  dataclasses.replace(base, correlated=True, tag="corr noise")]
        cells += [dataclasses.replace(base, dtype=d, tag=d) for d in DTYPES[1:]]
    if not quick:
        cells += [Cell("2p-dense", frames=240, dtype="uint8", seed=20, tag="uint8 240 fr (zebrafish-like)"),
                  Cell("1p", frames=3000, dtype="float32", correlated=True, seed=21, tag="float32 3000 fr corr"),
                  Cell("voltage", frames=3000, correlated=True, dtype="int16", seed=22, tag="int16 3000 fr corr"),
                  Cell("widefield", frames=100, dtype="uint8", correlated=True, seed=23, tag="uint8 100 fr corr"),
                  Cell("dendritic", frames=3000, dtype="float32", photons_factor=0.25, seed=24,
                       tag="float32 3000 fr photons/4")]
    return cells


# --------------------------------------------------------------------------- movies


def to_dtype(raw: np.ndarray, dtype: str) -> tuple[np.ndarray, float, float]:
    """RAW (simulated ADU, uint16) as an input of DTYPE: ``(movie, a, b)`` with ``movie ~ a * raw + b``.

    uint8: the whole range stretched to 0-255 and rounded (an 8-bit camera or export; the rounding is part of
    that movie's noise; nothing is clipped, which the truth would count as signal lost); int16: less its median
    (a background-subtracted export, negative values); float32: photons (ADU less the offset, over the gain: a
    rescaled float movie).
    """
    x = raw.astype(np.float64)
    if dtype == "uint16":
        return raw, 1.0, 0.0
    if dtype == "uint8":
        lo, hi = float(x.min()), float(x.max())
        a = 255.0 / max(hi - lo, 1.0)
        return np.clip(np.rint((x - lo) * a), 0, 255).astype(np.uint8), a, -lo * a
    if dtype == "int16":
        med = float(np.median(x))
        a = min(1.0, 32000.0 / max(float(np.abs(x - med).max()), 1.0))
        return np.clip(np.rint((x - med) * a), -32768, 32767).astype(np.int16), a, -med * a
    if dtype == "float32":
        return ((x - 100.0) / 20.0).astype(np.float32), 1 / 20.0, -100.0 / 20.0
    raise ValueError(dtype)


def make_movie(cell: Cell, work: Path):
    """Simulate CELL; write its input TIFF.  Returns (path, raw in ADU as read back, truth, a, b)."""
    import tifffile

    from pmdcompress.simulate import load_truth, simulate_movie

    shape, neurons, photons = KIND_BASE[cell.kind]
    if photons is not None:
        photons = photons * cell.photons_factor
    elif cell.photons_factor != 1.0:
        from pmdcompress.simulate.movie import _REGIMES

        photons = _REGIMES[cell.kind].photons * cell.photons_factor
    sim = work / "sim.tif"
    info = simulate_movie(sim, kind=cell.kind, n_frames=cell.frames, shape=shape, n_neurons=neurons,
                          photons=photons, seed=cell.seed, overwrite=True,
                          regime={"noise_blur": CORRELATED_NOISE} if cell.correlated else None)
    movie, a, b = to_dtype(tifffile.imread(sim), cell.dtype)
    path = work / "input.tif"
    tifffile.imwrite(path, movie)
    return path, (movie.astype(np.float64) - b) / a, load_truth(info["truth"]), a, b, info


# --------------------------------------------------------------------------- scores


#: Pixels within this many of the frame's edge form the border band of ``signal_removed_active_border``.
BORDER_BAND = 8


def truth_scores(raw: np.ndarray, clean: np.ndarray, denoised: np.ndarray, truth, kind: str) -> dict:
    from pmdcompress.simulate.groundtruth import trace_correlations

    noise = raw - clean
    residual = raw - denoised
    error = denoised - clean
    noise_sd = noise.std(axis=0)
    ok = noise_sd > 0
    rms = np.sqrt(np.mean(residual**2, axis=0))
    s = clean - clean.mean(axis=0)
    d = denoised - denoised.mean(axis=0)
    active = s.var(axis=0) >= np.percentile(s.var(axis=0), 90)

    def removed(where):
        return float(1.0 - np.sum(d[:, where] * s[:, where]) / np.sum(s[:, where] ** 2)) if where.any() else None

    # The border band: a source cut by the frame's edge has fewer pixels to average its trace over.
    h, w = s.shape[1:]
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    border = np.minimum.reduce([yy, xx, h - 1 - yy, w - 1 - xx]) < BORDER_BAND
    out = {"error_reduction": float(np.sqrt(np.mean(noise**2) / np.mean(error**2))),
           "residual_over_noise": float(np.median(rms[ok] / noise_sd[ok])),
           "residual_local_corr": local_correlation(residual),
           "noise_local_corr": local_correlation(noise),
           "signal_removed_active": removed(active),
           "signal_removed_active_border": removed(active & border),
           "signal_removed_active_inner": removed(active & ~border)}
    out["local_corr_excess"] = out["residual_local_corr"] - out["noise_local_corr"]
    if truth.footprints.shape[0]:
        out["trace_corr_raw"] = float(np.nanmedian(trace_correlations(raw, truth)))
        out["trace_corr"] = float(np.nanmedian(trace_correlations(denoised, truth)))
    if kind == "voltage":
        feet = truth.footprints
        clean_amps = spike_amplitudes(footprint_traces(clean, feet), truth.spikes)
        if clean_amps.size:
            amps = spike_amplitudes(footprint_traces(denoised, feet), truth.spikes)
            out["spike_kept"] = float(np.median(amps / clean_amps))
            out["n_spikes"] = int(clean_amps.size)
    return out


def report_scores(path: Path, store) -> dict:
    """The report's blind numbers (no held-out fits, no figures)."""
    from pmdcompress.io.readers import open_movie
    from pmdcompress.pipeline.photon_split import photon_split_section
    from pmdcompress.report import analyse

    with open_movie(path) as movie:
        data = analyse(movie, store, heldout=False, workers=1, photon_split=photon_split_section)
    m = data["report"]["metrics"]

    def v(key):
        item = m.get(key)
        return None if item is None else item.get("value")

    return {"residual_over_noise": v("residual_ratio_median"),
            "local_corr_excess": v("local_corr_residual_excess"),
            "local_corr_excess_through_fit": v("local_corr_residual_excess_through_fit"),
            "photon_split_error_reduction": v("photon_split_error_reduction"),
            "photon_split_signal_removed_active": v("photon_split_signal_removed_active"),
            "photon_split_ok": v("photon_split_ok")}


#: ``--variants``: compress options (or ``None``: the known-footprints reference) that each cell runs under.
#: ``compress_seed_1`` (the solver's random starts drawn from another seed) gives the spread that any change to
#: the fit shows on the same movie by chance: the yardstick of a paired comparison.
VARIANTS = {"defaults": {}, "compress_seed_1": {"seed": 1}, "no_filter": {"temporal_filter": False},
            "false_pass_0.15": {"false_pass": 0.15}, "known_footprints": None}


def known_footprints(raw: np.ndarray, truth) -> np.ndarray:
    """The reference of a known span: each frame's deviation from the pixel means least-squares projected on the
    true sources' maps and the neuropil's (no penalty, no filter): no signal removed, all the traces' noise kept."""
    maps = [np.asarray(truth.footprints[:], np.float64).reshape(truth.footprints.shape[0], -1)]
    if truth.neuropil_spatial is not None:
        neuropil = np.asarray(truth.neuropil_spatial[:], np.float64)
        maps.append(neuropil.reshape(-1, maps[0].shape[1]))
    basis = np.concatenate(maps).T  # (pixels, maps)
    t_len = raw.shape[0]
    mean = raw.mean(axis=0)
    coef, *_ = np.linalg.lstsq(basis, (raw - mean).reshape(t_len, -1).T, rcond=None)
    return mean + (basis @ coef).T.reshape(raw.shape)


def scale_spatial_budget(factor: float, cache: Path) -> None:
    """A lever measured, not an option: every 2-D TV search of the PMD solver's spatial step gets ``factor``
    times its noise budget (``n_pix * sigma_u^2``, the discrepancy principle).  The rank test's null goes through
    the same solver, so it is recomputed (in ``cache``, never the user's null cache)."""
    from pmdcompress.solver import pmd

    search = pmd.tv2d_search
    params = pmd.PMDSolver.params
    pmd.tv2d_search = lambda image, delta, **kw: search(image, delta * factor, **kw)
    pmd.PMDSolver.params = lambda self: {**params(self), "spatial_budget": factor}
    os.environ["PMD_CACHE_DIR"] = str(cache)


def neighbour_z(removed: np.ndarray) -> float:
    """The pooled correlation of an image's horizontal and vertical neighbours (about their mean of 0), in
    standard errors of white noise (``sqrt`` of the number of pairs)."""
    pairs = removed[:, 1:].size + removed[1:].size
    energy = float(np.sum(removed * removed))
    if energy <= 0:
        return 0.0
    products = float(np.sum(removed[:, 1:] * removed[:, :-1]) + np.sum(removed[1:] * removed[:-1]))
    return products / energy * removed.size / pairs * np.sqrt(pairs)


def spatial_whiteness(z: float, cache: Path, halvings: int = 2, null_quantile: float | None = None) -> dict:
    """A lever measured, not an option: the PMD solver's spatial step (its final 2-D TV search of each
    iteration, not the draft) is redone with half the noise budget while what it removed, ``u~ - u``, has a
    neighbour correlation above ``z`` standard errors (:func:`neighbour_z`), at most ``halvings`` times: the
    temporal filter's whiteness test (``solver.temporal.WHITENESS_Z``) applied to the spatial factors.  Noise
    shared between neighbours fails it by itself: with ``null_quantile`` the threshold is the larger of ``z``
    and that quantile of the same statistic over the rank test's null simulations (the same solver on noise of
    the movie's measured correlation; the null is then never cached, so that every compression measures it).
    The null is recomputed in ``cache``.  Returns the counts of solves and of solves halved, and the
    thresholds used (filled as the solver runs)."""
    import threading

    from pmdcompress.solver import pmd

    search = pmd.tv2d_search
    params = pmd.PMDSolver.params
    null_statistics = pmd.PMDSolver.null_statistics
    counts = {"solves": 0, "halved": 0, "thresholds": []}
    state = threading.local()
    pending = []  # the statistic over the last null's solves, not yet turned into a threshold
    threshold = [z]

    def collecting_null(self, *args, **kw):
        state.null = True
        try:
            return null_statistics(self, *args, **kw)
        finally:
            state.null = False

    def halving_search(image, delta, **kw):
        x, lam = search(image, delta, **kw)
        if kw.get("tol", 0.0) > pmd.PMDSolver.tv_tol:  # the draft step only steers the next temporal step
            return x, lam
        if getattr(state, "null", False) and null_quantile is not None:
            pending.append(neighbour_z(image - x))
            return x, lam
        if pending:
            threshold[0] = max(z, float(np.quantile(pending, null_quantile)))
            counts["thresholds"].append(threshold[0])
            pending.clear()
        counts["solves"] += 1
        k = 0
        while k < halvings and neighbour_z(image - x) > threshold[0]:
            delta *= 0.5
            k += 1
            x, lam = search(image, delta, **dict(kw, lam0=None))
        counts["halved"] += k > 0
        return x, lam

    pmd.tv2d_search = halving_search
    pmd.PMDSolver.params = lambda self: {**params(self), "spatial_whiteness": [z, halvings, null_quantile]}
    if null_quantile is not None:
        pmd.PMDSolver.null_statistics = collecting_null
    os.environ["PMD_CACHE_DIR"] = "" if null_quantile is not None else str(cache)
    return counts


def run_variants(cell: Cell, work: Path, variants) -> list[dict]:
    """CELL under each of VARIANTS (names of :data:`VARIANTS`): truth scores, rank and store bytes only (no
    quantization reference, no report)."""
    import pmdcompress
    from pmdcompress.store.zarr_store import directory_bytes

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    path, raw, truth, a, b, info = make_movie(cell, work)
    clean = np.asarray(truth.clean[:], np.float64)
    rows = []
    for name in variants:
        options = VARIANTS[name]
        row = {"cell": cell.name, "variant": name, **dataclasses.asdict(cell), "shape": list(raw.shape)}
        if options is None:
            denoised = known_footprints(raw, truth)
        else:
            out = work / f"{name}.pmd.zarr"
            store = pmdcompress.compress(path, out, workers=1, hash_input=False, **options)
            denoised = (np.asarray(store.read(0, raw.shape[0]), np.float64) - b) / a
            row.update(rank=int(store.metadata.total_rank), store_bytes=directory_bytes(out))
        row["truth"] = truth_scores(raw, clean, denoised, truth, cell.kind)
        rows.append(row)
    return rows


def run_cell(cell: Cell, work: Path, report: bool = True) -> dict:
    import pmdcompress
    from pmdcompress.formats import store as store_format
    from pmdcompress.store.zarr_store import directory_bytes

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    path, raw, truth, a, b, info = make_movie(cell, work)
    clean = np.asarray(truth.clean[:], np.float64)
    cpu = time.process_time()
    store = pmdcompress.compress(path, work / "m.pmd.zarr", workers=1, hash_input=False)
    cpu = time.process_time() - cpu
    t_len = raw.shape[0]
    denoised = (np.asarray(store.read(0, t_len), np.float64) - b) / a
    saved = dict(store_format.ROUNDING_ERROR)
    store_format.ROUNDING_ERROR["float32"] = 1e-9  # every step clipped to the working step
    try:
        reference = pmdcompress.compress(path, work / "ref.pmd.zarr", workers=1, hash_input=False)
    finally:
        store_format.ROUNDING_ERROR.update(saved)
    ref = (np.asarray(reference.read(0, t_len), np.float64) - b) / a
    row = {"cell": cell.name, **dataclasses.asdict(cell), "shape": list(raw.shape), "photons": info["attrs"]["photons"],
           "n_sources": info["attrs"]["n_neurons"], "rank": int(store.metadata.total_rank), "compress_cpu_s": cpu,
           "input_bytes": path.stat().st_size, "store_bytes": directory_bytes(work / "m.pmd.zarr")}
    row["ratio"] = row["input_bytes"] / row["store_bytes"]
    row["quantization_added"] = float(np.mean((denoised - ref) ** 2) / np.mean((ref - clean) ** 2))
    row["truth"] = truth_scores(raw, clean, denoised, truth, cell.kind)
    if report:
        t = time.process_time()
        row["report"] = report_scores(path, store)
        row["report_cpu_s"] = time.process_time() - t
    row["checks"] = checks(row)
    return row


def checks(row: dict) -> dict:
    """Pass (True) / fail (False) of each criterion that applies to the row."""
    t = row["truth"]
    out = {"error_reduction": t["error_reduction"] >= 2.0,
           "residual_over_noise": 0.95 <= t["residual_over_noise"] <= 1.10,
           "local_corr": abs(t["local_corr_excess"]) <= 0.02,
           "signal_removed": t["signal_removed_active"] <= 0.10,
           "store_ratio": row["ratio"] >= (3.0 if row["frames"] >= 100 else 1.0),
           "quantization": row["quantization_added"] < 0.01}
    if row["kind"] in TWO_PHOTON and row["frames"] >= 600:
        out["store_ratio_2p"] = row["ratio"] >= 20.0
    if "trace_corr" in t:
        out["trace_corr"] = t["trace_corr"] >= min(0.99, t["trace_corr_raw"])
    if "spike_kept" in t:
        out["spike_kept"] = t["spike_kept"] >= 0.95
    return out


# --------------------------------------------------------------------------- table


def show_header() -> None:
    print(f"{'cell':<38}{'T':>5}{'rank':>5}{'ER':>8}{'trace (raw)':>14}{'spike':>7}{'res/n':>7}{'(rep)':>7}"
          f"{'lc':>8}{'(rep)':>8}{'removed':>8}{'ratio':>7}{'quant%':>8}{'PS ER':>7}{'PS rm':>7}{'cpu':>6}",
          flush=True)


def show(row: dict) -> None:
    t, c, r = row["truth"], row["checks"], row.get("report", {})

    def mark(key, text):
        return text + ("x" if c.get(key) is False else " ")

    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    trace = f"{t['trace_corr']:.3f} ({t['trace_corr_raw']:.2f})" if "trace_corr" in t else "-"
    print(f"{row['cell'][:37]:<38}{row['frames']:>5}{row['rank']:>5}"
          f"{mark('error_reduction', format(t['error_reduction'], '7.1f'))}"
          f"{mark('trace_corr', format(trace, '>13'))}"
          f"{mark('spike_kept', num(t.get('spike_kept'), '6.3f'))}"
          f"{mark('residual_over_noise', format(t['residual_over_noise'], '6.3f'))}"
          f"{num(r.get('residual_over_noise'), '7.3f')}"
          f"{mark('local_corr', format(t['local_corr_excess'], '+7.3f'))}"
          f"{num(r.get('local_corr_excess'), '+8.3f')}"
          f"{mark('signal_removed', format(t['signal_removed_active'], '7.3f'))}"
          f"{format(row['ratio'], '6.1f')}{'x' if not c['store_ratio'] or c.get('store_ratio_2p') is False else ' '}"
          f"{mark('quantization', format(100 * row['quantization_added'], '7.3f'))}"
          f"{num(r.get('photon_split_error_reduction'), '7.1f')}"
          f"{num(r.get('photon_split_signal_removed_active'), '7.3f')}"
          f"{row['compress_cpu_s'] + row.get('report_cpu_s', 0):6.1f}", flush=True)


def summarize(rows: list[dict]) -> dict:
    """Print the failures of ROWS by criterion; returns them ({criterion: [cell, ...]})."""
    by_check = {}
    for r in rows:
        for key, ok in r["checks"].items():
            if not ok:
                by_check.setdefault(key, []).append(r["cell"])
    n_checks = sum(len(r["checks"]) for r in rows)
    print(f"\n{len(rows)} cells, {n_checks} checks, {sum(map(len, by_check.values()))} failed")
    for key, names in by_check.items():
        print(f"  {key}: {len(names)} - " + "; ".join(names))
    return by_check


def show_variants(rows: list[dict]) -> None:
    """One line per cell, seed and variant: the truth's numbers (``removed``: signal removed on the most active
    10 %, all of them, those within :data:`BORDER_BAND` px of the frame's edge, the others)."""
    print(f"{'cell':<24}{'seed':>5} {'variant':<17}{'rank':>5}{'ER':>7}{'trace':>7}{'spike':>7}{'res/n':>7}"
          f"{'removed':>8}{'border':>7}{'inner':>7}")
    for r in rows:
        t = r["truth"]

        def num(value, fmt):
            return "-" if value is None else format(value, fmt)

        print(f"{r['cell'][:23]:<24}{r['seed']:>5} {r['variant']:<17}{num(r.get('rank'), '5d')}"
              f"{t['error_reduction']:7.2f}{num(t.get('trace_corr'), '7.3f')}{num(t.get('spike_kept'), '7.3f')}"
              f"{t['residual_over_noise']:7.3f}{t['signal_removed_active']:8.3f}"
              f"{num(t['signal_removed_active_border'], '7.3f')}{num(t['signal_removed_active_inner'], '7.3f')}",
              flush=True)


def summarize_variants(rows: list[dict]) -> dict:
    """Per cell and variant, the mean and range over seeds of the truth's numbers; printed and returned."""
    keys = ("error_reduction", "trace_corr", "spike_kept", "signal_removed_active", "signal_removed_active_border",
            "signal_removed_active_inner")
    out = {}
    for r in rows:
        entry = out.setdefault(r["cell"], {}).setdefault(r["variant"], {k: [] for k in keys})
        for k in keys:
            if r["truth"].get(k) is not None:
                entry[k].append(r["truth"][k])
    print(f"\n{'mean over seeds [min, max]':<42}" + "".join(f"{k.replace('signal_removed_', 'rm ')[:16]:>22}"
                                                          for k in keys))
    for cell, variants in out.items():
        for name, entry in variants.items():
            for k in keys:
                v = entry[k]
                entry[k] = {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))} if v else None
            spans = ["-" if e is None else f"{e['mean']:.3f} [{e['min']:.3f}, {e['max']:.3f}]"
                     for e in (entry[k] for k in keys)]
            print(f"{cell[:23]:<24}{name:<18}" + "".join(f"{text:>22}" for text in spans))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the base cell of each kind only")
    ap.add_argument("--only", nargs="*", help="cells whose name contains any of these")
    ap.add_argument("--no-report", action="store_true", help="skip the report's blind numbers (faster)")
    ap.add_argument("--rescore", metavar="JSON", help="print the table of an earlier run, checks recomputed")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                    help="run each cell under these settings instead (truth scores only; no report, no quantization"
                         " reference); default output results/sweep_variants.json")
    ap.add_argument("--seeds", type=int, default=1,
                    help="with --variants: each cell on this many movies (seeds cell seed + 100 j)")
    ap.add_argument("--spatial-budget", type=float, default=1.0,
                    help="with --variants: scale the PMD spatial step's 2-D TV noise budget by this (a lever measured,"
                         " not a compress option; the null is recomputed in a temporary cache)")
    ap.add_argument("--spatial-whiteness", type=float, metavar="Z",
                    help="with --variants: halve the PMD spatial step's budget while its removed part's neighbour"
                         " correlation exceeds Z standard errors (a lever measured, not a compress option)")
    ap.add_argument("--whiteness-null-quantile", type=float, metavar="Q",
                    help="with --spatial-whiteness: the threshold is also at least this quantile of the statistic"
                         " over the null's noise components (noise-aware)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(HERE / "results" / ("sweep_variants.json" if args.variants else "sweep.json"))
    if args.rescore:
        rows = json.loads(Path(args.rescore).read_text())["rows"]
        show_header()
        for row in rows:
            row["checks"] = checks(row)
            show(row)
        summarize(rows)
        return 0
    os.environ.setdefault("PMD_NUM_WORKERS", "1")
    # Every input is a plain TIFF without a frame rate (as many real ones): the warning would repeat per cell.
    logging.getLogger("pmdcompress").setLevel(logging.ERROR)
    cells = grid(args.quick)
    if args.only:
        cells = [c for c in cells if any(s in c.name for s in args.only)]
    import pmdcompress

    def write(rows, failures, complete, **extra):
        out = {"benchmark": "bench_sweep", "version": pmdcompress.__version__, "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
               "report": not args.no_report, "complete": complete, "failures": failures, **extra, "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")

    rows = []
    if args.variants:
        with tempfile.TemporaryDirectory(prefix="pmd-sweep-") as tmp:
            if args.spatial_budget != 1.0:
                scale_spatial_budget(args.spatial_budget, Path(tmp) / "null-cache")
            counts = None
            if args.spatial_whiteness is not None:
                counts = spatial_whiteness(args.spatial_whiteness, Path(tmp) / "null-cache",
                                           null_quantile=args.whiteness_null_quantile)
            for cell in cells:
                for j in range(args.seeds):
                    rows += run_variants(dataclasses.replace(cell, seed=cell.seed + 100 * j), Path(tmp) / "cell",
                                         args.variants)
                    show_variants(rows[-len(args.variants):])
                    write(rows, None, False)
        write(rows, None, True, variants=args.variants, spatial_budget=args.spatial_budget,
              spatial_whiteness=args.spatial_whiteness, whiteness_null_quantile=args.whiteness_null_quantile,
              spatial_solves=counts, summary=summarize_variants(rows))
        if counts is not None:
            print(f"spatial solves {counts['solves']}, halved {counts['halved']}, thresholds "
                  + " ".join(f"{t:.2f}" for t in counts["thresholds"]))
        print(f"wrote {args.out}")
        return 0
    show_header()
    with tempfile.TemporaryDirectory(prefix="pmd-sweep-") as tmp:
        for cell in cells:
            rows.append(run_cell(cell, Path(tmp) / "cell", report=not args.no_report))
            show(rows[-1])
            write(rows, None, False)  # what is done so far survives an interrupted run
    write(rows, summarize(rows), True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
