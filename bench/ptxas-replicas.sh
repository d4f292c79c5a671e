#!/usr/bin/env bash
# Static resource use of the SB/SA replica kernels as ptxas reports it
# (-Xptxas -v), sm_90 and sm_80. The legacy:: kernels are the earlier ones,
# still compiled (MARBM_REPLICA_KERNELS=legacy), so the page holds before and
# after. These figures need no GPU. Records bench/results/ptxas-replicas.md.
#
# usage: bench/ptxas-replicas.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
page="$here/results/ptxas-replicas.md"
{
  echo "# ptxas resource use of the SB/SA replica kernels"
  echo
  python3 "$here/ptxas.py" --provenance "bench/ptxas-replicas.sh"
  echo
  echo "Static figures from ptxas (\`-Xptxas -v\`), no GPU involved. \`legacy::\` kernels are the earlier ones,"
  echo "kept selectable with \`MARBM_REPLICA_KERNELS=legacy\`; the others are the current ones:"
  echo "\`sb_replicas_kernel<owned, discrete>\` per size class (units per lane), \`sa_replicas_kernel\`, and the"
  echo "cuBLAS path's \`sb_update_kernel\`, \`sa_sample4_kernel\`, \`sa_initial4_kernel\`. Launch bounds: 1,024"
  echo "threads (64 registers) for SB classes 1 to 4 and for SA, 512 (128 registers) for SB class 8"
  echo "(detail/replica_plan.hpp). None of these kernels has run on a GPU yet."
  echo
  python3 "$here/ptxas.py" --arch 90 --arch 80 cuda/mode_sb.cu cuda/mode_sa.cu
} >"$page"
echo "wrote $page"
