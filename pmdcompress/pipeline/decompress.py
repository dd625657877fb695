"""Stream a reconstruction (any frame range and crop) to TIFF, Zarr or .npy."""

from __future__ import annotations

import numpy as np

from ..errors import OptionError
from ..io.atomic import check_not_source, check_output_path
from ..io.writers import open_writer
from ..options import output_dtype, parse_crop, parse_range, workers_count
from ..parallel import blas_threads, default_workers
from ..preflight import check_movie_fits
from ..progress import null_progress
from ..reconstruct import PMDStore, open_store


def decompress(store, output, *, frames=None, crop=None, dtype=None, overwrite=False,
               workers: int | None = None, chunk_frames: int | None = None, progress=None, inputs=()) -> dict:
    """Reconstruct ``store`` (or a frame range / crop of it) into ``output``.

    The output format follows the extension (.tif/.tiff, .zarr, .npy).  Frames
    are reconstructed and written chunk by chunk; threads reconstruct the next
    chunks while one is written.

    ``inputs`` lists further paths the output must not be, hold or lie in
    (the store itself always counts).

    Returns
    -------
    dict with the output's shape and dtype.
    """
    if output is None:  # compress and demix take None (a result in memory); the frames in memory are the store's
        raise OptionError("decompress writes a movie file: give {output} (.tif, .zarr or .npy); for the frames in "
                          "memory, index the store (pmdcompress.open(path)[...]) or call its read()", "output")
    if not isinstance(store, PMDStore):
        store = open_store(store)
    t_len, y_len, x_len = store.shape
    name = store.path or None  # the messages name the store
    t0, t1 = parse_range(frames, t_len, "frames", source=name)
    (y0, y1), (x0, x1) = parse_crop(crop, (y_len, x_len), source=name)
    out_dtype = output_dtype(dtype, store.metadata.input_dtype, default="original")
    shape = (t1 - t0, y1 - y0, x1 - x0)
    if chunk_frames is None:
        chunk_frames = int(np.clip((16 * 2**20) // (4 * shape[1] * shape[2]), 8, 512))
    bounds = [(s, min(s + chunk_frames, t1)) for s in range(t0, t1, chunk_frames)]
    workers = workers_count(workers) or default_workers()
    progress = progress or null_progress
    bar = progress("decompress", len(bounds))
    store.cells((y0, y1), (x0, x1))  # build once before threads share it

    def render(b):
        return store.read(b[0], b[1], (y0, y1), (x0, x1), dtype=out_dtype)

    inputs = [store.path, *inputs]
    check_output_path(output, overwrite=overwrite, inputs=inputs)
    check_not_source(output, store)
    check_movie_fits(output, shape, out_dtype, compressed=str(output).lower().endswith(".zarr"))
    metadata = {"frame_rate": store.frame_rate} if store.frame_rate else {}
    with open_writer(output, shape, out_dtype, overwrite=overwrite, chunk_frames=chunk_frames,
                     metadata=metadata, inputs=inputs) as writer:
        if workers <= 1:
            with blas_threads(1):
                for b in bounds:
                    writer.write(render(b))
                    bar.update()
        else:
            from concurrent.futures import ThreadPoolExecutor

            with blas_threads(1), ThreadPoolExecutor(workers) as pool:
                # Bounded look-ahead keeps memory flat whatever the movie length.
                pending = []
                for b in bounds:
                    pending.append(pool.submit(render, b))
                    if len(pending) > 2 * workers:
                        writer.write(pending.pop(0).result())
                        bar.update()
                for fut in pending:
                    writer.write(fut.result())
                    bar.update()
    bar.close()
    return {"output": str(output), "shape": list(shape), "dtype": str(out_dtype)}
