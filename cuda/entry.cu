// The CUDA engine library's entry points (cuda_impl.hpp) and the table that
// libmarbm finds with dlsym when a process first uses CUDA
// (host/cuda_loader.cpp). find_mode_cuda_impl lives with the ground-state
// solvers (mode_search.cu), train_ensemble_cuda_impl with the ensembles.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda_impl.hpp"
#include "marbm/error.hpp"
#include "device_buffer.cuh"
#include "exact_enumeration.cuh"
#include "nccl_sum.hpp"
#include "resources.cuh"

namespace marbm::detail {

std::vector<DeviceInfo> list_cuda_devices_impl() {
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

std::string cuda_pci_bus_id_impl(int device) {
  char bus_id[64] = {};
  if (cudaDeviceGetPCIBusId(bus_id, static_cast<int>(sizeof(bus_id)), device) != cudaSuccess) {
    (void)cudaGetLastError();
    return {};
  }
  return bus_id;
}

CudaVersions query_cuda_versions_impl() {
  CudaVersions versions;
  if (cudaRuntimeGetVersion(&versions.runtime) != cudaSuccess) versions.runtime = 0;
  if (cudaDriverGetVersion(&versions.driver) != cudaSuccess) versions.driver = 0;
  (void)cudaGetLastError();
  return versions;
}

double log_partition_exact_cuda_impl(const Rbm& rbm, const ExactOptions& options, int device) {
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

extern "C" const marbm::detail::CudaEntryPoints* marbm_cuda_entry_points() {
  using namespace marbm::detail;
  static const CudaEntryPoints table{
      MARBM_VERSION,
      &make_cuda_engine_impl,
      &list_cuda_devices_impl,
      &query_cuda_versions_impl,
      &find_mode_cuda_impl,
      &mode_trajectory_cuda_impl,
      &log_partition_exact_cuda_impl,
      &train_ensemble_cuda_impl,
      &ais_log_weights_cuda_impl,
      &nccl_version_impl,
      &nccl_unique_id_impl,
      &make_cuda_data_parallel_engine_impl,
      &cuda_pci_bus_id_impl,
  };
  return &table;
}
