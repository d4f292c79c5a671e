// The resources object and the device-availability check.
#include "resources.cuh"

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "error.cuh"
#include "marbm/error.hpp"

namespace marbm::detail {

void require_cuda_device(int device) {
  int count = 0;
  // Without a driver cudaGetDeviceCount fails (e.g. error 35) and leaves the
  // count untouched: the error code decides, not only the count.
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so later calls start clean
    throw CudaError(std::string("no usable CUDA device: ") + cudaGetErrorName(status) + " (" +
                    cudaGetErrorString(status) + ")");
  }
  if (count <= 0) throw CudaError("no usable CUDA device: the driver reports no devices");
  if (device < 0 || device >= count) {
    throw UsageError("CUDA device " + std::to_string(device) + " does not exist (this machine has " +
                     std::to_string(count) + " device" + (count == 1 ? "" : "s") + ")");
  }
}

Resources::Resources(int device, bool allow_tf32) : device_(device) {
  require_cuda_device(device);
  MARBM_CUDA_TRY(cudaSetDevice(device));
  MARBM_CUDA_TRY(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device));
  // The default pool frees down to its release threshold (0 by default) at
  // every synchronisation; keep what it holds instead.
  cudaMemPool_t pool = nullptr;
  MARBM_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool, device));
  std::uint64_t keep_all = UINT64_MAX;
  MARBM_CUDA_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
  MARBM_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  const cublasStatus_t created = cublasCreate(&cublas_);
  if (created != CUBLAS_STATUS_SUCCESS) {
    MARBM_CUDA_TRY_NOTHROW(cudaStreamDestroy(stream_));
    stream_ = nullptr;
    MARBM_CUBLAS_TRY(created);
  }
  try {
    MARBM_CUBLAS_TRY(cublasSetStream(cublas_, stream_));
    // Exact float32 unless the caller opts in to TF32 tensor cores.
    MARBM_CUBLAS_TRY(cublasSetMathMode(cublas_, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    // A workspace of the handle's own, so that GEMMs captured in a CUDA
    // Graph (the engine's update, the large-model search loop) never
    // allocate: the cuBLAS documentation's advice for graph capture, 32 MiB
    // on Hopper, 4 MiB before. cublasSetStream would reset it; the stream is
    // set once, above.
    int major = 0;
    MARBM_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    const std::size_t workspace_bytes = (major >= 9 ? std::size_t{32} : std::size_t{4}) << 20;
    MARBM_CUDA_TRY(cudaMalloc(&cublas_workspace_, workspace_bytes));
    MARBM_CUBLAS_TRY(cublasSetWorkspace(cublas_, cublas_workspace_, workspace_bytes));
  } catch (...) {
    MARBM_CUDA_TRY_NOTHROW(cublasDestroy(cublas_));
    MARBM_CUDA_TRY_NOTHROW(cudaStreamDestroy(stream_));
    if (cublas_workspace_ != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaFree(cublas_workspace_));
    throw;
  }
}

Resources::~Resources() {
  if (cublas_ != nullptr) MARBM_CUDA_TRY_NOTHROW(cublasDestroy(cublas_));
  if (stream_ != nullptr) {
    MARBM_CUDA_TRY_NOTHROW(cudaStreamSynchronize(stream_));
    MARBM_CUDA_TRY_NOTHROW(cudaStreamDestroy(stream_));
  }
  // After the handle and the stream's work are gone.
  if (cublas_workspace_ != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaFree(cublas_workspace_));
}

void Resources::synchronize() const { MARBM_CUDA_TRY(cudaStreamSynchronize(stream_)); }

Resources& thread_resources(int device) {
  thread_local std::map<int, std::unique_ptr<Resources>> by_device;
  std::unique_ptr<Resources>& resources = by_device[device];
  if (!resources) resources = std::make_unique<Resources>(device);
  MARBM_CUDA_TRY(cudaSetDevice(device));
  return *resources;
}

}  // namespace marbm::detail
