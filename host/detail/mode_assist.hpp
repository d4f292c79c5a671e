// Mode-assisted training: which updates are mode steps and how a mode step is
// prepared (SPEC.md section 3). Used by the training driver; defined in
// host/mode_assist.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "marbm/engine.hpp"
#include "marbm/train.hpp"

namespace marbm::detail {

/// Decides and prepares the mode steps of one mode-assisted run.
class ModeAssist {
 public:
  ModeAssist(const TrainConfig& config, int n_visible, int n_hidden, long total_iterations);

  /// The training data: the local search then also starts from the rows of
  /// each mode step's minibatch. Not owned; must outlive the mode steps.
  void set_start_data(const Dataset* data) { data_ = data; }

  /// P_mode(t) for update t (0-based) of total_iterations.
  double probability(long t) const;
  /// Whether update t is a mode step: Philox uniform of (config.seed,
  /// mode_choice stream, t) < P_mode(t).
  bool is_mode_step(long t) const;
  /// Finds the mode of the engine's current parameters (warm-started from the
  /// previous mode) and turns `step` into a mode step: negative = mode,
  /// mode_visible/mode_hidden pointing at the stored mode, learning_rate
  /// scaled by the push (or not, per config). Returns the push factor.
  /// Equals begin_mode_step, the search on `engine` (when needs_search()),
  /// then finish_mode_step with the engine's model (when needs_model()) and
  /// its uniform_mean_energy().
  double prepare_mode_step(Engine& engine, UpdateStep& step, long t);

  /// The mode step in two parts, for a caller that runs the searches of
  /// several models itself (the batched ensemble): begin_mode_step sets the
  /// search's seed (a pure function of the run's seed and t), its warm start
  /// and, for the local search, its starts (the last population, the
  /// engine's persistent chains, the rows of `step`), and returns that
  /// search configuration (valid until the next call). The caller then runs
  /// the search with it, when needs_search(), on the model's current
  /// parameters, and hands the result, those parameters (when
  /// needs_model(); else null) and their uniform mean energy (E_bar) to
  /// finish_mode_step, which takes the state(s), pushes and turns `step`
  /// into a mode step exactly as prepare_mode_step does. Returns the push.
  const ModeSearchConfig& begin_mode_step(Engine& engine, const UpdateStep& step, long t);
  double finish_mode_step(const Rbm* model, double mean_energy, const ModeResult* found, UpdateStep& step);
  /// Whether finish_mode_step needs the model on the host (several mode
  /// states, the marginal target); the joint mode with one state does not.
  bool needs_model() const;
  /// Whether a mode step searches (false only for the marginal target with an
  /// enumerable visible layer, whose exact marginal mode needs no search).
  bool needs_search() const;
  /// The search configuration of the run (solver chosen at construction).
  const ModeSearchConfig& search_config() const { return search_; }

  /// The state a checkpoint keeps, and restoring it (a resumed run).
  ModeAssistState state() const;
  void restore(const ModeAssistState& state);

  long steps_taken() const { return steps_taken_; }
  double last_push() const { return last_push_; }
  double last_energy() const { return last_energy_; }

 private:
  void check_found(const ModeResult& found) const;
  /// Fills states_* from the search's kept minima (mode_states > 1).
  void take_states(const Rbm& model, const ModeResult& found);

  TrainConfig config_;
  int n_visible_ = 0;
  int n_hidden_ = 0;
  long total_iterations_ = 0;
  ModeSearchConfig search_;
  const Dataset* data_ = nullptr;
  /// Low-energy visible states of the last local search: starts of the next.
  std::vector<std::uint8_t> population_;
  /// mode_states > 1: the states of the last mode step and their weights.
  std::vector<std::uint8_t> states_visible_;
  std::vector<std::uint8_t> states_hidden_;
  std::vector<double> state_weights_;
  std::vector<std::uint8_t> mode_visible_;
  std::vector<std::uint8_t> mode_hidden_;
  long steps_taken_ = 0;
  double last_push_ = 0.0;
  double last_energy_ = 0.0;
};

/// The marginal mode argmin_v F(v): exact over the 2^n visible states when
/// n <= exhaustive_units (start unused), else a single-flip free-energy
/// descent from `start` (a local minimum of F no higher than F(start)).
std::vector<std::uint8_t> marginal_mode_visible(const Rbm& rbm, int exhaustive_units,
                                                std::span<const std::uint8_t> start);

}  // namespace marbm::detail
