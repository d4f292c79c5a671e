// Checks for CUDA runtime, cuBLAS and cuRAND calls: each failure becomes a
// marbm::CudaError carrying file:line and the error's name. Destructors use
// the non-throwing MARBM_CUDA_TRY_NOTHROW, which reports what it catches.
//
// Kernels and cuBLAS calls run asynchronously, so a fault inside one surfaces
// at some later call. With MARBM_CUDA_SYNC=1 in the environment every launch
// check and every cuBLAS call also synchronises the device and checks, so the
// error names the launch that faulted (slow: for debugging only).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "detail/destructor_errors.hpp"
#include "detail/env_flag.hpp"
#include "marbm/error.hpp"

namespace marbm::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  throw CudaError(std::string("CUDA error ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                  ") in " + call + " at " + file + ":" + std::to_string(line));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw CudaError(std::string("cuBLAS error ") + cublasGetStatusName(status) + " in " + call + " at " + file + ":" +
                  std::to_string(line));
}

/// Whether MARBM_CUDA_SYNC=1 asks for a synchronising check after every
/// launch (read once per process).
inline bool cuda_sync_after_launches() {
  static const bool enabled = env_flag("MARBM_CUDA_SYNC");
  return enabled;
}

/// Whether CUDA Graphs may be used: MARBM_CUDA_GRAPH=0 launches everything
/// directly (the engine's updates, the large-model search loop). Read at each
/// call, so that a test can switch it between engines or searches.
inline bool cuda_graphs_allowed() {
  const char* value = std::getenv("MARBM_CUDA_GRAPH");
  return value == nullptr || std::string_view(value) != "0";
}

/// The launch check: configuration errors now, and under MARBM_CUDA_SYNC=1
/// the kernel's own faults too.
inline void check_launch(const char* what, const char* file, int line) {
  const cudaError_t launched = cudaGetLastError();
  if (launched != cudaSuccess) throw_cuda_error(launched, what, file, line);
  if (cuda_sync_after_launches()) {
    const cudaError_t ran = cudaDeviceSynchronize();
    if (ran != cudaSuccess) throw_cuda_error(ran, what, file, line);
  }
}

// Errors in destructors: reported (detail/destructor_errors.hpp), never
// thrown. cudaErrorCudartUnloading is the runtime's normal state at process
// exit, not an error of ours.
inline void report_cleanup(cudaError_t status, const char* call, const char* file, int line) noexcept {
  if (status == cudaSuccess || status == cudaErrorCudartUnloading) return;
  try {
    report_destructor_error(std::string("CUDA error ") + cudaGetErrorName(status) + " in " + call + " at " + file +
                            ":" + std::to_string(line));
  } catch (...) {
  }
  (void)cudaGetLastError();
}
inline void report_cleanup(cublasStatus_t status, const char* call, const char* file, int line) noexcept {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  try {
    report_destructor_error(std::string("cuBLAS error ") + cublasGetStatusName(status) + " in " + call + " at " +
                            file + ":" + std::to_string(line));
  } catch (...) {
  }
}

}  // namespace marbm::detail

#define MARBM_CUDA_TRY(call)                                                      \
  do {                                                                            \
    const cudaError_t marbm_status_ = (call);                                     \
    if (marbm_status_ != cudaSuccess) {                                           \
      ::marbm::detail::throw_cuda_error(marbm_status_, #call, __FILE__, __LINE__); \
    }                                                                             \
  } while (false)

/// After every kernel launch: launch-configuration errors surface here (and
/// the kernel's faults too under MARBM_CUDA_SYNC=1).
#define MARBM_CUDA_CHECK_LAST() ::marbm::detail::check_launch("kernel launch", __FILE__, __LINE__)

#define MARBM_CUBLAS_TRY(call)                                                      \
  do {                                                                              \
    const cublasStatus_t marbm_status_ = (call);                                    \
    if (marbm_status_ != CUBLAS_STATUS_SUCCESS) {                                   \
      ::marbm::detail::throw_cublas_error(marbm_status_, #call, __FILE__, __LINE__); \
    }                                                                               \
    if (::marbm::detail::cuda_sync_after_launches()) {                              \
      ::marbm::detail::check_launch(#call, __FILE__, __LINE__);                     \
    }                                                                               \
  } while (false)

/// For destructors: never throws; a failure is reported, not dropped.
#define MARBM_CUDA_TRY_NOTHROW(call)                                          \
  do {                                                                        \
    ::marbm::detail::report_cleanup((call), #call, __FILE__, __LINE__);       \
  } while (false)
