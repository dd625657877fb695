#!/usr/bin/env bash
# Create the isolated venv used to run the peer tool localmd 0.0.4.
#   bash benchmarks/peers/setup_localmd.sh
# Venv: benchmarks/.venv-localmd (gitignored). Idempotent: does nothing if the
# venv already imports localmd. Override the location with LOCALMD_VENV=...
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LOCALMD_VENV:-$HERE/../.venv-localmd}"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import localmd, torch, tifffile, psutil" >/dev/null 2>&1; then
    echo "localmd venv already set up at $VENV"
    exit 0
fi

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip wheel
# torch is pinned to 2.13.0: a CPU wheel (2.13.0+cpu) is on local disk and
# pip prefers it; localmd 0.0.4 does not pin torch.
"$VENV/bin/python" -m pip install "torch==2.13.0" "localmd==0.0.4" psutil tifffile

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import torch, localmd  # noqa: F401
print("localmd", md.version("localmd"), "torch", torch.__version__,
      "jax", md.version("jax"))
PY
echo "localmd venv ready at $VENV"
