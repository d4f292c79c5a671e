// The CUDA engine library (libmarbm_cuda) behind host/detail/cuda_entry.hpp:
// the real entry points, under names of their own so that they never
// interpose on libmarbm's forwarding functions of the same purpose, and the
// table marbm_cuda_entry_points() hands to libmarbm's loader.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "detail/cuda_entry.hpp"

namespace marbm::detail {

std::unique_ptr<Engine> make_cuda_engine_impl(const EngineOptions& options);
std::vector<DeviceInfo> list_cuda_devices_impl();
CudaVersions query_cuda_versions_impl();
ModeResult find_mode_cuda_impl(const Rbm& rbm, const ModeSearchConfig& config);
ReplicaTrajectory mode_trajectory_cuda_impl(const Rbm& rbm, const ModeSearchConfig& config);
double log_partition_exact_cuda_impl(const Rbm& rbm, const ExactOptions& options, int device);
/// train_ensemble on the device (inputs already validated by host/ensemble.cpp).
std::vector<TrainResult> train_ensemble_cuda_impl(const Dataset& data, const std::vector<Rbm>& initial,
                                                  const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                                  const EnsembleMetricsCallback& on_metrics);
AisDeviceWeights ais_log_weights_cuda_impl(const AisDeviceRequest& request);
std::string cuda_pci_bus_id_impl(int device);
/// One rank of data-parallel training on the device (cuda_engine.cu), the
/// gradient summed with NCCL.
std::unique_ptr<Engine> make_cuda_data_parallel_engine_impl(const EngineOptions& options,
                                                            const CudaDataParallelSetup& setup);
/// Updates a CUDA engine (make_cuda_engine_impl) has replayed from its
/// captured CUDA Graph; 0 for any other engine. For tests.
std::uint64_t cuda_engine_graph_launches(const Engine& engine);

}  // namespace marbm::detail

extern "C" const marbm::detail::CudaEntryPoints* marbm_cuda_entry_points();
