// Sums over GPU ranks with NCCL: the gradient of data-parallel training on
// the CUDA engine is all-reduced on the device, on the engine's stream, with
// no copy through the host. Without NCCL in the build (MARBM_NCCL=OFF or not
// found) the functions here say so: nccl_version_impl() is 0 and the rest
// throw CudaError.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <vector>

namespace marbm::detail {

/// Bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES), which rank 0 makes and
/// every rank needs.
inline constexpr std::size_t nccl_unique_id_bytes = 128;

/// NCCL's version code (ncclGetVersion, e.g. 22703 for 2.27.3); 0 when this
/// build has no NCCL. Never throws.
int nccl_version_impl();

/// A fresh ncclUniqueId (on rank 0, before the communicator is made).
/// Throws CudaError without NCCL or when NCCL fails.
std::vector<std::byte> nccl_unique_id_impl();

/// One rank's NCCL communicator on `device` (ncclCommInitRank: collective
/// over the `size` ranks, which must all pass the same id). Throws CudaError
/// when NCCL is missing or fails. Not copyable.
class DeviceSum {
 public:
  DeviceSum(std::span<const std::byte> unique_id, int rank, int size, int device);
  ~DeviceSum();
  DeviceSum(const DeviceSum&) = delete;
  DeviceSum& operator=(const DeviceSum&) = delete;

  /// values[0 .. count) = their sum over the ranks (ncclAllReduce, float32,
  /// in place), enqueued on `stream`; every rank gets the same bits. NCCL's
  /// order of additions is fixed for a fixed set of ranks and devices, so a
  /// run repeats bit for bit; it is not the one-device sum's order.
  void sum_in_place(float* values, std::size_t count, cudaStream_t stream);

  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  void* communicator_ = nullptr;  // ncclComm_t
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace marbm::detail
