#!/usr/bin/env bash
# Static resource use of the device mode search's exhaustive, polish and
# best-candidate kernels as ptxas reports it (-Xptxas -v): registers, spills,
# stack and static shared memory per kernel, sm_90 and sm_80, for the sources
# of this tree ("current": the single-model kernels and their *_batched_kernel
# twins, which search several models in one launch) and, with BASE, for the
# sources of that git revision ("base"), so that the page holds before and
# after. These figures need no GPU. Records bench/results/ptxas-mode-search.md.
#
# usage: bench/ptxas-mode-search.sh [CUDA_BUILD_DIR [BASE]]
#   CUDA_BUILD_DIR: a build directory configured with the CUDA engine
#   (default build/), for its generated headers and include list.
#   BASE: a git revision whose cuda/mode_exhaustive.cu and cuda/mode_search.cu
#   are compiled beside (its cuda/, host/ and include/ headers first).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
base="${2:-}"
includes="$build/CMakeFiles/marbm_cuda.dir/includes_CUDA.rsp"
if [[ ! -f "$includes" ]]; then
  echo "ptxas-mode-search.sh: '$build' is not a build directory configured with the CUDA engine" >&2
  exit 2
fi
nvcc="$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")"
nvcc="${nvcc:-nvcc}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

trees=("current:$root")
if [[ -n "$base" ]]; then
  mkdir -p "$work/base"
  git -C "$root" archive "$base" cuda host include | tar -x -C "$work/base"
  trees+=("base:$work/base")
fi

rows=""
for tree in "${trees[@]}"; do
  label="${tree%%:*}"
  source_root="${tree#*:}"
  for arch in 90 80; do
    for source in cuda/mode_exhaustive.cu cuda/mode_search.cu; do
      (cd "$build" && "$nvcc" -DMARBM_HAVE_CUDA=1 -I"$source_root/host" -I"$source_root/include" \
        --options-file "$includes" -O3 -DNDEBUG "--generate-code=arch=compute_$arch,code=[sm_$arch]" \
        --expt-relaxed-constexpr -std=c++20 -Xptxas -v -x cu -c "$source_root/$source" -o "$work/out.o") \
        >"$work/log" 2>&1
      rows+="$(c++filt <"$work/log" | awk -v arch="sm_$arch" -v label="$label" '
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
          if (name ~ /exhaustive|polish|best_candidate|transpose/)
            printf "| %s | %s | `%s` | %s | %s | %s | %s | %s |\n", label, arch, name, registers, spill_stores, spill_loads, stack, smem
        }')"$'\n'
    done
  done
done

commit="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- cuda host || echo '+uncommitted')"
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
version="$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
{
  echo "# ptxas resource use of the exhaustive mode search kernels, single and batched"
  echo
  echo "Static figures from ptxas (\`-Xptxas -v\`), no GPU involved. \`current\`: this tree, where each"
  echo "single-model kernel's body is a device function that its \`*_batched_kernel\` twin (several models in"
  echo "one launch, the batched ensemble's mode steps) runs too; \`base\`: the sources at ${base:-(not given)}."
  echo "None of the batched kernels has run on a GPU yet."
  echo
  echo "- date: $(date -u +%Y-%m-%d)"
  echo "- commit: $commit"
  echo "- machine: $machine; nvcc $version"
  echo "- command: \`bench/ptxas-mode-search.sh $(basename "$build")${base:+ $base}\`"
  echo
  echo "| tree | arch | kernel | registers | spill stores (B) | spill loads (B) | stack (B) | static shared (B) |"
  echo "|---|---|---|---:|---:|---:|---:|---:|"
  printf '%s' "$rows" | sed '/^$/d'
} >"$root/bench/results/ptxas-mode-search.md"
echo "wrote bench/results/ptxas-mode-search.md"
