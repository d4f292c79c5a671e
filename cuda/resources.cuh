// The resources object: one device, its stream and cuBLAS handle. Every device
// operation takes a Resources& (no global handles).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace marbm::detail {

/// Owns a non-blocking stream and a cuBLAS handle bound to it on `device`.
/// Construction throws CudaError when the device is unusable. Move-only.
class Resources {
 public:
  explicit Resources(int device = 0, bool allow_tf32 = false);
  Resources(const Resources&) = delete;
  Resources& operator=(const Resources&) = delete;
  ~Resources();

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  /// Number of SMs (for grid sizing).
  int multiprocessors() const { return multiprocessors_; }
  /// Blocks until all work on the stream is done; throws on an asynchronous error.
  void synchronize() const;

 private:
  int device_ = 0;
  int multiprocessors_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

/// Throws CudaError naming the reason when no device is usable (checks the
/// error code of cudaGetDeviceCount, not only the count).
void require_cuda_device(int device);

}  // namespace marbm::detail
