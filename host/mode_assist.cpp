// Mode-assisted training (SPEC.md section 3): the P_mode schedule, the push
// factor, and turning an ordinary update into a mode step.
#include "detail/mode_assist.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <optional>
#include <string>

#include "detail/mode_search_config.hpp"
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

ModeSolver choose_mode_solver(const ModeAssistConfig& config, int n_visible, int n_hidden, int batch_size) {
  if (config.solver) return *config.solver;
  const int k = std::min(n_visible, n_hidden);
  const double f = std::max(n_visible, n_hidden);
  if (k > config.auto_exhaustive_units) return ModeSolver::local;
  // Operation counts: the enumeration touches the larger layer's fields once
  // per state; the local search starts from the batch rows, 64 random states
  // and the 8 kept minima, each descent a few sweeps of k x f.
  const double exhaustive = std::ldexp(f, k);
  const double local = (std::max(batch_size, 1) + 72.0) * k * f * 8.0;
  return exhaustive <= std::max(std::ldexp(1.0, 22), local) ? ModeSolver::exhaustive : ModeSolver::local;
}

}  // namespace marbm

namespace marbm::detail {

namespace {

// Distinct local minima the local search hands from one mode step to the next.
constexpr int kPopulation = 8;

void check_mode_config(const ModeAssistConfig& mode) {
  MARBM_EXPECTS(std::isfinite(mode.p_max) && mode.p_max >= 0.0 && mode.p_max <= 1.0, UsageError,
                "mode p_max must be in [0, 1] (got " + std::to_string(mode.p_max) + ")");
  MARBM_EXPECTS(std::isfinite(mode.alpha), UsageError, "mode alpha must be finite");
  MARBM_EXPECTS(std::isfinite(mode.beta), UsageError, "mode beta must be finite");
  MARBM_EXPECTS(std::isfinite(mode.lr_factor) && mode.lr_factor > 0.0, UsageError,
                "mode lr factor must be finite and > 0 (got " + std::to_string(mode.lr_factor) + ")");
  MARBM_EXPECTS(mode.mode_states >= 1 && mode.mode_states <= 64, UsageError,
                "mode states must be in [1, 64] (got " + std::to_string(mode.mode_states) + ")");
  // Only the joint local search keeps a population of minima to average over.
  MARBM_EXPECTS(mode.mode_states == 1 || mode.target == ModeTarget::joint, UsageError,
                "mode states > 1 need the joint target");
  MARBM_EXPECTS(mode.mode_states == 1 || !mode.solver || *mode.solver == ModeSolver::local, UsageError,
                "mode states > 1 need the local solver (or auto)");
  MARBM_EXPECTS(mode.auto_exhaustive_units >= 0 && mode.auto_exhaustive_units <= 32, UsageError,
                "mode auto_exhaustive_units must be in [0, 32] (got " + std::to_string(mode.auto_exhaustive_units) +
                    ")");
  MARBM_EXPECTS(mode.marginal_exhaustive_units >= 0 && mode.marginal_exhaustive_units <= 30, UsageError,
                "mode marginal_exhaustive_units must be in [0, 30] (got " +
                    std::to_string(mode.marginal_exhaustive_units) + ")");
}

// Hidden fields b + W^T v in float64.
std::vector<double> hidden_fields(const Rbm& rbm, std::span<const std::uint8_t> visible) {
  const int m = rbm.n_hidden();
  std::vector<double> field(rbm.hidden_bias().begin(), rbm.hidden_bias().end());
  for (int i = 0; i < rbm.n_visible(); ++i) {
    if (!visible[i]) continue;
    for (int j = 0; j < m; ++j) field[j] += rbm.weight(i, j);
  }
  return field;
}

// argmin_v F(v) over all 2^n visible states in Gray-code order: consecutive
// states differ in one unit, so the fields change by one row of W.
std::vector<std::uint8_t> free_energy_minimum_exhaustive(const Rbm& rbm) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  std::vector<std::uint8_t> visible(n, 0), best(n, 0);
  std::vector<double> field(rbm.hidden_bias().begin(), rbm.hidden_bias().end());
  double linear = 0.0;  // a.v
  auto free_energy = [&] {
    double f = -linear;
    for (double x : field) f -= softplus(x);
    return f;
  };
  double best_f = free_energy();
  const std::uint64_t states = std::uint64_t{1} << n;
  for (std::uint64_t k = 1; k < states; ++k) {
    const int i = std::countr_zero(k);  // the unit that flips between Gray codes k-1 and k
    const double sign = visible[i] ? -1.0 : 1.0;
    visible[i] ^= 1u;
    linear += sign * rbm.visible_bias()[i];
    for (int j = 0; j < m; ++j) field[j] += sign * rbm.weight(i, j);
    const double f = free_energy();
    if (f < best_f) {
      best_f = f;
      best = visible;
    }
  }
  return best;
}

// Single-flip descent on F from `visible`: takes the best improving flip
// until none improves (each step lowers F, so it ends).
void free_energy_descent(const Rbm& rbm, std::vector<std::uint8_t>& visible) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  std::vector<double> field = hidden_fields(rbm, visible);
  for (;;) {
    int best_unit = -1;
    double best_change = -1e-12;  // strictly lower, beyond rounding
    for (int i = 0; i < n; ++i) {
      const double sign = visible[i] ? -1.0 : 1.0;
      double change = -sign * rbm.visible_bias()[i];
      for (int j = 0; j < m; ++j) change -= softplus(field[j] + sign * rbm.weight(i, j)) - softplus(field[j]);
      if (change < best_change) {
        best_change = change;
        best_unit = i;
      }
    }
    if (best_unit < 0) return;
    const double sign = visible[best_unit] ? -1.0 : 1.0;
    visible[best_unit] ^= 1u;
    for (int j = 0; j < m; ++j) field[j] += sign * rbm.weight(best_unit, j);
  }
}

}  // namespace

