#!/usr/bin/env bash
# Static resource use of the fused ensemble's kernels (cuda/ensemble.cu) as
# ptxas reports it for sm_90 (-Xptxas -v): registers, stack frame, spills,
# barriers and static shared memory, for the working tree and for a base
# revision (default 7d5625d, the last commit with the block kernel only).
# These figures need no GPU: they are what the compiler allots, not what a
# run measures.
#
# usage: bench/ptxas-ensemble.sh [BASE_REVISION]
# Output: bench/results/ptxas-ensemble.md
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
base="${1:-7d5625d}"
nvcc="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
page="$root/bench/results/ptxas-ensemble.md"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# One tree's cuda/ensemble.cu through ptxas -v; the log to $2.
ptxas_of() {
  local tree="$1" log="$2"
  mkdir -p "$tree/generated/marbm"
  printf '#pragma once\n#define MARBM_WITH_MPI 0\n' >"$tree/generated/marbm/config.hpp"
  "$nvcc" -DMARBM_HAVE_CUDA=1 -I"$tree/host" -I"$tree/cuda" -I"$tree/include" -I"$tree/generated" -O3 -DNDEBUG \
    --generate-code=arch=compute_90,code=sm_90 --expt-relaxed-constexpr -std=c++20 -Xptxas -v \
    -x cu -c "$tree/cuda/ensemble.cu" -o "$scratch/ensemble.o" >"$log" 2>&1
}

mkdir -p "$scratch/base" "$scratch/head"
git -C "$root" archive "$base" cuda host include | tar -x -C "$scratch/base"
cp -r "$root/cuda" "$root/host" "$root/include" "$scratch/head/"
# The warp kernel again with a launch bound of 8 blocks per SM (64 registers):
# what the chosen bound of 4 avoids.
cp -r "$scratch/head" "$scratch/bound8"
sed -i 's/__launch_bounds__(kWarp \* kWarpKernelMembersPerBlock, 4)/__launch_bounds__(kWarp * kWarpKernelMembersPerBlock, 8)/' \
  "$scratch/bound8/cuda/ensemble.cu"
ptxas_of "$scratch/base" "$scratch/base.log"
ptxas_of "$scratch/head" "$scratch/head.log"
ptxas_of "$scratch/bound8" "$scratch/bound8.log"

commit="$(git -C "$root" rev-parse --short HEAD)"
dirty="$(git -C "$root" status --porcelain -- cuda host include | grep -q . && echo " (with uncommitted changes)" || true)"
base_commit="$(git -C "$root" rev-parse --short "$base")"
{
  echo "# Fused ensemble kernels: ptxas resource use at sm_90"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $commit$dirty; base: $base_commit"
  echo "- machine: $(uname -m), $(nproc) cores; $("$nvcc" --version | tail -1)"
  echo "- command: \`bench/ptxas-ensemble.sh${1:+ $1}\`"
  echo
  echo "Static figures from \`nvcc -O3 --generate-code=arch=compute_90,code=sm_90 -Xptxas -v\` on"
  echo "\`cuda/ensemble.cu\`: what the compiler allots per thread and per block. No GPU ran these kernels."
  echo
  python3 - "$scratch/base.log" "$base_commit" "$scratch/head.log" "$commit" "$scratch/bound8.log" \
    "$commit, warp kernel bound (128, 8)" <<'PY'
import re, subprocess, sys

def kernels(path):
    text = subprocess.run(["c++filt"], input=open(path).read(), capture_output=True, text=True).stdout
    out, name = {}, None
    for line in text.splitlines():
        m = re.search(r"Function properties for (.+)$", line)
        if m:
            # the last name before an argument list: ...::ensemble_kernel(marbm::...)
            name = re.findall(r"(\w+)\((?!anonymous namespace\))", m.group(1))[0]
            out[name] = {}
            continue
        if name is None:
            continue
        entry = out[name]
        for key, pattern in (("stack", r"(\d+) bytes stack frame"), ("spill_stores", r"(\d+) bytes spill stores"),
                             ("spill_loads", r"(\d+) bytes spill loads"), ("registers", r"Used (\d+) registers"),
                             ("barriers", r"used (\d+) barriers"), ("smem", r"(\d+) bytes smem")):
            m = re.search(pattern, line)
            if m:
                entry[key] = int(m.group(1))
    return out

print("| kernel | revision | registers | stack frame (B) | spill stores / loads (B) | barriers | static shared (B) |")
print("|---|---|---|---|---|---|---|")
for path, label in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4]), (sys.argv[5], sys.argv[6])):
    found = kernels(path)
    if "bound" in label:
        found = {k: v for k, v in found.items() if k == "ensemble_warp_kernel"}
    if not found:
        print(f"| (ptxas gave no figures: see the log) | {label} | | | | | |")
    for name, k in sorted(found.items()):
        print(f"| `{name}` | {label} | {k.get('registers', '?')} | {k.get('stack', '?')} | "
              f"{k.get('spill_stores', '?')} / {k.get('spill_loads', '?')} | {k.get('barriers', 0)} | {k.get('smem', 0)} |")
PY
  echo
  echo "\`ensemble_warp_kernel\` is declared \`__launch_bounds__(128, 4)\` (four members of one warp each per"
  echo "block, at least four blocks per SM): at most 128 registers, 16 resident warps per SM from registers."
  echo "The last row is the same kernel compiled with a bound of 8 blocks (at most 64 registers)."
} >"$page"
cat "$page"
