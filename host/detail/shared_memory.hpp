// Whether a kernel's shared memory fits a block, and whether the launch must
// opt in to more than the default per-block amount. Pure host arithmetic, so
// that the decision is tested without a device; cuda/launch.cuh feeds it the
// kernel's static size (cudaFuncGetAttributes) and the device's limits.
#pragma once

#include <cstddef>

namespace marbm::detail {

/// A device's per-block shared memory: without opting in (48 KiB on every
/// current GPU) and the most a kernel may opt in to (227 KiB on sm_90).
struct SharedMemoryLimits {
  std::size_t per_block = 48 * 1024;
  std::size_t per_block_opt_in = 48 * 1024;
};

struct SharedMemoryPlan {
  bool fits = false;    ///< static + dynamic fit a block (after opting in when needed)
  bool opt_in = false;  ///< the launch needs cudaFuncAttributeMaxDynamicSharedMemorySize
};

/// The launch limit is on static + dynamic bytes together: a kernel with
/// 6 KiB of static shared memory fails to launch with 43 KiB of dynamic shared
/// memory unless it opts in, although 43 KiB alone is below 48 KiB.
constexpr SharedMemoryPlan plan_shared_memory(std::size_t static_bytes, std::size_t dynamic_bytes,
                                              const SharedMemoryLimits& limits) {
  const std::size_t total = static_bytes + dynamic_bytes;
  if (total <= limits.per_block) return {true, false};
  if (total <= limits.per_block_opt_in) return {true, true};
  return {false, false};
}

/// Dynamic shared memory of the fused ensemble kernel (cuda/ensemble.cu) per
/// member block, in bytes: W, a, b and their velocity, the batch (v and h),
/// the hidden samples of the widest pass, the chains (v and h) and the mode
/// (v*, h*). chains: persistent chains P, or the batch for cd.
constexpr std::size_t fused_ensemble_shared_bytes(int n, int m, int batch, int chains) {
  const std::size_t parameters = static_cast<std::size_t>(n) * m + n + m;
  const std::size_t widest = static_cast<std::size_t>(batch > chains ? batch : chains);
  const std::size_t floats = 2 * parameters + static_cast<std::size_t>(batch) * (n + m) + widest * m +
                             static_cast<std::size_t>(chains) * (n + m) + n + m;
  return floats * sizeof(float);
}

}  // namespace marbm::detail
