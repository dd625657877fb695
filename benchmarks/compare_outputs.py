"""Check that two source trees of pmdcompress produce the same outputs, file for file.

Runs one fixed scenario of ``pmd`` commands with each tree (simulate, compress --method svd/pmd, decompress to
tif/npy/zarr, info, report, denoise --report, demix --export caiman,suite2p,nwb, evaluate, batch) on a small
simulated movie and on crops of real movies, then compares every output file:

- byte for byte first;
- where the bytes differ, by content: JSON with the volatile fields dropped (timings, creation times, worker counts,
  versions, host names), text with the run folders replaced by a placeholder, TIFF pages and tags, HDF5/NWB
  datasets and attributes (creation dates and ids dropped), PNG/GIF pixels.

A refactor that "changes no output" must report every file IDENTICAL or EQUAL (equal after dropping the volatile
fields).  Usage (from a tree's root)::

    python benchmarks/compare_outputs.py --reference /work/wt/ref --candidate .

The reference tree's outputs are cached under ``--work`` (keyed by the reference's commit and this scenario) so a
second check reruns only the candidate.  ``PMD_NUM_WORKERS=1`` is set for every command: outputs must not depend on
the worker count, but the comparison should not depend on it either.  Exit code 0 when all outputs match, 1 if not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REAL_2P = "optinist_mouse2p/movie.tif"  # 2-photon, uint16: a 300 x 64 x 64 crop
REAL_1P = "inscopix_1p_part2/movie.tif"  # 1-photon, float32, small enough to use whole

# The scenario: (name, pmd arguments, stdout file or None).  Paths are relative to the run folder; "{real2p}" and
# "{real1p}" are the shared input crops (the same absolute files for both trees).
STEPS: list[tuple[str, list[str], str | None]] = [
    ("simulate", ["simulate", "sim.tif", "--frames", "300", "--shape", "64x64", "--neurons", "20", "--seed", "1"],
     None),
    ("simulate-1p", ["simulate", "sim1p.tif", "--frames", "200", "--shape", "48x48", "--neurons", "8", "--kind",
                     "1p", "--seed", "2"], None),
    ("compress-svd", ["compress", "sim.tif", "-o", "sim_svd.pmd.zarr", "--method", "svd"], None),
    ("compress-pmd", ["compress", "sim.tif", "-o", "sim_pmd.pmd.zarr", "--method", "pmd"], None),
    ("compress-detrend", ["compress", "sim1p.tif", "-o", "sim1p.pmd.zarr", "--detrend", "--patch", "24x16",
                          "--dtype", "float16"], None),
    ("compress-real2p", ["compress", "{real2p}", "-o", "real2p.pmd.zarr"], None),
    ("compress-real2p-svd", ["compress", "{real2p}", "-o", "real2p_svd.pmd.zarr", "--method", "svd",
                             "--frames", "50:250", "--no-temporal-filter"], None),
    ("compress-real1p", ["compress", "{real1p}", "-o", "real1p.pmd.zarr", "--detrend"], None),
    ("info", ["info", "sim_pmd.pmd.zarr", "--json"], "info.json"),
    ("decompress-tif", ["decompress", "sim_pmd.pmd.zarr", "-o", "dec.tif"], None),
    ("decompress-npy", ["decompress", "real2p.pmd.zarr", "-o", "dec_real.npy", "--frames", "10:200",
                        "--crop", "5:50,0:40"], None),
    ("decompress-zarr", ["decompress", "sim1p.pmd.zarr", "-o", "dec1p.zarr", "--dtype", "float32"], None),
    ("decompress-uint16", ["decompress", "sim_svd.pmd.zarr", "-o", "dec_u16.tif", "--dtype", "uint16"], None),
    ("report", ["report", "sim.tif", "sim_pmd.pmd.zarr", "-o", "report_sim", "--truth", "sim.truth.zarr"], None),
    ("denoise-movie", ["denoise", "sim.tif", "-o", "den.tif", "--report", "den_report", "--truth",
                       "sim.truth.zarr", "--store", "den.pmd.zarr"], None),
    ("denoise-store", ["denoise", "real2p.pmd.zarr", "--movie", "{real2p}", "-o", "den_real.npy", "--report",
                       "den_real_report", "--no-heldout", "--dtype", "original"], None),
    ("demix", ["demix", "sim_pmd.pmd.zarr", "-o", "sim.demix.zarr", "--export", "caiman,suite2p,nwb"], None),
    ("demix-1p", ["demix", "real1p.pmd.zarr", "-o", "real1p.demix.zarr", "--kind", "1p", "--fs", "10",
                  "--export", "caiman"], None),
    ("demix-real2p", ["demix", "real2p.pmd.zarr", "-o", "real2p.demix.zarr", "--no-figures"], None),
    ("evaluate", ["evaluate", "sim.demix.zarr", "--truth", "sim.truth.zarr", "--pairs"], "evaluate.json"),
    ("evaluate-centroid", ["evaluate", "sim.demix.zarr", "--truth", "sim.truth.zarr", "--mode", "centroid"],
     "evaluate_centroid.json"),
    # the batch reads a shared input: its status.json records the input's modification time
    ("batch", ["batch", "{real2p}", "-o", "batch_out", "--scheduler", "sync", "--steps", "compress,denoise,demix",
               "--set", "patch=24"], None),
]

# JSON keys whose values may differ between two runs of the same code.
VOLATILE_KEY = re.compile(
    r"(^|_)(time|times|timing|timings|seconds|elapsed|duration|created|creation|date|started|finished|"
    r"updated|workers|worker|threads|version|versions|host|hostname|pid|uuid|identifier|dashboard|"
    r"nthreads|wall|cpu|mtime|mtime_ns)(_|$)|_s$|^t_|_at$",
    re.IGNORECASE,
)
# Sizes on disk include the metadata JSON, whose timings vary in length by a few bytes: compared to 3 digits.
SIZE_KEY = re.compile(r"bytes_on_disk|disk_bytes|compression_ratio", re.IGNORECASE)
# HDF5/NWB members and attributes that record when/where a file was written.
VOLATILE_H5 = re.compile(r"file_create_date|session_start_time|timestamps_reference_time|identifier|"
                         r"object_id|date|version|created", re.IGNORECASE)


def scenario_key() -> str:
    return hashlib.sha256(json.dumps(STEPS).encode()).hexdigest()[:12]


def tree_commit(tree: Path) -> str:
    """The tree's HEAD commit, with '+dirty' and a hash of the diff when it has uncommitted changes."""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    diff = subprocess.run(["git", "-C", str(tree), "diff", "HEAD"], capture_output=True).stdout
    untracked = subprocess.run(["git", "-C", str(tree), "ls-files", "--others", "--exclude-standard", "pmdcompress"],
                               capture_output=True, text=True).stdout
    if diff or untracked.strip():
        return f"{head}+dirty{hashlib.sha256(diff + untracked.encode()).hexdigest()[:8]}"
    return head


