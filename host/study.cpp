// Exact-KL studies: R independent runs of several training methods from the
// same initial parameters, their KL curves, a summary and a plot.
#include "marbm/study.hpp"

#include <fcntl.h>
#include <omp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "detail/gibbs_steps.hpp"
#include "detail/files.hpp"
#include "detail/study_parts.hpp"
#include "marbm/data.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/held_out.hpp"

namespace marbm {

namespace {

constexpr long long max_study_runs = 1'000'000;
constexpr long long max_study_points = 50'000'000;

void check_study_config(const StudyConfig& config) {
  MARBM_EXPECTS(config.hidden >= 1, UsageError,
                "study: --hidden must be >= 1 (got " + std::to_string(config.hidden) + ")");
  MARBM_EXPECTS(!config.methods.empty(), UsageError, "study: --methods names no method");
  std::set<TrainMethod> seen;
  for (TrainMethod method : config.methods) {
    MARBM_EXPECTS(seen.insert(method).second, UsageError,
                  "study: --methods names " + std::string(to_string(method)) + " twice");
  }
  MARBM_EXPECTS(config.runs >= 1, UsageError, "study: --runs must be >= 1 (got " + std::to_string(config.runs) + ")");
  // Every run keeps its KL curve in memory: bound the runs and the points in
  // 64-bit arithmetic before anything is allocated.
  const long long jobs = static_cast<long long>(config.runs) * static_cast<long long>(config.methods.size());
  MARBM_EXPECTS(jobs <= max_study_runs, UsageError,
                "study: --runs " + std::to_string(config.runs) + " x " + std::to_string(config.methods.size()) +
                    " methods is " + std::to_string(jobs) + " runs, more than the " + std::to_string(max_study_runs) +
                    " a study may make");
  MARBM_EXPECTS(config.iterations >= 1, UsageError,
                "study: --iters must be >= 1 (got " + std::to_string(config.iterations) + ")");
  MARBM_EXPECTS(config.batch_size >= 1, UsageError,
                "study: --batch must be >= 1 (got " + std::to_string(config.batch_size) + ")");
  MARBM_EXPECTS(std::isfinite(config.learning_rate) && config.learning_rate > 0.0, UsageError,
                "study: --lr must be a positive number (got " + std::to_string(config.learning_rate) + ")");
  if (config.learning_rate_schedule == LearningRateSchedule::linear) {
    MARBM_EXPECTS(std::isfinite(config.final_learning_rate) && config.final_learning_rate >= 0.0, UsageError,
                  "study: --lr-final must be finite and >= 0 with a linear schedule (got " +
                      std::to_string(config.final_learning_rate) + ")");
  } else if (config.learning_rate_schedule == LearningRateSchedule::exponential) {
    MARBM_EXPECTS(std::isfinite(config.final_learning_rate) && config.final_learning_rate > 0.0, UsageError,
                  "study: --lr-final must be finite and > 0 with an exponential schedule (got " +
                      std::to_string(config.final_learning_rate) + ")");
  }
  MARBM_EXPECTS(std::isfinite(config.momentum) && config.momentum >= 0.0 && config.momentum < 1.0, UsageError,
                "study: --momentum must be in [0, 1) (got " + std::to_string(config.momentum) + ")");
  MARBM_EXPECTS(std::isfinite(config.weight_decay) && config.weight_decay >= 0.0, UsageError,
                "study: --weight-decay must be finite and >= 0 (got " + std::to_string(config.weight_decay) + ")");
  MARBM_EXPECTS(config.persistent_chains >= 0, UsageError,
                "study: --chains must be >= 0 (got " + std::to_string(config.persistent_chains) + ")");
  detail::check_gibbs_steps(config.gibbs_steps, "study: --k");
  MARBM_EXPECTS(config.eval_every >= 1, UsageError,
                "study: --eval-every must be >= 1 (got " + std::to_string(config.eval_every) + ")");
  const double points = static_cast<double>(jobs) * (static_cast<double>(config.iterations / config.eval_every) + 2);
  MARBM_EXPECTS(points <= static_cast<double>(max_study_points), UsageError,
                "study: " + std::to_string(jobs) + " runs with a KL point every " + std::to_string(config.eval_every) +
                    " of " + std::to_string(config.iterations) + " updates are more than the " +
                    std::to_string(max_study_points) + " points a study may record (raise --eval-every)");
  MARBM_EXPECTS(std::isfinite(config.init_sigma) && config.init_sigma >= 0.0, UsageError,
                "study: initial weight scale must be finite and >= 0");
  MARBM_EXPECTS(config.threads >= 0, UsageError,
                "study: --threads must be >= 0 (got " + std::to_string(config.threads) + ")");
  const ModeAssistConfig& mode = config.mode;
  MARBM_EXPECTS(std::isfinite(mode.p_max) && mode.p_max >= 0.0 && mode.p_max <= 1.0, UsageError,
                "study: --p-max must be in [0, 1] (got " + std::to_string(mode.p_max) + ")");
  MARBM_EXPECTS(std::isfinite(mode.alpha), UsageError, "study: --alpha must be finite");
  MARBM_EXPECTS(std::isfinite(mode.beta), UsageError, "study: --beta must be finite");
  MARBM_EXPECTS(mode.base == NegativePhase::cd || mode.base == NegativePhase::pcd, UsageError,
                "study: --base must be cd or pcd");
}

TrainConfig train_config_for(const StudyConfig& config, TrainMethod method, int run) {
  TrainConfig train;
  train.method = method;
  train.gibbs_steps = config.gibbs_steps;
  train.learning_rate = config.learning_rate;
  train.learning_rate_schedule = config.learning_rate_schedule;
  train.final_learning_rate = config.final_learning_rate;
  train.momentum = config.momentum;
  train.weight_decay = config.weight_decay;
  train.persistent_chains = config.persistent_chains;
  train.batch_size = config.batch_size;
  train.iterations = config.iterations;
  // The same training seed for every method of run r: batch order and the
  // Gibbs streams match, so differences come from the method alone.
  train.seed = config.seed + static_cast<std::uint64_t>(run);
  train.eval_every = config.eval_every;
  train.exact_metrics = true;
  train.sample_positive_hidden = config.sample_positive_hidden;
  train.mode = config.mode;
  return train;
}

double median_of(std::vector<double> values) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const std::size_t half = values.size() / 2;
  return values.size() % 2 ? values[half] : 0.5 * (values[half - 1] + values[half]);
}

double final_kl(const StudyRun& run) {
  return run.history.empty() ? std::numeric_limits<double>::quiet_NaN() : run.history.back().kl;
}

// As `out << std::setprecision(9) << value` writes it (printf's %.9g), by
// std::to_chars: a study's CSV holds thousands of numbers.
std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  char text[64];
  const auto end = std::to_chars(text, text + sizeof text, value, std::chars_format::general, 9).ptr;
  return std::string(text, end);
}

}  // namespace

