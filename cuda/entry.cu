// The CUDA entry points the host side calls (host/detail/cuda_entry.hpp).
// find_mode_cuda lives with the ground-state solvers (mode_search.cu).
#include <cuda_runtime.h>

#include <algorithm>

#include "detail/cuda_entry.hpp"
#include "marbm/error.hpp"
#include "device_buffer.cuh"
#include "exact_enumeration.cuh"
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

CudaVersions query_cuda_versions() {
  CudaVersions versions;
  if (cudaRuntimeGetVersion(&versions.runtime) != cudaSuccess) versions.runtime = 0;
  if (cudaDriverGetVersion(&versions.driver) != cudaSuccess) versions.driver = 0;
  (void)cudaGetLastError();
  return versions;
}

double log_partition_exact_cuda(const Rbm& rbm, const ExactOptions& options, int device) {
  Resources& resources = thread_resources(device);
  const std::size_t weights = rbm.weights().size();
  std::vector<float> host(weights + rbm.n_visible() + rbm.n_hidden());
  std::copy(rbm.weights().begin(), rbm.weights().end(), host.begin());
  std::copy(rbm.visible_bias().begin(), rbm.visible_bias().end(), host.begin() + weights);
  std::copy(rbm.hidden_bias().begin(), rbm.hidden_bias().end(), host.begin() + weights + rbm.n_visible());
  DeviceBuffer<float> parameters(host.size(), resources.stream());
  parameters.copy_from_host(host);
  return log_partition_exact_device(resources, parameters.data(), parameters.data() + weights,
                                    parameters.data() + weights + rbm.n_visible(), rbm.n_visible(), rbm.n_hidden(),
                                    options);
}

}  // namespace marbm::detail
