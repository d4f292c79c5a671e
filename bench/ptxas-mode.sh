#!/usr/bin/env bash
# Static resource use (nvcc -Xptxas -v) of the exhaustive mode search kernels
# and the mode step's E_bar kernel, as compiled now and as compiled at a base
# revision (the kernels before the one-state-per-thread search). Registers,
# spills, stack and shared memory are what ptxas reports; nothing here runs
# on a device. Records bench/results/ptxas-mode.md.
#
# usage: bench/ptxas-mode.sh [BASE_REVISION] [ARCH]   (defaults: 7d5625d, sm_90)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
base="${1:-7d5625d}"
arch="${2:-sm_90}"
nvcc="${NVCC:-nvcc}"
command -v "$nvcc" >/dev/null || { echo "ptxas-mode.sh: no nvcc (set NVCC)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ptxas -v of one source file as "kernel | registers | spill stores/loads | stack | smem" rows.
report() {
  local source="$1"
  "$nvcc" -arch="$arch" -O3 --expt-relaxed-constexpr -std=c++20 -Xptxas -v -I"$root/include" -I"$root/host" \
    -I"$root/cuda" -c "$source" -o "$work/out.o" 2>&1 | c++filt | awk '
      /Function properties for/ { name = $0; sub(/.*Function properties for /, "", name);
                                  gsub(/\(anonymous namespace\)::/, "", name); sub(/\(.*/, "", name);
                                  sub(/^void /, "", name); sub(/.*::/, "", name) }
      /stack frame/ { stack = $1; spill = $5 " / " $9 }
      /Used [0-9]+ registers/ { regs = $5; smem = "0"; if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11);
                                printf "| %s | %s | %s | %s | %s |\n", name, regs, spill, stack, smem }'
}

mkdir -p "$work/base/cuda"
git -C "$root" show "$base:cuda/mode_exhaustive.cu" >"$work/base/cuda/mode_exhaustive.cu"
before="$(report "$work/base/cuda/mode_exhaustive.cu")"
after="$(report "$root/cuda/mode_exhaustive.cu")"
mean="$(report "$root/cuda/mean_energy.cu")"

commit="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- cuda host || echo '+changes')"
header="| kernel | registers | spill stores / loads (bytes) | stack (bytes) | static smem (bytes) |
|---|---|---|---|---|"
cat >"$root/bench/results/ptxas-mode.md" <<PAGE
# Exhaustive mode search and E_bar kernels: static resources (ptxas, $arch)

Date $(date -u +%Y-%m-%d), commit $commit, $("$nvcc" --version | tail -1), on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(uname -m)).
Command: \`bench/ptxas-mode.sh $base $arch\`. These are compile-time figures only: none of these kernels
has run on a device yet. Dynamic shared memory is not in the table: the thread kernel takes
chunk_bits x (L + 1) doubles for L <= 32, floats for L = 64 (at most 62 x 33 x 8 = 16,368 bytes), the warp kernel l float64 per warp.

## Before (revision $base): one state per warp

$header
$before

## Now: one state per thread (L = 16, 32, 64 fields in registers), the warp kernel kept beyond 64 units

$header
$after

## E_bar of a mode step on the device

$header
$mean
PAGE
cat "$root/bench/results/ptxas-mode.md"
