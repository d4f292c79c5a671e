// Mode-assisted training (SPEC.md section 3): the P_mode schedule, the push
// factor, and turning an ordinary update into a mode step.
#include "detail/mode_assist.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "marbm/error.hpp"
#include "marbm/random.hpp"

namespace marbm {

double mode_probability(const ModeAssistConfig& config, long t, long total) {
  MARBM_EXPECTS(total > 0, UsageError,
                "mode schedule: total updates must be positive (got " + std::to_string(total) + ")");
  return config.p_max * sigmoid(config.alpha * static_cast<double>(t) / static_cast<double>(total) + config.beta);
}

double mode_push(double uniform_mean_energy, double mode_energy, int n_visible, int n_hidden) {
  MARBM_EXPECTS(n_visible >= 1 && n_hidden >= 1, UsageError, "mode push: layer sizes must be >= 1");
  // 4 (n+1)(m+1) is the number of parameters (biases counted as a row and a
  // column of W) times the spin-to-bit factor 4 of the reference derivation.
  return (uniform_mean_energy - mode_energy) /
         (4.0 * (static_cast<double>(n_visible) + 1.0) * (static_cast<double>(n_hidden) + 1.0));
}

}  // namespace marbm

namespace marbm::detail {

namespace {

void check_mode_config(const ModeAssistConfig& mode) {
  MARBM_EXPECTS(std::isfinite(mode.p_max) && mode.p_max >= 0.0 && mode.p_max <= 1.0, UsageError,
                "mode p_max must be in [0, 1] (got " + std::to_string(mode.p_max) + ")");
  MARBM_EXPECTS(std::isfinite(mode.alpha), UsageError, "mode alpha must be finite");
  MARBM_EXPECTS(std::isfinite(mode.beta), UsageError, "mode beta must be finite");
  MARBM_EXPECTS(mode.auto_exhaustive_units >= 0 && mode.auto_exhaustive_units <= 32, UsageError,
                "mode auto_exhaustive_units must be in [0, 32] (got " + std::to_string(mode.auto_exhaustive_units) +
                    ")");
}

}  // namespace

ModeAssist::ModeAssist(const TrainConfig& config, int n_visible, int n_hidden, long total_iterations)
    : config_(config), n_visible_(n_visible), n_hidden_(n_hidden), total_iterations_(total_iterations) {
  MARBM_EXPECTS(n_visible >= 1 && n_hidden >= 1, UsageError, "mode assist: layer sizes must be >= 1");
  MARBM_EXPECTS(total_iterations > 0, UsageError,
                "mode assist: total updates must be positive (got " + std::to_string(total_iterations) + ")");
  check_mode_config(config.mode);
  search_ = config.mode.search;
  if (config.mode.solver) {
    search_.solver = *config.mode.solver;
  } else {
    // Exhaustive is exact and, for a small layer, cheaper than any replica
    // search; beyond that the simulated-bifurcation replicas take over.
    search_.solver = std::min(n_visible, n_hidden) <= config.mode.auto_exhaustive_units ? ModeSolver::exhaustive
                                                                                        : ModeSolver::sb;
  }
  search_.warm_visible.clear();
  search_.warm_hidden.clear();
}

double ModeAssist::probability(long t) const { return mode_probability(config_.mode, t, total_iterations_); }

bool ModeAssist::is_mode_step(long t) const {
  const double p = probability(t);
  if (p <= 0.0) return false;
  const PhiloxStream stream(config_.seed, random_stream(RandomPurpose::mode_choice, static_cast<std::uint64_t>(t)));
  return stream.uniform_double(0) < p;
}

double ModeAssist::prepare_mode_step(Engine& engine, UpdateStep& step, long t) {
  // Each search gets its own seed, a pure function of (seed, t), so a run
  // reproduces whatever happened before it on other runs.
  const PhiloxStream seeds(config_.seed, random_stream(RandomPurpose::mode_search, static_cast<std::uint64_t>(t)));
  const auto words = seeds.block(0);
  search_.seed = (static_cast<std::uint64_t>(words[0]) << 32) | words[1];
  if (!mode_visible_.empty()) {
    // The mode moves little between consecutive mode steps: one replica
    // starts where the last search ended.
    search_.warm_visible = mode_visible_;
    search_.warm_hidden = mode_hidden_;
  }
  const ModeResult found = engine.find_mode(search_);
  MARBM_EXPECTS(static_cast<int>(found.visible.size()) == n_visible_ &&
                    static_cast<int>(found.hidden.size()) == n_hidden_,
                RuntimeFailure, "mode search returned a state of the wrong size");
  MARBM_EXPECTS(std::isfinite(found.energy), RuntimeFailure, "mode search returned a non-finite energy");
  mode_visible_ = found.visible;
  mode_hidden_ = found.hidden;

  const double mean_energy = engine.model().uniform_mean_energy();
  last_energy_ = found.energy;
  last_push_ = mode_push(mean_energy, found.energy, n_visible_, n_hidden_);
  ++steps_taken_;

  step.negative = NegativePhase::mode;
  step.mode_visible = mode_visible_;
  step.mode_hidden = mode_hidden_;
  if (config_.mode.push_scaled) step.learning_rate *= last_push_;
  return last_push_;
}

}  // namespace marbm::detail