def make_inputs(data: Path, folder: Path) -> dict[str, str]:
    """The real-movie crops both trees read (written once; the same absolute paths for both)."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    real2p = folder / "real2p.tif"
    if not real2p.exists():
        movie = tifffile.imread(data / REAL_2P)
        tifffile.imwrite(real2p, np.ascontiguousarray(movie[:300, 20:84, 30:94]))
    out["real2p"] = str(real2p)
    real1p = folder / "real1p.tif"
    if not real1p.exists():
        tifffile.imwrite(real1p, tifffile.imread(data / REAL_1P))
    out["real1p"] = str(real1p)
    return out


def snapshot(tree: Path, dest: Path) -> Path:
    """A copy of TREE's package and ``bin/`` (no caches) in DEST."""
    if dest.exists():
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    shutil.copytree(tree / "pmdcompress", dest / "pmdcompress", ignore=ignore)
    shutil.copytree(tree / "bin", dest / "bin", ignore=ignore)
    return dest


def run_tree(tree: Path, run_dir: Path, inputs: dict[str, str], log) -> dict[str, dict]:
    """Run every step with TREE's sources in RUN_DIR; returns per step its exit code and CPU seconds."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(tree), PMD_NUM_WORKERS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    results = {}
    for name, args, stdout_name in STEPS:
        argv = [a.format(**inputs) for a in args]
        c0 = os.times()
        proc = subprocess.run([sys.executable, str(tree / "bin" / "pmd"), "-q", *argv], cwd=run_dir, env=env,
                              capture_output=True, text=True)
        c1 = os.times()
        cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
        if stdout_name:
            (run_dir / stdout_name).write_text(proc.stdout)
        (run_dir / f"_stderr_{name}.txt").write_text(proc.stderr)
        results[name] = {"rc": proc.returncode, "cpu_s": round(cpu, 2)}
        log(f"  {tree.name}: {name:22s} rc={proc.returncode} cpu={cpu:6.1f}s"
            + (f"  {proc.stderr.strip().splitlines()[-1][:100]}" if proc.returncode and proc.stderr.strip() else ""))
    (run_dir / "_steps.json").write_text(json.dumps(results, indent=1))
    return results


# ----------------------------------------------------------------------------------------------- comparison


def _drop_volatile(obj, roots: list[tuple[str, str]]):
    if isinstance(obj, dict):
        return {k: ("<volatile>" if VOLATILE_KEY.search(str(k)) else
                    _round_size(v) if SIZE_KEY.search(str(k)) else _drop_volatile(v, roots)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_drop_volatile(v, roots) for v in obj]
    if isinstance(obj, str):
        return _normalise_text(obj, roots)
    return obj


_PARTIAL_TOKEN = re.compile(r"\.[0-9a-f]{8}\.partial")


def _round_size(value):
    if isinstance(value, (int, float)) and value:
        return float(f"{value:.3g}")
    return value


def _normalise_text(text: str, roots: list[tuple[str, str]]) -> str:
    for root, placeholder in roots:
        text = text.replace(root, placeholder)
    # atomic writes go through NAME.<random>.partial folders; a path recorded from inside one keeps the token
    return _PARTIAL_TOKEN.sub(".<tmp>.partial", text)


def _compare_json(a: bytes, b: bytes, roots_a, roots_b) -> str | None:
    try:
        ja, jb = json.loads(a), json.loads(b)
    except ValueError:
        return "not JSON"
    na, nb = _drop_volatile(ja, roots_a), _drop_volatile(jb, roots_b)
    if na == nb:
        return None
    return "JSON differs: " + _first_difference(na, nb)


def _first_difference(a, b, path="") -> str:
    if type(a) is not type(b):
        return f"{path or '/'}: {str(a)[:80]!r} vs {str(b)[:80]!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'candidate' if k not in a else 'reference'}"
            if a[k] != b[k]:
                return _first_difference(a[k], b[k], f"{path}/{k}")
    if isinstance(a, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or '/'}: {str(a)[:80]!r} vs {str(b)[:80]!r}"


def _compare_text(a: bytes, b: bytes, roots_a, roots_b) -> str | None:
    try:
        ta, tb = _normalise_text(a.decode(), roots_a), _normalise_text(b.decode(), roots_b)
    except UnicodeDecodeError:
        return "binary, bytes differ"
    ta, tb = _mask_numbers_near_volatile(ta), _mask_numbers_near_volatile(tb)
    if ta == tb:
        return None
    la, lb = ta.splitlines(), tb.splitlines()
    for i, (x, y) in enumerate(zip(la, lb, strict=False)):
        if x != y:
            return f"text differs at line {i + 1}: {x[:90]!r} vs {y[:90]!r}"
    return f"text differs in length ({len(la)} vs {len(lb)} lines)"


_TIMING_TEXT = re.compile(r"(\b\w+_s \d+(\.\d+)?)|(\d+(\.\d+)?\s*(s|ms|min|seconds?)\b)|(\d{4}-\d\d-\d\dT[\d:.+\-Z]+)|"
                          r"(\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?)|(version \S+)|(\d+ workers?)|(\d+ threads?)")


def _mask_numbers_near_volatile(text: str) -> str:
    return _TIMING_TEXT.sub("<volatile>", text)


def _compare_tiff(pa: Path, pb: Path, roots_a, roots_b) -> str | None:
    import tifffile

    with tifffile.TiffFile(pa) as ta, tifffile.TiffFile(pb) as tb:
        if len(ta.pages) != len(tb.pages):
            return f"TIFF pages {len(ta.pages)} vs {len(tb.pages)}"
        xa, xb = ta.asarray(), tb.asarray()
        if xa.dtype != xb.dtype or xa.shape != xb.shape or not np.array_equal(xa, xb, equal_nan=True):
            return f"TIFF data differs ({xa.dtype}{xa.shape} vs {xb.dtype}{xb.shape})"
        for tag_a in ta.pages[0].tags.values():
            tag_b = tb.pages[0].tags.get(tag_a.code)
            if tag_b is None:
                return f"TIFF tag {tag_a.name} missing in candidate"
            va, vb = tag_a.value, tag_b.value
            if isinstance(va, str) and isinstance(vb, str):
                for parse in (_compare_json, _compare_text):
                    verdict = parse(va.encode(), vb.encode(), roots_a, roots_b)
                    if verdict != "not JSON":
                        break
                if verdict:
                    return f"TIFF tag {tag_a.name}: {verdict}"
            elif tag_a.name in ("DateTime", "Software"):
                continue
            elif tag_a.name in ("StripOffsets", "TileOffsets"):
                continue
            elif not _equal_values(va, vb):
                return f"TIFF tag {tag_a.name} differs"
    return None


def _equal_values(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except (TypeError, ValueError):  # object or ragged arrays: compare their printed form
        return repr(_plain(a)) == repr(_plain(b))


def _compare_hdf5(pa: Path, pb: Path, roots_a, roots_b) -> str | None:
    import h5py

    def collect(path, roots):
        items = {}
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if VOLATILE_H5.search(name):
                    return
                for key, value in obj.attrs.items():
                    if VOLATILE_H5.search(key) or key == "object_id":
                        continue
                    if isinstance(value, (bytes, str)):
                        value = _normalise_text(value.decode() if isinstance(value, bytes) else value, roots)
                    elif isinstance(value, (h5py.Reference, h5py.RegionReference)):
                        value = "<ref>"  # an HDF5 object address: where the writer put it, not what it holds
                    items[f"{name}@{key}"] = value
                if isinstance(obj, h5py.Dataset):
                    data = obj[()]
                    if isinstance(data, bytes):
                        data = _normalise_text(data.decode(errors="replace"), roots)
                    elif isinstance(data, np.ndarray) and data.dtype.kind == "O":
                        data = [str(x) for x in data.ravel()]
                    items[name] = data
            visit("", f)
            f.visititems(visit)
        return items

    ia, ib = collect(pa, roots_a), collect(pb, roots_b)
    if set(ia) != set(ib):
        return f"HDF5 members differ: {sorted(set(ia) ^ set(ib))[:5]}"
    for key in ia:
        if not _equal_values(ia[key], ib[key]):
            return f"HDF5 {key} differs"
    return None


def _compare_image(pa: Path, pb: Path) -> str | None:
    from PIL import Image, ImageSequence

    with Image.open(pa) as ia, Image.open(pb) as ib:
        fa = [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(ia)]
        fb = [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(ib)]
    if len(fa) != len(fb) or any(x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(fa, fb, strict=False)):
        return "image pixels differ"
    return None


def _compare_npy(pa: Path, pb: Path, roots_a, roots_b) -> str | None:
    from pmdcompress.io.safe_pickle import load_npy  # suite2p's ops.npy/stat.npy are pickled object arrays

    xa, xb = load_npy(pa), load_npy(pb)
    if not isinstance(xa, np.ndarray) or not isinstance(xb, np.ndarray) or "O" in (xa.dtype.kind, xb.dtype.kind):
        ja = json.dumps(_drop_volatile(_plain(xa), roots_a), sort_keys=True, default=repr)
        jb = json.dumps(_drop_volatile(_plain(xb), roots_b), sort_keys=True, default=repr)
        return None if ja == jb else "object array differs: " + _first_difference(json.loads(ja), json.loads(jb))
    if xa.dtype != xb.dtype or xa.shape != xb.shape or not np.array_equal(xa, xb, equal_nan=True):
        return f"array differs ({xa.dtype}{xa.shape} vs {xb.dtype}{xb.shape})"
    return None


def _plain(obj):
    """Nested dicts/lists of JSON-able values (arrays as lists, NaN as a string) for a deep comparison."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "O":
        return {"shape": list(obj.shape), "data": [_plain(v) for v in obj.ravel()]}
    if isinstance(obj, np.ndarray):
        return {"dtype": str(obj.dtype), "shape": list(obj.shape), "data": _plain(obj.ravel().tolist())}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and obj != obj:
        return "nan"
    return obj


