#!/usr/bin/env bash
# Static resource use of the device mode search's exhaustive, polish,
# best-candidate and transpose kernels as ptxas reports it (-Xptxas -v),
# sm_90 and sm_80, for this tree (the single-model kernels and their
# *_batched_kernel twins, which search several models in one launch) and
# for BASE, so that the page holds before and after. These figures need no
# GPU. Records bench/results/ptxas-mode-search.md.
#
# usage: bench/ptxas-mode-search.sh [BASE]   (BASE: a git revision, default 52ba8c3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base="${1:-52ba8c3}"
page="$here/results/ptxas-mode-search.md"
{
  echo "# ptxas resource use of the exhaustive mode search kernels, single and batched"
  echo
  python3 "$here/ptxas.py" --provenance "bench/ptxas-mode-search.sh $base"
  echo
  echo "Static figures from ptxas (\`-Xptxas -v\`), no GPU involved. \`current\`: this tree, where each"
  echo "single-model kernel's body is a device function that its \`*_batched_kernel\` twin (several models in"
  echo "one launch, the batched ensemble's mode steps) runs too; \`base $base\`: the sources before the batched"
  echo "search. None of the batched kernels has run on a GPU yet."
  echo
  python3 "$here/ptxas.py" --arch 90 --arch 80 --base "$base" --only 'exhaustive|polish|best_candidate|transpose' \
    cuda/mode_exhaustive.cu cuda/mode_search.cu
} >"$page"
echo "wrote $page"
