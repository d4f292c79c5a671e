// Checks for CUDA runtime, cuBLAS and cuRAND calls: each failure becomes a
// marbm::CudaError carrying file:line and the error's name. Destructors use
// the non-throwing MARBM_CUDA_TRY_NOTHROW.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

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

}  // namespace marbm::detail

#define MARBM_CUDA_TRY(call)                                                      \
  do {                                                                            \
    const cudaError_t marbm_status_ = (call);                                     \
    if (marbm_status_ != cudaSuccess) {                                           \
      ::marbm::detail::throw_cuda_error(marbm_status_, #call, __FILE__, __LINE__); \
    }                                                                             \
  } while (false)

/// After every kernel launch: launch-configuration errors surface here.
#define MARBM_CUDA_CHECK_LAST() MARBM_CUDA_TRY(cudaGetLastError())

#define MARBM_CUBLAS_TRY(call)                                                      \
  do {                                                                              \
    const cublasStatus_t marbm_status_ = (call);                                    \
    if (marbm_status_ != CUBLAS_STATUS_SUCCESS) {                                   \
      ::marbm::detail::throw_cublas_error(marbm_status_, #call, __FILE__, __LINE__); \
    }                                                                               \
  } while (false)

/// For destructors: never throws, clears the sticky-free error state.
#define MARBM_CUDA_TRY_NOTHROW(call) \
  do {                               \
    (void)(call);                    \
  } while (false)
