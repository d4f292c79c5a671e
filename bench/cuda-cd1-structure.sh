#!/usr/bin/env bash
# Static facts of the CUDA engine's CD-1 update, measurable without a GPU:
# ptxas's registers, spills and shared memory of the update's own kernels
# (cuda/gibbs.cu) before and after the graph/augmented-GEMM rework, for sm_90,
# and the launches per update counted from the code. Writes
# bench/results/cuda-cd1-structure.md.
#
#   bench/cuda-cd1-structure.sh [BEFORE_REVISION]
#
# BEFORE_REVISION (default 7d5625d, the last commit with the former update)
# is compiled from `git archive`; "after" is the working tree (bench/ptxas.py;
# needs nvcc: NVCC, CUDACXX, nvcc on PATH, or /usr/local/cuda/bin/nvcc).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
before="${1:-7d5625d}"
page="$root/bench/results/cuda-cd1-structure.md"
{
  echo "# CUDA engine, CD-1 update: static structure"
  echo
  python3 "$root/bench/ptxas.py" --provenance "bench/cuda-cd1-structure.sh $before"
  echo
  echo "Machine: no GPU. **Nothing on this page ran on a device**: the kernels are compiled, not run; the"
  echo "figures are ptxas's static resource counts and launch counts read from the code."
  echo
  echo "## Launches per update (784x500, CD-1, one engine)"
  echo
  echo "Counted from \`cuda/cuda_engine.cu\` (before: $before; after: this commit). A cuBLAS GEMM is counted"
  echo "as one launch (cuBLAS may split one into more kernels, e.g. split-K, at some shapes)."
  echo
  echo "| | before | after (graph, default) | after (\`MARBM_CUDA_GRAPH=0\`) |"
  echo "|---|---|---|---|"
  echo "| host-to-device copies | 1 (batch rows) | 1 (parameter block + batch rows) | 1 (same) |"
  echo "| event records | 1 | 1 | 1 |"
  echo "| kernel launches from the host | 11: gather, 3 field GEMMs, 3 samplers, gradient GEMM, 2 GEMVs, update | 1 graph launch of 9 nodes: gather, 3 field GEMMs, 3 samplers, 1 augmented gradient GEMM, update | 9 (the same kernels) |"
  echo "| with \`MARBM_CUDA_BIAS_GEMV=1\` | | 11 nodes (+2 GEMVs) | 11 |"
  echo
  echo "The first update of a shape runs direct; the second captures the graph; later ones replay it."
  echo "Mode and exact steps and the NCCL data-parallel engine always launch directly. The augmented"
  echo "columns (1 in V', the row weights in H') are written by up to three small kernels only when the"
  echo "batch shape changes or a mode step overwrote them."
  echo
  echo "## ptxas, sm_90 and sm_80: cuda/gibbs.cu before ($before) and after"
  echo
  echo "\`sample_rows_kernel<true>\` is the sampler with float4 loads, \`<false>\` the scalar one; \`sample_layer_kernel\`"
  echo "is the former sampler, kept as \`sample_layer_reference\` for the GPU tests; \`apply_update_kernel\` is kept for"
  echo "the batched ensemble."
  echo
  python3 "$root/bench/ptxas.py" --arch 90 --arch 80 --base "$before" cuda/gibbs.cu
  echo
  echo "## What the device check measures"
  echo
  echo "\`bench/device-check.sh\` runs \`bench_cuda_engine\`: \`BM_CudaCd1Update/{128,1024}\` (updates/s, and"
  echo "\`gemm_ratio\` = update time / time of the same four GEMMs alone with the engine's operand strides:"
  echo "three field products and the augmented gradient product) and \`BM_CudaCd1UpdateDirect/1024\` (the same"
  echo "with \`MARBM_CUDA_GRAPH=0\`), beside PyTorch's CD-1 (\`bench/torch_reference.py\`). Target at batch 1024:"
  echo "<= 1.2x the GEMM-only time and >= 1.5x torch's updates/s. The GPU tests \`CudaUpdateGraph.*\` (graph"
  echo "replay = direct launches bit for bit over cd, pcd and mode steps; augmented-GEMM bias gradients within"
  echo "the float32 bound of the GEMVs) and \`CudaKernels.*\` (new sampler = former sampler bit for bit; strided"
  echo "outputs; augmented update = flat update bit for bit) run there too."
} >"$page"
echo "wrote $page"
