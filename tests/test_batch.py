"""pmd batch: planning, manifests, resume, bad movies, clusters (a real LocalCluster of 2 worker processes),
a worker killed mid-compression, and SIGINT/SIGTERM followed by a re-run."""

import fcntl
import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import pmdcompress
from conftest import blobs_movie
from pausing import PausedRun, PauseFifos
from pmdcompress.cli.batch import batch_command
from pmdcompress.demix import open_demix
from pmdcompress.errors import InputError
from pmdcompress.pipeline import cluster
from pmdcompress.pipeline.batch import (
    SUMMARY_NAME,
    plan_batch,
    prepare_sbatch,
    read_status,
    run_batch,
)

OPTIONS = {"patch_shape": 24, "overlap": 6}


def write_movie(path, n_frames=200, seed=0, shape=(48, 56)):
    noisy, _ = blobs_movie(n_frames=n_frames, shape=shape, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.clip(noisy, 0, 65535).astype(np.uint16))
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three good movies in sub-folders and four bad ones (corrupt, empty, 2-D, too short)."""
    root = tmp_path_factory.mktemp("recordings")
    good = [write_movie(root / "mouse1" / "day1.tif", seed=1), write_movie(root / "mouse1" / "day2.tif", seed=2),
            write_movie(root / "mouse2" / "day1.tif", seed=3)]
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    (bad / "empty.tif").write_bytes(b"")
    tifffile.imwrite(bad / "image2d.tif", np.zeros((48, 56), np.uint16))
    tifffile.imwrite(bad / "short.tif", np.zeros((5, 48, 56), np.uint16))
    return root, good


@pytest.fixture(scope="module")
def references(recordings, tmp_path_factory):
    """Each good movie compressed in this process, with one thread like each batch task (the reference)."""
    root, good = recordings
    out = tmp_path_factory.mktemp("references")
    return {p: pmdcompress.compress(p, out / f"{p.parent.name}-{p.stem}.pmd.zarr", workers=1, **OPTIONS)
            for p in good}


def assert_same_store(a, b):
    a, b = pmdcompress.open(a) if not hasattr(a, "spatial") else a, pmdcompress.open(b)
    for name in ("mean", "noise", "patch_ranks", "spatial"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.temporal[...], b.temporal[...])


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.name.endswith((".partial", ".old", ".tmp")) or (p.name.endswith(".lock") and p.name != ".lock"))


# -- planning and manifests ---------------------------------------------------------------------------------


def test_glob_plans_one_folder_per_movie_below_the_glob_base(recordings, tmp_path):
    root, good = recordings
    jobs = plan_batch(str(root / "mouse*" / "*.tif"), tmp_path)
    assert [j.name for j in jobs] == ["mouse1/day1", "mouse1/day2", "mouse2/day1"]
    assert [j.path for j in jobs] == good
    recursive = plan_batch([str(root / "**" / "day*.tif"), str(good[0])], tmp_path, options={"max_rank": 7})
    assert len(recursive) == 3 and all(j.options == {"max_rank": 7} for j in recursive)  # duplicate dropped
    # Two movies with the same stem in one folder get distinct, stable folders.
    np.save(tmp_path / "day1.npy", np.zeros((20, 8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "day1.tif", np.zeros((20, 8, 8), np.uint16))
    names = [j.name for j in plan_batch(str(tmp_path / "day1.*"), tmp_path / "out")]
    assert len(set(names)) == 2 and all(n.startswith("day1-") for n in names)
    assert names == [j.name for j in plan_batch(str(tmp_path / "day1.*"), tmp_path / "out")]


def test_manifests_give_per_movie_options(recordings, tmp_path):
    root, good = recordings
    csv_path = root / "movies.csv"
    csv_path.write_text("# lab manifest\npath, name, patch, max-rank, frames\n"
                        "mouse1/day1.tif, first, 24x32, 5, 0:150\nmouse2/day1.tif,,,,\n")
    jobs = plan_batch(csv_path, tmp_path, options={"overlap": 6})
    assert [j.name for j in jobs] == ["first", "mouse2/day1"]
    assert jobs[0].path == good[0]
    assert jobs[0].options == {"overlap": (6, 6), "patch_shape": (24, 32), "max_rank": 5, "frames": "0:150"}
    assert jobs[1].options == {"overlap": (6, 6)}
    yaml_path = root / "movies.yaml"
    yaml_path.write_text("options: {patch: 24}\nmovies:\n  - mouse1/day2.tif\n"
                         "  - {path: mouse2/day1.tif, max_rank: 3, name: m2}\n")
    jobs = plan_batch(yaml_path, tmp_path)
    assert [(j.name, j.options) for j in jobs] == [
        ("mouse1/day2", {"patch_shape": (24, 24)}), ("m2", {"patch_shape": (24, 24), "max_rank": 3})]


@pytest.mark.parametrize("text, suffix, match", [
    ("path,colour\na.tif,red\n", ".csv", r"row 2: unknown option 'colour'"),
    ("path,max_rank\na.tif,0\n", ".csv", r"row 2: .*max_rank must be >= 1"),
    ("path,patch\na.tif,big\n", ".csv", r"row 2: patch_shape='big': expected N or HxW"),
    ("file_name\na.tif\n", ".csv", r"needs a 'path' column"),
    ("path,name\na.tif,x\nb.tif,x\n", ".csv", r"name 'x' is given to more than one movie"),
    ("path,name\na.tif,../up\n", ".csv", r"must be a relative folder name"),
    ("path\n", ".csv", r"lists no movies"),
    ("- {path: a.tif, max_rank: [1]}\n", ".yaml", r"item 1: max_rank=\[1\]: expected an integer"),
    ("movies: a.tif\n", ".yaml", r"mapping with 'movies' \(a list\)"),
    ("[unclosed\n", ".yaml", r"unreadable manifest"),
])
def test_bad_manifests_are_refused_before_any_work(tmp_path, text, suffix, match):
    manifest = tmp_path / f"m{suffix}"
    manifest.write_text(text)
    with pytest.raises(InputError, match=match):
        run_batch(manifest, tmp_path / "out", scheduler="sync")
    assert not (tmp_path / "out").exists()


def test_globs_steps_and_options_are_checked_first(tmp_path):
    with pytest.raises(InputError, match="no files match"):
        plan_batch(str(tmp_path / "*.tif"))
    with pytest.raises(InputError, match="unknown step 'squash'; available: compress, denoise, demix"):
        run_batch(str(tmp_path / "x.tif"), tmp_path / "out", steps="compress,squash", scheduler="sync")
    with pytest.raises(InputError, match="unknown option 'patchsize'"):
        run_batch(str(tmp_path / "x.tif"), tmp_path / "out", options={"patchsize": 3}, scheduler="sync")
    with pytest.raises(InputError, match="--array-index 5: the batch has 1 movies"):
        run_batch(str(tmp_path / "x.tif"), tmp_path / "out", array_index=5)
    assert not (tmp_path / "out").exists()


# -- schedulers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, kind, target", [
    (None, "local", None), ("local", "local", None), ("sync", "sync", None), ("SLURM", "slurm", None),
    ("tcp://10.0.0.1:8786", "address", "tcp://10.0.0.1:8786"), ("node12:8786", "address", "tcp://node12:8786"),
])
def test_parse_scheduler(value, kind, target, monkeypatch):
    monkeypatch.delenv(cluster.SCHEDULER_ENV, raising=False)
    assert cluster.parse_scheduler(value) == cluster.SchedulerSpec(kind, target)


def test_parse_scheduler_files_env_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(cluster.SCHEDULER_ENV, "tcp://head:8786")
    assert cluster.parse_scheduler(None) == cluster.SchedulerSpec("address", "tcp://head:8786")
    assert cluster.parse_scheduler("local").kind == "local"  # an explicit value wins
    (tmp_path / "scheduler.json").write_text("{}")
    assert cluster.parse_scheduler(str(tmp_path / "scheduler.json")).kind == "file"
    for value, match in [("gpu-farm", "expected local, sync, slurm"), ("http://x:1", "unknown scheme 'http'"),
                         (str(tmp_path / "none.json"), "no such scheduler file")]:
        with pytest.raises(InputError, match=match):
            cluster.parse_scheduler(value)
    with pytest.raises(InputError, match="--memory-limit 'lots'"):
        cluster.parse_memory("lots")
    assert cluster.parse_memory("4GB") == 4 * 10**9 and cluster.parse_memory(None) is None


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(cluster.ClusterError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        with cluster.open_client("tcp://127.0.0.1:9"):
            pass


def test_slurm_needs_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(ImportError, match=r'pip install "pmdcompress\[slurm\]"'):
        with cluster.open_client("slurm"):
            pass


def test_slurm_cluster_gets_the_options(monkeypatch):
    made = {}

    class FakeSLURMCluster:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def scale(self, jobs):
            made["jobs"] = jobs

    fake = type(sys)("dask_jobqueue")
    fake.SLURMCluster = FakeSLURMCluster
    monkeypatch.setitem(sys.modules, "dask_jobqueue", fake)
    cluster._slurm_cluster(3, 2, 4 * 2**30, "gpu", "lab42", "02:00:00")
    assert made["queue"] == "gpu" and made["account"] == "lab42" and made["walltime"] == "02:00:00"
    assert made["cores"] == 2 and made["memory"] == "4096MiB" and made["jobs"] == 3
    assert "export PMD_NUM_WORKERS=2" in made["job_env_vars"]


# -- runs in this process -------------------------------------------------------------------------------------


def test_bad_movies_are_reported_and_skipped_and_finished_ones_resume(recordings, references, tmp_path):
    root, good = recordings
    out = tmp_path / "out"
    summary = run_batch([str(root / "**" / "*.tif")], out, scheduler="sync", options=OPTIONS)
    assert summary["done"] == ["mouse1/day1", "mouse1/day2", "mouse2/day1"]
    failed = {f["name"]: f["error"] for f in summary["failed"]}
    assert set(failed) == {"bad/corrupt", "bad/empty", "bad/image2d", "bad/short"}
    assert all(str(root / "bad") in message for message in failed.values())
    assert "single 2-D image" in failed["bad/image2d"] and "5 frames" in failed["bad/short"]
    assert json.loads((out / SUMMARY_NAME).read_text())["failed"] == summary["failed"]
    for p in good:
        assert_same_store(references[p], out / p.parent.name / p.stem / f"{p.stem}.pmd.zarr")
    status = read_status(out / "mouse1" / "day1")
    assert status["state"] == "done" and status["attempts"] == 1 and status["error"] is None
    assert status["versions"]["pmdcompress"] == pmdcompress.__version__ and status["wall_s"] > 0
    assert status["steps"]["compress"]["timings"]["total_s"] > 0
    bad = read_status(out / "bad" / "corrupt")
    assert bad["state"] == "failed" and bad["error"]["type"] == "InputError" and bad["error"]["step"] == "compress"

    again = run_batch([str(root / "**" / "*.tif")], out, scheduler="sync", options=OPTIONS)
    assert again["skipped"] == summary["done"] and again["done"] == [] and len(again["failed"]) == 4
    assert read_status(out / "mouse1" / "day1")["finished_at"] == status["finished_at"]
    assert read_status(out / "bad" / "corrupt")["attempts"] == 2

    # New options redo a movie; an added step reuses the compression; --overwrite redoes everything.
    changed = run_batch(str(good[0]), out / "mouse1", scheduler="sync", options={**OPTIONS, "max_rank": 2})
    assert changed["done"] == ["day1"]
    assert pmdcompress.open(out / "mouse1" / "day1" / "day1.pmd.zarr").metadata.parameters["max_rank"] == 2
    # A movie another batch is processing (its folder lock is held) is left alone.
    with open(out / "mouse1" / "day1" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = run_batch(str(good[0]), out / "mouse1", scheduler="sync", options=OPTIONS)
    assert busy["busy"] == ["day1"] and busy["done"] == [] and read_status(out / "mouse1" / "day1")["state"] == "done"
    denoise = run_batch(str(good[1]), out / "mouse1", scheduler="sync", options=OPTIONS, steps="denoise")
    assert denoise["done"] == ["day2"]
    status = read_status(out / "mouse1" / "day2")
    assert status["steps"]["compress"].get("reused") and status["steps"]["denoise"]["state"] == "done"
    denoised = pmdcompress.open_movie(out / "mouse1" / "day2" / "denoised.zarr")
    np.testing.assert_allclose(denoised.read(0, 20), references[good[1]][0:20], rtol=1e-6, atol=1e-3)
    assert run_batch(str(good[1]), out / "mouse1", scheduler="sync", options=OPTIONS,
                     overwrite=True)["done"] == ["day2"]
    # Demixing options only redo the demixing.
    demix_options = {**OPTIONS, "fs": 20, "demix_cell_radius": 3}
    assert run_batch(str(good[2]), out / "mouse2", scheduler="sync", options=demix_options,
                     steps="demix")["done"] == ["day1"]
    first = read_status(out / "mouse2" / "day1")
    assert first["steps"]["compress"].get("reused") and first["steps"]["demix"]["n_components"] > 0
    result = open_demix(out / "mouse2" / "day1" / "day1.demix.zarr")
    assert result.metadata["fs"] == 20 and result.metadata["parameters"]["cell_radius"] == 3
    again = run_batch(str(good[2]), out / "mouse2", scheduler="sync", options={**demix_options, "demix_cell_radius": 4},
                      steps=["compress", "demix"])
    status = read_status(out / "mouse2" / "day1")
    assert again["done"] == ["day1"] and status["steps"]["compress"]["finished_at"] == \
        first["steps"]["compress"]["finished_at"] and status["steps"]["demix"]["options"]["demix_cell_radius"] == 4


def test_cli_lists_failures_and_exits_2(recordings, tmp_path):
    from pmdcompress.cli import main

    root, good = recordings
    added = "batch" not in main.commands
    if added:
        main.add_command(batch_command)
    try:
        runner = CliRunner()
        args = ["batch", str(root / "bad" / "*.tif"), str(good[2]), "-o", str(tmp_path / "o"),
                "--scheduler", "sync", "--set", "patch=24", "--set", "overlap=6"]
        result = runner.invoke(main, args)
        assert result.exit_code == 2, result.output
        assert "1 done, 0 skipped (already done), 4 failed of 5" in result.output
        assert f"failed: {root / 'bad' / 'empty.tif'}:" in result.output
        assert "error: 4 of 5 movies failed" in result.output
        result = runner.invoke(main, ["-q", *args])
        assert result.exit_code == 2 and "done" not in result.output and "failed:" in result.output
        result = runner.invoke(main, ["batch", str(good[2]), "-o", str(tmp_path / "o"), "--steps", "demx"])
        assert result.exit_code == 2 and "unknown step 'demx'" in result.output
        result = runner.invoke(main, ["batch", str(good[2]), "-o", str(tmp_path / "o"), "--set", "kind=3p"])
        assert result.exit_code == 2 and "demix_kind '3p': expected one of" in result.output
        result = runner.invoke(main, ["batch", str(good[2]), "-o", str(tmp_path / "o"), "--set", "patch"])
        assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    finally:
        if added:
            del main.commands["batch"]


def test_emit_sbatch_writes_an_array_script_whose_tasks_run_one_movie_each(recordings, tmp_path):
    root, good = recordings
    out = tmp_path / "out"
    script = tmp_path / "pmd.sbatch"
    result = CliRunner().invoke(batch_command, [str(root / "mouse*" / "*.tif"), "-o", str(out), "--emit-sbatch",
                                                str(script), "--slurm-queue", "short", "--slurm-account", "lab",
                                                "--walltime", "01:30:00", "--memory-limit", "2GiB",
                                                "--threads-per-worker", "4", "--set", "patch=24"],
                                obj={})
    assert result.exit_code == 0, result.output
    text = script.read_text()
    for line in ("#SBATCH --array=0-2", "#SBATCH --partition=short", "#SBATCH --account=lab",
                 "#SBATCH --time=01:30:00", "#SBATCH --mem=2048M", "#SBATCH --cpus-per-task=4",
                 "--scheduler sync --array-index \"$SLURM_ARRAY_TASK_ID\""):
        assert line in text
    assert os.access(script, os.X_OK) and not (out / "mouse1").exists()
    # What array task 1 runs: only movie 1 of the frozen manifest, in its usual folder.
    summary = run_batch(out / "batch-manifest.yaml", out, array_index=1)
    assert summary["done"] == ["mouse1/day2"] and summary["total"] == 1
    assert read_status(out / "mouse1" / "day2")["options"]["patch_shape"] == [24, 24]
    assert read_status(out / "mouse1" / "day1") is None and not (out / SUMMARY_NAME).exists()
    assert prepare_sbatch(str(good[0]), out, tmp_path / "one.sbatch")["n_tasks"] == 1
    with pytest.raises(InputError, match="--walltime"):
        cluster.emit_sbatch(tmp_path / "x", manifest=script, output_dir=out, n_tasks=1, walltime="soon")


# -- a real LocalCluster of 2 worker processes ----------------------------------------------------------------


def test_results_on_the_cluster_are_identical_to_a_local_run(recordings, references, client, tmp_path):
    root, good = recordings
    starts = []
    summary = run_batch(str(root / "mouse*" / "*.tif"), tmp_path, scheduler=client, options=OPTIONS,
                        on_start=starts.append)
    assert summary["done"] == ["mouse1/day1", "mouse1/day2", "mouse2/day1"] and not summary["failed"]
    assert starts[0]["to_run"] == 3 and starts[0]["skipped"] == 0
    workers = set()
    for p in good:
        folder = tmp_path / p.parent.name / p.stem
        assert_same_store(references[p], folder / f"{p.stem}.pmd.zarr")  # bit for bit
        workers.add(read_status(folder)["worker"])
    assert None not in workers and workers <= set(client.scheduler_info()["workers"])


def test_one_movie_split_into_tasks_on_the_cluster_is_identical_to_a_local_run(recordings, references, client,
                                                                               tmp_path, monkeypatch):
    movie = recordings[1][0]
    # An empty null cache here (the driver): the null's simulations run as tasks on the workers.
    monkeypatch.setenv("PMD_CACHE_DIR", str(tmp_path / "empty-null-cache"))
    store = pmdcompress.compress(movie, tmp_path / "split.pmd.zarr", client=client, workers=1, **OPTIONS)
    assert_same_store(references[movie], tmp_path / "split.pmd.zarr")  # bit for bit
    assert store.metadata.timings["driver_cpu_null_s"] >= 0


def _set_environment(values: dict) -> None:
    """Runs in each worker process: set (or, with None, remove) environment variables."""
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_a_worker_killed_mid_compression_is_retried_to_the_same_result(recordings, references, client, tmp_path):
    root, good = recordings
    movie = good[0]
    folder = tmp_path / movie.stem
    # The first worker to finish writing the store (still under its .partial name) is held there, then killed.
    fifos = PauseFifos(tmp_path / "fifos")
    client.run(_set_environment, fifos.env(f"commit:{movie.stem}.pmd.zarr"))
    box = {}
    runner = threading.Thread(target=lambda: box.update(
        summary=run_batch(str(movie), tmp_path, scheduler=client, options=OPTIONS)))
    runner.start()
    try:
        pid, _, _ = fifos.wait(guard_s=600)
        assert any(p.name.endswith(".partial") for p in folder.glob(".*"))  # the store is written, not renamed
        status = read_status(folder)
        assert status["state"] == "running" and status["pid"] == pid
        assert not (folder / f"{movie.stem}.pmd.zarr").exists()
        os.kill(pid, signal.SIGKILL)
    finally:
        runner.join(300)
        client.run(_set_environment, {"PMD_TEST_PAUSE_AT": None, "PMD_TEST_PAUSE_DIR": None})
        fifos.close()
    assert box["summary"]["done"] == [movie.stem]
    status = read_status(folder)
    assert status["attempts"] == 2 and status["history"][-1]["state"] == "running"  # the killed attempt
    assert_same_store(references[movie], folder / f"{movie.stem}.pmd.zarr")
    assert leftovers(folder) == []
    client.wait_for_workers(2, timeout=30)  # the nanny restarted the killed worker


DRIVER = """
import sys
from pmdcompress.cli.batch import batch_command
from pmdcompress.demix import open_demix
from pmdcompress.cli import main

