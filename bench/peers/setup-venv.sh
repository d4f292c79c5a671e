#!/usr/bin/env bash
# Creates bench/.venv with the peer solvers the ground-state benchmark
# compares against, all from PyPI: dwave-samplers (simulated annealing, C++
# core), simulated-bifurcation (PyTorch), what the instance reader needs and
# matplotlib for the page's picture.
# Usage: bench/peers/setup-venv.sh [python]   (default python3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv"
python="${1:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet numpy safetensors dwave-samplers simulated-bifurcation matplotlib
"$venv/bin/python" - <<'PY'
import dwave.samplers, simulated_bifurcation, torch, safetensors, numpy
print("peers ready: dwave-samplers", getattr(dwave.samplers, "__version__", "?"),
      "| simulated-bifurcation", getattr(simulated_bifurcation, "__version__", "?"),
      "| torch", torch.__version__)
PY
