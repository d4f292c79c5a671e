// The batched ensemble path of train_ensemble on cuda: E members of one shape
// trained in lockstep, every per-member operation of an update issued as one
// strided-batched cuBLAS call or one kernel launch over all members.
#pragma once

#include <cstdint>
#include <vector>

#include "marbm/ensemble.hpp"

namespace marbm::detail {

/// Trains the ensemble with stacked device state ([E x ...] arrays), the
/// members' inputs already checked by train_ensemble (shapes, seed count,
/// data columns). Member e draws the random numbers of a cuda engine trained
/// by marbm::train with seed seeds[e]. on_metrics is called as metrics
/// arrive, from the calling thread. Requires
/// ensemble_batched_supported(n, m, rows, config).
std::vector<TrainResult> train_ensemble_batched(const Dataset& data, const std::vector<Rbm>& initial,
                                                const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                                const EnsembleMetricsCallback& on_metrics);

}  // namespace marbm::detail
