"""Every on-disk format of pmdcompress: one module each, the only place that knows its layout.

=====================  ===================================  =========================================
module                 file                                 reader / writer
=====================  ===================================  =========================================
:mod:`.store`          ``*.pmd.zarr`` (the factors)         ``read_store`` / ``create_store`` + ``finish_store``
:mod:`.demix`          ``*.demix.zarr``                     ``read_demix`` / ``write_demix``
:mod:`.truth`          ``<stem>.truth.zarr``                ``read_truth`` / ``create_truth`` + ``finish_truth``
:mod:`.report`         ``report.json``                      ``read_report`` / ``write_report``
:mod:`.batch_status`   a batch movie's ``status.json``      ``read_status`` / ``write_status``
:mod:`.null_cache`     ``null-<digest>.json`` (rank test)   ``read_null_cache`` / ``write_null_cache``
=====================  ===================================  =========================================

:mod:`.store_codes` holds the store's integer codes (version 4: image, delta, noise and mean codes).
Each has a :class:`~._version.FormatId` (name, integer version written,
versions read) checked by the one helper :func:`~._version.read_version`.
docs/format.md describes every layout.
"""