std::vector<std::uint8_t> marginal_mode_visible(const Rbm& rbm, int exhaustive_units,
                                                std::span<const std::uint8_t> start) {
  if (rbm.n_visible() <= exhaustive_units) return free_energy_minimum_exhaustive(rbm);
  std::vector<std::uint8_t> visible(start.begin(), start.end());
  MARBM_EXPECTS(static_cast<int>(visible.size()) == rbm.n_visible(), UsageError,
                "marginal mode: the start state has the wrong number of visible units");
  free_energy_descent(rbm, visible);
  return visible;
}

void ModeAssist::check_found(const ModeResult& found) const {
  MARBM_EXPECTS(static_cast<int>(found.visible.size()) == n_visible_ &&
                    static_cast<int>(found.hidden.size()) == n_hidden_,
                RuntimeFailure, "mode search returned a state of the wrong size");
  MARBM_EXPECTS(std::isfinite(found.energy), RuntimeFailure, "mode search returned a non-finite energy");
}

ModeAssist::ModeAssist(const TrainConfig& config, int n_visible, int n_hidden, long total_iterations)
    : config_(config), n_visible_(n_visible), n_hidden_(n_hidden), total_iterations_(total_iterations) {
  MARBM_EXPECTS(n_visible >= 1 && n_hidden >= 1, UsageError, "mode assist: layer sizes must be >= 1");
  MARBM_EXPECTS(total_iterations > 0, UsageError,
                "mode assist: total updates must be positive (got " + std::to_string(total_iterations) + ")");
  check_mode_config(config.mode);
  // Bad solver options would otherwise surface only at the first mode step,
  // possibly thousands of updates into the run.
  check_mode_search_config(n_visible, n_hidden, config.mode.search);
  search_ = config.mode.search;
  // Several states come from the local search's population, whatever the size.
  search_.solver = config.mode.mode_states > 1 ? ModeSolver::local
                                               : choose_mode_solver(config.mode, n_visible, n_hidden, config.batch_size);
  search_.warm_visible.clear();
  search_.warm_hidden.clear();
  search_.start_visible.clear();
  if (search_.solver == ModeSolver::local && search_.keep_minima == 0) {
    search_.keep_minima = std::max(kPopulation, config.mode.mode_states);
  }
}