StudyResult run_study(const StudyConfig& config, const StudyProgress& progress,
                      const StudyRunFinished& on_run_finished) {
  StudyResult result = detail::run_study_runs(config, {}, progress, on_run_finished);
  detail::summarize_study(result);
  return result;
}

namespace detail {

StudyResult run_study_runs(const StudyConfig& config, const std::function<bool(int)>& takes_run,
                           const StudyProgress& progress, const StudyRunFinished& on_run_finished) {
  check_study_config(config);
  auto takes = [&](int run) { return !takes_run || takes_run(run); };
  const Dataset data = load_dataset(config.data);
  MARBM_EXPECTS(data.n_rows >= 1 && data.n_cols >= 1, DataError, "study: data set '" + config.data + "' is empty");
  const bool with_test = !config.test_data.empty();
  Dataset test;
  if (with_test) {
    test = load_dataset(config.test_data);
    MARBM_EXPECTS(test.n_rows >= 1, DataError, "study: held-out data set '" + config.test_data + "' is empty");
    MARBM_EXPECTS(test.n_cols == data.n_cols, DataError,
                  "study: held-out rows of '" + config.test_data + "' have " + std::to_string(test.n_cols) +
                      " values but the data '" + config.data + "' has " + std::to_string(data.n_cols));
  }
  const int n = data.n_cols;
  const int m = config.hidden;
  const ExactOptions exact;
  MARBM_EXPECTS(std::min(n, m) <= exact.max_enumerated_units, UsageError,
                "study: a " + std::to_string(n) + " x " + std::to_string(m) +
                    " model is too large for exact KL (min(n, m) must be <= " +
                    std::to_string(exact.max_enumerated_units) + ")");

  StudyResult result;
  result.config = config;
  const int methods = static_cast<int>(config.methods.size());
  const int jobs = methods * config.runs;
  int taken_runs = 0;
  for (int r = 0; r < config.runs; ++r) taken_runs += takes(r) ? 1 : 0;
  const int taken_jobs = methods * taken_runs;
  result.runs.resize(jobs);
  for (int job = 0; job < jobs; ++job) {
    result.runs[job].method = config.methods[job / config.runs];
    result.runs[job].run = job % config.runs;
  }

  const auto start = std::chrono::steady_clock::now();
  std::mutex progress_mutex;
  int done = 0;
  // Serialized: progress, the finished-run callback and the count.
  auto finished = [&](const StudyRun& run, const Rbm& model) {
    std::lock_guard lock(progress_mutex);
    ++done;
    if (on_run_finished) on_run_finished(run, model);
    if (progress) progress(done, taken_jobs);
  };
  auto run_job = [&](int job, Engine& engine) {
    StudyRun& run = result.runs[job];
    const Rbm initial = Rbm::random(n, m, config.init_sigma, config.seed + static_cast<std::uint64_t>(run.run));
    const auto started = std::chrono::steady_clock::now();
    // Held-out rows at every evaluation, with the exact log Z the driver
    // has just computed for the same parameters.
    MetricsCallback held_out;
    if (with_test) {
      held_out = [&](const TrainMetrics& metrics) {
        HeldOutOptions options;
        options.known_log_z = metrics.log_z;  // the driver's exact log Z of these parameters
        const HeldOutMetrics signals = evaluate_held_out(engine.model(), data, test, options);
        run.test_mean_log_likelihood.push_back(signals.mean_log_likelihood);
        run.test_reconstruction_error.push_back(signals.reconstruction_error);
        run.free_energy_gap.push_back(signals.free_energy_gap);
      };
    }
    Rbm final_model;
    try {
      TrainResult trained = train(engine, data, initial, train_config_for(config, run.method, run.run), held_out);
      run.history = std::move(trained.history);
      run.seconds = trained.seconds;
      final_model = std::move(trained.model);
    } catch (const TrainingDiverged& diverged) {
      // One diverging run is a result, not a failure of the study.
      run.history = diverged.history;
      run.diverged_at = diverged.noticed_at;
      run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      final_model = diverged.last_finite_model;
      const std::size_t points = std::min(run.test_mean_log_likelihood.size(), run.history.size());
      run.test_mean_log_likelihood.resize(points);
      run.test_reconstruction_error.resize(points);
      run.free_energy_gap.resize(points);
    }
    finished(run, final_model);
  };

  Backend backend = config.backend;
  if (backend == Backend::automatic) backend = cuda_devices().empty() ? Backend::cpu : Backend::cuda;
  if (backend == Backend::cpu) {
    // Independent small runs: one job per core, each with its own
    // single-threaded engine (tiny BLAS calls gain nothing from threads).
    // More threads than processors would only add memory (and contention).
    // 0: the OpenMP default, which is OMP_NUM_THREADS when set, else every processor.
    const int threads = config.threads > 0 ? std::min(config.threads, omp_get_num_procs()) : omp_get_max_threads();
    result.threads = threads;
    std::exception_ptr failure;
    std::mutex failure_mutex;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int job = 0; job < jobs; ++job) {
      if (!takes(job % config.runs)) continue;
      {
        std::lock_guard lock(failure_mutex);
        if (failure) continue;
      }
      try {
        EngineOptions options;
        options.threads = 1;
        options.quiet = true;
        auto engine = make_engine(Backend::cpu, options);
        run_job(job, *engine);
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
  } else {
    // On the device all runs of a method train at once as one ensemble
    // (small models: one fused kernel, a thread block per run).
    std::vector<Rbm> initial;
    std::vector<std::uint64_t> seeds;
    std::vector<int> taken;  // the runs this call makes
    for (int r = 0; r < config.runs; ++r) {
      if (!takes(r)) continue;
      taken.push_back(r);
      initial.push_back(Rbm::random(n, m, config.init_sigma, config.seed + static_cast<std::uint64_t>(r)));
      seeds.push_back(config.seed + static_cast<std::uint64_t>(r));
    }
    for (int k = 0; k < methods && !taken.empty(); ++k) {
      const TrainConfig train_config = train_config_for(config, config.methods[k], 0);
      if ((train_config.method == TrainMethod::mode && config.mode.target == ModeTarget::marginal) || with_test) {
        // The fused ensemble kernel steps to the joint mode only, and held-out
        // rows need each evaluation's parameters: these runs go through the
        // driver, one device engine per run.
        EngineOptions options;
        options.quiet = true;
        auto engine = make_engine(Backend::cuda, options);
        for (int r : taken) run_job(k * config.runs + r, *engine);
        continue;
      }
      std::vector<TrainResult> trained;
      try {
        trained = train_ensemble(Backend::cuda, data, initial, seeds, train_config);
      } catch (const RuntimeFailure&) {
        // The fused ensemble stops as a whole when one member diverges: run
        // this method's members one by one through the driver instead, which
        // records a diverged run and keeps the others. (A failure that is
        // not a divergence recurs there and is reported.)
        EngineOptions options;
        options.quiet = true;
        auto engine = make_engine(Backend::cuda, options);
        for (int r : taken) run_job(k * config.runs + r, *engine);
        continue;
      }
      for (std::size_t q = 0; q < taken.size(); ++q) {
        StudyRun& run = result.runs[k * config.runs + taken[q]];
        run.history = std::move(trained[q].history);
        run.seconds = trained[q].seconds;
        finished(run, trained[q].model);
      }
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

void summarize_study(StudyResult& result) {
  const StudyConfig& config = result.config;
  const bool with_test = !config.test_data.empty();
  for (TrainMethod method : config.methods) {
    std::vector<double> finals, tests;
    MethodSummary summary;
    for (const StudyRun& run : result.runs) {
      if (run.method != method) continue;
      summary.seconds += run.seconds;
      if (run.diverged_at >= 0) {
        summary.diverged.push_back({run.run, run.diverged_at});
        continue;
      }
      finals.push_back(final_kl(run));
      if (with_test && !run.test_mean_log_likelihood.empty()) tests.push_back(run.test_mean_log_likelihood.back());
    }
    // Statistics of the runs that finished; NaN when every run diverged.
    summary.median_final_kl = median_of(finals);
    summary.min_final_kl =
        finals.empty() ? std::numeric_limits<double>::quiet_NaN() : *std::min_element(finals.begin(), finals.end());
    summary.max_final_kl =
        finals.empty() ? std::numeric_limits<double>::quiet_NaN() : *std::max_element(finals.begin(), finals.end());
    if (with_test) summary.median_final_test_mean_log_likelihood = median_of(tests);
    result.summary[method] = summary;
  }
}

}  // namespace detail

std::string study_csv_text(const std::vector<StudyRun>& runs, bool with_test) {
  std::ostringstream out;
  out << "method,run,iteration,kl,p_mode,status"
      << (with_test ? ",test_mean_log_likelihood,test_reconstruction_error,free_energy_gap" : "") << '\n';
  auto at = [](const std::vector<double>& values, std::size_t i) {
    return i < values.size() ? values[i] : std::numeric_limits<double>::quiet_NaN();
  };
  for (const StudyRun& run : runs) {
    for (std::size_t i = 0; i < run.history.size(); ++i) {
      const TrainMetrics& metrics = run.history[i];
      out << to_string(run.method) << ',' << run.run << ',' << metrics.iteration << ',' << format_number(metrics.kl)
          << ',' << format_number(metrics.p_mode) << ",ok";
      if (with_test) {
        out << ',' << format_number(at(run.test_mean_log_likelihood, i)) << ','
            << format_number(at(run.test_reconstruction_error, i)) << ',' << format_number(at(run.free_energy_gap, i));
      }
      out << '\n';
    }
    // A diverged run ends with the update at which its parameters were found
    // non-finite.
    if (run.diverged_at >= 0) {
      out << to_string(run.method) << ',' << run.run << ',' << run.diverged_at << ",nan,nan,diverged"
          << (with_test ? ",nan,nan,nan" : "") << '\n';
    }
  }
  return out.str();
}

void write_study_csv(const StudyResult& result, const std::string& path) {
  detail::write_file_atomically(path, study_csv_text(result.runs, !result.config.test_data.empty()), "study CSV");
}

void write_study_summary(const StudyResult& result, const std::string& path) {
  const StudyConfig& config = result.config;
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  for (TrainMethod method : config.methods) {
    const auto found = result.summary.find(method);
    if (found == result.summary.end()) continue;
    const MethodSummary& summary = found->second;
    nlohmann::ordered_json diverged = nlohmann::ordered_json::array();
    for (const auto& [run, at] : summary.diverged) diverged.push_back({{"run", run}, {"diverged_at", at}});
    auto number = [](double value) -> nlohmann::ordered_json {
      if (std::isnan(value)) return nullptr;
      return value;
    };
    nlohmann::ordered_json entry = {{"median_final_kl", number(summary.median_final_kl)},
                                    {"min_final_kl", number(summary.min_final_kl)},
                                    {"max_final_kl", number(summary.max_final_kl)},
                                    {"seconds", summary.seconds},
                                    {"diverged", diverged}};
    if (!config.test_data.empty()) {
      entry["median_final_test_mean_log_likelihood"] = number(summary.median_final_test_mean_log_likelihood);
    }
    root[std::string(to_string(method))] = entry;
  }
  nlohmann::ordered_json methods = nlohmann::ordered_json::array();
  for (TrainMethod method : config.methods) methods.push_back(std::string(to_string(method)));
  const ModeAssistConfig& mode = config.mode;
  root["settings"] = {
      {"data", config.data},
      {"hidden", config.hidden},
      {"methods", methods},
      {"runs", config.runs},
      {"iterations", config.iterations},
      {"batch_size", config.batch_size},
      {"learning_rate", config.learning_rate},
      {"learning_rate_schedule", std::string(to_string(config.learning_rate_schedule))},
      {"final_learning_rate", config.final_learning_rate},
      {"momentum", config.momentum},
      {"weight_decay", config.weight_decay},
      {"persistent_chains", config.persistent_chains},
      {"test_data", config.test_data},
      {"gibbs_steps", config.gibbs_steps},
      {"eval_every", config.eval_every},
      {"seed", config.seed},
      {"init_sigma", config.init_sigma},
      {"sample_positive_hidden", config.sample_positive_hidden},
      {"backend", std::string(to_string(config.backend))},
      {"threads", config.threads},
      {"threads_used", result.threads},
      {"mode",
       {{"p_max", mode.p_max},
        {"alpha", mode.alpha},
        {"beta", mode.beta},
        {"solver", mode.solver ? std::string(to_string(*mode.solver)) : std::string("auto")},
        {"lr_scale", mode.push_scaled ? "push" : "constant"},
        {"base", mode.base == NegativePhase::pcd ? "pcd" : "cd"},
        {"target", mode.target == ModeTarget::marginal ? "marginal" : "joint"}}},
      {"wall_seconds", result.seconds},
      {"version", version()},
  };
  detail::write_file_atomically(path, root.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                                "study summary");
}

namespace {

// Per method and evaluation point: median, min and max KL over runs, and P_mode.
struct CurvePoint {
  long iteration = 0;
  double median = 0.0, min = 0.0, max = 0.0, p_mode = 0.0;
};

std::vector<CurvePoint> method_curve(const StudyResult& result, TrainMethod method) {
  std::vector<const StudyRun*> runs;
  for (const StudyRun& run : result.runs) {
    if (run.method == method) runs.push_back(&run);
  }
  std::vector<CurvePoint> curve;
  if (runs.empty()) return curve;
  // A diverged run's curve is shorter; the longest one gives the points.
  const StudyRun* longest = runs.front();
  for (const StudyRun* run : runs) {
    if (run->history.size() > longest->history.size()) longest = run;
  }
  const std::size_t points = longest->history.size();
  for (std::size_t k = 0; k < points; ++k) {
    std::vector<double> values;
    for (const StudyRun* run : runs) {
      if (k < run->history.size() && std::isfinite(run->history[k].kl)) values.push_back(run->history[k].kl);
    }
    if (values.empty()) continue;
    CurvePoint point;
    point.iteration = longest->history[k].iteration;
    point.median = median_of(values);
    point.min = *std::min_element(values.begin(), values.end());
    point.max = *std::max_element(values.begin(), values.end());
    point.p_mode = longest->history[k].p_mode;
    curve.push_back(point);
  }
  return curve;
}

const char* method_color(TrainMethod method) {
  switch (method) {
    case TrainMethod::cd: return "#3070b7";
    case TrainMethod::pcd: return "#2a9d55";
    case TrainMethod::mode: return "#c95c2e";
    case TrainMethod::exact: return "#6b4c9a";
  }
  return "#444444";
}

std::string method_label(TrainMethod method, const StudyConfig& config) {
  const std::string k = std::to_string(config.gibbs_steps);
  switch (method) {
    case TrainMethod::cd: return "CD-" + k;
    case TrainMethod::pcd: return "PCD-" + k;
    case TrainMethod::mode:
      return std::string("mode-assisted (") + (config.mode.base == NegativePhase::pcd ? "PCD-" : "CD-") + k +
             (config.mode.target == ModeTarget::marginal ? ", marginal mode)" : ")");
    case TrainMethod::exact: return "exact gradient";
  }
  return "?";
}

// A gnuplot string that its parser takes as plain text: single quotes (no
// escapes, no backquote command substitution), a quote doubled, and control
// characters, which would end the command line, replaced by spaces.
std::string gnuplot_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "''";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      quoted += ' ';
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string gnuplot_script(const StudyResult& result, const std::string& png_path, const std::string& terminal) {
  const StudyConfig& config = result.config;
  std::ostringstream s;
  s << std::setprecision(9);
  bool any_mode = false;
  double max_p_mode = 0.0, max_kl = 0.0, min_kl = std::numeric_limits<double>::infinity();
  for (TrainMethod method : config.methods) {
    const auto curve = method_curve(result, method);
    s << "$" << to_string(method) << " << EOD\n";
    for (const CurvePoint& p : curve) {
      s << p.iteration << ' ' << p.median << ' ' << p.min << ' ' << p.max << ' ' << p.p_mode << '\n';
      max_kl = std::max(max_kl, p.max);
      if (p.min > 0) min_kl = std::min(min_kl, p.min);
      if (method == TrainMethod::mode) max_p_mode = std::max(max_p_mode, p.p_mode);
    }
    s << "EOD\n";
    if (method == TrainMethod::mode && !curve.empty()) any_mode = true;
  }
  if (!std::isfinite(min_kl)) min_kl = 1e-4;
  if (max_kl <= 0) max_kl = 1.0;

  s << "set terminal " << terminal << " size 1500,620 font 'DejaVu Sans,12'\n";
  s << "set output " << gnuplot_quote(png_path) << "\n";
  std::ostringstream title;
  title << config.data << ", " << config.hidden << " hidden, batch " << config.batch_size << ", lr "
        << config.learning_rate << ", " << config.runs << " runs: median KL, band = min..max over runs";
  s << "set multiplot layout 1,2 title " << gnuplot_quote(title.str()) << "\n";
  s << "set grid lc rgb '#dddddd'\n";
  // One legend, in the log panel's lower left: early KL is high, so curves
  // rarely pass there.
  s << "set key box opaque\n";
  s << "set xlabel 'parameter updates'\n";
  s << "set xrange [0:" << config.iterations << "]\n";
  s << "set style fill transparent solid 0.18 noborder\n";

  auto plot_panel = [&](bool log_scale) {
    s << "set ylabel 'KL(p_{data} || p_{model})'\n";
    if (log_scale) {
      s << "set logscale y\nset format y '10^{%L}'\n";
      s << "set yrange [" << std::pow(10.0, std::floor(std::log10(min_kl))) << ":"
        << std::pow(10.0, std::ceil(std::log10(max_kl))) << "]\n";
      s << "set title 'log scale'\nset key bottom left\n";
    } else {
      s << "unset logscale y\nset format y '%g'\n";
      s << "set yrange [0:" << max_kl * 1.05 << "]\n";
      s << "set title 'linear scale'\nunset key\n";
    }
    if (any_mode) {
      s << "set y2label 'P_{mode}(t)'\nset y2tics\nset ytics nomirror\n";
      s << "set y2range [0:" << std::max(max_p_mode, 1e-6) * 1.1 << "]\n";
    } else {
      s << "unset y2tics\nunset y2label\nset ytics mirror\n";
    }
    s << "plot ";
    bool first = true;
    for (TrainMethod method : config.methods) {
      const std::string name = std::string(to_string(method));
      const std::string color = method_color(method);
      if (!first) s << ", \\\n     ";
      first = false;
      s << "$" << name << " using 1:3:4 with filledcurves lc rgb '" << color << "' notitle, \\\n     ";
      s << "$" << name << " using 1:2 with lines lw 2.5 lc rgb '" << color << "' title "
        << gnuplot_quote(method_label(method, config));
      if (method == TrainMethod::mode) {
        s << ", \\\n     $" << name << " using 1:5 axes x1y2 with lines dt 2 lw 1.5 lc rgb '" << color
          << "' title 'P_{mode} (right axis)'";
      }
    }
    s << "\n";
  };
  plot_panel(false);
  plot_panel(true);
  s << "unset multiplot\nset output\n";
  return s.str();
}

// Runs gnuplot on `script` inside `folder` with its output into `log`
// (names relative to the folder), without a shell. Returns its exit status;
// 127 when gnuplot cannot be started.
int run_gnuplot(const std::string& folder, const std::string& script, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    if (::chdir(folder.c_str()) != 0) ::_exit(126);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    char* const argv[] = {const_cast<char*>("gnuplot"), const_cast<char*>(script.c_str()), nullptr};
    ::execvp("gnuplot", argv);
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// Writes all of `text` to `fd`; false when the reader has gone (EPIPE) or
// another error. SIGPIPE is blocked meanwhile and a pending one consumed, so
// a gnuplot that died early cannot kill the process.
bool write_all_to_pipe(int fd, const std::string& text) {
  sigset_t pipe_signal, saved;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &saved);
  bool ok = true;
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t wrote = ::write(fd, text.data() + done, text.size() - done);
    if (wrote < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    done += static_cast<std::size_t>(wrote);
  }
  if (!ok) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_signal, nullptr, &zero) > 0) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  return ok;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

EarlyPlotter::EarlyPlotter(const std::string& png_path) {
  namespace fs = std::filesystem;
  try {
    fs::path folder = fs::path(detail::replacement_target(png_path, "plot")).parent_path();
    if (folder.empty()) folder = ".";
    const fs::path base = folder / "plot";
    folder_ = folder.string();
    temporary_png_ = fs::path(detail::temporary_name(base.string(), ".png")).filename().string();
    log_ = fs::path(detail::temporary_name(base.string(), ".log")).filename().string();
  } catch (...) {
    return;  // plot_study reports the problem
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return;
  }
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    if (::chdir(folder_.c_str()) != 0) ::_exit(126);
    const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    ::dup2(fds[0], STDIN_FILENO);
    char* const argv[] = {const_cast<char*>("gnuplot"), nullptr};
    ::execvp("gnuplot", argv);
    ::_exit(127);
  }
  ::close(fds[0]);
  pid_ = pid;
  pipe_ = fds[1];
}

void EarlyPlotter::stop() noexcept {
  if (pipe_ >= 0) ::close(pipe_);  // end of input: gnuplot exits
  pipe_ = -1;
  if (pid_ > 0) wait_for(pid_);
  pid_ = -1;
  if (!folder_.empty()) {
    std::error_code ignored;
    std::filesystem::remove(std::filesystem::path(folder_) / temporary_png_, ignored);
    std::filesystem::remove(std::filesystem::path(folder_) / log_, ignored);
  }
}

EarlyPlotter::~EarlyPlotter() { stop(); }

bool plot_study(const StudyResult& result, const std::string& csv_path, const std::string& png_path,
                std::string* message, EarlyPlotter* early) {
  namespace fs = std::filesystem;
  auto fail = [&](const std::string& text) {
    if (message) *message = text;
    return false;
  };
  // gnuplot runs in the plot's folder and only ever sees fixed names made of
  // digits and letters: the user's paths never reach its parser.
  std::string target;
  try {
    target = detail::replacement_target(png_path, "plot");
  } catch (const Error& e) {
    return fail(e.what());
  }
  fs::path folder = fs::path(target).parent_path();
  if (folder.empty()) folder = ".";
  detail::remove_stale_temporaries(folder.string());
  const fs::path base = folder / "plot";
  const fs::path temporary_png = detail::temporary_name(base.string(), ".png");
  const fs::path script_path = detail::temporary_name(base.string(), ".gp");
  const fs::path error_path = detail::temporary_name(base.string(), ".log");
  auto clean_up = [&] {
    std::error_code ignored;
    fs::remove(temporary_png, ignored);
    fs::remove(script_path, ignored);
    fs::remove(error_path, ignored);
  };
  std::string last_error;
  if (early != nullptr && early->pid_ > 0 && fs::path(early->folder_) == folder) {
    // The gnuplot started ahead: the first choice of terminal goes down its pipe.
    const fs::path early_png = folder / early->temporary_png_;
    const bool sent = write_all_to_pipe(early->pipe_, gnuplot_script(result, early->temporary_png_, "pngcairo enhanced"));
    ::close(early->pipe_);
    early->pipe_ = -1;
    const int status = wait_for(early->pid_);
    early->pid_ = -1;
    std::error_code error;
    const bool written = sent && fs::exists(early_png, error) && fs::file_size(early_png, error) > 0;
    if (status == 127) {
      early->stop();
      clean_up();
      return fail("gnuplot not found: no plot written (the curves are in " + csv_path + ")");
    }
    if (status == 0 && written) {
      fs::rename(early_png, target, error);
      const bool moved = !error;
      early->stop();
      clean_up();
      if (!moved) return fail("cannot move the plot into place at '" + png_path + "'");
      return true;
    }
    std::ifstream log(folder / early->log_);
    std::getline(log, last_error);
    log.close();
    early->stop();
  }
  // pngcairo draws antialiased transparent bands; plain png (libgd) is the
  // fallback for gnuplot builds without cairo.
  for (const std::string terminal : {"pngcairo enhanced", "png enhanced"}) {
    {
      std::ofstream script(script_path, std::ios::trunc);
      if (!script.good()) {
        clean_up();
        return fail("cannot write the plot script in '" + folder.string() + "'");
      }
      script << gnuplot_script(result, temporary_png.filename().string(), terminal);
      if (!script.good()) {
        script.close();
        clean_up();
        return fail("cannot write the plot script in '" + folder.string() + "' (disk full?)");
      }
    }
    const int status = run_gnuplot(folder.string(), script_path.filename().string(), error_path.filename().string());
    if (status == 127) {
      clean_up();
      return fail("gnuplot not found: no plot written (the curves are in " + csv_path + ")");
    }
    std::error_code error;
    const bool written = fs::exists(temporary_png, error) && fs::file_size(temporary_png, error) > 0;
    if (status == 0 && written) {
      fs::rename(temporary_png, target, error);
      const bool moved = !error;
      clean_up();
      if (!moved) return fail("cannot move the plot into place at '" + png_path + "'");
      return true;
    }
    std::ifstream log(error_path);
    std::getline(log, last_error);
    log.close();
    std::error_code ignored;
    fs::remove(temporary_png, ignored);
  }
  clean_up();
  return fail("gnuplot failed, no plot written" +
              (last_error.empty() ? std::string() : ": " + detail::printable(last_error)));
}

}  // namespace marbm
