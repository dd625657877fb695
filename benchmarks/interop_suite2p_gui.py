"""suite2p's own GUI loads a ``pmd demix --export suite2p`` folder (offscreen, no display).

suite2p needs torch and Qt, so it lives in its own venv (default /work/peers/suite2p-venv:
``python -m venv ...; pip install torch suite2p qtpy pyqt6 pyqtgraph``).  This script

1. simulates a small movie, compresses and demixes it with ``--export suite2p`` (this venv);
2. runs itself with the suite2p venv's python (``--load``): ``QT_QPA_PLATFORM=offscreen``, builds
   suite2p's ``MainWindow(statfile=.../plane0/stat.npy)`` exactly as ``suite2p --statfile`` does, which
   runs ``gui.io.load_proc`` -> ``load_files`` + ``load_to_GUI`` (masks, views, ``ops['diameter']``,
   the trace panel with ``F - 0.7 * Fneu``), and reports what the GUI loaded;
3. prints a table and writes benchmarks/results/interop_suite2p_gui.json.

    python benchmarks/interop_suite2p_gui.py [--suite2p-python /work/peers/suite2p-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "interop_suite2p_gui.json"


def load_in_gui(plane: str) -> dict:
    """Runs inside the suite2p venv: open the folder in suite2p's GUI, offscreen."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    import suite2p
    from qtpy.QtWidgets import QApplication
    from suite2p.gui import gui2p

    app = QApplication.instance() or QApplication([])
    window = gui2p.MainWindow(statfile=os.path.join(plane, "stat.npy"))
    loaded = bool(getattr(window, "loaded", False))
    out = {"suite2p_version": suite2p.version if hasattr(suite2p, "version") else None, "loaded": loaded}
    if loaded:
        f, fneu = window.Fcell, window.Fneu
        out.update(
            n_rois=int(len(window.stat)),
            n_cells=int(window.iscell.sum()),
            ops_save_path=str(window.ops["save_path"]),
            ops_diameter=[float(d) for d in np.atleast_1d(window.ops["diameter"])],
            ops_fs=float(window.ops["fs"]),
            gui_bin_frames=int(window.bin),
            dF_first_roi_head=[float(v) for v in (f - 0.7 * fneu)[0, :5]],
        )
    window.close()
    app.quit()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite2p-python", default="/work/peers/suite2p-venv/bin/python")
    ap.add_argument("--load", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:
        print(json.dumps(load_in_gui(args.load)))
        return

    import numpy as np

    import pmdcompress
    from pmdcompress.demix import demix
    from pmdcompress.simulate import simulate_movie

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        simulate_movie(root / "m.tif", n_frames=600, shape=(64, 80), n_neurons=12, photons=3.0, seed=5)
        store = pmdcompress.compress(root / "m.tif", root / "m.pmd.zarr", workers=1)
        result = demix(store, root / "m.demix.zarr", export="suite2p", figures=False)
        plane = root / "m.demix.suite2p" / "plane0"
        proc = subprocess.run([args.suite2p_python, __file__, "--load", str(plane)], capture_output=True, text=True,
                              env=dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=""), timeout=600)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        gui = json.loads(lines[-1]) if lines else {"loaded": False, "error": proc.stderr.strip()[-2000:]}
        expected = (result.raw_traces[0, :5]).tolist()
        record = {
            "movie": "pmd simulate 600x64x80, 12 neurons, 30 Hz", "n_components": int(result.n_components),
            "gui": gui, "our_raw_trace_head": expected, "final_save_path_expected": str(plane.resolve()),
            "returncode": proc.returncode,
        }
        if gui.get("loaded"):
            record["F_minus_0.7Fneu_equals_raw"] = bool(np.allclose(gui["dF_first_roi_head"], expected, rtol=1e-4,
                                                                    atol=1e-2))
            record["save_path_is_final"] = gui["ops_save_path"] == str(plane.resolve())
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    g = record["gui"]
    print("| check | result |\n|---|---|")
    print(f"| suite2p GUI MainWindow(statfile) loaded | {g.get('loaded')} |")
    for key in ("n_rois", "ops_fs", "ops_diameter", "gui_bin_frames"):
        print(f"| {key} | {g.get(key)} |")
    print(f"| F - 0.7 Fneu == our raw trace | {record.get('F_minus_0.7Fneu_equals_raw')} |")
    print(f"| ops['save_path'] is the final folder | {record.get('save_path_is_final')} |")
    if not g.get("loaded"):
        print(g.get("error", ""), file=sys.stderr)


if __name__ == "__main__":
    main()
