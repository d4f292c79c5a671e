#!/usr/bin/env bash
# Ground-state solvers on trained models: checkpoints of CD-1, PCD-1 and
# mode-assisted runs on bars and stripes 4x4, UCI digits (64x16, 64x24) and
# MNIST (784x20, 784x64, 784x500), every solver with its defaults on one
# thread, against the exhaustive ground energy (enumerable models) or the
# best energy found (the others, including a 10x longer local search).
# Writes bench/results/mode-trained.md and mode-trained.csv.
#
# usage: bench/mode-trained.sh [BUILD_DIR]   (about 10 minutes on 2 cores)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${1:-$root/build}"
tool="$build/bench/mode_trained"
if [[ ! -x "$tool" ]]; then
  echo "mode-trained.sh: no bench/mode_trained in '$build' (build the mode_trained target first)" >&2
  exit 2
fi
data_dir="${MARBM_DATA_DIR:-$root/../shared/data}"
results="$root/bench/results"
mkdir -p "$results"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
"$tool" --data-dir "$data_dir" --out "$results/mode-trained.csv" >"$work/log.txt"
wall=$(( $(date +%s) - start ))
cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with local changes)' || true)"

{
  echo "# Ground states of trained models"
  echo
  echo "Checkpoints at 1/6, 1/2 and all of 3,000 updates (784x500: 500 and 1,000 updates, CD-1 only) of CD-1,"
  echo "PCD-1 (100 chains) and mode-assisted runs, seeds 1 and 2: bars and stripes 4x4 (16x16, batch 30, lr 0.1),"
  echo "UCI digits binarized at 8 (64x16, 64x24; batch 100, lr 0.05), MNIST first 9,000 test images binarized at"
  echo "128 (784x20, 784x64, 784x500; batch 100, lr 0.05). Every solver runs with its defaults, seed 7, one"
  echo "thread. \`local\` starts, as in training, from 100 data rows besides its random starts. Reference:"
  echo "the exhaustive ground energy where the smaller layer has <= 24 units, else the lowest energy any solver"
  echo "found, including a local search with 10x the random starts and perturbation rounds. Solved: within"
  echo "1e-6 relative of the reference."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $commit$dirty"
  echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores (one used)"
  echo "- command: \`bench/mode-trained.sh\` ($wall s wall)"
  echo
  echo '```'
  sed -n '/^summary/,$p' "$work/log.txt"
  echo '```'
  echo
  echo "Every model (reference energy and time, then each solver's energy and time; MISS where it is above the"
  echo "reference):"
  echo
  echo '```'
  sed -n '1,/^$/p' "$work/log.txt" | sed "s|$data_dir|DATA|g"
  echo '```'
} >"$results/mode-trained.md"
sed -n '/^summary/,$p' "$work/log.txt"
echo "recorded $results/mode-trained.md ($wall s)"
