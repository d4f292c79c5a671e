// Exact-KL studies: R independent runs of several training methods from the
// same initial parameters, their KL curves, a summary and a plot.
#include "marbm/study.hpp"

#include <omp.h>

#include <algorithm>
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
#include "marbm/data.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"

namespace marbm {

namespace {

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
  MARBM_EXPECTS(config.iterations >= 1, UsageError,
                "study: --iters must be >= 1 (got " + std::to_string(config.iterations) + ")");
  MARBM_EXPECTS(config.batch_size >= 1, UsageError,
                "study: --batch must be >= 1 (got " + std::to_string(config.batch_size) + ")");
  MARBM_EXPECTS(std::isfinite(config.learning_rate) && config.learning_rate > 0.0, UsageError,
                "study: --lr must be a positive number (got " + std::to_string(config.learning_rate) + ")");
  detail::check_gibbs_steps(config.gibbs_steps, "study: --k");
  MARBM_EXPECTS(config.eval_every >= 1, UsageError,
                "study: --eval-every must be >= 1 (got " + std::to_string(config.eval_every) + ")");
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
  train.batch_size = config.batch_size;
  train.iterations = config.iterations;
  // The same training seed for every method of run r: batch order and the
  // Gibbs streams match, so differences come from the method alone.
  train.seed = config.seed + static_cast<std::uint64_t>(run);
  train.eval_every = config.eval_every;
  train.exact_metrics = true;
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

// Writes through a temporary name and renames, so that an interrupted run
// never leaves a half file behind.
void write_atomically(const std::string& path, const std::string& contents, const char* what) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    MARBM_EXPECTS(out.good(), RuntimeFailure, std::string("cannot write ") + what + " '" + path + "'");
    out << contents;
    out.flush();
    if (!out.good()) {
      // A short write (disk full) must not leave the half file behind either.
      out.close();
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw RuntimeFailure(std::string("failed writing ") + what + " '" + path + "'");
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    throw RuntimeFailure(std::string("cannot rename ") + what + " into place at '" + path + "'");
  }
}

std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  std::ostringstream out;
  out << std::setprecision(9) << value;
  return out.str();
}

}  // namespace

