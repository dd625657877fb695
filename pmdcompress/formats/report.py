"""``report.json``: every number of a report, with the name of its definition (docs/snr.md).

Strict JSON (NaN written as null, infinities as the strings ``"inf"``/``"-inf"``),
indented by one space.  The top-level keys ``format``/``format_version``
(:data:`REPORT`) identify it; the rest is the report's content as described in
docs/format.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._version import FormatId, read_json, read_version

#: Version 2 adds the ``photon_split`` section and the ``photon_split_*`` metrics (version 1 reports have
#: neither; they read as they are).  Version 3: the split denoises ``crop`` (a margin around the scored
#: region) and scores ``scored`` only (``margin`` says how much); a refused split carries no scores; the
#: noise-only residual ratio and local correlation leave out what a ring of pixels explains (``corr_noise``).
#: Version 4: a movie without a shot-noise curve is split in its own units (``counts.split`` ``"gaussian"``,
#: ``counts.units`` ``"ADU"``, ``counts.shot_noise_reason``) where version 3 refused it; ``signal_removed``
#: (``photon_split_signal_removed``, ``_active``) is the signal shared with the vertical neighbours that the residual
#: still follows, and version 3's per-pixel form is kept beside it as ``signal_removed_pixel``.
#: Version 5: the split models a noise shared along whole rows or columns (``counts.line_noise``); the whole frame
#: is scored where it costs at most twice the crop (``crop``/``scored`` say which); the ``active`` pixels are those
#: whose signal is shared with the pixels two rows away (version 4: variance over mean); each set adds
#: ``signal_removed_low``/``_high``; ``error_reduction_high`` null beside a set ``_low`` means open above (version 4:
#: both null meant no interval).  Session 11 adds, within version 5, the ``photon_split_whole`` section and the
#: ``photon_split_whole_*`` metrics (the whole movie's figure, docs/snr.md#photon-splitting-whole): added fields only.
REPORT = FormatId("pmdcompress-report", 5, (1, 2, 3, 4, 5), "report")
REPORT_NAME = "report.json"


@dataclass(frozen=True, eq=False)
class ReportFile:
    """A ``report.json`` as read: its version and its content (the whole mapping)."""

    format_version: int
    content: dict


def strict_json(obj):
    """``obj`` with numpy values converted and non-finite floats made strict JSON."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    if isinstance(obj, np.generic):
        return strict_json(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def write_report(folder, report: dict) -> Path:
    """Write ``report`` (which starts with the header of :data:`REPORT`) as ``folder/report.json``."""
    path = Path(folder) / REPORT_NAME
    path.write_text(json.dumps(strict_json(report), indent=1, allow_nan=False) + "\n")
    return path


def read_report(path) -> ReportFile:
    """Read a ``report.json`` (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_NAME
    content = read_json(path, "report")
    return ReportFile(read_version(content, REPORT, str(path)), content)
