// Held-out monitoring: how a model does on rows it was not trained on, and
// the signals of overfitting. CPU; synchronous.
#pragma once

#include <limits>

#include "marbm/ais.hpp"
#include "marbm/data.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace marbm {

/// How held-out metrics are computed.
struct HeldOutOptions {
  /// log Z is exact when 2^min(n, m) is within this limit.
  ExactOptions exact;
  /// Beyond it, log Z by AIS with these options (a short schedule by
  /// default: 1,000 intervals, 100 forward runs), the held-out rows giving
  /// the base rate.
  AisOptions ais = [] {
    AisOptions options;
    options.intervals = 1000;
    options.reverse = false;
    return options;
  }();
  /// Rows of each data set used for the reconstruction error and the
  /// free-energy gap (the first ones); must be >= 1.
  int max_rows = 1000;
  /// When finite: the model's exact log Z, already known (a training
  /// driver's evaluation has it); it is used as it is, nothing is enumerated
  /// or estimated.
  double known_log_z = std::numeric_limits<double>::quiet_NaN();
};

/// Metrics of one evaluation on held-out rows.
struct HeldOutMetrics {
  bool exact = true;                  ///< log Z exact (else estimated by AIS)
  double log_z = 0.0;                 ///< nats
  double log_z_standard_error = 0.0;  ///< AIS standard error; 0 when exact
  double log_z_low = 0.0;             ///< equals log_z when exact; AIS bracket ends otherwise
  double log_z_high = 0.0;
  double mean_log_likelihood = 0.0;   ///< mean log p(v) over all held-out rows, nats
  double mean_log_likelihood_low = 0.0;
  double mean_log_likelihood_high = 0.0;
  /// Mean over rows and units of (v_i - p(v_i = 1 | h = p(h | v)))^2 on the
  /// held-out rows (a deterministic one-step reconstruction).
  double reconstruction_error = 0.0;
  /// mean F(v) over held-out rows minus mean F(v) over training rows: it
  /// grows when the model fits the training rows better than others.
  double free_energy_gap = 0.0;
};

/// Evaluates `rbm` on `test` (and on `train` for the free-energy gap).
/// Throws UsageError when the widths differ from n or a set is empty.
HeldOutMetrics evaluate_held_out(const Rbm& rbm, const Dataset& train, const Dataset& test,
                                 const HeldOutOptions& options = {});

}  // namespace marbm