ModeAssistState ModeAssist::state() const {
  return {mode_visible_, mode_hidden_, population_, steps_taken_, last_push_, last_energy_};
}

void ModeAssist::restore(const ModeAssistState& state) {
  const bool has_mode = !state.mode_visible.empty();
  MARBM_EXPECTS(!has_mode || (static_cast<int>(state.mode_visible.size()) == n_visible_ &&
                              static_cast<int>(state.mode_hidden.size()) == n_hidden_),
                UsageError, "mode assist: the saved mode does not fit the model");
  MARBM_EXPECTS(state.population.size() % static_cast<std::size_t>(n_visible_) == 0, UsageError,
                "mode assist: the saved population does not fit the model");
  MARBM_EXPECTS(state.steps_taken >= 0 && (has_mode || state.steps_taken == 0), UsageError,
                "mode assist: the saved step count does not fit the saved mode");
  mode_visible_ = state.mode_visible;
  mode_hidden_ = state.mode_hidden;
  population_ = state.population;
  steps_taken_ = state.steps_taken;
  last_push_ = state.last_push;
  last_energy_ = state.last_energy;
}

double ModeAssist::probability(long t) const { return mode_probability(config_.mode, t, total_iterations_); }

bool ModeAssist::is_mode_step(long t) const {
  const double p = probability(t);
  if (p <= 0.0) return false;
  const PhiloxStream stream(config_.seed, random_stream(RandomPurpose::mode_choice, static_cast<std::uint64_t>(t)));
  return stream.uniform_double(0) < p;
}

const ModeSearchConfig& ModeAssist::begin_mode_step(Engine& engine, const UpdateStep& step, long t) {
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
  if (search_.solver == ModeSolver::local) {
    // The local search also starts from the last search's low minima, the
    // persistent chains (pcd base) and the minibatch: trained models put
    // their modes near the data.
    search_.start_visible = population_;
    if (config_.mode.base == NegativePhase::pcd) {
      // The persistent chains sample low-energy regions of the model.
      const std::vector<std::uint8_t> chains = engine.persistent_chain_states();
      search_.start_visible.insert(search_.start_visible.end(), chains.begin(), chains.end());
    }
    if (data_ != nullptr) {
      for (const int row : step.batch_rows) {
        const auto first = data_->values.begin() + static_cast<std::ptrdiff_t>(row) * n_visible_;
        search_.start_visible.insert(search_.start_visible.end(), first, first + n_visible_);
      }
    }
  }
  return search_;
}

bool ModeAssist::needs_search() const {
  // The marginal target with an enumerable visible layer takes the exact
  // marginal mode without a search.
  return config_.mode.target == ModeTarget::joint || n_visible_ > config_.mode.marginal_exhaustive_units;
}

bool ModeAssist::needs_model() const {
  // The joint mode with one state needs no host copy of the model: its
  // energy comes with the search and E_bar from the engine (on the device for
  // the CUDA engine). The host copy stays where the host works on the model:
  // the weights of several mode states, and the marginal target's free-energy
  // search and h*.
  return config_.mode.target != ModeTarget::joint || config_.mode.mode_states > 1;
}

double ModeAssist::prepare_mode_step(Engine& engine, UpdateStep& step, long t) {
  const ModeSearchConfig& search = begin_mode_step(engine, step, t);
  std::optional<ModeResult> found;
  if (needs_search()) found = engine.find_mode(search);
  std::optional<Rbm> model;
  if (needs_model()) model = engine.model();
  return finish_mode_step(model ? &*model : nullptr, engine.uniform_mean_energy(), found ? &*found : nullptr, step);
}

