#!/usr/bin/env bash
# Static resource use of the fused ensemble kernels (cuda/ensemble.cu) as
# ptxas reports it (-Xptxas -v, sm_90): the block kernel at BASE (before),
# both kernels now, and the warp kernel with a launch bound of 8 blocks per
# SM (what the chosen bound of 4 avoids). These figures need no GPU.
# Records bench/results/ptxas-ensemble.md.
#
# usage: bench/ptxas-ensemble.sh [BASE]   (BASE: a git revision, default 7d5625d)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
base="${1:-7d5625d}"
page="$here/results/ptxas-ensemble.md"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/bound8"
cp -r "$root/cuda" "$root/host" "$root/include" "$scratch/bound8/"
sed -i 's/__launch_bounds__(kWarp \* kWarpKernelMembersPerBlock, 4)/__launch_bounds__(kWarp * kWarpKernelMembersPerBlock, 8)/' \
  "$scratch/bound8/cuda/ensemble.cu"
grep -q 'kWarpKernelMembersPerBlock, 8)' "$scratch/bound8/cuda/ensemble.cu" ||
  { echo "ptxas-ensemble.sh: the warp kernel's launch bound was not found in cuda/ensemble.cu" >&2; exit 1; }
{
  echo "# Fused ensemble kernels: ptxas resource use at sm_90"
  echo
  python3 "$here/ptxas.py" --provenance "bench/ptxas-ensemble.sh $base"
  echo
  echo "Static figures from \`nvcc -O3 --generate-code=arch=compute_90,code=sm_90 -Xptxas -v\` on"
  echo "\`cuda/ensemble.cu\`: what the compiler allots per thread and per block. No GPU ran these kernels."
  echo
  python3 "$here/ptxas.py" --base "$base" cuda/ensemble.cu
  echo
  echo "The warp kernel with a launch bound of 8 blocks per SM (at most 64 registers), for comparison:"
  echo
  python3 "$here/ptxas.py" --tree "bound (128, 8)=$scratch/bound8" --only '^ensemble_warp_kernel' cuda/ensemble.cu |
    grep -v '| current |'
  echo
  echo "\`ensemble_warp_kernel\` is declared \`__launch_bounds__(128, 4)\` (four members of one warp each per"
  echo "block, at least four blocks per SM): at most 128 registers, 16 resident warps per SM from registers."
} >"$page"
echo "wrote $page"
