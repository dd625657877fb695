"""napari itself opens a ``.pmd.zarr`` store through our reader (napari's ViewerModel, no display).

tests/test_interop.py checks the reader hook through npe2 (napari's plugin engine) without installing
napari's Qt stack in CI; this script does the same through a real ``napari.Viewer`` in its own venv
(default /work/peers/napari-venv: ``python -m venv ...; pip install "napari[pyqt6]"`` plus pmdcompress's
dependencies), with the worktree on PYTHONPATH and the manifest registered by hand (pmdcompress is not
pip-installed there).  It prints a table and writes benchmarks/results/interop_napari.json.

    python benchmarks/interop_napari.py [--napari-python /work/peers/napari-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "interop_napari.json"


def open_in_napari(path: str) -> dict:
    """Runs inside the napari venv."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import time

    import napari
    import numpy as np
    from npe2 import PluginManager, PluginManifest

    import pmdcompress
    import pmdcompress.napari as reader

    pm = PluginManager.instance()
    manifest = PluginManifest.from_file(Path(reader.__file__).with_name("napari.yaml"))
    if manifest.name not in pm._manifests:
        pm.register(manifest)
    # napari's viewer model: the same reader and layer machinery as the window, without Qt or OpenGL
    # (there is no GL context offscreen here); napari.Viewer wraps exactly this model.
    from napari.components import ViewerModel

    viewer = ViewerModel()
    t = time.perf_counter()
    layers = viewer.open(path, plugin="pmdcompress")
    open_s = time.perf_counter() - t
    layer = layers[0]
    store = pmdcompress.open(path)
    steps = []
    for frame in (0, store.shape[0] // 2, store.shape[0] - 1):
        t = time.perf_counter()
        viewer.dims.set_current_step(0, frame)
        shown = np.asarray(layer._slice.image.raw) if hasattr(layer, "_slice") else np.asarray(layer.data[frame])
        steps.append(time.perf_counter() - t)
        np.testing.assert_allclose(shown, store[frame], rtol=1e-5, atol=1e-3)
    out = {
        "napari_version": napari.__version__, "n_layers": len(layers), "layer_type": type(layer).__name__,
        "shape": list(layer.data.shape), "lazy": type(layer.data).__module__.startswith("dask"),
        "chunks": list(layer.data.chunksize), "scale": [float(s) for s in layer.scale],
        "units": [str(u) for u in getattr(layer, "units", [])], "open_s": open_s,
        "step_s": steps, "shown_frames_match_store": True,
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--napari-python", default="/work/peers/napari-venv/bin/python")
    ap.add_argument("--open", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.open:
        print(json.dumps(open_in_napari(args.open)))
        return

    import pmdcompress
    from pmdcompress.simulate import simulate_movie

    with tempfile.TemporaryDirectory() as tmp:
        movie = Path(tmp) / "m.tif"
        simulate_movie(movie, n_frames=1000, shape=(128, 160), n_neurons=20, seed=3)
        pmdcompress.compress(movie, Path(tmp) / "m.pmd.zarr", workers=1)
        proc = subprocess.run([args.napari_python, __file__, "--open", str(Path(tmp) / "m.pmd.zarr")],
                              capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT)))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    record = json.loads(lines[-1]) if lines else {"error": proc.stderr.strip()[-3000:]}
    record["movie"] = "pmd simulate 1000x128x160 at 30 Hz"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print("| check | result |\n|---|---|")
    for key in ("napari_version", "n_layers", "layer_type", "shape", "lazy", "chunks", "scale", "units", "open_s",
                "step_s", "shown_frames_match_store", "error"):
        if key in record:
            print(f"| {key} | {record[key]} |")


if __name__ == "__main__":
    main()
