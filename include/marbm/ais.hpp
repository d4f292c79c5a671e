// log Z of models too large to enumerate: annealed importance sampling
// (SPEC.md section 6; Salakhutdinov & Murray, ICML 2008), forward from a
// base-rate model and in reverse from samples of the model, so that a caller
// sees a bracket and not a single number.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/rbm.hpp"

namespace marbm {

/// Number of intervals of the published MNIST schedule: 500 equal steps of
/// beta in [0, 0.5], 4,000 in [0.5, 0.9] and 10,000 in [0.9, 1].
inline constexpr int ais_published_intervals = 14500;

/// The published schedule's shape with `intervals` intervals: `intervals + 1`
/// inverse temperatures from 0 to 1, split between [0, 0.5], [0.5, 0.9] and
/// [0.9, 1] in the proportions 500 : 4,000 : 10,000 (each segment at least one
/// interval). ais_schedule(14500) is the published schedule exactly.
/// Throws UsageError unless intervals >= 3.
std::vector<double> ais_schedule(int intervals = ais_published_intervals);

/// Visible probabilities of the base-rate model from a data set: the column
/// means with one pseudo-count of each value, (count_i + 1) / (rows + 2), so
/// that no probability is 0 or 1. Throws UsageError for an empty data set.
std::vector<double> base_rate_probabilities(const Dataset& data);

/// How an AIS estimate is run.
struct AisOptions {
  /// M, independent annealing runs in each direction. Must be >= 2.
  int runs = 100;
  /// Schedule length for ais_schedule() when `betas` is empty.
  int intervals = ais_published_intervals;
  /// A schedule of its own: beta_0 = 0 <= beta_1 <= ... <= beta_K = 1,
  /// K >= 1. Empty: ais_schedule(intervals).
  std::vector<double> betas;
  /// Visible probabilities p_i of the base-rate model (n values in (0, 1)).
  /// Empty: from the data given to log_partition_ais(), else 0.5 each.
  std::vector<double> base_visible_probabilities;
  /// Also run reverse AIS (from model samples back to the base rate), the
  /// side that tends to overestimate log Z.
  bool reverse = true;
  /// Block-Gibbs sweeps of the model at beta = 1 that make the reverse runs'
  /// starting states, from data rows when data is given, else from the
  /// base-rate model.
  int reverse_burn_in = 1000;
  /// Random numbers: Philox (seed, ais_forward / ais_reverse stream of each run).
  std::uint64_t seed = 0;
  /// OpenMP threads; 0 keeps the runtime default. The result does not depend on it.
  int threads = 0;
  /// Where the runs go: cpu (OpenMP blocks, sgemm), cuda (all M runs at once
  /// on `device`: cuBLAS for the fields, one kernel per half-step for the
  /// weights and draws) or automatic (cuda when a device is usable). Both
  /// read the same Philox words for the same seed; their weights agree up to
  /// float rounding of the fields (see log_partition_ais).
  Backend backend = Backend::cpu;
  /// CUDA device ordinal with the cuda backend.
  int device = 0;
  /// Called now and then with the fraction of the work done (0 to 1), from
  /// one thread at a time (not necessarily the caller's). May be empty.
  std::function<void(double)> progress;
};

/// One direction's estimate of log Z with its spread, all in nats.
struct AisEstimate {
  double log_z = 0.0;     ///< log of the mean importance weight (times Z_A, or Z_A over it in reverse)
  double standard_error = 0.0;  ///< standard error of log_z (delta method: sd(w) / (sqrt(M) mean(w)))
  double low = 0.0;       ///< lower end of the +-3 standard error interval of the mean weight (may be -inf)
  double high = 0.0;      ///< upper end (may be +inf in reverse)
  std::vector<double> log_weights;  ///< the M log importance weights
};

/// Result of log_partition_ais(). `forward` tends to underestimate log Z (its
/// log of an unbiased estimate of Z is a stochastic lower bound); `reverse`,
/// when run, tends to overestimate it (exactly so when its starting states
/// are exact model samples). [low(), high()] is the bracket a caller should
/// report: the forward -3 sd end up to the larger of the two +3 sd ends.
struct AisResult {
  AisEstimate forward;
  bool has_reverse = false;
  AisEstimate reverse;       ///< meaningful only when has_reverse
  double log_z_base = 0.0;   ///< log Z_A of the base-rate model, exact
  int runs = 0;
  int intervals = 0;         ///< K, betas used minus one
  double seconds = 0.0;

  /// The forward estimate (the published protocol's number).
  double log_z() const { return forward.log_z; }
  double low() const { return forward.low; }
  double high() const { return has_reverse && reverse.high > forward.high ? reverse.high : forward.high; }
};

/// Estimates log Z of `rbm` by AIS on the CPU: intermediate models with
/// visible biases (1 - beta) a_A + beta a and W, b scaled by beta, one
/// block-Gibbs transition per beta, M runs in each direction, run in parallel
/// (OpenMP over fixed blocks of runs; sgemm for the M x n x m products).
/// The result is the same for a given seed and options at any thread count.
/// With options.backend cuda the same runs go on the device (same schedule,
/// base model, Philox streams and words); the fields are float products
/// summed in another order, so the log weights match the CPU's to rounding,
/// except that a draw whose uniform falls within that rounding of its
/// probability can differ, and the run then follows another trajectory:
/// the estimates agree statistically, most runs bit for bit in their draws.
/// `data`, when given, sets the base rate (unless options set it) and the
/// reverse runs' starting rows; its width must equal n.
/// Throws UsageError for bad options or data of the wrong width, DataError
/// for a model with NaN or infinite parameters, CudaError when cuda is asked
/// for and unusable.
AisResult log_partition_ais(const Rbm& rbm, const AisOptions& options = {}, const Dataset* data = nullptr);

}  // namespace marbm
