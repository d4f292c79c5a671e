#include "marbm/held_out.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "marbm/error.hpp"

namespace marbm {
namespace {

void check_width(const Rbm& rbm, const Dataset& data, const char* what) {
  MARBM_EXPECTS(data.n_rows >= 1, UsageError, std::string(what) + " data set has no rows");
  MARBM_EXPECTS(data.n_cols == rbm.n_visible(), UsageError,
                std::string(what) + " data set has " + std::to_string(data.n_cols) + " columns, the model has " +
                    std::to_string(rbm.n_visible()) + " visible units");
}

double mean_free_energy(const Rbm& rbm, const Dataset& data, int rows) {
  double sum = 0.0;
  for (int r = 0; r < rows; ++r) sum += rbm.free_energy(data.row(r));
  return sum / rows;
}

}  // namespace

HeldOutMetrics evaluate_held_out(const Rbm& rbm, const Dataset& train, const Dataset& test,
                                 const HeldOutOptions& options) {
  check_width(rbm, train, "training");
  check_width(rbm, test, "held-out");
  MARBM_EXPECTS(options.max_rows >= 1, UsageError, "held-out evaluation: max_rows must be >= 1");
  HeldOutMetrics metrics;
  if (std::isfinite(options.known_log_z)) {
    metrics.log_z = metrics.log_z_low = metrics.log_z_high = options.known_log_z;
  } else if (exact_enumerable(rbm, options.exact)) {
    metrics.log_z = metrics.log_z_low = metrics.log_z_high = log_partition_exact(rbm, options.exact);
  } else {
    const AisResult ais = log_partition_ais(rbm, options.ais, &test);
    metrics.exact = false;
    metrics.log_z = ais.log_z();
    metrics.log_z_standard_error = ais.forward.standard_error;
    metrics.log_z_low = ais.low();
    metrics.log_z_high = ais.high();
  }
  // log p(v) = -F(v) - log Z, so each end of the log-likelihood bracket
  // comes from the other end of log Z's.
  const double mean_free = mean_free_energy(rbm, test, test.n_rows);
  metrics.mean_log_likelihood = -mean_free - metrics.log_z;
  metrics.mean_log_likelihood_low = -mean_free - metrics.log_z_high;
  metrics.mean_log_likelihood_high = -mean_free - metrics.log_z_low;

  const int test_rows = std::min(options.max_rows, test.n_rows);
  const int train_rows = std::min(options.max_rows, train.n_rows);
  metrics.free_energy_gap = mean_free_energy(rbm, test, test_rows) - mean_free_energy(rbm, train, train_rows);

  const int n = rbm.n_visible(), m = rbm.n_hidden();
  const auto& w = rbm.weights();
  const auto& a = rbm.visible_bias();
  double squared = 0.0;
  for (int r = 0; r < test_rows; ++r) {
    const auto v = test.row(r);
    const std::vector<double> hidden = rbm.hidden_probabilities(v);
    for (int i = 0; i < n; ++i) {
      double x = a[i];
      for (int j = 0; j < m; ++j) x += static_cast<double>(w[static_cast<std::size_t>(i) * m + j]) * hidden[j];
      const double difference = v[i] - sigmoid(x);
      squared += difference * difference;
    }
  }
  metrics.reconstruction_error = squared / (static_cast<double>(test_rows) * n);
  return metrics;
}

}  // namespace marbm
