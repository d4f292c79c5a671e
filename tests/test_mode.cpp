// Ground-state search: exhaustive oracle against brute force, the descent
// polish, SB and SA against the oracle on many random models, warm start,
// determinism and option checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "marbm/error.hpp"
#include "marbm/mode.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

std::vector<std::uint8_t> bits_of(std::uint64_t value, int count) {
  std::vector<std::uint8_t> bits(count);
  for (int k = 0; k < count; ++k) bits[k] = (value >> k) & 1u;
  return bits;
}

// Minimum of E over every (v, h) pair: 2^(n+m) states, small models only.
double brute_force_minimum(const Rbm& rbm) {
  double best = std::numeric_limits<double>::infinity();
  for (std::uint64_t v = 0; v < (std::uint64_t{1} << rbm.n_visible()); ++v) {
    const auto visible = bits_of(v, rbm.n_visible());
    for (std::uint64_t h = 0; h < (std::uint64_t{1} << rbm.n_hidden()); ++h) {
      best = std::min(best, rbm.energy(visible, bits_of(h, rbm.n_hidden())));
    }
  }
  return best;
}

// Random model with weights N(0, scale^2) and biases N(0, bias^2), drawn from
// the test Philox stream.
Rbm random_model(int n, int m, double scale, double bias, std::uint64_t seed) {
  Rbm rbm = Rbm::random(n, m, scale, seed);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::test, 7));
  std::uint64_t k = 0;
  for (float& a : rbm.visible_bias()) a = static_cast<float>(bias * standard_normal(stream, k++));
  for (float& b : rbm.hidden_bias()) b = static_cast<float>(bias * standard_normal(stream, k++));
  return rbm;
}

// Energies are float64 sums of at most ~600 float32 terms of size ~3: equal
// states agree to rounding, distinct optima differ by far more.
void expect_same_energy(double actual, double expected) {
  EXPECT_NEAR(actual, expected, 1e-9 * std::max(1.0, std::abs(expected)));
}

TEST(ModeExhaustive, MatchesBruteForceOverBothLayers) {
  const int shapes[][2] = {{1, 1}, {3, 5}, {5, 3}, {6, 6}, {2, 9}, {9, 2}, {7, 4}};
  std::uint64_t seed = 11;
  for (const auto& shape : shapes) {
    for (double scale : {0.1, 1.0, 3.0}) {
      const Rbm rbm = random_model(shape[0], shape[1], scale, scale, seed++);
      const ModeResult result = mode_exhaustive(rbm);
      expect_same_energy(result.energy, brute_force_minimum(rbm));
      EXPECT_DOUBLE_EQ(result.energy, rbm.energy(result.visible, result.hidden));
      ASSERT_EQ(static_cast<int>(result.visible.size()), shape[0]);
      ASSERT_EQ(static_cast<int>(result.hidden.size()), shape[1]);
    }
  }
}

TEST(ModeExhaustive, RefusesBeyondTheLimit) {
  const Rbm rbm = Rbm::random(12, 10, 1.0, 3);
  EXPECT_THROW(mode_exhaustive(rbm, 9), RuntimeFailure);
  EXPECT_NO_THROW(mode_exhaustive(rbm, 10));
  ModeSearchConfig config;
  config.solver = ModeSolver::exhaustive;
  config.max_enumerated_units = 9;
  EXPECT_THROW(find_mode(rbm, config), RuntimeFailure);
}

TEST(ModeExhaustive, UsesTheSmallerLayerAndMatchesSwappedModel) {
  // The mode of the transposed model is the same state with layers swapped.
  const Rbm rbm = random_model(20, 5, 1.0, 0.5, 5);
  Rbm swapped(5, 20);
  for (int i = 0; i < 20; ++i) {
    for (int j = 0; j < 5; ++j) swapped.weight(j, i) = rbm.weight(i, j);
    swapped.hidden_bias()[i] = rbm.visible_bias()[i];
  }
  for (int j = 0; j < 5; ++j) swapped.visible_bias()[j] = rbm.hidden_bias()[j];
  const ModeResult a = mode_exhaustive(rbm, 5);
  const ModeResult b = mode_exhaustive(swapped, 5);
  expect_same_energy(a.energy, b.energy);
  EXPECT_EQ(a.visible, b.hidden);
  EXPECT_EQ(a.hidden, b.visible);
}

