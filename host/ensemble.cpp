// train_ensemble: the cpu path (members in parallel over OpenMP) and the
// dispatch to the cuda path (cuda/ensemble.cu).
#include "marbm/ensemble.hpp"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <string>

#include "detail/ensemble_member.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "detail/cuda_entry.hpp"

namespace marbm {

namespace {

void check_members(const Dataset& data, const std::vector<Rbm>& initial, const std::vector<std::uint64_t>& seeds) {
  MARBM_EXPECTS(!initial.empty(), UsageError, "train_ensemble: no initial models (the ensemble is empty)");
  MARBM_EXPECTS(seeds.size() == initial.size(), UsageError,
                "train_ensemble: " + std::to_string(seeds.size()) + " seeds for " + std::to_string(initial.size()) +
                    " initial models (one seed per member)");
  const int n = initial.front().n_visible(), m = initial.front().n_hidden();
  MARBM_EXPECTS(n >= 1 && m >= 1, UsageError, "train_ensemble: initial model 0 has no units");
  for (std::size_t e = 0; e < initial.size(); ++e) {
    MARBM_EXPECTS(initial[e].n_visible() == n && initial[e].n_hidden() == m, UsageError,
                  "train_ensemble: initial model " + std::to_string(e) + " is " +
                      std::to_string(initial[e].n_visible()) + " x " + std::to_string(initial[e].n_hidden()) +
                      ", model 0 is " + std::to_string(n) + " x " + std::to_string(m) + " (members share a shape)");
    initial[e].check_finite(("train_ensemble: initial model " + std::to_string(e)).c_str());
  }
  MARBM_EXPECTS(data.n_cols == n, UsageError,
                "train_ensemble: the data set '" + data.description + "' has " + std::to_string(data.n_cols) +
                    " columns, the models have " + std::to_string(n) + " visible units");
}

std::vector<TrainResult> train_ensemble_cpu(const Dataset& data, const std::vector<Rbm>& initial,
                                            const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                            const EnsembleMetricsCallback& on_metrics) {
  const int members = static_cast<int>(initial.size());
  std::vector<TrainResult> results(initial.size());
  std::vector<std::exception_ptr> errors(initial.size());
  std::mutex callback_mutex;
  // One level of parallelism: members over threads, each engine on one thread
  // (nested regions in the engine or the exact evaluation stay serial).
  const int saved_levels = omp_get_max_active_levels();
  omp_set_max_active_levels(1);
#pragma omp parallel for schedule(dynamic, 1)
  for (int e = 0; e < members; ++e) {
    try {
      EngineOptions options;
      options.threads = 1;
      options.quiet = true;
      auto engine = make_engine(Backend::cpu, options);
      results[e] = detail::train_ensemble_member(*engine, data, initial[e], seeds[e], config, e, on_metrics,
                                                 callback_mutex);
    } catch (...) {
      errors[e] = std::current_exception();
    }
  }
  omp_set_max_active_levels(saved_levels);
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
  return results;
}

}  // namespace

namespace detail {

TrainResult train_ensemble_member(Engine& engine, const Dataset& data, const Rbm& initial, std::uint64_t seed,
                                  const TrainConfig& config, int member, const EnsembleMetricsCallback& on_metrics,
                                  std::mutex& callback_mutex) {
  TrainConfig member_config = config;
  member_config.seed = seed;
  MetricsCallback report;
  if (on_metrics) {
    report = [&](const TrainMetrics& metrics) {
      const std::lock_guard<std::mutex> lock(callback_mutex);
      on_metrics(member, metrics);
    };
  }
  return train(engine, data, initial, member_config, report);
}

}  // namespace detail

bool ensemble_fused_supported(int n_visible, int n_hidden, int data_rows, const TrainConfig& config) {
  if (n_visible < 1 || n_hidden < 1 || n_visible > 32 || n_hidden > 32 || data_rows < 1) return false;
  const int smaller = std::min(n_visible, n_hidden);
  if (config.method == TrainMethod::exact) return false;
  // A learning-rate schedule goes through marbm::train on cuda engines.
  if (config.learning_rate_schedule != LearningRateSchedule::constant) return false;
  const int batch = std::min(config.batch_size, data_rows);
  if (batch < 1 || batch > 128) return false;
  const bool persistent = config.method == TrainMethod::pcd ||
                          (config.method == TrainMethod::mode && config.mode.base == NegativePhase::pcd);
  if (persistent && (config.persistent_chains > 0 ? config.persistent_chains : batch) > 128) return false;
  if (config.method == TrainMethod::mode) {
    if (config.mode.base != NegativePhase::cd && config.mode.base != NegativePhase::pcd) return false;
    // The kernel finds the joint ground state only; the marginal target goes
    // through the engines.
    if (config.mode.target != ModeTarget::joint || config.mode.mode_states > 1) return false;
    const bool exhaustive =
        choose_mode_solver(config.mode, n_visible, n_hidden, batch) == ModeSolver::exhaustive;
    if (!exhaustive || smaller > 20) return false;
  }
  if (config.exact_metrics && smaller <= config.exact.max_enumerated_units && smaller > 20) return false;
  return true;
}

bool ensemble_batched_supported(int n_visible, int n_hidden, int data_rows, const TrainConfig& config) {
  if (n_visible < 1 || n_hidden < 1 || data_rows < 1 || config.batch_size < 1) return false;
  if (config.learning_rate_schedule != LearningRateSchedule::constant) return false;
  if (config.method == TrainMethod::cd || config.method == TrainMethod::pcd) return true;
  // Mode steps over several states go through the per-member engines.
  return config.method == TrainMethod::mode && config.mode.mode_states == 1 &&
         (config.mode.base == NegativePhase::cd || config.mode.base == NegativePhase::pcd);
}

std::vector<TrainResult> train_ensemble(Backend backend, const Dataset& data, const std::vector<Rbm>& initial,
                                        const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                        const EnsembleMetricsCallback& on_metrics) {
  check_members(data, initial, seeds);
  if (backend == Backend::automatic) backend = cuda_devices().empty() ? Backend::cpu : Backend::cuda;
  if (backend == Backend::cpu) return train_ensemble_cpu(data, initial, seeds, config, on_metrics);
  return detail::train_ensemble_cuda(data, initial, seeds, config, on_metrics);
}

}  // namespace marbm
