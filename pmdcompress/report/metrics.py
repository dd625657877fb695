"""The report's numbers, gathered from the modules that compute them (one import for the report and its tests).

- :mod:`.kernels`: numba kernels of the pass and the maps of their sums;
- :mod:`.noise`: Welch spectra and the store's expected residual;
- :mod:`.photon_transfer`: camera gain and offset from frame pairs;
- :mod:`.heldout`: the held-out crop and the scoring of its even/odd fits;
- :mod:`.passes`: the single streaming pass over the movie;
- :mod:`.summary`: from sums to metrics, maps, curves and flagged regions;
- :mod:`.samples`: regions, traces, frames and clips for the figures.

Every number is defined in ``docs/snr.md``; the anchor of its definition is
recorded beside it in ``report.json``.
"""

from __future__ import annotations

from ..preprocess import WELCH_SEGMENT, periodic_hann  # noqa: F401, E402
from .heldout import (  # noqa: F401
    HELDOUT_BYTES,
    HELDOUT_CROP,
    HELDOUT_FRAMES,
    heldout_crop,
    heldout_frames,
    score_heldout,
)
from .kernels import (  # noqa: F401
    _BLOCK,
    DENOISED,
    DIFFERENCE,
    DIRECTIONS,
    RAW,
    RESIDUAL,
    SIGNALS,
    SMOOTH_SIGMA,
    _band_kernel,
    _moments_kernel,
    _neighbour_kernel,
    _window_kernel,
    local_correlation,
    moments,
    neighbour_correlations,
    neighbour_sums,
    smooth,
)
from .noise import (  # noqa: F401
    Spectra,
    filter_fractions,
    hat_diagonal,
    rank_map,
)
from .passes import (  # noqa: F401
    CHUNK_PIXELS,
    CORRELATION_FRAMES,
    PAIRS_PER_CHUNK,
    SPECTRUM_FRAMES,
    PassResult,
    Plan,
    _merge,
    _spread,
    make_plan,
    stream,
)
from .photon_transfer import (  # noqa: F401
    _huber_line,
    fit_photon_transfer,
    integer_range,
    photon_pairs,
)
from .samples import (  # noqa: F401
    pick_regions,
    sample_clip,
    sample_frames,
    sample_traces,
)
from .summary import (  # noqa: F401
    ACTIVE_FRACTION,
    CORRELATION_FLAG,
    RESIDUAL_HIGH,
    RESIDUAL_LOW,
    _mean,
    _median,
    _ratio,
    active_mask,
    flagged_regions,
    metric,
    summarize,
    summarize_heldout,
    summarize_photon_transfer,
    summarize_truth,
)