TEST(ModePolish, NeverRaisesEnergyAndEndsAtALocalMinimum) {
  const PhiloxStream stream(21, random_stream(RandomPurpose::test, 1));
  std::uint64_t k = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const int n = 3 + trial % 17;
    const int m = 2 + (trial * 7) % 19;
    const Rbm rbm = random_model(n, m, trial % 3 == 0 ? 0.1 : 2.0, 1.0, 100 + trial);
    std::vector<std::uint8_t> v(n), h(m);
    for (auto& x : v) x = stream.bits(k++) & 1u;
    for (auto& x : h) x = stream.bits(k++) & 1u;
    const double before = rbm.energy(v, h);
    const double after = polish_descent(rbm, v, h);
    EXPECT_LE(after, before);
    EXPECT_DOUBLE_EQ(after, rbm.energy(v, h));
    // No single unit flip lowers E any more.
    for (int i = 0; i < n; ++i) {
      v[i] ^= 1u;
      EXPECT_GE(rbm.energy(v, h), after - 1e-12);
      v[i] ^= 1u;
    }
    for (int j = 0; j < m; ++j) {
      h[j] ^= 1u;
      EXPECT_GE(rbm.energy(v, h), after - 1e-12);
      h[j] ^= 1u;
    }
  }
}

TEST(ModePolish, RejectsWrongSizes) {
  const Rbm rbm(4, 3);
  std::vector<std::uint8_t> v(3), h(3);
  EXPECT_THROW(polish_descent(rbm, v, h), UsageError);
}

TEST(ModeOptions, ParsesSolverNames) {
  EXPECT_EQ(parse_mode_solver("exhaustive"), ModeSolver::exhaustive);
  EXPECT_EQ(parse_mode_solver("sb"), ModeSolver::sb);
  EXPECT_EQ(parse_mode_solver("sa"), ModeSolver::sa);
  for (ModeSolver s : {ModeSolver::exhaustive, ModeSolver::sb, ModeSolver::sa}) {
    EXPECT_EQ(parse_mode_solver(to_string(s)), s);
  }
  EXPECT_THROW(parse_mode_solver("SB"), UsageError);
  EXPECT_THROW(parse_mode_solver(""), UsageError);
}

TEST(ModeOptions, RefusesBadConfigurations) {
  const Rbm rbm = Rbm::random(4, 3, 1.0, 1);
  auto refused = [&](auto change) {
    ModeSearchConfig config;
    change(config);
    EXPECT_THROW(find_mode(rbm, config), UsageError);
  };
  refused([](ModeSearchConfig& c) { c.replicas = -1; });
  refused([](ModeSearchConfig& c) { c.steps = -5; });
  refused([](ModeSearchConfig& c) { c.time_step = -0.1; });
  refused([](ModeSearchConfig& c) { c.time_step = std::nan(""); });
  refused([](ModeSearchConfig& c) { c.beta_hot = -1.0; });
  refused([](ModeSearchConfig& c) {
    c.solver = ModeSolver::sa;
    c.beta_hot = 2.0;
    c.beta_cold = 1.0;
  });
  refused([](ModeSearchConfig& c) { c.max_enumerated_units = 0; });
  refused([](ModeSearchConfig& c) { c.warm_visible = {0, 1, 0, 1}; });  // hidden missing
  refused([](ModeSearchConfig& c) {
    c.warm_visible = {0, 1, 0};
    c.warm_hidden = {0, 1, 0};
  });
  refused([](ModeSearchConfig& c) {
    c.warm_visible = {0, 1, 0, 2};
    c.warm_hidden = {0, 1, 0};
  });
}

TEST(ModeDispatch, AutomaticWithoutDeviceRunsOnTheCpu) {
  const Rbm rbm = random_model(6, 5, 1.0, 1.0, 9);
  ModeSearchConfig config;
  config.solver = ModeSolver::exhaustive;
  config.backend = Backend::automatic;
  const ModeResult result = find_mode(rbm, config);
  expect_same_energy(result.energy, brute_force_minimum(rbm));
}

}  // namespace
}  // namespace marbm