def compare_file(pa: Path, pb: Path, roots_a, roots_b) -> tuple[str, str]:
    """('IDENTICAL' | 'EQUAL' | 'DIFFERENT', detail)."""
    a, b = pa.read_bytes(), pb.read_bytes()
    if a == b:
        return "IDENTICAL", ""
    suffix = pa.suffix.lower()
    name = pa.name
    try:
        if suffix == ".json" or name in (".zattrs", ".zarray", ".zgroup", "zarr.json", ".zmetadata"):
            verdict = _compare_json(a, b, roots_a, roots_b)
        elif suffix in (".tif", ".tiff"):
            verdict = _compare_tiff(pa, pb, roots_a, roots_b)
        elif suffix in (".h5", ".hdf5", ".nwb"):
            verdict = _compare_hdf5(pa, pb, roots_a, roots_b)
        elif suffix in (".png", ".gif"):
            verdict = _compare_image(pa, pb)
        elif suffix == ".npy":
            verdict = _compare_npy(pa, pb, roots_a, roots_b)
        elif suffix in (".html", ".txt", ".csv", ".md", ".log", ".yaml", ".sbatch", ".svg"):
            verdict = _compare_text(a, b, roots_a, roots_b)
        else:
            verdict = _compare_json(a, b, roots_a, roots_b)
            if verdict == "not JSON":
                verdict = _compare_text(a, b, roots_a, roots_b)
    except Exception as exc:  # a reader failing on one side is a difference, not a crash of the check
        verdict = f"could not compare: {type(exc).__name__}: {exc}"
    return ("EQUAL", "") if verdict is None else ("DIFFERENT", verdict)