double ModeAssist::finish_mode_step(const Rbm* model, double mean_energy, const ModeResult* found, UpdateStep& step) {
  MARBM_EXPECTS(model != nullptr || !needs_model(), UsageError, "mode assist: this mode step needs the model");
  MARBM_EXPECTS(model == nullptr || (model->n_visible() == n_visible_ && model->n_hidden() == n_hidden_), UsageError,
                "mode assist: the model does not fit the mode step");
  MARBM_EXPECTS(found != nullptr || !needs_search(), UsageError, "mode assist: this mode step needs a search result");
  double energy = 0.0;
  if (config_.mode.target == ModeTarget::joint) {
    check_found(*found);
    mode_visible_ = found->visible;
    mode_hidden_ = found->hidden;
    energy = found->energy;
    population_ = found->minima_visible;
    if (config_.mode.mode_states > 1) take_states(*model, *found);
  } else {
    if (!needs_search()) {
      // The visible layer is enumerable: the exact marginal mode needs no search.
      mode_visible_ = marginal_mode_visible(*model, config_.mode.marginal_exhaustive_units, {});
    } else {
      check_found(*found);
      population_ = found->minima_visible;
      mode_visible_ = marginal_mode_visible(*model, config_.mode.marginal_exhaustive_units, found->visible);
    }
    // h* = argmin_h E(v*, h), the hidden state a polish would pick.
    const std::vector<double> field = hidden_fields(*model, mode_visible_);
    mode_hidden_.resize(n_hidden_);
    for (int j = 0; j < n_hidden_; ++j) mode_hidden_[j] = field[j] > 0.0 ? 1 : 0;
    energy = model->energy(mode_visible_, mode_hidden_);
  }
  last_energy_ = energy;
  // The exact joint mode is never above the uniform mean (push >= 0); a
  // heuristic or marginal state could be, and a negative push would reverse
  // the step, so such a step moves nothing (push 0).
  last_push_ = std::max(0.0, mode_push(mean_energy, energy, n_visible_, n_hidden_));
  ++steps_taken_;

  step.negative = NegativePhase::mode;
  if (config_.mode.mode_states > 1) {
    step.mode_visible = states_visible_;
    step.mode_hidden = states_hidden_;
    step.mode_weights = state_weights_;
  } else {
    step.mode_visible = mode_visible_;
    step.mode_hidden = mode_hidden_;
  }
  if (config_.mode.push_scaled) step.learning_rate *= last_push_;
  step.learning_rate *= config_.mode.lr_factor;
  return last_push_;
}

void ModeAssist::take_states(const Rbm& model, const ModeResult& found) {
  // The best state first, then the other kept minima, lowest first, up to K;
  // weights exp(-(E_k - E_best)) normalised.
  states_visible_ = found.visible;
  states_hidden_ = found.hidden;
  std::vector<double> energy = {found.energy};
  const std::size_t n = static_cast<std::size_t>(n_visible_);
  const std::size_t kept = found.minima_visible.size() / n;
  for (std::size_t q = 0; q < kept && static_cast<int>(energy.size()) < config_.mode.mode_states; ++q) {
    const auto first = found.minima_visible.begin() + static_cast<std::ptrdiff_t>(q * n);
    const std::vector<std::uint8_t> v(first, first + static_cast<std::ptrdiff_t>(n));
    if (v == found.visible) continue;
    const std::vector<double> field = hidden_fields(model, v);
    std::vector<std::uint8_t> h(static_cast<std::size_t>(n_hidden_));
    for (int j = 0; j < n_hidden_; ++j) h[j] = field[j] > 0.0 ? 1 : 0;
    energy.push_back(model.energy(v, h));
    states_visible_.insert(states_visible_.end(), v.begin(), v.end());
    states_hidden_.insert(states_hidden_.end(), h.begin(), h.end());
  }
  const double lowest = *std::min_element(energy.begin(), energy.end());
  state_weights_.resize(energy.size());
  for (std::size_t k = 0; k < energy.size(); ++k) state_weights_[k] = std::exp(lowest - energy[k]);
  const double sum = std::accumulate(state_weights_.begin(), state_weights_.end(), 0.0);
  for (double& w : state_weights_) w /= sum;
}

}  // namespace marbm::detail