StudyResult run_study(const StudyConfig& config, const StudyProgress& progress) {
  check_study_config(config);
  const Dataset data = load_dataset(config.data);
  MARBM_EXPECTS(data.n_rows >= 1 && data.n_cols >= 1, DataError, "study: data set '" + config.data + "' is empty");
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
  result.runs.resize(jobs);
  for (int job = 0; job < jobs; ++job) {
    result.runs[job].method = config.methods[job / config.runs];
    result.runs[job].run = job % config.runs;
  }

  const auto start = std::chrono::steady_clock::now();
  std::mutex progress_mutex;
  int done = 0;
  auto run_job = [&](int job, Engine& engine) {
    StudyRun& run = result.runs[job];
    const Rbm initial = Rbm::random(n, m, config.init_sigma, config.seed + static_cast<std::uint64_t>(run.run));
    TrainResult trained = train(engine, data, initial, train_config_for(config, run.method, run.run));
    run.history = std::move(trained.history);
    run.seconds = trained.seconds;
    std::lock_guard lock(progress_mutex);
    ++done;
    if (progress) progress(done, jobs);
  };

  Backend backend = config.backend;
  if (backend == Backend::automatic) backend = cuda_devices().empty() ? Backend::cpu : Backend::cuda;
  if (backend == Backend::cpu) {
    // Independent small runs: one job per core, each with its own
    // single-threaded engine (tiny BLAS calls gain nothing from threads).
    const int threads = config.threads > 0 ? config.threads : omp_get_num_procs();
    std::exception_ptr failure;
    std::mutex failure_mutex;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int job = 0; job < jobs; ++job) {
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
    for (int r = 0; r < config.runs; ++r) {
      initial.push_back(Rbm::random(n, m, config.init_sigma, config.seed + static_cast<std::uint64_t>(r)));
      seeds.push_back(config.seed + static_cast<std::uint64_t>(r));
    }
    for (int k = 0; k < methods; ++k) {
      const TrainConfig train_config = train_config_for(config, config.methods[k], 0);
      if (train_config.method == TrainMethod::mode && config.mode.target == ModeTarget::marginal) {
        // The fused ensemble kernel steps to the joint mode only: marginal
        // mode runs go through the driver, one device engine per run.
        EngineOptions options;
        options.quiet = true;
        auto engine = make_engine(Backend::cuda, options);
        for (int r = 0; r < config.runs; ++r) run_job(k * config.runs + r, *engine);
        continue;
      }
      std::vector<TrainResult> trained = train_ensemble(Backend::cuda, data, initial, seeds, train_config);
      for (int r = 0; r < config.runs; ++r) {
        StudyRun& run = result.runs[k * config.runs + r];
        run.history = std::move(trained[r].history);
        run.seconds = trained[r].seconds;
      }
      std::lock_guard lock(progress_mutex);
      done += config.runs;
      if (progress) progress(done, jobs);
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (TrainMethod method : config.methods) {
    std::vector<double> finals;
    MethodSummary summary;
    for (const StudyRun& run : result.runs) {
      if (run.method != method) continue;
      finals.push_back(final_kl(run));
      summary.seconds += run.seconds;
    }
    summary.median_final_kl = median_of(finals);
    summary.min_final_kl = *std::min_element(finals.begin(), finals.end());
    summary.max_final_kl = *std::max_element(finals.begin(), finals.end());
    result.summary[method] = summary;
  }
  return result;
}

void write_study_csv(const StudyResult& result, const std::string& path) {
  std::ostringstream out;
  out << "method,run,iteration,kl,p_mode\n";
  for (const StudyRun& run : result.runs) {
    for (const TrainMetrics& metrics : run.history) {
      out << to_string(run.method) << ',' << run.run << ',' << metrics.iteration << ',' << format_number(metrics.kl)
          << ',' << format_number(metrics.p_mode) << '\n';
    }
  }
  write_atomically(path, out.str(), "study CSV");
}

void write_study_summary(const StudyResult& result, const std::string& path) {
  const StudyConfig& config = result.config;
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  for (TrainMethod method : config.methods) {
    const auto found = result.summary.find(method);
    if (found == result.summary.end()) continue;
    const MethodSummary& summary = found->second;
    root[std::string(to_string(method))] = {{"median_final_kl", summary.median_final_kl},
                                            {"min_final_kl", summary.min_final_kl},
                                            {"max_final_kl", summary.max_final_kl},
                                            {"seconds", summary.seconds}};
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
      {"gibbs_steps", config.gibbs_steps},
      {"eval_every", config.eval_every},
      {"seed", config.seed},
      {"init_sigma", config.init_sigma},
      {"backend", std::string(to_string(config.backend))},
      {"threads", config.threads},
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
  write_atomically(path, root.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", "study summary");
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
  const std::size_t points = runs.front()->history.size();
  for (std::size_t k = 0; k < points; ++k) {
    std::vector<double> values;
    for (const StudyRun* run : runs) {
      if (k < run->history.size() && std::isfinite(run->history[k].kl)) values.push_back(run->history[k].kl);
    }
    if (values.empty()) continue;
    CurvePoint point;
    point.iteration = runs.front()->history[k].iteration;
    point.median = median_of(values);
    point.min = *std::min_element(values.begin(), values.end());
    point.max = *std::max_element(values.begin(), values.end());
    point.p_mode = runs.front()->history[k].p_mode;
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

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string gnuplot_quote(const std::string& text) {
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
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

bool gnuplot_available() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

}  // namespace

bool plot_study(const StudyResult& result, const std::string& csv_path, const std::string& png_path,
                std::string* message) {
  auto fail = [&](const std::string& text) {
    if (message) *message = text;
    return false;
  };
  if (!gnuplot_available()) {
    return fail("gnuplot not found: no plot written (the curves are in " + csv_path + ")");
  }
  const std::string temporary_png = png_path + ".tmp.png";
  const std::string script_path = png_path + ".gnuplot";
  const std::string error_path = png_path + ".gnuplot.log";
  std::string last_error;
  // pngcairo draws antialiased transparent bands; plain png (libgd) is the
  // fallback for gnuplot builds without cairo.
  for (const std::string terminal : {"pngcairo enhanced", "png enhanced"}) {
    {
      std::ofstream script(script_path, std::ios::trunc);
      if (!script.good()) return fail("cannot write the plot script '" + script_path + "'");
      script << gnuplot_script(result, temporary_png, terminal);
    }
    const std::string command = "gnuplot " + shell_quote(script_path) + " >" + shell_quote(error_path) + " 2>&1";
    const int status = std::system(command.c_str());
    std::error_code error;
    const bool written = std::filesystem::exists(temporary_png, error) &&
                         std::filesystem::file_size(temporary_png, error) > 0;
    if (status == 0 && written) {
      // The rename's outcome is checked before the clean-up: each remove()
      // resets `error`, which used to hide a failed rename behind `true`.
      std::filesystem::rename(temporary_png, png_path, error);
      const bool moved = !error;
      std::error_code ignored;
      if (!moved) std::filesystem::remove(temporary_png, ignored);
      std::filesystem::remove(script_path, ignored);
      std::filesystem::remove(error_path, ignored);
      if (!moved) return fail("cannot move the plot into place at '" + png_path + "'");
      return true;
    }
    std::ifstream log(error_path);
    std::getline(log, last_error);
    std::filesystem::remove(temporary_png, error);
  }
  std::error_code error;
  std::filesystem::remove(script_path, error);
  std::filesystem::remove(error_path, error);
  return fail("gnuplot failed, no plot written" + (last_error.empty() ? std::string() : ": " + last_error));
}

}  // namespace marbm
