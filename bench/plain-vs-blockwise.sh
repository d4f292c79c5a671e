#!/usr/bin/env bash
# What `marbm train --backend cpu` pays for writing the same bits as
# `mpiexec -n R marbm train`: it runs the data-parallel engine with one rank
# (64-row blocks of float64 statistics summed in block order) instead of the
# plain cpu engine (one pass over the batch). CD-1, one thread, process CPU
# seconds per update (median of the repeats, the two engines alternated), at
# 784 x 500 batch 100 and at 6 x 6 batch 10. Records
# bench/results/plain-vs-blockwise.md.
#
# usage: bench/plain-vs-blockwise.sh [BUILD_DIR]   (default ./build)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${1:-$root/build}"
tool="$build/bench/plain_vs_blockwise"
if [[ ! -x "$tool" ]]; then
  echo "plain-vs-blockwise.sh: no bench/plain_vs_blockwise in '$build' (build it first)" >&2
  exit 2
fi
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
large="$(OMP_NUM_THREADS=1 "$tool" 784 500 100 40 5)"
small="$(OMP_NUM_THREADS=1 "$tool" 6 6 10 20000 5)"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
value() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" <<<"$1"; }
row() {
  awk -v shape="$1" -v p="$(value "$2" plain_cpu_seconds_per_update)" -v b="$(value "$2" blockwise_cpu_seconds_per_update)" \
    -v u="$(value "$2" updates)" 'BEGIN { printf "| %s | %d | %.4g | %.4g | %+.1f%% |\n", shape, u, p * 1e3, b * 1e3, (b / p - 1) * 100 }'
}
cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
{
  echo "# The cost of \`marbm train\`'s data-parallel bits on one process"
  echo
  echo "\`marbm train --backend cpu\` runs the data-parallel engine with one rank, so that its file has the bits"
  echo "of \`mpiexec -n R marbm train\` (tested for R = 1, 2, 3 by \`distributed_train_cli_1_2_3_ranks\`). Below:"
  echo "CD-1 updates on one thread, process CPU milliseconds per update (median of 5 repeats, the engines"
  echo "alternated), plain cpu engine against the one-rank data-parallel engine."
  echo
  echo "| model, batch | updates per repeat | plain (ms/update) | one-rank data-parallel (ms/update) | difference |"
  echo "|---|---:|---:|---:|---:|"
  row "784 x 500, batch 100" "$large"
  row "6 x 6, batch 10" "$small"
  echo
  echo "Where the difference comes from: each 64-row block's float32 products (positive and negative phase)"
  echo "are widened to float64, and the blocks are summed in block order, so a model of BLAS size pays extra"
  echo "passes over its n x m statistics per block, and its GEMMs run on 64-row pieces instead of the whole"
  echo "batch. A tiny model's statistics are float64 loop sums on both paths, so it pays about nothing. This is"
  echo 'the price of the equality with `mpiexec` runs on the cpu; the library'"'"'s plain cpu engine'
  echo '(`make_engine(Backend::cpu)`, Python'"'"'s `train()`) keeps the one-pass sum.'
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $commit"
  echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, shared with other builds and measurements (load average"
  echo "  before / after: $load_before / $load_after); CPU time, not wall time, for that reason"
  echo "- command: \`bench/plain-vs-blockwise.sh ${1:-build}\`"
  echo "- raw: \`$large\`"
  echo "  \`$small\`"
} >"$root/bench/results/plain-vs-blockwise.md"
cat "$root/bench/results/plain-vs-blockwise.md"
