// Launch preparation shared by the kernels that size their shared memory at
// run time: the kernel's static shared memory and the device's limits go into
// the one host decision (detail/shared_memory.hpp).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "detail/shared_memory.hpp"
#include "error.cuh"

namespace marbm::detail {

/// The per-block shared memory limits of `device` (the opt-in limit differs
/// by architecture: about 99 KiB on sm_86/sm_89, 163 KiB on sm_80, 227 KiB on
/// sm_90, so it is asked for, not assumed).
inline SharedMemoryLimits shared_memory_limits(int device) {
  int per_block = 0, opt_in = 0;
  MARBM_CUDA_TRY(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlock, device));
  MARBM_CUDA_TRY(cudaDeviceGetAttribute(&opt_in, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return {static_cast<std::size_t>(per_block), static_cast<std::size_t>(opt_in)};
}

/// `kernel`'s static shared memory in bytes.
template <typename Kernel>
std::size_t static_shared_bytes(Kernel kernel) {
  cudaFuncAttributes attributes{};
  MARBM_CUDA_TRY(cudaFuncGetAttributes(&attributes, kernel));
  return attributes.sharedSizeBytes;
}

/// The plan for launching `kernel` with `dynamic_bytes` of dynamic shared
/// memory on `device`, without changing anything.
template <typename Kernel>
SharedMemoryPlan shared_memory_plan(Kernel kernel, std::size_t dynamic_bytes, int device) {
  return plan_shared_memory(static_shared_bytes(kernel), dynamic_bytes, shared_memory_limits(device));
}

/// As shared_memory_plan, and when the launch needs it, opts `kernel` in to
/// `dynamic_bytes` of dynamic shared memory. Returns false (and changes
/// nothing) when static + dynamic exceed what the device allows a block.
template <typename Kernel>
bool prepare_shared_memory(Kernel kernel, std::size_t dynamic_bytes, int device) {
  const SharedMemoryPlan plan = shared_memory_plan(kernel, dynamic_bytes, device);
  if (plan.fits && plan.opt_in) {
    MARBM_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(dynamic_bytes)));
  }
  return plan.fits;
}

}  // namespace marbm::detail
