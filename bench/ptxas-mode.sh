#!/usr/bin/env bash
# Static resource use of the exhaustive mode search kernels and the E_bar
# kernel as ptxas reports it (-Xptxas -v, sm_90), before (BASE: one state per
# warp) and now (one chunk of states per thread when the larger layer has
# <= 64 units). These figures need no GPU. Records bench/results/ptxas-mode.md.
#
# usage: bench/ptxas-mode.sh [BASE]   (BASE: a git revision, default 7d5625d)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base="${1:-7d5625d}"
page="$here/results/ptxas-mode.md"
{
  echo "# Exhaustive mode search and E_bar kernels: static resources (ptxas, sm_90)"
  echo
  python3 "$here/ptxas.py" --provenance "bench/ptxas-mode.sh $base"
  echo
  echo "These are compile-time figures only: none of these kernels has run on a device yet. Dynamic shared"
  echo "memory is not in the table: the thread kernel takes chunk_bits x (L + 1) doubles for L <= 32, floats for"
  echo "L = 64 (at most 62 x 33 x 8 = 16,368 bytes), the warp kernel l float64 per warp."
  echo
  echo "## Exhaustive search: before (one state per warp) and now (one state per thread, L = 16, 32, 64 fields in registers; the warp kernel kept beyond 64 units)"
  echo
  python3 "$here/ptxas.py" --base "$base" --only '^exhaustive' cuda/mode_exhaustive.cu
  echo
  echo "## E_bar of a mode step on the device"
  echo
  python3 "$here/ptxas.py" cuda/mean_energy.cu
} >"$page"
echo "wrote $page"
