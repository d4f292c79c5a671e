// Entry points into the CUDA engine (cuda/). Without CUDA they are defined in
// host/cuda_unavailable.cpp and throw CudaError (or return nothing).
#pragma once

#include <memory>
#include <vector>

#include "detail/mode_search_config.hpp"
#include "marbm/engine.hpp"
#include "marbm/exact.hpp"
#include "marbm/mode.hpp"
#include "marbm/rbm.hpp"

namespace marbm::detail {

/// The CUDA engine on options.device. Throws CudaError when no device is usable.
std::unique_ptr<Engine> make_cuda_engine(const EngineOptions& options);

/// Usable devices; empty when there is no driver or device. Never throws.
std::vector<DeviceInfo> list_cuda_devices();

/// cudaRuntimeGetVersion and cudaDriverGetVersion (0 where they fail). Never throws.
CudaVersions query_cuda_versions();

/// Ground-state search on config.device (config.backend is cuda).
ModeResult find_mode_cuda(const Rbm& rbm, const ModeSearchConfig& config);

/// The replicas of find_mode_cuda's sb or sa search after the dynamics,
/// before the polish (the tests hold them to mode_trajectory_cpu's).
ReplicaTrajectory mode_trajectory_cuda(const Rbm& rbm, const ModeSearchConfig& config);

/// Exact log Z by Gray-code enumeration on `device`.
double log_partition_exact_cuda(const Rbm& rbm, const ExactOptions& options, int device = 0);

}  // namespace marbm::detail
