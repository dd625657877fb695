"""``pmd batch``: a thin click front end over :func:`pmdcompress.pipeline.batch.run_batch`.

Registered on the ``pmd`` group (which maps exceptions to exit codes); heavy
imports happen inside the command.
"""

from __future__ import annotations

import click

from .common import progress_for as _progress
from .common import say as _say

BATCH_EPILOG = """\b
Examples:
  pmd batch "recordings/**/*.tif" -o out/
  pmd batch movies.csv -o out/ --scheduler tcp://host:8786
  pmd batch "*.tif" -o out/ --workers 8 --memory-limit 4GB --steps compress,demix --set fs=30
  pmd batch "*.tif" -o out/ --emit-sbatch pmd.sbatch --slurm-queue normal --walltime 02:00:00
\b
Re-running resumes: movies whose status.json says done are skipped; failed and
interrupted ones are redone.  Exit codes: 0 all movies done or skipped, 2 bad
input or some movies failed (listed), 1 unexpected failure, 130 interrupted."""




@click.command("batch", epilog=BATCH_EPILOG)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: one sub-folder per movie with its status.json.")
@click.option("--scheduler", default=None, metavar="SPEC",
              help="local (default), sync (this process), tcp://host:8786, scheduler.json or slurm;"
                   " default $DASK_SCHEDULER_ADDRESS if set.")
@click.option("--workers", default=None, type=int, help="Worker processes (default: cores / threads per worker).")
@click.option("--threads-per-worker", default=1, show_default=True, type=int,
              help="Threads per worker; each movie runs on one worker with that many threads.")
@click.option("--memory-limit", default=None, metavar="SIZE", help="Memory per worker, e.g. 4GB (default: auto).")
@click.option("--steps", default="compress", show_default=True,
              help="Comma-separated: compress, denoise (float32 reconstruction), demix (neurons).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Option for every movie (repeatable): --set patch=48 --set max_rank=30 --set fs=30"
                   " --set demix_cell_radius=5; a manifest's own columns win.")
@click.option("--overwrite", is_flag=True, help="Redo movies already done.")
@click.option("--emit-sbatch", "sbatch_script", default=None, type=click.Path(dir_okay=False),
              help="Write a SLURM job-array script (one task per movie) and a manifest; run nothing.")
@click.option("--slurm-queue", default=None, help="SLURM partition (slurm scheduler and --emit-sbatch).")
@click.option("--slurm-account", default=None, help="SLURM account.")
@click.option("--walltime", default=None, metavar="HH:MM:SS", help="SLURM time limit per job.")
@click.option("--array-index", default=None, type=int, metavar="N",
              help="Process only movie N (0-based) of the batch; used by --emit-sbatch scripts.")
@click.pass_context
def batch_command(ctx, inputs, output_dir, scheduler, workers, threads_per_worker, memory_limit, steps, settings,
                  overwrite, sbatch_script, slurm_queue, slurm_account, walltime, array_index):
    """Run STEPS on every movie of INPUTS (globs, paths, or a CSV/YAML manifest) into OUTPUT/<movie>/."""
    from ..pipeline.batch import BatchError, parse_settings, prepare_sbatch, run_batch

    options = parse_settings(settings)
    if sbatch_script:
        result = prepare_sbatch(list(inputs), output_dir, sbatch_script, steps=steps, options=options,
                                overwrite=overwrite, threads_per_worker=threads_per_worker,
                                memory_limit=memory_limit, slurm_queue=slurm_queue, slurm_account=slurm_account,
                                walltime=walltime or "04:00:00")
        _say(ctx, f"pmd: wrote {result['script']} ({result['n_tasks']} array tasks) and {result['manifest']};"
                  f" submit with: sbatch {result['script']}")
        return

    def on_start(info):
        line = (f"pmd: batch of {info['total']} movies: {info['to_run']} to run, {info['skipped']} already done"
                + (f", on {info['scheduler']}" if info["to_run"] else ""))
        _say(ctx, line)
        if info.get("dashboard"):
            _say(ctx, f"pmd: dask dashboard: {info['dashboard']}")

    summary = run_batch(list(inputs), output_dir, steps=steps, scheduler=scheduler, workers=workers,
                        threads_per_worker=threads_per_worker, memory_limit=memory_limit, overwrite=overwrite,
                        options=options, progress=_progress(ctx), array_index=array_index,
                        slurm_queue=slurm_queue, slurm_account=slurm_account, walltime=walltime,
                        on_start=on_start)
    failed = summary["failed"]
    _say(ctx, f"pmd: batch: {len(summary['done'])} done, {len(summary['skipped'])} skipped (already done), "
              f"{len(failed)} failed" + (f", {len(summary['busy'])} busy elsewhere" if summary["busy"] else "")
              + f" of {summary['total']} in {summary['elapsed_s']:.1f} s")
    for f in failed:
        # "InputError: /x/cut.tif: truncated ..." names the movie already: once is enough, and the type tells
        # nothing more then (an unexpected error keeps it)
        kind, _, text = f["error"].partition(": ")
        line = text if kind.isidentifier() and text.startswith(f["path"]) else f"{f['path']}: {f['error']}"
        click.echo(f"pmd:   failed: {line}", err=True)
    if failed:
        raise BatchError(f"{len(failed)} of {summary['total']} movies failed; "
                         f"see {output_dir}/batch-summary.json and each movie's status.json")
