// `marbm eval`: log Z of a saved model and, with data, the mean
// log-likelihood and KL(p_data || p_model): exact when the smaller layer is
// enumerable, else (or with --ais) estimated by AIS with its bracket.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <string>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "marbm/ais.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/mode.hpp"
#include "marbm/model_io.hpp"

namespace marbm::cli {
namespace {

struct EvalOptions {
  std::string model;
  std::string data;
  bool json = false;
  int max_units = 32;
  bool ais = false;
  AisOptions ais_options;
  bool no_reverse = false;
  std::string backend = "cpu";  // where AIS runs
};

// log Z with the interval it is known to lie in (a single point when exact).
struct LogPartition {
  std::string method;
  double log_z = 0.0;
  double standard_error = 0.0;
  double low = 0.0;
  double high = 0.0;
  AisResult ais;  // method "ais" only
  Backend backend = Backend::cpu;  // where AIS ran
};

int run_eval(const EvalOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Metadata metadata;
  const Rbm rbm = load_model_option(options.model, &metadata);
  // A file with float64 tensors is evaluated exactly in float64; load_rbm
  // rounded it to float32 for everything else.
  bool float64_file = false;
  const RbmFloat64 wide = load_rbm_float64(options.model, &float64_file);
  const int n = rbm.n_visible();
  const int m = rbm.n_hidden();

  // Load the data before the (possibly long) enumeration so that a bad spec
  // is refused at once.
  Dataset data;
  const bool with_data = !options.data.empty();
  if (with_data) {
    data = load_data_option(options.data);
    if (data.n_cols != n) {
      throw DataError("--data " + options.data + ": rows have " + std::to_string(data.n_cols) +
                      " values but model " + options.model + " has " + std::to_string(n) + " visible units");
    }
  }

  ExactOptions exact;
  exact.max_enumerated_units = options.max_units;
  LogPartition z;
  if (options.ais || !exact_enumerable(rbm, exact)) {
    if (!options.ais) {
      print_note(options.model + ": 2^" + std::to_string(std::min(n, m)) + " states are beyond the exact limit 2^" +
                 std::to_string(options.max_units) + "; estimating log Z by AIS" +
                 (with_data ? std::string() : " from a uniform base rate (--data gives a closer one)"));
    }
    if (float64_file) print_note(options.model + ": float64 parameters rounded to float32 for AIS");
    AisOptions ais_options = options.ais_options;
    ais_options.reverse = !options.no_reverse;
    ais_options.backend = parse_backend_option(options.backend);
    if (ais_options.backend == Backend::automatic) {
      ais_options.backend = cuda_devices().empty() ? Backend::cpu : Backend::cuda;
      if (ais_options.backend == Backend::cpu && !options.json) print_note("no usable CUDA device; AIS runs on the cpu");
    }
    z.method = "ais";
    ProgressLine progress("AIS", 1000);
    ais_options.progress = [&progress](double fraction) { progress.update(static_cast<long>(fraction * 1000)); };
    z.ais = log_partition_ais(rbm, ais_options, with_data ? &data : nullptr);
    z.backend = ais_options.backend;
    progress.finish();
    z.log_z = z.ais.log_z();
    z.standard_error = z.ais.forward.standard_error;
    z.low = z.ais.low();
    z.high = z.ais.high();
  } else {
    z.method = "exact";
    z.log_z = z.low = z.high = float64_file ? log_partition_exact(wide, exact) : log_partition_exact(rbm, exact);
  }
  const double log_z = z.log_z;
  // With an estimated log Z the log-likelihood has a bracket too; its ends
  // come from the other ends of log Z's.
  double mean_ll = 0.0, mean_ll_low = 0.0, mean_ll_high = 0.0;
  double kl = 0.0;
  bool rows_distinct = false;  // then KL = -mean log-likelihood - log N, nothing more
  if (with_data) {
    // Exact in float64 from a float64 file; AIS brackets from the float32 model it ran on.
    const bool wide_exact = float64_file && z.method == "exact";
    auto mean_ll_at = [&](double at) {
      return wide_exact ? mean_log_likelihood(wide, data, at) : mean_log_likelihood(rbm, data, at);
    };
    mean_ll = mean_ll_at(log_z);
    mean_ll_low = std::isfinite(z.high) ? mean_ll_at(z.high) : -std::numeric_limits<double>::infinity();
    mean_ll_high = std::isfinite(z.low) ? mean_ll_at(z.low) : std::numeric_limits<double>::infinity();
    kl = wide_exact ? kl_divergence(wide, data, log_z) : kl_divergence(rbm, data, log_z);
    rows_distinct = static_cast<int>(distinct_rows(data).rows.size()) == data.n_rows;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (options.json) {
    nlohmann::json out;
    out["model"] = options.model;
    out["n_visible"] = n;
    out["n_hidden"] = m;
    out["method"] = z.method;
    out["log_z"] = json_number(log_z);
    out["log_z_stderr"] = json_number(z.standard_error);
    out["log_z_low"] = json_number(z.low);
    out["log_z_high"] = json_number(z.high);
    if (z.method == "ais") {
      out["ais_runs"] = z.ais.runs;
      out["ais_backend"] = std::string(to_string(z.backend));
      out["ais_intervals"] = z.ais.intervals;
      out["log_z_forward_low"] = json_number(z.ais.forward.low);
      out["log_z_forward_high"] = json_number(z.ais.forward.high);
      if (z.ais.has_reverse) {
        out["log_z_reverse"] = json_number(z.ais.reverse.log_z);
        out["log_z_reverse_stderr"] = json_number(z.ais.reverse.standard_error);
      }
    }
    if (with_data) {
      out["data"] = options.data;
      out["rows"] = data.n_rows;
      out["mean_log_likelihood"] = json_number(mean_ll);
      out["mean_log_likelihood_low"] = json_number(mean_ll_low);
      out["mean_log_likelihood_high"] = json_number(mean_ll_high);
      out["kl"] = json_number(kl);
      out["rows_distinct"] = rows_distinct;
    }
    out["seconds"] = seconds;
    print_json(out);
  } else {
    std::cout << options.model << ": " << n << "x" << m << " RBM";
    if (auto it = metadata.find("method"); it != metadata.end()) std::cout << ", trained with " << it->second;
    std::cout << '\n';
    if (z.method == "exact") {
      std::cout << "log Z " << format_number(log_z, 12) << " (exact)\n";
    } else {
      const AisResult& a = z.ais;
      std::cout << "log Z " << format_number(log_z, 10) << " +- " << format_number(z.standard_error, 3)
                << " (AIS estimate: " << a.runs << " runs, " << a.intervals << " intervals, "
                << format_number(a.seconds, 3) << " s)\n";
      std::cout << "  forward " << format_number(a.forward.log_z, 10) << ", +-3 se [" << format_number(a.forward.low, 10)
                << ", " << format_number(a.forward.high, 10) << "]\n";
      if (a.has_reverse) {
        std::cout << "  reverse " << format_number(a.reverse.log_z, 10) << " +- "
                  << format_number(a.reverse.standard_error, 3) << '\n';
      }
      std::cout << "  bracket [" << format_number(z.low, 10) << ", " << format_number(z.high, 10) << "]\n";
      if (!std::isfinite(z.low) || !std::isfinite(z.high)) {
        std::cout << "  (a few runs carry most of the weight: the estimate is unreliable; raise --ais-intervals)\n";
      }
    }
    if (with_data) {
      std::cout << "data " << options.data << " (" << data.n_rows << " rows)\n";
      std::cout << "mean log-likelihood " << format_number(mean_ll, 12);
      if (z.method == "ais") {
        std::cout << " (estimate; bracket [" << format_number(mean_ll_low, 10) << ", " << format_number(mean_ll_high, 10)
                  << "])";
      }
      std::cout << '\n';
      std::cout << "kl " << format_number(kl, 12);
      if (rows_distinct) {
        std::cout << " (the " << data.n_rows << " rows are distinct: kl = -mean log-likelihood - log "
                  << data.n_rows << ")";
      }
      std::cout << '\n';
    }
  }
  return 0;
}

Runner setup_eval(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  app.add_option("model", options->model, "model file (safetensors)")->required();
  app.add_option("--data", options->data,
                 "data spec for mean log-likelihood and KL (shifting-bars:N:L, bars-and-stripes:N, csv:PATH, "
                 "idx:PATH, digits:PATH)");
  app.add_flag("--json", options->json, "print one JSON object on stdout");
  app.add_option("--max-units", options->max_units, "enumerate at most 2^U states of the smaller layer")
      ->check(CLI::Range(1, 48))
      ->capture_default_str();
  app.add_flag("--ais", options->ais, "estimate log Z by AIS even when exact enumeration is possible");
  app.add_option("--ais-runs", options->ais_options.runs, "AIS: independent runs M in each direction")
      ->check(integer_at_least(2))
      ->capture_default_str();
  app.add_option("--ais-intervals", options->ais_options.intervals,
                 "AIS: number of betas minus one, in the published schedule's proportions (14500: as published)")
      ->check(integer_at_least(3))
      ->capture_default_str();
  app.add_option("--ais-burn-in", options->ais_options.reverse_burn_in,
                 "AIS: Gibbs sweeps of the model before the reverse runs")
      ->check(integer_at_least(0))
      ->capture_default_str();
  app.add_flag("--no-reverse", options->no_reverse, "AIS: forward runs only (no upper side of the bracket)");
  app.add_option("--seed", options->ais_options.seed, "AIS: random seed")->check(integer_at_least(0));
  add_threads_option(app, options->ais_options.threads);
  app.add_option("--backend", options->backend,
                 "AIS: where the runs go, cpu, cuda (every run at once on the GPU) or auto (cuda when usable)")
      ->check(one_of({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  return [options] { return run_eval(*options); };
}

const bool registered =
    register_command({"eval", "log Z, log-likelihood and KL of a saved model (exact, or by AIS)", 20, setup_eval});

}  // namespace
}  // namespace marbm::cli
