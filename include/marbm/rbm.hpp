// The binary restricted Boltzmann machine (SPEC.md section 1).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace marbm {

/// Binary RBM with n visible and m hidden units:
///   E(v,h) = -a.v - b.h - v^T W h,   p(v,h) = exp(-E(v,h)) / Z.
/// W is row-major n x m (visible index first); a has n entries, b has m.
/// Parameters are float32; quantities summed over units accumulate in float64.
/// Unit states are std::uint8_t holding 0 or 1. Host-only value type.
class Rbm {
 public:
  Rbm() = default;
  /// All parameters zero. Throws UsageError unless n_visible, n_hidden >= 1.
  Rbm(int n_visible, int n_hidden);

  /// W, a and b drawn from N(0, sigma^2) with the Philox stream
  /// (seed, initialisation). Same seed and shape, same parameters.
  static Rbm random(int n_visible, int n_hidden, double sigma, std::uint64_t seed);

  int n_visible() const { return n_visible_; }
  int n_hidden() const { return n_hidden_; }

  std::span<float> weights() { return weights_; }
  std::span<const float> weights() const { return weights_; }
  std::span<float> visible_bias() { return visible_bias_; }
  std::span<const float> visible_bias() const { return visible_bias_; }
  std::span<float> hidden_bias() { return hidden_bias_; }
  std::span<const float> hidden_bias() const { return hidden_bias_; }

  float& weight(int i, int j) { return weights_[static_cast<std::size_t>(i) * n_hidden_ + j]; }
  float weight(int i, int j) const { return weights_[static_cast<std::size_t>(i) * n_hidden_ + j]; }

  /// E(v, h) in float64. Sizes must match the layers.
  double energy(std::span<const std::uint8_t> visible, std::span<const std::uint8_t> hidden) const;

  /// F(v) = -a.v - sum_j softplus(b_j + (W^T v)_j), float64, overflow-safe.
  double free_energy(std::span<const std::uint8_t> visible) const;

  /// p(h_j = 1 | v) for every j (m values).
  std::vector<double> hidden_probabilities(std::span<const std::uint8_t> visible) const;
  /// p(v_i = 1 | h) for every i (n values).
  std::vector<double> visible_probabilities(std::span<const std::uint8_t> hidden) const;

  /// Mean energy over all states under the uniform distribution:
  /// E_bar = -sum(a)/2 - sum(b)/2 - sum(W)/4 (SPEC.md section 3).
  double uniform_mean_energy() const;

  /// Throws DataError naming `what` when any parameter is NaN or infinite.
  void check_finite(const char* what = "model") const;

  friend bool operator==(const Rbm&, const Rbm&) = default;

 private:
  int n_visible_ = 0;
  int n_hidden_ = 0;
  std::vector<float> weights_;
  std::vector<float> visible_bias_;
  std::vector<float> hidden_bias_;
};

/// log(1 + exp(x)) without overflow or loss of precision for large |x|.
double softplus(double x);
/// 1 / (1 + exp(-x)), saturating cleanly.
double sigmoid(double x);

}  // namespace marbm
