"""Benchmark: the temporal filter alone on the rows a long movie's pipeline gives it, this tree against another.

    python benchmarks/bench_filter_rows.py MOVIE --reference /work/wt/base [--blocks 86] [--rounds 2]
                                           [--capture rows.npz] [--out benchmarks/results/filter_rows.json]

Compresses MOVIE once with the reference tree (one worker), capturing every block of rows that the pipeline passes
to ``trend_filter_rows`` (with its noise levels) and the filtered rows it returned (``--capture`` keeps them; an
existing file is reused).  Then replays ``trend_filter_rows`` on the captured blocks in fresh processes, the
reference and this tree alternating, ``--rounds`` times each: thread CPU per row (one thread; the machine may be
shared) and the rows whose output differs from the reference's captured output (0 for a same-floats change).
Prints a table and writes JSON.  Session 12: 20000 x 256 x 256 ``2p-real`` (1372 rows of 20000 frames), main
7.41 / 7.14 ms a row, branch s12-filter 6.50 / 6.58 (load 13).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CAPTURE = r"""
import sys, threading, numpy as np
import pmdcompress
import pmdcompress.pipeline.compress as C
captured, lock, original = [], threading.Lock(), C.trend_filter_rows
def hook(values, sigma=None, **kw):
    out = original(values, sigma=sigma, **kw)
    with lock:
        captured.append((np.array(values), None if sigma is None else np.array(sigma), np.array(out)))
    return out
C.trend_filter_rows = hook
pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True)
arrays = {}
for i, (rows, sigma, out) in enumerate(captured):
    arrays[f"rows{i}"], arrays[f"out{i}"] = rows, out
    if sigma is not None:
        arrays[f"sigma{i}"] = sigma
np.savez(sys.argv[3], **arrays)
"""

REPLAY = r"""
import json, sys, time, numpy as np
from pmdcompress.solver.temporal import trend_filter_rows
z = np.load(sys.argv[1])
count = min(sum(k.startswith("rows") for k in z.files), int(sys.argv[2]))
blocks = [(z[f"rows{i}"], z[f"sigma{i}"] if f"sigma{i}" in z.files else None, z[f"out{i}"]) for i in range(count)]
trend_filter_rows(blocks[0][0][:2], sigma=None if blocks[0][1] is None else blocks[0][1][:2])  # compile / load caches
start, rows, differing = time.thread_time(), 0, 0
for values, sigma, reference in blocks:
    out = trend_filter_rows(values, sigma=sigma)
    rows += len(values)
    differing += int(np.sum(np.any(out != reference, axis=1)))
seconds = time.thread_time() - start
print("RESULT " + json.dumps({"thread_cpu_s": seconds, "rows": rows, "ms_per_row": 1e3 * seconds / rows,
                              "rows_differing": differing, "frames": int(blocks[0][0].shape[1])}))
"""


def _run(tree: Path, code: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree), PMD_NUM_WORKERS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{tree}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("movie")
    parser.add_argument("--reference", required=True, help="the tree to compare with (and to capture the rows)")
    parser.add_argument("--blocks", type=int, default=10**9, help="replay at most this many blocks of 16 rows")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--capture", default=None, help="the captured rows (.npz): reused if it exists")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "filter_rows.json"))
    args = parser.parse_args(argv)
    reference = Path(args.reference).resolve()
    with tempfile.TemporaryDirectory(prefix="pmd-filter-rows-") as work:
        capture = Path(args.capture) if args.capture else Path(work) / "rows.npz"
        if not capture.exists():
            _run(reference, CAPTURE, str(Path(args.movie).resolve()), str(Path(work) / "capture.pmd.zarr"),
                 str(capture))
        results = []
        for round_ in range(args.rounds):
            for name, tree in (("reference", reference), ("this tree", ROOT)):
                line = [s for s in _run(tree, REPLAY, str(capture), str(args.blocks)).splitlines()
                        if s.startswith("RESULT ")][-1]
                result = dict(json.loads(line[7:]), tree=name, path=str(tree), round=round_ + 1)
                results.append(result)
                print(f"{name:<10} round {round_ + 1}: {result['ms_per_row']:.3f} ms a row of {result['frames']} "
                      f"frames ({result['rows']} rows, {result['thread_cpu_s']:.2f} s thread CPU), rows differing "
                      f"from the reference's output: {result['rows_differing']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"movie": str(args.movie), "results": results}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
