// An RAII, stream-ordered device buffer (the only owner of device memory in
// library code; no raw cudaMalloc/cudaFree elsewhere).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "error.cuh"

namespace marbm::detail {

/// `size` elements of trivially copyable T on the device, allocated and freed
/// on `stream` (cudaMallocAsync). Move-only. Contents are uninitialised.
/// Throws CudaError (with "out of memory" in the name) when allocation fails.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::size_t size, cudaStream_t stream) : size_(size), stream_(stream) {
    if (size_ > 0) MARBM_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void**>(&data_), size_ * sizeof(T), stream_));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)), stream_(other.stream_) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      stream_ = other.stream_;
    }
    return *this;
  }
  ~DeviceBuffer() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  cudaStream_t stream() const { return stream_; }

  /// Reallocates when the size changes (contents are lost).
  void resize(std::size_t size) {
    if (size == size_) return;
    *this = DeviceBuffer(size, stream_);
  }

  /// Asynchronous host -> device copy of `host` (size must fit).
  void copy_from_host(std::span<const T> host) {
    if (host.size() > size_) throw CudaError("device buffer too small for host copy");
    if (!host.empty())
      MARBM_CUDA_TRY(cudaMemcpyAsync(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, stream_));
  }
  /// Device -> host copy; synchronizes the stream.
  std::vector<T> to_host() const {
    std::vector<T> host(size_);
    if (size_ > 0) {
      MARBM_CUDA_TRY(cudaMemcpyAsync(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost, stream_));
      MARBM_CUDA_TRY(cudaStreamSynchronize(stream_));
    }
    return host;
  }
  /// Zero the bytes (asynchronous).
  void fill_zero() {
    if (size_ > 0) MARBM_CUDA_TRY(cudaMemsetAsync(data_, 0, size_ * sizeof(T), stream_));
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaFreeAsync(data_, stream_));
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
  cudaStream_t stream_ = nullptr;
};

}  // namespace marbm::detail

namespace marbm::detail {

/// `size` elements of page-locked host memory (cudaMallocHost), so that
/// host -> device copies from it are truly asynchronous: a copy from pageable
/// memory may wait for the stream's earlier work. Move-only.
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t size) : size_(size) {
    if (size_ > 0) MARBM_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&data_), size_ * sizeof(T)));
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept {
    if (this != &other) {
      if (data_ != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaFreeHost(data_));
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~PinnedBuffer() {
    if (data_ != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaFreeHost(data_));
  }
  T* data() { return data_; }
  std::size_t size() const { return size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A CUDA event without timing (for ordering host reuse of staging memory).
class Event {
 public:
  Event() { MARBM_CUDA_TRY(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() {
    if (event_ != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaEventDestroy(event_));
  }
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace marbm::detail
