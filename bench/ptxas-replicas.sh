#!/usr/bin/env bash
# Static resource use of the SB/SA replica kernels as ptxas reports it
# (-Xptxas -v): registers, spills, stack and static shared memory per kernel,
# for sm_90 and sm_80. The legacy:: kernels are the earlier ones, still
# compiled (MARBM_REPLICA_KERNELS=legacy), so the page holds before and after.
# These figures need no GPU. Records bench/results/ptxas-replicas.md.
#
# usage: bench/ptxas-replicas.sh [CUDA_BUILD_DIR]
#   CUDA_BUILD_DIR: a build directory configured with the CUDA engine
#   (default build/), for its generated headers and include list.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
includes="$build/CMakeFiles/marbm_cuda.dir/includes_CUDA.rsp"
if [[ ! -f "$includes" ]]; then
  echo "ptxas-replicas.sh: '$build' is not a build directory configured with the CUDA engine" >&2
  exit 2
fi
nvcc="$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")"
nvcc="${nvcc:-nvcc}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

rows=""
for arch in 90 80; do
  for source in cuda/mode_sb.cu cuda/mode_sa.cu; do
    (cd "$build" && "$nvcc" -DMARBM_HAVE_CUDA=1 --options-file "$includes" -O3 -DNDEBUG \
      "--generate-code=arch=compute_$arch,code=[sm_$arch]" --expt-relaxed-constexpr -std=c++20 -Xptxas -v \
      -x cu -c "$root/$source" -o "$work/out.o") >"$work/log" 2>&1
    # ptxas prints per kernel: the entry name, then its stack/spills, then
    # registers and shared memory.
    rows+="$(c++filt <"$work/log" | awk -v arch="sm_$arch" '
      /Compiling entry function/ {
        name = $0
        sub(/.*Compiling entry function .(void )?/, "", name)
        sub(/marbm::detail::\(anonymous namespace\)::/, "", name)
        sub(/\(.*/, "", name)
      }
      /bytes stack frame/ {
        stack = $1; spill_stores = $5; spill_loads = $9
      }
      /Used [0-9]+ registers/ {
        match($0, /Used [0-9]+ registers/); registers = substr($0, RSTART + 5, RLENGTH - 15)
        smem = 0
        if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11)
        printf "| %s | `%s` | %s | %s | %s | %s | %s |\n", arch, name, registers, spill_stores, spill_loads, stack, smem
      }')"$'\n'
  done
done

commit="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- cuda host || echo '+uncommitted')"
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
version="$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
{
  echo "# ptxas resource use of the SB/SA replica kernels"
  echo
  echo "Static figures from ptxas (\`-Xptxas -v\`), no GPU involved. \`legacy::\` kernels are the earlier ones,"
  echo "kept selectable with \`MARBM_REPLICA_KERNELS=legacy\`; the others are the current ones:"
  echo "\`sb_replicas_kernel<owned, discrete>\` per size class (units per lane), \`sa_replicas_kernel\`, and the"
  echo "cuBLAS path's \`sb_update_kernel\`, \`sa_sample4_kernel\`, \`sa_initial4_kernel\`. Launch bounds: 1,024"
  echo "threads (64 registers) for SB classes 1 to 4 and for SA, 512 (128 registers) for SB class 8"
  echo "(detail/replica_plan.hpp). None of these kernels has run on a GPU yet."
  echo
  echo "- date: $(date -u +%Y-%m-%d)"
  echo "- commit: $commit"
  echo "- machine: $machine; nvcc $version"
  echo "- command: \`bench/ptxas-replicas.sh $(basename "$build")\`"
  echo
  echo "| arch | kernel | registers | spill stores (B) | spill loads (B) | stack (B) | static shared (B) |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  printf '%s' "$rows" | sed '/^$/d'
} >"$root/bench/results/ptxas-replicas.md"
echo "wrote bench/results/ptxas-replicas.md"
