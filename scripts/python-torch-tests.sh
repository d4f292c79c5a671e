#!/usr/bin/env bash
# Runs the Python suite with PyTorch, whose tests (DLPack in and out, training
# on tensors, CUDA tensors where a device is) skip where torch is missing, as
# in CI. Makes a virtual environment over the Python the build's module is for
# (with that Python's numpy, pytest and scikit-learn) in the git-ignored
# .deps/torch-venv, installs torch there from PyPI (a few GB: the PyPI wheel
# brings CUDA libraries) unless it has it, and runs pytest on the module in
# BUILD/python with MARBM_REQUIRE_TORCH=1, so that a missing torch fails
# instead of skipping.
# Usage: scripts/python-torch-tests.sh [BUILD]   (default build; extra pytest
# arguments after the folder)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
shift || true
python="$(sed -n 's/^_\{0,1\}Python_EXECUTABLE:[A-Z]*=//p' "$build/CMakeCache.txt" | head -n 1)"
if [ -z "$python" ] || [ ! -d "$build/python/marbm" ]; then
  echo "python-torch-tests: $build has no Python module (configure with MARBM_PYTHON=ON and build it)" >&2
  exit 2
fi
venv="$root/.deps/torch-venv"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv --system-site-packages "$venv"
fi
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet torch
fi
cli="$build/marbm"
MARBM_REQUIRE_TORCH=1 PYTHONPATH="$build/python" MARBM_CLI="$cli" OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs "$root/python/tests" "$@"
