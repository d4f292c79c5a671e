// Exact quantities for small models by enumeration (SPEC.md section 5).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/rbm.hpp"

namespace marbm {

/// Limits on exact enumeration.
struct ExactOptions {
  /// Largest number of enumerated units: 2^min(n, m) states must not exceed
  /// 2^max_enumerated_units, else the call throws RuntimeFailure. Default 2^32.
  int max_enumerated_units = 32;
};

/// An RBM's parameters in float64, as a float64 model file holds them
/// (load_rbm_float64 in model_io.hpp), so that exact evaluation needs no
/// rounding to float32. Same layout as Rbm: W row-major n x m, a (n), b (m).
struct RbmFloat64 {
  int n_visible = 0;
  int n_hidden = 0;
  std::vector<double> weights;
  std::vector<double> visible_bias;
  std::vector<double> hidden_bias;

  /// The float32 model widened (exactly).
  static RbmFloat64 from(const Rbm& rbm);
  /// F(v) = -a.v - sum_j softplus(b_j + (W^T v)_j) from the float64 parameters.
  double free_energy(std::span<const std::uint8_t> visible) const;
};

/// True when 2^min(n, m) <= 2^options.max_enumerated_units.
bool exact_enumerable(const Rbm& rbm, const ExactOptions& options = {});

/// log Z by enumerating the smaller layer in Gray-code order with float64
/// fields and log-sum-exp, in parallel over chunks (OpenMP). CPU; synchronous.
/// Throws RuntimeFailure beyond the enumeration limit.
double log_partition_exact(const Rbm& rbm, const ExactOptions& options = {});

/// The same from float64 parameters (identical to the Rbm overload on a
/// widened float32 model).
double log_partition_exact(const RbmFloat64& rbm, const ExactOptions& options = {});

/// log Z by enumerating `layer` (0 visible, 1 hidden) directly, each state's
/// fields computed from scratch. The reference for tests; O(2^k * n * m).
double log_partition_direct(const Rbm& rbm, int layer);

/// log Z by brute force over both layers (n + m <= 24). The oracle for tests.
double log_partition_brute_force(const Rbm& rbm);

/// log p(v) = -F(v) - log Z.
double log_probability(const Rbm& rbm, std::span<const std::uint8_t> visible, double log_z);

/// Mean of log p(v) over the rows of `data` (exact; needs log Z).
double mean_log_likelihood_exact(const Rbm& rbm, const Dataset& data, const ExactOptions& options = {});
/// The same with a log Z the caller already has.
double mean_log_likelihood(const Rbm& rbm, const Dataset& data, double log_z);

/// The same from float64 parameters.
double mean_log_likelihood(const RbmFloat64& rbm, const Dataset& data, double log_z);

/// KL(p_data || p_model) with p_data the empirical distribution of the rows.
double kl_divergence_exact(const Rbm& rbm, const Dataset& data, const ExactOptions& options = {});
/// The same with a log Z the caller already has.
double kl_divergence(const Rbm& rbm, const Dataset& data, double log_z);
/// The same from float64 parameters.
double kl_divergence(const RbmFloat64& rbm, const Dataset& data, double log_z);

/// Model expectations <v h^T> (n x m, row-major), <v> and <h> in float64,
/// by enumeration of the smaller layer (the exact-gradient negative phase).
struct ModelExpectations {
  std::vector<double> visible_hidden;
  std::vector<double> visible;
  std::vector<double> hidden;
};
ModelExpectations model_expectations_exact(const Rbm& rbm, const ExactOptions& options = {});

}  // namespace marbm