def list_outputs(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
            if p.is_file() and not p.name.startswith("_stderr_") and p.name != "_steps.json"
            and ".lock" not in p.name}


def compare_runs(ref_dir: Path, cand_dir: Path, ref_tree: Path, cand_tree: Path, log) -> list[dict]:
    roots_a = [(str(ref_dir), "<RUN>"), (str(ref_tree.resolve()), "<TREE>"), (str(ref_tree), "<TREE>")]
    roots_b = [(str(cand_dir), "<RUN>"), (str(cand_tree.resolve()), "<TREE>"), (str(cand_tree), "<TREE>")]
    files_a, files_b = list_outputs(ref_dir), list_outputs(cand_dir)
    rows = []
    for rel in sorted(files_a | files_b):
        if rel not in files_b:
            rows.append({"file": rel, "verdict": "MISSING", "detail": "only in reference"})
        elif rel not in files_a:
            rows.append({"file": rel, "verdict": "EXTRA", "detail": "only in candidate"})
        else:
            verdict, detail = compare_file(ref_dir / rel, cand_dir / rel, roots_a, roots_b)
            rows.append({"file": rel, "verdict": verdict, "detail": detail})
    return rows


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, type=Path, help="tree of the head before the change")
    parser.add_argument("--candidate", default=Path("."), type=Path, help="tree to check (default: .)")
    parser.add_argument("--work", default=Path("/tmp/pmd_compare_outputs"), type=Path,
                        help="scratch folder (reference outputs are cached here)")
    parser.add_argument("--data", default=None, type=Path, help="real movies folder (default ../shared/data)")
    parser.add_argument("--rerun-reference", action="store_true", help="ignore the cached reference outputs")
    parser.add_argument("--only", default=None, help="comma-separated step names to run (default: all)")
    parser.add_argument("--compare-only", action="store_true", help="compare the outputs of the last run again")
    parser.add_argument("--in-place", action="store_true",
                        help="run the candidate from its tree, not from a snapshot copy of its sources")
    parser.add_argument("--json", default=None, type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)

    data = args.data or next((p for p in (here.parent / "shared" / "data", Path("/work/shared/data")) if p.exists()),
                             None)
    if data is None or not (data / REAL_2P).exists():
        print("compare_outputs: the real movies (../shared/data) are missing; pass --data", file=sys.stderr)
        return 2
    global STEPS
    if args.only:
        wanted = set(args.only.split(","))
        STEPS = [s for s in STEPS if s[0] in wanted]
    ref_tree, cand_tree = args.reference.resolve(), args.candidate.resolve()
    work = args.work.resolve()
    inputs = make_inputs(data, work / "inputs")

    def log(msg):
        print(msg, flush=True)

    ref_key = f"{tree_commit(ref_tree)}-{scenario_key()}"
    ref_dir = work / "reference"
    stamp = work / "reference.key"
    cand_dir = work / "candidate"
    if args.compare_only:
        ref_steps = json.loads((ref_dir / "_steps.json").read_text())
        cand_steps = json.loads((cand_dir / "_steps.json").read_text())
    elif args.rerun_reference or not stamp.exists() or stamp.read_text() != ref_key or "dirty" in ref_key:
        log(f"reference {ref_tree} ({ref_key})")
        ref_steps = run_tree(ref_tree, ref_dir, inputs, log)
        stamp.write_text(ref_key)
    else:
        log(f"reference outputs cached in {ref_dir} ({ref_key})")
        ref_steps = json.loads((ref_dir / "_steps.json").read_text())
    cand_label = tree_commit(cand_tree)
    run_cand = cand_tree
    if not args.compare_only:
        log(f"candidate {cand_tree} ({cand_label})")
        if not args.in_place:
            # a copy of the sources, so that the tree can be edited while the scenario runs
            run_cand = snapshot(cand_tree, work / "candidate_tree")
        cand_steps = run_tree(run_cand, cand_dir, inputs, log)
    elif (work / "candidate_tree").exists() and not args.in_place:
        run_cand = work / "candidate_tree"

    failed = False
    for name, _args, _out in STEPS:
        ra, rb = ref_steps.get(name, {}).get("rc"), cand_steps[name]["rc"]
        if ra != rb:
            failed = True
            log(f"step {name}: exit code {ra} (reference) vs {rb} (candidate)")
        elif ra != 0:
            log(f"step {name}: both exit {ra} (check the scenario)")
    rows = compare_runs(ref_dir, cand_dir, ref_tree, run_cand, log)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        if row["verdict"] not in ("IDENTICAL", "EQUAL"):
            failed = True
            log(f"{row['verdict']:10s} {row['file']}: {row['detail']}")
    equal = [r["file"] for r in rows if r["verdict"] == "EQUAL"]
    if equal:
        log("EQUAL after dropping volatile fields: " + ", ".join(equal[:40]) + (" ..." if len(equal) > 40 else ""))
    log(f"{len(rows)} files: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
    cpu_a = sum(s.get("cpu_s", 0) for s in ref_steps.values())
    cpu_b = sum(s["cpu_s"] for s in cand_steps.values())
    log(f"CPU seconds of the scenario: reference {cpu_a:.1f}, candidate {cpu_b:.1f} (a snapshot compiles its numba"
        " kernels afresh: compare CPU only with --in-place on both sides)")
    if args.json:
        args.json.write_text(json.dumps({"reference": ref_key, "candidate": cand_label, "rows": rows,
                                         "counts": counts}, indent=1))
    log("OUTPUTS MATCH" if not failed else "OUTPUTS DIFFER")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
