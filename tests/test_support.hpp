// Small helpers shared by the test suites.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "marbm/random.hpp"
#include "marbm/rbm.hpp"

namespace marbm::test_support {

/// Largest absolute difference over all parameters of two models of one shape.
inline double max_parameter_difference(const Rbm& a, const Rbm& b) {
  double worst = 0.0;
  auto compare = [&](std::span<const float> x, std::span<const float> y) {
    for (std::size_t k = 0; k < x.size(); ++k) worst = std::max(worst, std::abs(double(x[k]) - double(y[k])));
  };
  compare(a.weights(), b.weights());
  compare(a.visible_bias(), b.visible_bias());
  compare(a.hidden_bias(), b.hidden_bias());
  return worst;
}

/// An RBM whose parameters are multiples of 1/4 in [-1, 1], drawn from the
/// test Philox stream `stream_id`: every float64 sum of them is exact, so
/// many states share their energy exactly and only a tie rule decides.
inline Rbm quarter_grid_model(int n, int m, std::uint64_t seed, std::uint64_t stream_id) {
  Rbm rbm(n, m);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::test, stream_id));
  std::uint64_t index = 0;
  auto draw = [&] { return static_cast<float>(std::floor(stream.uniform_double(index++) * 9.0) / 4.0 - 1.0); };
  for (float& w : rbm.weights()) w = draw();
  for (float& a : rbm.visible_bias()) a = draw();
  for (float& b : rbm.hidden_bias()) b = draw();
  return rbm;
}

/// The `count` low bits of `value` as 0/1 unit states, bit k in entry k.
inline std::vector<std::uint8_t> bits_of(std::uint64_t value, int count) {
  std::vector<std::uint8_t> bits(static_cast<std::size_t>(count));
  for (int k = 0; k < count; ++k) bits[static_cast<std::size_t>(k)] = static_cast<std::uint8_t>((value >> k) & 1u);
  return bits;
}

/// Relative agreement (absolute below magnitude 1); NaN never passes.
inline ::testing::AssertionResult close_relative(double actual, double expected, double tolerance) {
  const double scale = std::max(1.0, std::fabs(expected));
  if (std::fabs(actual - expected) <= tolerance * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << actual << " vs " << expected << " (relative difference "
                                       << std::fabs(actual - expected) / scale << ", tolerance " << tolerance << ")";
}

}  // namespace marbm::test_support
