// The training driver (SPEC.md sections 2 and 3), written once against Engine:
// validates the settings, walks the minibatch schedule, asks the engine for one
// update per step and reports metrics. Mode steps are planned by
// detail::ModeAssist (host/mode_assist.cpp).
#include "marbm/train.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>

#include "detail/batch_schedule.hpp"
#include "detail/gibbs_steps.hpp"
#include "detail/mode_assist.hpp"
#include "marbm/error.hpp"
#include "marbm/random.hpp"

namespace marbm {

TrainMethod parse_train_method(std::string_view text) {
  if (text == "cd") return TrainMethod::cd;
  if (text == "pcd") return TrainMethod::pcd;
  if (text == "exact") return TrainMethod::exact;
  if (text == "mode") return TrainMethod::mode;
  throw UsageError("unknown training method '" + std::string(text) + "' (expected cd, pcd, exact or mode)");
}

std::string_view to_string(TrainMethod method) {
  switch (method) {
    case TrainMethod::cd: return "cd";
    case TrainMethod::pcd: return "pcd";
    case TrainMethod::exact: return "exact";
    case TrainMethod::mode: return "mode";
  }
  return "?";
}

LearningRateSchedule parse_learning_rate_schedule(std::string_view text) {
  if (text == "constant") return LearningRateSchedule::constant;
  if (text == "linear") return LearningRateSchedule::linear;
  if (text == "exponential") return LearningRateSchedule::exponential;
  throw UsageError("unknown learning-rate schedule '" + std::string(text) +
                   "' (expected constant, linear or exponential)");
}

std::string_view to_string(LearningRateSchedule schedule) {
  switch (schedule) {
    case LearningRateSchedule::constant: return "constant";
    case LearningRateSchedule::linear: return "linear";
    case LearningRateSchedule::exponential: return "exponential";
  }
  return "?";
}

namespace {

std::string number(double x) { return std::to_string(x); }

int effective_batch(const TrainConfig& config, int rows) { return std::min(config.batch_size, rows); }

void check_learning_rate_schedule(const TrainConfig& config, const std::string& who) {
  const double final_rate = config.final_learning_rate;
  switch (config.learning_rate_schedule) {
    case LearningRateSchedule::constant: return;
    case LearningRateSchedule::linear:
      MARBM_EXPECTS(std::isfinite(final_rate) && final_rate >= 0, UsageError,
                    who + ": the final learning rate of a linear schedule must be finite and >= 0, got " +
                        number(final_rate));
      return;
    case LearningRateSchedule::exponential:
      MARBM_EXPECTS(std::isfinite(final_rate) && final_rate > 0, UsageError,
                    who + ": the final learning rate of an exponential schedule must be finite and > 0, got " +
                        number(final_rate));
      return;
  }
  throw UsageError(who + ": unknown learning-rate schedule");
}

void check_data(const Dataset& data, const Rbm& initial) {
  MARBM_EXPECTS(data.n_rows >= 1, UsageError, "train: the data set '" + data.description + "' has no rows");
  MARBM_EXPECTS(data.n_cols == initial.n_visible(), UsageError,
                "train: the data set '" + data.description + "' has " + std::to_string(data.n_cols) +
                    " columns, the model has " + std::to_string(initial.n_visible()) + " visible units");
  MARBM_EXPECTS(data.values.size() == static_cast<std::size_t>(data.n_rows) * data.n_cols, DataError,
                "train: the data set '" + data.description + "' holds the wrong number of values for its size");
}

void check_resident_data(const ResidentRows& data, const Rbm& initial) {
  MARBM_EXPECTS(data.rows >= 1, UsageError, "train: the resident data have no rows");
  MARBM_EXPECTS(data.cols == initial.n_visible(), UsageError,
                "train: the resident data have " + std::to_string(data.cols) + " columns, the model has " +
                    std::to_string(initial.n_visible()) + " visible units");
}

void check_config(const TrainConfig& config, const Rbm& initial) {
  MARBM_EXPECTS(initial.n_visible() >= 1 && initial.n_hidden() >= 1, UsageError,
                "train: the initial model has no units");
  initial.check_finite("train: initial model");
  MARBM_EXPECTS(std::isfinite(config.learning_rate) && config.learning_rate > 0, UsageError,
                "train: learning rate must be finite and > 0, got " + number(config.learning_rate));
  check_learning_rate_schedule(config, "train");
  MARBM_EXPECTS(std::isfinite(config.momentum) && config.momentum >= 0 && config.momentum < 1, UsageError,
                "train: momentum must be in [0, 1), got " + number(config.momentum));
  MARBM_EXPECTS(std::isfinite(config.weight_decay) && config.weight_decay >= 0, UsageError,
                "train: weight decay must be finite and >= 0, got " + number(config.weight_decay));
  detail::check_gibbs_steps(config.gibbs_steps, "train");
  MARBM_EXPECTS(config.persistent_chains >= 0, UsageError,
                "train: persistent chain count must be >= 0 (0: batch size), got " +
                    std::to_string(config.persistent_chains));
  MARBM_EXPECTS(config.eval_every >= 0, UsageError,
                "train: eval_every must be >= 0 (0: only at the end), got " + std::to_string(config.eval_every));
  MARBM_EXPECTS(config.exact.max_enumerated_units >= 0 && config.exact.max_enumerated_units <= 62, UsageError,
                "train: the exact enumeration limit must be in [0, 62] units, got " +
                    std::to_string(config.exact.max_enumerated_units));
  if (config.method == TrainMethod::exact) {
    MARBM_EXPECTS(exact_enumerable(initial, config.exact), UsageError,
                  "train: the exact method needs min(n, m) <= " + std::to_string(config.exact.max_enumerated_units) +
                      " enumerated units; this model is " + std::to_string(initial.n_visible()) + " x " +
                      std::to_string(initial.n_hidden()));
  }
  if (config.method == TrainMethod::mode) {
    MARBM_EXPECTS(config.mode.base == NegativePhase::cd || config.mode.base == NegativePhase::pcd, UsageError,
                  "train: the base negative phase of mode-assisted training must be cd or pcd");
  }
}

NegativePhase negative_phase_of(const TrainConfig& config) {
  switch (config.method) {
    case TrainMethod::cd: return NegativePhase::cd;
    case TrainMethod::pcd: return NegativePhase::pcd;
    case TrainMethod::exact: return NegativePhase::exact;
    case TrainMethod::mode: return config.mode.base;
  }
  return NegativePhase::cd;
}

// Collapse diagnostics of `model` (TrainMetrics::hidden_similarity and
// saturated_hidden). They run at every evaluation, so they are bounded: the
// cosines among the first 64 hidden units, the saturation on the first 64
// rows of `data` (O(64 n (64 + m)) work, small beside a training update).
// Without host rows (data resident on the engine) the saturation stays NaN.
void collapse_diagnostics(Engine& engine, const Rbm& model, const Dataset* data, TrainMetrics& metrics) {
  const int n = model.n_visible(), m = model.n_hidden();
  const auto w = model.weights();
  const int units = std::min(m, 64);
  if (units >= 2) {
    std::vector<double> norm(static_cast<std::size_t>(units), 0.0);
    std::vector<double> dot(static_cast<std::size_t>(units) * units, 0.0);
    for (int i = 0; i < n; ++i) {
      const float* row = w.data() + static_cast<std::size_t>(i) * m;
      for (int j = 0; j < units; ++j) {
        norm[j] += static_cast<double>(row[j]) * row[j];
        for (int q = j + 1; q < units; ++q) {
          dot[static_cast<std::size_t>(j) * units + q] += static_cast<double>(row[j]) * row[q];
        }
      }
    }
    double sum = 0.0;
    for (int j = 0; j < units; ++j) {
      for (int q = j + 1; q < units; ++q) {
        const double scale = std::sqrt(norm[j] * norm[q]);
        sum += scale > 0.0 ? dot[static_cast<std::size_t>(j) * units + q] / scale : 0.0;
      }
    }
    metrics.hidden_similarity = sum / (0.5 * units * (units - 1.0));
  }
  if (data == nullptr) return;
  const int rows = std::min(data->n_rows, 64);
  const std::vector<float> p = engine.hidden_probabilities(
      std::span<const std::uint8_t>(data->values.data(), static_cast<std::size_t>(rows) * n), rows);
  int constant = 0;
  for (int j = 0; j < m; ++j) {
    bool always_on = true, always_off = true;
    for (int r = 0; r < rows; ++r) {
      const float x = p[static_cast<std::size_t>(r) * m + j];
      always_on = always_on && x > 0.99f;
      always_off = always_off && x < 0.01f;
    }
    constant += (always_on || always_off) ? 1 : 0;
  }
  metrics.saturated_hidden = static_cast<double>(constant) / m;
}

}  // namespace

std::string collapse_warning(const TrainMetrics& metrics) {
  char text[200];
  if (metrics.hidden_similarity > 0.95) {
    std::snprintf(text, sizeof text,
                  "at update %ld the hidden units collapsed onto one feature (mean cosine %.3f between their weight "
                  "vectors); lower the learning rate or use more chains",
                  metrics.iteration, metrics.hidden_similarity);
    return text;
  }
  if (metrics.saturated_hidden >= 0.5) {
    std::snprintf(text, sizeof text,
                  "at update %ld %.0f%% of the hidden units are saturated (p(h|v) constant on the data); lower the "
                  "learning rate",
                  metrics.iteration, 100.0 * metrics.saturated_hidden);
    return text;
  }
  return {};
}

void set_base_rate_visible_bias(Rbm& rbm, const Dataset& data) {
  MARBM_EXPECTS(data.n_cols == rbm.n_visible(), UsageError,
                "base-rate biases: the data set '" + data.description + "' has " + std::to_string(data.n_cols) +
                    " columns, the model has " + std::to_string(rbm.n_visible()) + " visible units");
  std::vector<long> ones(static_cast<std::size_t>(data.n_cols), 0);
  for (int r = 0; r < data.n_rows; ++r) {
    const auto row = data.row(r);
    for (int i = 0; i < data.n_cols; ++i) ones[i] += row[i];
  }
  const auto bias = rbm.visible_bias();
  for (int i = 0; i < data.n_cols; ++i) {
    const double p = (static_cast<double>(ones[i]) + 1.0) / (static_cast<double>(data.n_rows) + 2.0);
    bias[i] = static_cast<float>(std::log(p / (1.0 - p)));
  }
}

long total_iterations(const TrainConfig& config, int rows) {
  MARBM_EXPECTS(rows >= 1, UsageError, "train: the data set has no rows");
  MARBM_EXPECTS(config.batch_size >= 1, UsageError,
                "train: batch size must be >= 1, got " + std::to_string(config.batch_size));
  MARBM_EXPECTS(config.iterations >= 0, UsageError,
                "train: iterations must be >= 0, got " + std::to_string(config.iterations));
  MARBM_EXPECTS(config.epochs >= 0, UsageError, "train: epochs must be >= 0, got " + std::to_string(config.epochs));
  if (config.iterations > 0) return config.iterations;
  MARBM_EXPECTS(config.epochs > 0, UsageError, "train: set iterations or epochs (both are 0)");
  return config.epochs * detail::BatchSchedule::batches_per_epoch(effective_batch(config, rows), rows);
}

double learning_rate_at(const TrainConfig& config, long t, long total) {
  check_learning_rate_schedule(config, "learning_rate_at");
  MARBM_EXPECTS(total >= 1 && t >= 0 && t < total, UsageError,
                "learning_rate_at: update " + std::to_string(t) + " is outside a run of " + std::to_string(total) +
                    " updates");
  const double first = config.learning_rate, last = config.final_learning_rate;
  const double fraction = total > 1 ? static_cast<double>(t) / static_cast<double>(total - 1) : 0.0;
  switch (config.learning_rate_schedule) {
    case LearningRateSchedule::constant: return first;
    case LearningRateSchedule::linear: return t == total - 1 && total > 1 ? last : first + (last - first) * fraction;
    case LearningRateSchedule::exponential:
      return t == total - 1 && total > 1 ? last : first * std::pow(last / first, fraction);
  }
  return first;
}

TrainResult train(Engine& engine, const Dataset& data, const Rbm& initial, const TrainConfig& config,
                  const MetricsCallback& on_metrics) {
  return train(engine, data, initial, config, on_metrics, CheckpointOptions{});
}

namespace {

void check_checkpoint(const TrainCheckpoint& checkpoint, const Rbm& initial, long total, NegativePhase base,
                      const TrainConfig& config) {
  const Rbm& model = checkpoint.model;
  MARBM_EXPECTS(model.n_visible() == initial.n_visible() && model.n_hidden() == initial.n_hidden(), UsageError,
                "train: the checkpoint's model is " + std::to_string(model.n_visible()) + " x " +
                    std::to_string(model.n_hidden()) + ", the run's is " + std::to_string(initial.n_visible()) + " x " +
                    std::to_string(initial.n_hidden()));
  MARBM_EXPECTS(checkpoint.iteration >= 1 && checkpoint.iteration <= total, UsageError,
                "train: the checkpoint is at update " + std::to_string(checkpoint.iteration) + " of a run of " +
                    std::to_string(total) + " updates");
  const auto n = static_cast<std::size_t>(model.n_visible()), m = static_cast<std::size_t>(model.n_hidden());
  MARBM_EXPECTS(checkpoint.optimizer.weights.size() == n * m && checkpoint.optimizer.visible_bias.size() == n &&
                    checkpoint.optimizer.hidden_bias.size() == m,
                UsageError, "train: the checkpoint's optimiser state does not fit the model");
  if (base == NegativePhase::pcd) {
    MARBM_EXPECTS(checkpoint.chain_count >= 1 &&
                      checkpoint.chains.size() == static_cast<std::size_t>(checkpoint.chain_count) * n,
                  UsageError, "train: the checkpoint of a persistent-chain run has no chains");
  }
  MARBM_EXPECTS(config.method == TrainMethod::mode || checkpoint.mode.steps_taken == 0, UsageError,
                "train: the checkpoint holds mode steps but the run is not mode-assisted");
}

}  // namespace

namespace {

// The training driver. `host` holds the data rows on the host; it is null when
// they are resident on the engine only (train() on ResidentRows), and then
// the quantities read from host rows are left out. `load_data` hands the
// data to the engine.
TrainResult run_training(Engine& engine, int data_rows, const Dataset* host, const std::function<void()>& load_data,
                         const Rbm& initial, const TrainConfig& config, const MetricsCallback& on_metrics,
                         const CheckpointOptions& checkpoints, bool initial_loaded = false) {
  check_config(config, initial);
  const long total = total_iterations(config, data_rows);
  const int batch = effective_batch(config, data_rows);
  const NegativePhase base = negative_phase_of(config);
  const bool exact_metrics = config.exact_metrics && exact_enumerable(initial, config.exact);
  MARBM_EXPECTS(checkpoints.every >= 0, UsageError,
                "train: the checkpoint interval must be >= 0, got " + std::to_string(checkpoints.every));
  MARBM_EXPECTS(checkpoints.every == 0 || checkpoints.write, UsageError,
                "train: a checkpoint interval needs a function that writes the checkpoints");
  const TrainCheckpoint* resume = checkpoints.resume;
  if (resume) {
    check_checkpoint(*resume, initial, total, base, config);
    resume->model.check_finite("train: the checkpoint's model");
  }
  const long first = resume ? resume->iteration : 0;

  // `initial_loaded`: the engine holds `initial` already (set_resident_model).
  if (resume) {
    engine.set_model(resume->model);
  } else if (!initial_loaded) {
    engine.set_model(initial);
  }
  load_data();
  if (resume) engine.set_optimizer_state(resume->optimizer);
  if (base == NegativePhase::pcd) {
    if (resume) {
      engine.set_persistent_chain_states(resume->chains, resume->chain_count);
    } else {
      engine.reset_persistent_chains(config.persistent_chains > 0 ? config.persistent_chains : batch, config.seed);
    }
  }
  std::optional<detail::ModeAssist> assist;
  if (config.method == TrainMethod::mode) {
    assist.emplace(config, initial.n_visible(), initial.n_hidden(), total);
    assist->set_start_data(host);
    if (resume) assist->restore(resume->mode);
  }

  TrainResult result;
  if (resume) result.history = resume->history;
  const double earlier_seconds = resume ? resume->seconds : 0.0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return earlier_seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  // Non-finite parameters stop the run at once, keeping the last finite model.
  Rbm last_finite = resume ? resume->model : initial;
  long last_finite_t = first;
  auto finite = [](std::span<const float> values) {
    return std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); });
  };
  auto verified_model = [&](long t) {
    Rbm model = engine.model();
    if (!finite(model.weights()) || !finite(model.visible_bias()) || !finite(model.hidden_bias())) {
      throw TrainingDiverged("train: the parameters became non-finite between updates " +
                                 std::to_string(last_finite_t) + " and " + std::to_string(t) +
                                 " (the run diverged; lower the learning rate)",
                             t, last_finite_t, std::move(last_finite), std::move(result.history));
    }
    last_finite = model;
    last_finite_t = t;
    return model;
  };

  auto report = [&](long t) {
    TrainMetrics metrics;
    metrics.iteration = t;
    const Rbm model = verified_model(t);
    if (exact_metrics) {
      const double log_z = engine.log_partition_exact(config.exact);
      metrics.log_z = log_z;
      if (host != nullptr) {
        metrics.kl = kl_divergence(model, *host, log_z);
        metrics.mean_log_likelihood = mean_log_likelihood(model, *host, log_z);
      }
    }
    collapse_diagnostics(engine, model, host, metrics);
    if (assist) {
      metrics.p_mode = assist->probability(t);
      metrics.mode_steps = assist->steps_taken();
      if (assist->steps_taken() > 0) {
        metrics.mode_push = assist->last_push();
        metrics.mode_energy = assist->last_energy();
      }
    }
    metrics.seconds = elapsed();
    result.history.push_back(metrics);
    if (on_metrics) on_metrics(result.history.back());
  };
  auto due = [&](long t) { return t == 0 || t == total || (config.eval_every > 0 && t % config.eval_every == 0); };

  // The parts of the step that never change; each update copies it, so a
  // mode step's scaled learning rate does not leak into the next update.
  UpdateStep base_step;
  base_step.negative = base;
  base_step.gibbs_steps = config.gibbs_steps;
  base_step.learning_rate = config.learning_rate;
  base_step.momentum = config.momentum;
  base_step.weight_decay = config.weight_decay;
  base_step.sample_positive_hidden = config.sample_positive_hidden;
  base_step.seed = config.seed;
  base_step.exact = config.exact;

  // A checkpoint after update t: the state verified finite, then handed
  // to the writer.
  auto write_checkpoint = [&](long t, const Rbm& model) {
    TrainCheckpoint checkpoint;
    checkpoint.iteration = t;
    checkpoint.model = model;
    checkpoint.optimizer = engine.optimizer_state();
    if (base == NegativePhase::pcd) {
      checkpoint.chains = engine.persistent_chain_states();
      checkpoint.chain_count = static_cast<int>(checkpoint.chains.size() / static_cast<std::size_t>(model.n_visible()));
    }
    if (assist) checkpoint.mode = assist->state();
    checkpoint.history = result.history;
    checkpoint.seconds = elapsed();
    checkpoints.write(checkpoint);
  };
  const bool scheduled = config.learning_rate_schedule != LearningRateSchedule::constant;

  detail::BatchSchedule schedule(data_rows, batch, config.seed);
  if (resume) {
    schedule.seek(first);
  } else {
    report(0);
  }
  for (long t = first; t < total; ++t) {
    UpdateStep step = base_step;
    if (scheduled) step.learning_rate = learning_rate_at(config, t, total);
    step.batch_rows = schedule.rows_of(t);
    step.step = static_cast<std::uint64_t>(t);
    if (assist && assist->is_mode_step(t)) {
      if (config.mode.additive) engine.update(step);
      assist->prepare_mode_step(engine, step, t);
    }
    engine.update(step);
    if (due(t + 1)) {
      report(t + 1);
    } else if ((t + 1) % finite_check_every == 0) {
      verified_model(t + 1);
    }
    if (checkpoints.every > 0 && (t + 1) % checkpoints.every == 0 && t + 1 < total) {
      write_checkpoint(t + 1, verified_model(t + 1));
    }
  }

  result.model = std::move(last_finite);  // report(total) has just checked it
  result.mode_steps = assist ? assist->steps_taken() : 0;
  result.seconds = elapsed();
  return result;
}

}  // namespace

