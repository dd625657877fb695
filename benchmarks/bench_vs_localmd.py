"""Benchmark: pmd compress beside localmd's best configuration, both pinned to the same cores, interleaved.

    python benchmarks/bench_vs_localmd.py [--movies neurofinder_dev,optinist_mouse2p] [--cores "0;0,1"]
                                          [--repeats 3] [--out benchmarks/results/speed_vs_localmd.json]

For every movie and every core set (default: core 0 alone, then cores 0 and 1) both tools run in fresh
processes under ``taskset -c CORES``, with every thread pool sized to the number of cores: OMP, OpenBLAS, MKL and
numba (``*_NUM_THREADS``), pmd's workers (``PMD_NUM_WORKERS``), torch (``--threads``) and XLA
(``XLA_FLAGS=--xla_cpu_multi_thread_eigen=... intra_op_parallelism_threads=N``).  localmd runs its best
configuration (blocks 16x16, overlap 6x6, background rank 5; ``benchmarks/peers/run_localmd.py --config best``)
in its own venv (``$LOCALMD_PYTHON`` or /work/peers/localmd-venv).

Each tool first runs once unmeasured (a warm run: pmd's numba and null caches, and JAX's persistent compilation
cache, which localmd's runner gets through ``JAX_COMPILATION_CACHE_DIR``, so neither pays for compiling), then
``--repeats`` measured runs, interleaved (pmd, localmd, pmd, localmd, ...) so that both see the same load.
Reported: the median wall and CPU seconds of the decomposition (pmd: the ``compress`` call, reading the movie and
writing the store included; localmd: its ``localmd_decomposition`` call, reading the movie included, writing and
reconstruction not), and their ratios.  The machine is shared: only same-run ratios mean anything, and the
spread of the repeats is printed beside the medians.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = next((p for p in (ROOT.parent / "shared" / "data", Path("/work/shared/data")) if p.exists()),
              ROOT.parent / "shared" / "data")
LOCALMD_PY = Path(os.environ.get("LOCALMD_PYTHON", "/work/peers/localmd-venv/bin/python"))
if not LOCALMD_PY.exists():
    LOCALMD_PY = HERE / ".venv-localmd" / "bin" / "python"

PMD = r"""
import json, sys, time
import pmdcompress
t0, c0 = time.perf_counter(), time.process_time()
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, workers=int(sys.argv[3]))
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                  "rank": store.metadata.total_rank}))
"""


def thread_env(n: int, cache: Path) -> dict:
    """Every thread pool of both tools sized to ``n``; JAX's compilation cache in ``cache``."""
    xla = f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} intra_op_parallelism_threads={n}"
    return dict(os.environ, OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n),
                NUMBA_NUM_THREADS=str(n), PMD_NUM_WORKERS=str(n), XLA_FLAGS=xla,
                JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def run(cmd: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ...: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def run_pmd(movie: Path, out: Path, cores: str, n: int, env: dict) -> dict:
    env = dict(env, PYTHONPATH=str(ROOT))
    proc = run(["taskset", "-c", cores, sys.executable, "-c", PMD, str(movie), str(out), str(n)], env, ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_localmd(movie: Path, out: Path, cores: str, n: int, env: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    run(["taskset", "-c", cores, str(LOCALMD_PY), str(HERE / "peers" / "run_localmd.py"), str(movie), str(out),
         "--config", "best", "--threads", str(n)], env, ROOT)
    result = json.loads((out / "localmd_result.json").read_text())
    return {"wall_s": result["wall_s"], "cpu_s": result["cpu_s"], "rank": result["rank"],
            "threads": result.get("threads")}


def summary(runs: list[dict]) -> dict:
    walls, cpus = [r["wall_s"] for r in runs], [r["cpu_s"] for r in runs]
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "wall_s_runs": walls,
            "cpu_s_runs": cpus, "rank": runs[-1]["rank"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movies", default="neurofinder_dev,optinist_mouse2p")
    ap.add_argument("--cores", default="0;0,1", help="core sets for taskset -c, separated by ';'")
    ap.add_argument("--repeats", type=int, default=3, help="measured runs of each tool (median reported)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "speed_vs_localmd.json")
    args = ap.parse_args()
    if not LOCALMD_PY.exists():
        sys.exit(f"localmd venv missing ({LOCALMD_PY}): set $LOCALMD_PYTHON or run benchmarks/peers/setup_localmd.sh")

    results = {"machine": platform.node(), "cpus": os.cpu_count(), "repeats": args.repeats,
               "localmd_config": "best: blocks 16x16, overlap 6x6, background rank 5, max_components 50",
               "runs": []}
    with tempfile.TemporaryDirectory(prefix="pmd-vs-localmd-") as tmp:
        tmp = Path(tmp)
        for name in filter(None, args.movies.split(",")):
            movie = SHARED / name / "movie.tif"
            if not movie.exists():
                print(f"skipping {name}: {movie} not found", file=sys.stderr)
                continue
            for cores in filter(None, args.cores.split(";")):
                n = len(cores.split(","))
                env = thread_env(n, tmp / "jax-cache")
                store, lmd_out = tmp / f"{name}.pmd.zarr", tmp / f"localmd-{name}"
                run_pmd(movie, store, cores, n, env)  # warm runs: caches filled, not measured
                run_localmd(movie, lmd_out, cores, n, env)
                pmd_runs, lmd_runs = [], []
                for i in range(args.repeats):
                    pmd_runs.append(run_pmd(movie, store, cores, n, env))
                    lmd_runs.append(run_localmd(movie, lmd_out, cores, n, env))
                    print(f"{name} cores {cores} run {i + 1}: pmd {pmd_runs[-1]['wall_s']:.2f} s wall "
                          f"{pmd_runs[-1]['cpu_s']:.2f} CPU-s, localmd {lmd_runs[-1]['wall_s']:.2f} s wall "
                          f"{lmd_runs[-1]['cpu_s']:.2f} CPU-s", flush=True)
                pmd, lmd = summary(pmd_runs), summary(lmd_runs)
                results["runs"].append({
                    "movie": name, "cores": cores, "threads": n, "pmd": pmd, "localmd": lmd,
                    "localmd_threads": lmd_runs[-1]["threads"],
                    "wall_ratio": lmd["wall_s"] / pmd["wall_s"], "cpu_ratio": lmd["cpu_s"] / pmd["cpu_s"],
                })

    print(f"\n{'movie':<18} {'cores':<6} {'pmd wall s':>11} {'localmd wall s':>15} {'ratio':>6} "
          f"{'pmd CPU s':>10} {'localmd CPU s':>14} {'ratio':>6}   ranks pmd / localmd")
    for r in results["runs"]:
        p, m = r["pmd"], r["localmd"]
        print(f"{r['movie']:<18} {r['cores']:<6} {p['wall_s']:>11.2f} {m['wall_s']:>15.2f} {r['wall_ratio']:>6.2f} "
              f"{p['cpu_s']:>10.2f} {m['cpu_s']:>14.2f} {r['cpu_ratio']:>6.2f}   {p['rank']} / {m['rank']}")
        print(f"{'':<25} runs: pmd wall {[round(x, 2) for x in p['wall_s_runs']]}, "
              f"localmd wall {[round(x, 2) for x in m['wall_s_runs']]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
