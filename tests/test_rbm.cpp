// The model: energy, free energy, conditionals and Philox.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "test_support.hpp"
#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

using test_support::bits_of;

TEST(Philox, MatchesPublishedKnownAnswer) {
  // Random123 kat_vectors: philox4x32_10, counter and key all ones.
  const auto out = philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(out[0], 0x408f276du);
  EXPECT_EQ(out[1], 0x41c83b0eu);
  EXPECT_EQ(out[2], 0xa20bc7c6u);
  EXPECT_EQ(out[3], 0x6d5451fdu);
  const auto zero = philox4x32_10({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(zero[0], 0x6627e8d5u);
  EXPECT_EQ(zero[1], 0xe169c58du);
  EXPECT_EQ(zero[2], 0xbc57ac4cu);
  EXPECT_EQ(zero[3], 0x9b00dbd8u);
}

TEST(Philox, UniformMomentsMatch) {
  const PhiloxStream stream(42, random_stream(RandomPurpose::test, 0));
  const int count = 200000;
  double sum = 0.0, sum_sq = 0.0;
  for (int k = 0; k < count; ++k) {
    const double u = stream.uniform(k);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
  }
  // mean 1/2 with sd sqrt(1/12 / count) ~ 6.5e-4: 5 sd.
  EXPECT_NEAR(sum / count, 0.5, 5 * std::sqrt(1.0 / 12 / count));
  EXPECT_NEAR(sum_sq / count - std::pow(sum / count, 2), 1.0 / 12, 2e-3);
}

TEST(Philox, StreamsAndSeedsDiffer) {
  const PhiloxStream a(1, 0), b(1, 1), c(2, 0);
  EXPECT_NE(a.bits(0), b.bits(0));
  EXPECT_NE(a.bits(0), c.bits(0));
  EXPECT_EQ(a.bits(7), PhiloxStream(1, 0).bits(7));
}

TEST(Rbm, RandomIsReproducibleAndScaled) {
  const Rbm a = Rbm::random(30, 20, 0.5, 7), b = Rbm::random(30, 20, 0.5, 7), c = Rbm::random(30, 20, 0.5, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  double sum_sq = 0.0;
  for (float w : a.weights()) sum_sq += double(w) * w;
  EXPECT_NEAR(std::sqrt(sum_sq / a.weights().size()), 0.5, 0.05);
}

TEST(Rbm, EnergyFreeEnergyAndConditionalsAgree) {
  const Rbm rbm = Rbm::random(5, 4, 1.0, 3);
  for (unsigned v = 0; v < 32; ++v) {
    const auto visible = bits_of(v, 5);
    // F(v) = -log sum_h exp(-E(v,h)).
    double sum = 0.0;
    for (unsigned h = 0; h < 16; ++h) sum += std::exp(-rbm.energy(visible, bits_of(h, 4)));
    EXPECT_NEAR(rbm.free_energy(visible), -std::log(sum), 1e-12);
    // p(h_j = 1 | v) from the joint.
    const auto p = rbm.hidden_probabilities(visible);
    for (int j = 0; j < 4; ++j) {
      double on = 0.0;
      for (unsigned h = 0; h < 16; ++h) {
        if ((h >> j) & 1u) on += std::exp(-rbm.energy(visible, bits_of(h, 4)));
      }
      EXPECT_NEAR(p[j], on / sum, 1e-12);
    }
  }
  const auto hidden = bits_of(5, 4);
  const auto pv = rbm.visible_probabilities(hidden);
  for (int i = 0; i < 5; ++i) {
    auto v1 = bits_of(0, 5), v0 = bits_of(0, 5);
    v1[i] = 1;
    const double ratio = std::exp(-rbm.energy(v1, hidden) + rbm.energy(v0, hidden));
    EXPECT_NEAR(pv[i], ratio / (1 + ratio), 1e-12);
  }
}

TEST(Rbm, UniformMeanEnergyIsTheAverageOverAllStates) {
  const Rbm rbm = Rbm::random(4, 3, 2.0, 11);
  double sum = 0.0;
  for (unsigned v = 0; v < 16; ++v)
    for (unsigned h = 0; h < 8; ++h) sum += rbm.energy(bits_of(v, 4), bits_of(h, 3));
  EXPECT_NEAR(rbm.uniform_mean_energy(), sum / 128, 1e-12);
}

TEST(Rbm, RefusesBadShapesAndNonFiniteParameters) {
  EXPECT_THROW(Rbm(0, 3), UsageError);
  // 1.6e19 bytes of weights fit no machine: refused before allocating.
  EXPECT_THROW(Rbm(2'000'000'000, 2'000'000'000), RuntimeFailure);
  Rbm rbm(2, 2);
  EXPECT_THROW(rbm.energy(bits_of(0, 3), bits_of(0, 2)), UsageError);
  rbm.weight(1, 1) = std::nanf("");
  EXPECT_THROW(rbm.check_finite(), DataError);
}

TEST(Rbm, SoftplusAndSigmoidAreStable) {
  EXPECT_DOUBLE_EQ(softplus(1000.0), 1000.0);
  EXPECT_NEAR(softplus(-1000.0), 0.0, 1e-300);
  EXPECT_NEAR(softplus(0.0), std::log(2.0), 1e-15);
  EXPECT_DOUBLE_EQ(sigmoid(1000.0), 1.0);
  EXPECT_DOUBLE_EQ(sigmoid(-1000.0), 0.0);
}

}  // namespace
}  // namespace marbm