if __name__ == "__main__":
    main.add_command(batch_command)
    main()
"""


@pytest.mark.parametrize("sig, scheduler, code", [(signal.SIGTERM, "local", 143), (signal.SIGINT, "sync", 130)])
def test_an_interrupted_batch_resumes_without_redoing_finished_movies(tmp_path, sig, scheduler, code):
    movies = [write_movie(tmp_path / "in" / f"m{i}.tif", n_frames=150, seed=10 + i) for i in range(6)]
    out = tmp_path / "out"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    # Held still as movie m3 starts (no deadline, no sleep): then the signal arrives mid-batch.
    run = PausedRun(["-q", "batch", tmp_path / "in" / "*.tif", "-o", out, "--scheduler", scheduler,
                     "--workers", "2", "--set", "patch=24", "--set", "overlap=6"], "movie:m3.tif",
                    tmp_path / "fifos", command=[sys.executable, str(driver)])
    try:
        run.wait_paused()
        run.proc.send_signal(sig)
        returncode, output = run.finish()
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert returncode == code, output
    states = {f"m{i}": read_status(out / f"m{i}")["state"] for i in range(6)}
    finished = {name for name, state in states.items() if state == "done"}
    assert len(finished) < 6 and set(states.values()) <= {"done", "interrupted"}, states
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["batch_interrupted"] and set(summary["interrupted"]) == set(states) - finished
    stamps = {name: read_status(out / name)["finished_at"] for name in finished}

    again = run_batch(str(tmp_path / "in" / "*.tif"), out, scheduler="sync", options=OPTIONS)
    assert set(again["skipped"]) == finished and set(again["done"]) == set(states) - finished
    assert {name: read_status(out / name)["finished_at"] for name in finished} == stamps
    for movie in movies:
        assert leftovers(out / movie.stem) == []
        pmdcompress.open(out / movie.stem / f"{movie.stem}.pmd.zarr")


def test_a_folder_movie_rewritten_in_place_is_done_again(tmp_path):
    """A folder read as one movie (here a TIFF sequence) that changes in a file, not in its own listing, is a new
    input: its status records the files' total size and newest time, and the batch does it again."""
    folder = tmp_path / "sequence"
    folder.mkdir()
    noisy, _ = blobs_movie(n_frames=60, shape=(32, 32), seed=4)
    frames = np.clip(noisy, 0, 65535).astype(np.uint16)
    for t, frame in enumerate(frames):
        tifffile.imwrite(folder / f"frame{t:03d}.tif", frame)
    out = tmp_path / "out"
    first = run_batch([folder], out, scheduler="sync")
    assert first["done"] == ["sequence"]
    assert run_batch([folder], out, scheduler="sync")["skipped"] == ["sequence"]
    stamp = os.stat(folder).st_mtime_ns
    tifffile.imwrite(folder / "frame010.tif", frames[11])  # the same size, other pixels
    later = os.stat(folder / "frame010.tif").st_mtime_ns + 10**9
    os.utime(folder / "frame010.tif", ns=(later, later))
    os.utime(folder, ns=(stamp, stamp))  # the folder's own time unchanged, as an in-place rewrite leaves it
    again = run_batch([folder], out, scheduler="sync")
    assert again["done"] == ["sequence"] and again["skipped"] == []