TrainResult train(Engine& engine, const Dataset& data, const Rbm& initial, const TrainConfig& config,
                  const MetricsCallback& on_metrics, const CheckpointOptions& checkpoints) {
  check_data(data, initial);
  return run_training(engine, data.n_rows, &data, [&] { engine.set_data(data); }, initial, config, on_metrics,
                      checkpoints);
}

TrainResult train(Engine& engine, const ResidentRows& data, const Rbm& initial, const TrainConfig& config,
                  const MetricsCallback& on_metrics, const CheckpointOptions& checkpoints) {
  check_resident_data(data, initial);
  return run_training(engine, data.rows, nullptr, [&] { engine.set_resident_data(data); }, initial, config,
                      on_metrics, checkpoints);
}

namespace {

// The parameters into the engine where it computes, and their one read back
// to the host (the checks and the last finite model of run_training).
Rbm load_resident_initial(Engine& engine, const ResidentParameters& initial) {
  engine.set_resident_model(initial);
  return engine.model();
}

}  // namespace

TrainResult train(Engine& engine, const Dataset& data, const ResidentParameters& initial, const TrainConfig& config,
                  const MetricsCallback& on_metrics, const CheckpointOptions& checkpoints) {
  const Rbm loaded = load_resident_initial(engine, initial);
  check_data(data, loaded);
  return run_training(engine, data.n_rows, &data, [&] { engine.set_data(data); }, loaded, config, on_metrics,
                      checkpoints, true);
}

TrainResult train(Engine& engine, const ResidentRows& data, const ResidentParameters& initial,
                  const TrainConfig& config, const MetricsCallback& on_metrics, const CheckpointOptions& checkpoints) {
  const Rbm loaded = load_resident_initial(engine, initial);
  check_resident_data(data, loaded);
  return run_training(engine, data.rows, nullptr, [&] { engine.set_resident_data(data); }, loaded, config,
                      on_metrics, checkpoints, true);
}

}  // namespace marbm
