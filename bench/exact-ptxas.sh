#!/usr/bin/env bash
# Static resource use of the exact-log-Z kernels (cuda/exact_enumeration.cu)
# as ptxas reports it (-Xptxas -v) for sm_90 and sm_80: registers, spills,
# static shared memory, and the occupancy those registers allow at 128
# threads per block. These figures need no GPU; no kernel here has run on
# one. The previous kernels (enumerate_registers_kernel,
# enumerate_scratch_kernel) are still compiled (MARBM_EXACT_KERNEL=legacy),
# so one compile gives "before" and "after". Records
# bench/results/exact-ptxas.md.
#
# usage: bench/exact-ptxas.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
page="$here/results/exact-ptxas.md"
{
  echo "# Exact log Z kernels: static resource use (ptxas)"
  echo
  python3 "$here/ptxas.py" --provenance "bench/exact-ptxas.sh"
  echo
  echo "Compiled, never run: these are what ptxas allocates, not measurements of a running kernel. The warps"
  echo "per SM are the register limit alone at 128 threads per block (65,536 registers per SM, 64 warps at"
  echo "most); the register kernels' dynamic shared memory (k x 64 doubles plus the table, at most 42 KiB with"
  echo "the 2 KiB static) allows more blocks than their registers do."
  echo
  echo "The kernels: \`enumerate_registers_kernel<L>\` (previous, legacy: <= 64 fields, every slot pays an exp),"
  echo "\`enumerate_scratch_kernel\` (previous for > 64 fields; current for > 1024), \`enumerate_table_kernel<L, T>\`"
  echo "(current: <= 64 fields, padding predicated; T = 4: a 16-state subset table), \`enumerate_warp_kernel<W>\`"
  echo "(current: 65..1024 fields, one warp per chunk, fields across lanes); \`final_combine_kernel\` and"
  echo "\`prepare_problem_kernel\` serve both. Which kernel runs (host/detail/exact_device_plan.hpp, 132 SMs):"
  echo "64x30 and 33x30 take \`enumerate_table_kernel<64, 4>\` (previously \`enumerate_registers_kernel<64>\`);"
  echo "784x20 takes \`enumerate_warp_kernel<32>\` (previously \`enumerate_scratch_kernel\`)."
  echo "\`MARBM_EXACT_KERNEL=legacy\` runs the previous ones."
  echo
  python3 "$here/ptxas.py" --arch 90 --arch 80 --occupancy 128 cuda/exact_enumeration.cu
} >"$page"
echo "wrote $page"
