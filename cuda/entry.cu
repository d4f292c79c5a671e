// The CUDA entry points the host side calls (host/detail/cuda_entry.hpp).
// find_mode_cuda lives with the ground-state solvers (mode_search.cu).
#include <cuda_runtime.h>

#include "detail/cuda_entry.hpp"
#include "marbm/error.hpp"
#include "resources.cuh"

namespace marbm::detail {

std::vector<DeviceInfo> list_cuda_devices() {
  std::vector<DeviceInfo> devices;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return devices;  // no driver (error 35), no device, ...: nothing usable
  }
  for (int ordinal = 0; ordinal < count; ++ordinal) {
    cudaDeviceProp properties{};
    if (cudaGetDeviceProperties(&properties, ordinal) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    DeviceInfo info;
    info.ordinal = ordinal;
    info.name = properties.name;
    info.compute_capability_major = properties.major;
    info.compute_capability_minor = properties.minor;
    info.memory_bytes = properties.totalGlobalMem;
    devices.push_back(std::move(info));
  }
  return devices;
}

// Temporary until the engine and the enumeration kernels land: both check the
// device first so that "no device" is reported exactly as it will be later.
std::unique_ptr<Engine> make_cuda_engine(const EngineOptions& options) {
  require_cuda_device(options.device);
  throw RuntimeFailure("the cuda engine is not complete in this build");
}

double log_partition_exact_cuda(const Rbm&, const ExactOptions&) {
  require_cuda_device(0);
  throw RuntimeFailure("exact log Z on the GPU is not complete in this build");
}

}  // namespace marbm::detail
