// One ensemble member trained by marbm::train, shared by the cpu ensemble and
// the cuda fallback (per-member engines).
#pragma once

#include <cstdint>
#include <mutex>

#include "marbm/ensemble.hpp"

namespace marbm::detail {

/// Trains member `member` from `initial` with config.seed replaced by `seed`
/// on `engine`; metrics go to on_metrics(member, ...) under `callback_mutex`
/// so that concurrent members never call it at the same time.
TrainResult train_ensemble_member(Engine& engine, const Dataset& data, const Rbm& initial, std::uint64_t seed,
                                  const TrainConfig& config, int member, const EnsembleMetricsCallback& on_metrics,
                                  std::mutex& callback_mutex);

}  // namespace marbm::detail
