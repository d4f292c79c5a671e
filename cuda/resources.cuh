// The resources object: one device, its stream and cuBLAS handle, and the
// device's memory pool setting. Every device operation takes a Resources& (no
// global handles).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace marbm::detail {

/// Owns a non-blocking stream and a cuBLAS handle bound to it on `device` with
/// a workspace of its own (GEMMs captured in CUDA Graphs never allocate), and
/// keeps the device's default memory pool from returning memory to the OS at
/// every synchronisation (release threshold: the maximum), so that the
/// stream-ordered temporaries of each step reuse mapped memory.
/// Construction throws CudaError when the device is unusable (UsageError for
/// an ordinal the machine does not have). Not copyable.
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
  void* cublas_workspace_ = nullptr;  // the handle's workspace (see the constructor)
};

/// Throws CudaError naming the reason when no device is usable (checks the
/// error code of cudaGetDeviceCount, not only the count).
void require_cuda_device(int device);

/// The calling thread's Resources for `device`, made on first use and kept
/// until the thread ends, with `device` made current. The one-shot entry
/// points (find_mode, exact log Z, train_ensemble) use it, so that a call
/// neither creates nor destroys a cuBLAS handle (cublasDestroy synchronises
/// the device). One per thread, not per process: a cuBLAS handle must not be
/// used from two threads at once. An engine owns its own Resources.
Resources& thread_resources(int device);

}  // namespace marbm::detail
