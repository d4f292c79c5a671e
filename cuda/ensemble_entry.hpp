// The CUDA side of train_ensemble (host/ensemble.cpp), declared without CUDA
// types so that host code can call it; defined in cuda/ensemble.cu.
#pragma once

#include <cstdint>
#include <vector>

#include "marbm/ensemble.hpp"

namespace marbm::detail {

/// Trains the ensemble on the device (inputs already validated).
std::vector<TrainResult> train_ensemble_cuda(const Dataset& data, const std::vector<Rbm>& initial,
                                             const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                             const EnsembleMetricsCallback& on_metrics);

}  // namespace marbm::detail
