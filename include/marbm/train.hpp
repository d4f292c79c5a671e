// The training driver: CD-k, PCD-k, exact gradient and mode-assisted training
// (SPEC.md sections 2 and 3), written once against the Engine interface.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/mode.hpp"
#include "marbm/rbm.hpp"

namespace marbm {

enum class TrainMethod { cd, pcd, exact, mode };
/// Parses "cd" | "pcd" | "exact" | "mode"; throws UsageError otherwise.
TrainMethod parse_train_method(std::string_view text);
std::string_view to_string(TrainMethod method);

/// Which state a mode step pushes down.
enum class ModeTarget {
  joint,     ///< the ground state (v*, h*) = argmin E(v, h) (SPEC.md section 3)
  marginal,  ///< v* = argmax p(v) = argmin F(v), h* = argmin_h E(v*, h): the paper's code
};

/// Mode-assisted training (SPEC.md section 3).
struct ModeAssistConfig {
  double p_max = 0.1;   ///< P_mode(t) = p_max * sigmoid(alpha * t / T + beta)
  double alpha = 20.0;
  double beta = -6.0;
  /// Mode solver; nullopt is "auto", chosen by estimated cost
  /// (choose_mode_solver): exhaustive where enumerating is cheap, else the
  /// seeded local search.
  std::optional<ModeSolver> solver;
  /// auto never enumerates a smaller layer beyond this many units.
  int auto_exhaustive_units = 20;
  /// true: lr_mode = lr * mode_push ("push"); false: lr_mode = lr ("constant").
  bool push_scaled = true;
  /// Multiplies lr_mode (either scaling).
  double lr_factor = 1.0;
  /// false: a mode step replaces that update's CD/PCD step (SPEC.md
  /// section 3); true: it comes on top of it, so no base update is lost.
  bool additive = false;
  /// Low-energy states a mode step uses (joint target with the local
  /// search): the K lowest distinct minima the search kept, weighted by
  /// exp(-E) (a Boltzmann average over the population instead of the single
  /// mode). 1: the mode alone (SPEC.md section 3).
  int mode_states = 1;
  /// Negative phase of the non-mode steps: cd or pcd.
  NegativePhase base = NegativePhase::cd;
  /// Replicas, steps and other solver options (solver/backend/seed/warm start
  /// are set by the driver).
  ModeSearchConfig search;
  /// Joint ground state or marginal mode of p(v).
  ModeTarget target = ModeTarget::joint;
  /// marginal: enumerate the 2^n visible states when n <= this; beyond, a
  /// single-flip free-energy descent from the joint mode the solver finds.
  int marginal_exhaustive_units = 20;
};

/// How the learning rate changes over a run's T updates (t = 0 .. T-1; see
/// learning_rate_at). The first update uses learning_rate, the last
/// final_learning_rate.
enum class LearningRateSchedule {
  constant,     ///< learning_rate at every update
  linear,       ///< learning_rate + (final - learning_rate) t / (T - 1)
  exponential,  ///< learning_rate (final / learning_rate)^(t / (T - 1))
};
/// Parses "constant" | "linear" | "exponential"; throws UsageError otherwise.
LearningRateSchedule parse_learning_rate_schedule(std::string_view text);
std::string_view to_string(LearningRateSchedule schedule);

/// Settings of one training run.
struct TrainConfig {
  TrainMethod method = TrainMethod::cd;
  int gibbs_steps = 1;            ///< k
  double learning_rate = 0.1;    ///< the rate of the first update (of every update when constant)
  LearningRateSchedule learning_rate_schedule = LearningRateSchedule::constant;
  /// The rate of the last update with a linear (>= 0) or exponential (> 0)
  /// schedule; unused when constant. A mode step uses the scheduled rate
  /// times its push and lr_factor.
  double final_learning_rate = 0.0;
  double momentum = 0.0;
  double weight_decay = 0.0;
  int batch_size = 100;           ///< clipped to the data set's rows
  long iterations = 0;            ///< updates T; 0: epochs * batches per epoch
  int epochs = 0;
  int persistent_chains = 0;      ///< pcd chains; 0: batch size
  int device = 0;                 ///< train_ensemble on cuda: device ordinal (train() uses its engine's)
  std::uint64_t seed = 0;         ///< batch order, Gibbs and mode choices
  long eval_every = 0;            ///< metrics every N updates (and at 0 and T); 0: only at T
  bool exact_metrics = true;      ///< compute exact KL / log-likelihood when enumerable
  bool sample_positive_hidden = false;
  ModeAssistConfig mode;
  ExactOptions exact;             ///< limit for exact metrics and the exact method
};

/// What the driver reports every eval_every updates.
struct TrainMetrics {
  long iteration = 0;  ///< updates done
  double kl = std::numeric_limits<double>::quiet_NaN();                   ///< exact, else NaN
  double mean_log_likelihood = std::numeric_limits<double>::quiet_NaN();  ///< exact, else NaN
  double log_z = std::numeric_limits<double>::quiet_NaN();                ///< exact, else NaN
  double p_mode = 0.0;          ///< P_mode at this iteration (mode method)
  double mode_push = std::numeric_limits<double>::quiet_NaN();    ///< push of the last mode step
  double mode_energy = std::numeric_limits<double>::quiet_NaN();  ///< energy of the last mode found
  long mode_steps = 0;          ///< mode steps taken so far
  double seconds = 0.0;         ///< wall time since training started
  /// Collapse diagnostics: mean cosine between the weight vectors (columns
  /// of W) of distinct hidden units among the first 64; near 1 when they all
  /// learned one feature. NaN with one hidden unit.
  double hidden_similarity = std::numeric_limits<double>::quiet_NaN();
  /// Fraction of hidden units whose p(h_j = 1 | v) is above 0.99 on every
  /// one of the first 64 training rows, or below 0.01 on every one: units
  /// that say nothing about the data.
  double saturated_hidden = std::numeric_limits<double>::quiet_NaN();
};

/// A one-line warning when the metrics show collapsed hidden units (mean
/// cosine above 0.95 between their weight vectors) or saturated ones (half or
/// more of them constant on the data); empty otherwise.
std::string collapse_warning(const TrainMetrics& metrics);

using MetricsCallback = std::function<void(const TrainMetrics&)>;

struct TrainResult {
  Rbm model;
  std::vector<TrainMetrics> history;
  long mode_steps = 0;
  double seconds = 0.0;
};

/// Thrown by train() when the parameters become non-finite. They are checked
/// at every evaluation and at least every `finite_check_every` updates, so a
/// diverging run stops within that many updates of going non-finite; the
/// exception carries the last model found finite and the metrics so far.
class TrainingDiverged : public RuntimeFailure {
 public:
  TrainingDiverged(const std::string& message, long noticed, long last_finite, Rbm last_model,
                   std::vector<TrainMetrics> metrics)
      : RuntimeFailure(message),
        noticed_at(noticed),
        last_finite_iteration(last_finite),
        last_finite_model(std::move(last_model)),
        history(std::move(metrics)) {}

