"""The pipeline: the stages that turn a movie into a store and back, run as one job or a batch.

``compress`` (movie -> store), ``decompress`` (store -> movie file), ``batch`` (many movies, many steps) and
``cluster`` (the dask cluster a batch runs on).  The pipeline sits above io, preprocess, tiling, solver, store,
reconstruct, report and demix, and below the command line.
"""
