#!/usr/bin/env bash
# TTS99 of marbm's CPU ground-state solvers against dwave-samplers and the
# simulated-bifurcation package on the same instances, one thread each, in
# one run. Prints every setting, then per size each solver's best TTS99 and
# the ratio peer / marbm-best.
#
# Usage: bench/peers/compare-mode.sh [BUILD_DIR] [SIZES] [COUNT]
#   BUILD_DIR  a marbm build with bench_mode (default: build)
#   SIZES      comma-separated layer sizes, n = m (default 8,12,16,20,24)
#   COUNT      instances per size (default 20)
# Needs bench/.venv (bench/peers/setup-venv.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build}"
sizes="${2:-8,12,16,20,24}"
count="${3:-20}"
bench="$build/bench/bench_mode"
python="$root/bench/.venv/bin/python"
[[ -x "$bench" ]] || { echo "compare-mode.sh: $bench not found (build the bench_mode target)" >&2; exit 2; }
[[ -x "$python" ]] || { echo "compare-mode.sh: $python not found (run bench/peers/setup-venv.sh)" >&2; exit 2; }

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$bench" --write-instances="$work/instances" --sizes="$sizes" --count="$count" >&2
"$bench" --tts --steps-grid --sizes="$sizes" --count="$count" | tee "$work/marbm.tsv"
"$python" "$here/peers_mode.py" "$work/instances" --sizes="$sizes" | tee "$work/peers.tsv"

echo
echo "# best TTS99 per solver (over its steps grid), seconds; ratio = solver / best marbm"
cat "$work/marbm.tsv" "$work/peers.tsv" | "$python" "$here/summarise_tts.py"