  long noticed_at;              ///< updates done when the non-finite parameters were found
  long last_finite_iteration;   ///< updates done when the parameters were last found finite
  Rbm last_finite_model;        ///< the parameters then
  std::vector<TrainMetrics> history;  ///< the evaluations before the divergence
};

/// What mode-assisted training carries from one mode step to the next: the
/// last mode (the warm start of the next search), the local search's kept
/// minima and the counters.
struct ModeAssistState {
  std::vector<std::uint8_t> mode_visible;  ///< n values, empty before the first mode step
  std::vector<std::uint8_t> mode_hidden;   ///< m values
  std::vector<std::uint8_t> population;    ///< kept minima, rows of n values
  long steps_taken = 0;
  double last_push = 0.0;
  double last_energy = 0.0;
};

/// Everything a run needs to continue exactly where it stopped. Random
/// numbers are drawn from Philox streams named by (seed, update), so the
/// update counter is their position. Written and read by checkpoint.hpp.
struct TrainCheckpoint {
  long iteration = 0;                 ///< updates done
  Rbm model;                          ///< parameters after `iteration` updates
  OptimizerState optimizer;           ///< the momentum's velocity
  int chain_count = 0;                ///< persistent chains (0: none)
  std::vector<std::uint8_t> chains;   ///< chain_count x n visible states
  ModeAssistState mode;               ///< mode method only
  std::vector<TrainMetrics> history;  ///< evaluations so far
  double seconds = 0.0;               ///< training time so far
};

/// Checkpoints during train(): every `every` updates (0: never) `write` is
/// called with the state after that update (not after the last update: the
/// caller saves the result). With `resume`, train() continues that
/// checkpoint's run instead of starting from `initial`: the result is
/// bit-identical to the run never interrupted (same config and data).
struct CheckpointOptions {
  long every = 0;
  std::function<void(const TrainCheckpoint&)> write;
  const TrainCheckpoint* resume = nullptr;
};

/// Updates between two checks of the parameters for non-finite values (besides
/// the check at every evaluation).
inline constexpr long finite_check_every = 64;

/// Trains from `initial` on `data`. Throws UsageError for inconsistent
/// settings (sizes, negative rates, exact method beyond the limit...) and
/// TrainingDiverged when the parameters become non-finite.
TrainResult train(Engine& engine, const Dataset& data, const Rbm& initial, const TrainConfig& config,
                  const MetricsCallback& on_metrics = {});

/// train() with checkpoints written and/or a checkpoint resumed. Throws
/// UsageError when the checkpoint does not fit the config and data (sizes,
/// an iteration beyond the run's length, chains or mode state missing).
TrainResult train(Engine& engine, const Dataset& data, const Rbm& initial, const TrainConfig& config,
                  const MetricsCallback& on_metrics, const CheckpointOptions& checkpoints);

/// train() on rows resident where the engine computes (Engine::set_resident_data),
/// such as a CUDA tensor on the CUDA engine's device, which never pass through
/// the host. The updates are those of train() on the same rows as a Dataset;
/// what train() reads from host rows is left out: the exact KL and
/// log-likelihood and the saturation diagnostic stay NaN (log Z is still
/// computed when enumerable and exact_metrics is set), and the mode search's
/// local solver starts from no data rows.
TrainResult train(Engine& engine, const ResidentRows& data, const Rbm& initial, const TrainConfig& config,
                  const MetricsCallback& on_metrics = {}, const CheckpointOptions& checkpoints = {});

/// train() from parameters resident where the engine computes
/// (Engine::set_resident_model), such as PyTorch CUDA tensors on the CUDA
/// engine's device, which enter the engine device to device instead of
/// through a host Rbm. The updates are those of train() from the same
/// parameters as an Rbm, bit for bit. As at every evaluation, the driver reads
/// the parameters back to the host once at the start: to check that they are
/// finite and to keep them as the last finite model.
TrainResult train(Engine& engine, const Dataset& data, const ResidentParameters& initial, const TrainConfig& config,
                  const MetricsCallback& on_metrics = {}, const CheckpointOptions& checkpoints = {});
TrainResult train(Engine& engine, const ResidentRows& data, const ResidentParameters& initial,
                  const TrainConfig& config, const MetricsCallback& on_metrics = {},
                  const CheckpointOptions& checkpoints = {});

/// Sets the visible biases of `rbm` to the data's base rates,
/// a_i = log(p_i / (1 - p_i)) with p_i = (ones in column i + 1) / (rows + 2)
/// (Hinton's practical guide; also the base model of AIS, SPEC.md section 6).
/// Throws UsageError when the column count differs from n.
void set_base_rate_visible_bias(Rbm& rbm, const Dataset& data);

/// Bytes a training run of an n_visible x n_hidden model on `rows` rows
/// allocates at most on the host: copies of the weights, optimiser state,
/// data, batch buffers, persistent chains and the mode solver's population.
double training_memory_bytes(const TrainConfig& config, int n_visible, int n_hidden, int rows);

/// Memory the process may still allocate: the smaller of the machine's
/// available memory and what its address-space or data-size limit leaves.
double available_memory_bytes();

/// Throws RuntimeFailure, one line naming the size, when
/// training_memory_bytes exceeds available_memory_bytes.
void check_training_memory(const TrainConfig& config, int n_visible, int n_hidden, int rows);

/// Number of updates the config implies for a data set of `rows` rows.
long total_iterations(const TrainConfig& config, int rows);

/// The learning rate of update t (0-based) of a run of `total` updates under
/// the config's schedule: learning_rate at t = 0, final_learning_rate at
/// t = total - 1 (linear or exponential in between; a one-update run uses
/// learning_rate). Throws UsageError for a final rate out of range (negative
/// or non-finite; not > 0 for exponential) or t outside [0, total).
double learning_rate_at(const TrainConfig& config, long t, long total);

/// P_mode(t) = p_max * sigmoid(alpha * t / T + beta).
double mode_probability(const ModeAssistConfig& config, long t, long total);

/// The solver "auto" picks for an n x m model: exhaustive when its 2^k f
/// work (k, f: the smaller and larger layer) is at most 2^22 operations or
/// no more than the seeded local search's estimated (batch + 72) k f 8, and
/// k <= config.auto_exhaustive_units; else local. An explicit config.solver
/// is returned as it is.
ModeSolver choose_mode_solver(const ModeAssistConfig& config, int n_visible, int n_hidden, int batch_size);

/// mode_push = (E_bar - E(v*,h*)) / (4 (n+1) (m+1)).
double mode_push(double uniform_mean_energy, double mode_energy, int n_visible, int n_hidden);

}  // namespace marbm
