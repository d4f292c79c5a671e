// `marbm eval`: exact log Z of a saved model and, with data, the exact mean
// log-likelihood and KL(p_data || p_model).
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"

namespace marbm::cli {
namespace {

struct EvalOptions {
  std::string model;
  std::string data;
  bool json = false;
  int max_units = 32;
};

int run_eval(const EvalOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Metadata metadata;
  const Rbm rbm = load_model_option(options.model, &metadata);
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
  if (!exact_enumerable(rbm, exact)) {
    throw RuntimeFailure(options.model + ": model too large for exact evaluation (" + std::to_string(n) + "x" +
                         std::to_string(m) + ", 2^" + std::to_string(std::min(n, m)) +
                         " states to enumerate; limit 2^" + std::to_string(options.max_units) +
                         ", raise it with --max-units)");
  }
  const double log_z = log_partition_exact(rbm, exact);
  double mean_ll = 0.0;
  double kl = 0.0;
  if (with_data) {
    mean_ll = mean_log_likelihood(rbm, data, log_z);
    kl = kl_divergence(rbm, data, log_z);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (options.json) {
    nlohmann::json out;
    out["model"] = options.model;
    out["n_visible"] = n;
    out["n_hidden"] = m;
    out["log_z"] = json_number(log_z);
    if (with_data) {
      out["data"] = options.data;
      out["rows"] = data.n_rows;
      out["mean_log_likelihood"] = json_number(mean_ll);
      out["kl"] = json_number(kl);
    }
    out["seconds"] = seconds;
    print_json(out);
  } else {
    std::cout << options.model << ": " << n << "x" << m << " RBM";
    if (auto it = metadata.find("method"); it != metadata.end()) std::cout << ", trained with " << it->second;
    std::cout << '\n';
    std::cout << "log Z " << format_number(log_z, 12) << '\n';
    if (with_data) {
      std::cout << "data " << options.data << " (" << data.n_rows << " rows)\n";
      std::cout << "mean log-likelihood " << format_number(mean_ll, 12) << '\n';
      std::cout << "kl " << format_number(kl, 12) << '\n';
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
  return [options] { return run_eval(*options); };
}

const bool registered =
    register_command({"eval", "exact log Z, log-likelihood and KL of a saved model", 20, setup_eval});

}  // namespace
}  // namespace marbm::cli
