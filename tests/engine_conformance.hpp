// The typed engine conformance suite: what every Engine must do, whatever its
// backend. A test binary includes this header once and instantiates it:
//   INSTANTIATE_TEST_SUITE_P(Cpu, EngineConformance, ::testing::Values(marbm::Backend::cpu));
// Without a usable CUDA device the cuda instantiation skips.
//
// Statistical tolerances: every Monte Carlo estimate here is a mean of N
// independent terms bounded in [0, 1] (chains use disjoint Philox draws), so
// its standard deviation is at most 0.5 / sqrt(N) (or sqrt(p (1 - p) / N) for
// a frequency); tests allow 5 of those per compared entry, which with at most
// a few dozen entries per test fails by chance with probability < 1e-4 (and
// the seeds are fixed, so a pass is reproducible).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "detail/gibbs_steps.hpp"
#include "device_test.hpp"
#include "test_support.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"

namespace marbm::conformance {

/// Exact joint statistics of a tiny model by brute force over both layers.
struct JointStatistics {
  std::vector<double> visible_hidden;  // <v_i h_j>, n x m
  std::vector<double> visible;         // <v_i>
  std::vector<double> hidden;          // <h_j>
  std::vector<double> visible_state;   // p(v) for v = sum_i v_i 2^i
};

using test_support::bits_of;

inline JointStatistics joint_statistics(const Rbm& rbm) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  JointStatistics s;
  s.visible_hidden.assign(static_cast<std::size_t>(n) * m, 0.0);
  s.visible.assign(n, 0.0);
  s.hidden.assign(m, 0.0);
  s.visible_state.assign(std::size_t{1} << n, 0.0);
  // Weights exp(-E - shift) with the shift the lowest energy, so nothing overflows.
  std::vector<double> energies;
  for (unsigned v = 0; v < (1u << n); ++v)
    for (unsigned h = 0; h < (1u << m); ++h) energies.push_back(rbm.energy(bits_of(v, n), bits_of(h, m)));
  const double lowest = *std::min_element(energies.begin(), energies.end());
  double z = 0.0;
  std::size_t index = 0;
  for (unsigned v = 0; v < (1u << n); ++v) {
    const auto vb = bits_of(v, n);
    for (unsigned h = 0; h < (1u << m); ++h) {
      const auto hb = bits_of(h, m);
      const double w = std::exp(-(energies[index++] - lowest));
      z += w;
      s.visible_state[v] += w;
      for (int i = 0; i < n; ++i) {
        if (!vb[i]) continue;
        s.visible[i] += w;
        for (int j = 0; j < m; ++j) s.visible_hidden[static_cast<std::size_t>(i) * m + j] += hb[j] ? w : 0.0;
      }
      for (int j = 0; j < m; ++j) s.hidden[j] += hb[j] ? w : 0.0;
    }
  }
  for (double& x : s.visible_hidden) x /= z;
  for (double& x : s.visible) x /= z;
  for (double& x : s.hidden) x /= z;
  for (double& x : s.visible_state) x /= z;
  return s;
}

/// Positive-phase statistics <v p(h|v)^T>, <v>, <p(h|v)> over the rows, in float64.
inline JointStatistics data_statistics(const Rbm& rbm, const Dataset& data, std::span<const int> rows) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  JointStatistics s;
  s.visible_hidden.assign(static_cast<std::size_t>(n) * m, 0.0);
  s.visible.assign(n, 0.0);
  s.hidden.assign(m, 0.0);
  for (const int r : rows) {
    const auto v = data.row(r);
    const auto p = rbm.hidden_probabilities(v);
    for (int i = 0; i < n; ++i) {
      s.visible[i] += v[i];
      for (int j = 0; j < m; ++j) s.visible_hidden[static_cast<std::size_t>(i) * m + j] += v[i] * p[j];
    }
    for (int j = 0; j < m; ++j) s.hidden[j] += p[j];
  }
  const double count = static_cast<double>(rows.size());
  for (double& x : s.visible_hidden) x /= count;
  for (double& x : s.visible) x /= count;
  for (double& x : s.hidden) x /= count;
  return s;
}

/// Exact gradient <.>_data - <.>_model.
inline Gradient exact_gradient(const Rbm& rbm, const Dataset& data, std::span<const int> rows) {
  const JointStatistics pos = data_statistics(rbm, data, rows);
  const JointStatistics neg = joint_statistics(rbm);
  Gradient g;
  for (std::size_t k = 0; k < pos.visible_hidden.size(); ++k) g.weights.push_back(pos.visible_hidden[k] - neg.visible_hidden[k]);
  for (std::size_t k = 0; k < pos.visible.size(); ++k) g.visible_bias.push_back(pos.visible[k] - neg.visible[k]);
  for (std::size_t k = 0; k < pos.hidden.size(); ++k) g.hidden_bias.push_back(pos.hidden[k] - neg.hidden[k]);
  return g;
}

/// Largest absolute difference over all entries of two gradients.
inline double max_difference(const Gradient& a, const Gradient& b) {
  double worst = 0.0;
  auto compare = [&](const std::vector<double>& x, const std::vector<double>& y) {
    if (x.size() != y.size()) {
      worst = std::numeric_limits<double>::infinity();
      return;
    }
    for (std::size_t k = 0; k < x.size(); ++k) {
      const double d = std::abs(x[k] - y[k]);
      worst = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(worst, d);
    }
  };
  compare(a.weights, b.weights);
  compare(a.visible_bias, b.visible_bias);
  compare(a.hidden_bias, b.hidden_bias);
  return worst;
}

/// Random binary rows, each value 1 with probability `p_one`.
inline Dataset random_dataset(int rows, int cols, std::uint64_t seed, double p_one = 0.5) {
  return random_binary_dataset(rows, cols, p_one, seed);
}

/// `copies` copies of each of `patterns` rows (so a large batch has a known,
/// exactly computable positive phase).
inline Dataset replicate(const Dataset& patterns, int copies) {
  Dataset d;
  d.n_rows = patterns.n_rows * copies;
  d.n_cols = patterns.n_cols;
  for (int c = 0; c < copies; ++c) d.values.insert(d.values.end(), patterns.values.begin(), patterns.values.end());
  d.description = "replicated";
  return d;
}

inline std::vector<int> all_rows(int count) {
  std::vector<int> rows(count);
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

/// Fixture: a fresh engine of the parameter's backend for every test.
class EngineConformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::cuda) MARBM_SKIP_WITHOUT_DEVICE();
    engine_ = make_engine(GetParam());
  }
  std::unique_ptr<Engine> fresh_engine() const { return make_engine(GetParam()); }

  std::unique_ptr<Engine> engine_;
};

TEST_P(EngineConformance, ModelRoundTripIsExact) {
  const Rbm rbm = Rbm::random(7, 5, 0.7, 11);
  engine_->set_model(rbm);
  EXPECT_EQ(engine_->model(), rbm);
  EXPECT_EQ(engine_->backend(), GetParam());
  EXPECT_FALSE(engine_->description().empty());
}

TEST_P(EngineConformance, HiddenProbabilitiesMatchTheModel) {
  // Two sizes: a tiny model and one large enough for matrix-product code paths.
  for (const auto [n, m, batch] : {std::array{7, 5, 9}, std::array{64, 48, 40}}) {
    const Rbm rbm = Rbm::random(n, m, 0.3, 21);
    engine_->set_model(rbm);
    const Dataset v = random_dataset(batch, n, 5);
    const std::vector<float> p = engine_->hidden_probabilities(v.values, batch);
    ASSERT_EQ(p.size(), static_cast<std::size_t>(batch) * m);
    for (int r = 0; r < batch; ++r) {
      const auto expected = rbm.hidden_probabilities(v.row(r));
      for (int j = 0; j < m; ++j) {
        // float32 fields of up to 64 terms of size ~1: error well below 1e-5.
        EXPECT_NEAR(p[static_cast<std::size_t>(r) * m + j], expected[j], 1e-5) << "row " << r << " unit " << j;
      }
    }
  }
}

TEST_P(EngineConformance, GibbsChainSamplesTheModelDistribution) {
  const int n = 4, m = 3, chains = 10000;
  const Rbm rbm = Rbm::random(n, m, 1.0, 31);
  engine_->set_model(rbm);
  const JointStatistics exact = joint_statistics(rbm);
  // Start every chain in the all-zero state; 40 sweeps forget it (weights ~1 mix in a few sweeps).
  const std::vector<std::uint8_t> start(static_cast<std::size_t>(chains) * n, 0);
  const std::vector<std::uint8_t> end = engine_->gibbs_chain(start, chains, 40, 2024, 3);
  ASSERT_EQ(end.size(), start.size());
  std::vector<double> frequency(std::size_t{1} << n, 0.0);
  for (int c = 0; c < chains; ++c) {
    unsigned state = 0;
    for (int i = 0; i < n; ++i) {
      ASSERT_LE(end[static_cast<std::size_t>(c) * n + i], 1);
      state |= static_cast<unsigned>(end[static_cast<std::size_t>(c) * n + i]) << i;
    }
    frequency[state] += 1.0 / chains;
  }
  for (std::size_t s = 0; s < frequency.size(); ++s) {
    const double p = exact.visible_state[s];
    const double sd = std::sqrt(p * (1 - p) / chains);
    EXPECT_NEAR(frequency[s], p, 5 * sd + 1e-9) << "visible state " << s;
  }
  // Same seed and stream, same chains; another stream, other chains.
  EXPECT_EQ(engine_->gibbs_chain(start, chains, 40, 2024, 3), end);
  EXPECT_NE(engine_->gibbs_chain(start, chains, 40, 2024, 4), end);
}

// A model whose one-step reconstructions are far from equilibrium: strong
// weights and data that the model does not fit, so CD-1 is visibly biased.
// (Its exact CD-k bias, from powers of the 32-state transition matrix, is
// 0.23 at k = 1, 1e-4 at k = 10 and below 1e-6 from k = 30.)
struct BiasedCase {
  Rbm rbm = Rbm::random(5, 4, 2.0, 44);
  Dataset patterns = random_dataset(6, 5, 42);
};

TEST_P(EngineConformance, CdGradientConvergesToTheExactGradientAsKGrows) {
  const BiasedCase c;
  const int copies = 1500;  // N = 9000 chains: 5 sd = 2.5 / sqrt(N) = 0.026
  const Dataset data = replicate(c.patterns, copies);
  const std::vector<int> rows = all_rows(data.n_rows);
  engine_->set_model(c.rbm);
  engine_->set_data(data);
  const Gradient exact = exact_gradient(c.rbm, data, rows);
  const double tolerance = 2.5 / std::sqrt(static_cast<double>(data.n_rows));
  std::vector<double> error;
  for (const int k : {1, 30}) {
    UpdateStep step;
    step.batch_rows = rows;
    step.negative = NegativePhase::cd;
    step.gibbs_steps = k;
    step.seed = 77;
    step.step = static_cast<std::uint64_t>(k);
    error.push_back(max_difference(engine_->gradient(step), exact));
  }
  EXPECT_GT(error[0], 4 * tolerance) << "CD-1 should be visibly biased on this model";
  EXPECT_LT(error[1], tolerance) << "CD-30 should match the exact gradient";
  EXPECT_EQ(engine_->model(), c.rbm) << "gradient() must not change the parameters";
}

TEST_P(EngineConformance, PcdChainsPersistAndConvergeToTheExactGradient) {
  const BiasedCase c;
  const int chains = 9000;  // 5 sd = 2.5 / sqrt(chains) = 0.026
  const Dataset data = replicate(c.patterns, 10);
  const std::vector<int> rows = all_rows(data.n_rows);
  engine_->set_model(c.rbm);
  engine_->set_data(data);
  engine_->reset_persistent_chains(chains, 5);
  const Gradient exact = exact_gradient(c.rbm, data, rows);
  const double tolerance = 2.5 / std::sqrt(static_cast<double>(chains));
  UpdateStep step;
  step.batch_rows = rows;
  step.negative = NegativePhase::pcd;
  step.gibbs_steps = 1;
  step.seed = 3;
  // PCD-1 from uniform chains is biased at first; the chains carry over
  // between calls, so after many calls they sample the model.
  step.step = 0;
  const double first_error = max_difference(engine_->gradient(step), exact);
  Gradient last;
  for (std::uint64_t t = 1; t <= 150; ++t) {
    step.step = t;
    last = engine_->gradient(step);
  }
  EXPECT_GT(first_error, 4 * tolerance);
  EXPECT_LT(max_difference(last, exact), tolerance);
  // The same step again gives another estimate: the chains moved on.
  step.step = 150;
  EXPECT_GT(max_difference(engine_->gradient(step), last), 0.0);

  // One call with a long chain from fresh uniform chains also converges.
  engine_->reset_persistent_chains(chains, 6);
  step.gibbs_steps = 30;
  step.step = 0;
  EXPECT_LT(max_difference(engine_->gradient(step), exact), tolerance);
}

TEST_P(EngineConformance, ModeNegativePhaseIsTheGivenState) {
  const Rbm rbm = Rbm::random(6, 5, 0.8, 51);
  const Dataset data = random_dataset(10, 6, 52);
  engine_->set_model(rbm);
  engine_->set_data(data);
  const std::vector<int> rows = {3, 1, 4, 1, 5, 9};
  const std::vector<std::uint8_t> v_star = {1, 0, 1, 1, 0, 0}, h_star = {0, 1, 1, 0, 1};
  UpdateStep step;
  step.batch_rows = rows;
  step.negative = NegativePhase::mode;
  step.mode_visible = v_star;
  step.mode_hidden = h_star;
  const Gradient g = engine_->gradient(step);
  const JointStatistics pos = data_statistics(rbm, data, rows);
  Gradient expected;
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 5; ++j) expected.weights.push_back(pos.visible_hidden[i * 5 + j] - v_star[i] * h_star[j]);
  for (int i = 0; i < 6; ++i) expected.visible_bias.push_back(pos.visible[i] - v_star[i]);
  for (int j = 0; j < 5; ++j) expected.hidden_bias.push_back(pos.hidden[j] - h_star[j]);
  // float32 probabilities: error ~1e-7 per term.
  EXPECT_LT(max_difference(g, expected), 1e-5);
}

// Several mode states: the negative statistics are their weighted sum.
TEST_P(EngineConformance, WeightedModeStatesGiveTheWeightedNegativePhase) {
  const Rbm rbm = Rbm::random(6, 5, 0.8, 53);
  const Dataset data = random_dataset(10, 6, 54);
  engine_->set_model(rbm);
  engine_->set_data(data);
  const std::vector<int> rows = {0, 2, 4, 6};
  const std::vector<std::uint8_t> v = {1, 0, 1, 1, 0, 0, /**/ 0, 1, 1, 0, 0, 1, /**/ 1, 1, 1, 1, 1, 0};
  const std::vector<std::uint8_t> h = {0, 1, 1, 0, 1, /**/ 1, 1, 0, 0, 0, /**/ 0, 0, 0, 1, 1};
  const std::vector<double> w = {0.5, 0.125, 0.375};
  UpdateStep step;
  step.batch_rows = rows;
  step.negative = NegativePhase::mode;
  step.mode_visible = v;
  step.mode_hidden = h;
  step.mode_weights = w;
  const Gradient g = engine_->gradient(step);
  const JointStatistics pos = data_statistics(rbm, data, rows);
  Gradient expected;
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 5; ++j) {
      double negative = 0.0;
      for (int k = 0; k < 3; ++k) negative += w[k] * v[k * 6 + i] * h[k * 5 + j];
      expected.weights.push_back(pos.visible_hidden[i * 5 + j] - negative);
    }
  }
  for (int i = 0; i < 6; ++i) expected.visible_bias.push_back(pos.visible[i] - (0.5 * v[i] + 0.125 * v[6 + i] + 0.375 * v[12 + i]));
  for (int j = 0; j < 5; ++j) expected.hidden_bias.push_back(pos.hidden[j] - (0.5 * h[j] + 0.125 * h[5 + j] + 0.375 * h[10 + j]));
  EXPECT_LT(max_difference(g, expected), 1e-5);

  // Weights that do not describe the states are refused.
  const std::vector<double> unnormalised = {0.5, 0.5, 0.5}, negative = {1.5, -0.25, -0.25}, two = {0.5, 0.5};
  for (const auto* bad : {&unnormalised, &negative, &two}) {
    step.mode_weights = *bad;
    EXPECT_THROW(engine_->gradient(step), UsageError);
  }
  step.mode_weights = {};
  EXPECT_THROW(engine_->gradient(step), UsageError);  // three states need weights
  step.mode_weights = w;
  step.mode_hidden = std::span<const std::uint8_t>(h.data(), 10);  // two hidden rows for three visible
  EXPECT_THROW(engine_->gradient(step), UsageError);
}

// The chains' states as the engine holds them: none before they start, the
// documented Philox start (top bit of word r * round_up4(n) + i), and 0/1
// states that move with PCD updates.
TEST_P(EngineConformance, PersistentChainStatesAreTheChains) {
  const int n = 7;
  const Rbm rbm = Rbm::random(n, 4, 0.8, 61);
  const Dataset data = random_dataset(10, n, 62);
  engine_->set_model(rbm);
  engine_->set_data(data);
  EXPECT_TRUE(engine_->persistent_chain_states().empty());
  engine_->reset_persistent_chains(5, 63);
  const std::vector<std::uint8_t> start = engine_->persistent_chain_states();
  ASSERT_EQ(start.size(), 5u * n);
  const PhiloxStream stream(63, random_stream(RandomPurpose::persistent_chains, 0));
  for (int r = 0; r < 5; ++r) {
    for (int i = 0; i < n; ++i) EXPECT_EQ(start[r * n + i], stream.bits(static_cast<std::uint64_t>(r) * 8 + i) >> 31);
  }
  const std::vector<int> rows = {0, 1, 2};
  UpdateStep step;
  step.batch_rows = rows;
  step.negative = NegativePhase::pcd;
  step.seed = 64;
  for (int t = 0; t < 5; ++t) {
    step.step = t;
    engine_->update(step);
  }
  const std::vector<std::uint8_t> moved = engine_->persistent_chain_states();
  ASSERT_EQ(moved.size(), start.size());
  EXPECT_TRUE(std::all_of(moved.begin(), moved.end(), [](std::uint8_t x) { return x <= 1; }));
  EXPECT_NE(moved, start);
}

TEST_P(EngineConformance, ExactNegativePhaseMatchesEnumeration) {
  const Rbm rbm = Rbm::random(5, 4, 1.0, 55);
  const Dataset data = random_dataset(7, 5, 56);
  engine_->set_model(rbm);
  engine_->set_data(data);
  const std::vector<int> rows = all_rows(data.n_rows);
  UpdateStep step;
  step.batch_rows = rows;
  step.negative = NegativePhase::exact;
  // Deterministic: float32 positive phase against a float64 brute force.
  EXPECT_LT(max_difference(engine_->gradient(step), exact_gradient(rbm, data, rows)), 1e-5);
}

TEST_P(EngineConformance, SampledPositivePhaseDrawsTheConditional) {
  const int n = 5, m = 4;
  const Rbm rbm = Rbm::random(n, m, 1.0, 57);
  const Dataset patterns = random_dataset(6, n, 58);
  engine_->set_model(rbm);
  const std::vector<std::uint8_t> v_star(n, 0), h_star(m, 0);
  UpdateStep step;
  step.negative = NegativePhase::mode;  // a zero mode: the gradient is the positive phase alone
  step.mode_visible = v_star;
  step.mode_hidden = h_star;
  step.sample_positive_hidden = true;
  step.seed = 59;

  // Sampled h: B <v_i h_j> and B <h_j> are whole numbers. With B = 60 float32
  // rounding stays below 60 * 60 * 2^-24 ~ 2e-4, far inside 0.01.
  const Dataset small = replicate(patterns, 10);
  const std::vector<int> small_rows = all_rows(small.n_rows);
  engine_->set_data(small);
  step.batch_rows = small_rows;
  const Gradient whole = engine_->gradient(step);
  const double b = static_cast<double>(small.n_rows);
  for (std::size_t k = 0; k < whole.weights.size(); ++k)
    EXPECT_NEAR(whole.weights[k] * b, std::round(whole.weights[k] * b), 1e-2) << "weight " << k;
  for (int j = 0; j < m; ++j) EXPECT_NEAR(whole.hidden_bias[j] * b, std::round(whole.hidden_bias[j] * b), 1e-2);

  // Their mean is the conditional's: N = 6000 rows, 5 sd = 2.5 / sqrt(N) = 0.032.
  const Dataset data = replicate(patterns, 1000);
  const std::vector<int> rows = all_rows(data.n_rows);
  engine_->set_data(data);
  step.batch_rows = rows;
  const Gradient g = engine_->gradient(step);
  const JointStatistics pos = data_statistics(rbm, data, rows);
  const Gradient expected{pos.visible_hidden, pos.visible, pos.hidden};
  const double tolerance = 2.5 / std::sqrt(static_cast<double>(data.n_rows));
  EXPECT_LT(max_difference(g, expected), tolerance);
  EXPECT_GT(max_difference(g, expected), 1e-4) << "samples, not probabilities";
  step.seed = 60;
  EXPECT_GT(max_difference(engine_->gradient(step), g), 1e-4) << "another seed, other samples";
}

TEST_P(EngineConformance, UpdateRuleAppliesMomentumAndWeightDecayToWeightsOnly) {
  const int n = 5, m = 4;
  const Rbm initial = Rbm::random(n, m, 0.5, 61);
  const Dataset data = random_dataset(8, n, 62);
  engine_->set_model(initial);
  engine_->set_data(data);
  const std::vector<std::uint8_t> v_star = {0, 1, 1, 0, 1}, h_star = {1, 0, 1, 1};
  const double lr = 0.3, momentum = 0.5, decay = 0.1;
  // Hand computation in float64 of two steps of
  //   velocity = momentum velocity + lr (grad - decay W)   (decay on W only),  theta += velocity.
  Rbm hand = initial;
  std::vector<double> vw(n * m, 0.0), va(n, 0.0), vb(m, 0.0);
  const std::vector<std::vector<int>> batches = {{0, 1, 2, 3}, {4, 5, 6, 7, 0}};
  for (const auto& rows : batches) {
    UpdateStep step;
    step.batch_rows = rows;
    step.negative = NegativePhase::mode;
    step.mode_visible = v_star;
    step.mode_hidden = h_star;
    step.learning_rate = lr;
    step.momentum = momentum;
    step.weight_decay = decay;
    engine_->update(step);

    const JointStatistics pos = data_statistics(hand, data, rows);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < m; ++j) {
        const double grad = pos.visible_hidden[i * m + j] - v_star[i] * h_star[j];
        vw[i * m + j] = momentum * vw[i * m + j] + lr * (grad - decay * hand.weight(i, j));
        hand.weight(i, j) = static_cast<float>(hand.weight(i, j) + vw[i * m + j]);
      }
      va[i] = momentum * va[i] + lr * (pos.visible[i] - v_star[i]);
      hand.visible_bias()[i] = static_cast<float>(hand.visible_bias()[i] + va[i]);
    }
    for (int j = 0; j < m; ++j) {
      vb[j] = momentum * vb[j] + lr * (pos.hidden[j] - h_star[j]);
      hand.hidden_bias()[j] = static_cast<float>(hand.hidden_bias()[j] + vb[j]);
    }
  }
  const Rbm got = engine_->model();
  for (int k = 0; k < n * m; ++k) EXPECT_NEAR(got.weights()[k], hand.weights()[k], 1e-5) << "weight " << k;
  for (int i = 0; i < n; ++i) EXPECT_NEAR(got.visible_bias()[i], hand.visible_bias()[i], 1e-5) << "visible bias " << i;
  for (int j = 0; j < m; ++j) EXPECT_NEAR(got.hidden_bias()[j], hand.hidden_bias()[j], 1e-5) << "hidden bias " << j;

  // set_model zeroes the momentum: one step from `initial` again equals the first step above.
  engine_->set_model(initial);
  UpdateStep step;
  step.batch_rows = batches[0];
  step.negative = NegativePhase::mode;
  step.mode_visible = v_star;
  step.mode_hidden = h_star;
  step.learning_rate = lr;
  step.momentum = momentum;
  step.weight_decay = decay;
  engine_->update(step);
  auto other = fresh_engine();
  other->set_model(initial);
  other->set_data(data);
  other->update(step);
  EXPECT_EQ(engine_->model(), other->model());
}

TEST_P(EngineConformance, LogPartitionAndModeOfTheCurrentParameters) {
  const int n = 6, m = 5;
  const Rbm rbm = Rbm::random(n, m, 1.5, 65);
  engine_->set_model(rbm);
  // Brute force over all 2^11 joint states in float64.
  double lowest = std::numeric_limits<double>::infinity();
  std::vector<double> energies;
  for (unsigned v = 0; v < (1u << n); ++v)
    for (unsigned h = 0; h < (1u << m); ++h) energies.push_back(rbm.energy(bits_of(v, n), bits_of(h, m)));
  for (const double e : energies) lowest = std::min(lowest, e);
  double sum = 0.0;
  for (const double e : energies) sum += std::exp(-(e - lowest));
  const double log_z = std::log(sum) - lowest;
  // Enumeration in float64 over 2^5 states: agreement to 1e-9 relative.
  EXPECT_NEAR(engine_->log_partition_exact({}), log_z, 1e-9 * std::abs(log_z));

  ModeSearchConfig config;
  config.solver = ModeSolver::exhaustive;
  const ModeResult mode = engine_->find_mode(config);
  ASSERT_EQ(mode.visible.size(), static_cast<std::size_t>(n));
  ASSERT_EQ(mode.hidden.size(), static_cast<std::size_t>(m));
  EXPECT_NEAR(mode.energy, lowest, 1e-9 * std::max(1.0, std::abs(lowest)));
  EXPECT_NEAR(rbm.energy(mode.visible, mode.hidden), mode.energy, 1e-9 * std::max(1.0, std::abs(lowest)));

  // After an update both follow the new parameters.
  const Dataset data = random_dataset(8, n, 66);
  engine_->set_data(data);
  const std::vector<int> rows = all_rows(data.n_rows);
  UpdateStep step;
  step.batch_rows = rows;
  step.learning_rate = 0.5;
  engine_->update(step);
  const Rbm updated = engine_->model();
  ASSERT_NE(updated, rbm);
  const double updated_log_z = log_partition_exact(updated);
  EXPECT_NEAR(engine_->log_partition_exact({}), updated_log_z, 1e-9 * std::abs(updated_log_z));
  EXPECT_NEAR(engine_->find_mode(config).energy, mode_exhaustive(updated).energy, 1e-9 * std::max(1.0, std::abs(lowest)));
}

TEST_P(EngineConformance, SameSeedSameTrajectory) {
  const Rbm initial = Rbm::random(12, 9, 0.2, 71);
  const Dataset data = random_dataset(30, 12, 72);
  auto run = [&](std::uint64_t seed, NegativePhase negative) {
    auto engine = fresh_engine();
    engine->set_model(initial);
    engine->set_data(data);
    std::vector<int> rows(10);
    for (std::uint64_t t = 0; t < 6; ++t) {
      for (int r = 0; r < 10; ++r) rows[r] = static_cast<int>((t * 10 + r) % 30);
      UpdateStep step;
      step.batch_rows = rows;
      step.negative = negative;
      step.gibbs_steps = 2;
      step.learning_rate = 0.1;
      step.momentum = 0.5;
      step.seed = seed;
      step.step = t;
      engine->update(step);
    }
    return engine->model();
  };
  for (const NegativePhase negative : {NegativePhase::cd, NegativePhase::pcd}) {
    const Rbm a = run(5, negative);
    EXPECT_EQ(a, run(5, negative));
    EXPECT_NE(a, run(6, negative));
    EXPECT_NE(a, initial);
  }
}

// E_bar from the engine (a mode step's uniform mean energy, computed where
// the parameters live). The CPU engine returns Rbm::uniform_mean_energy bit for
// bit. The CUDA engine sums the same float32 values in float64 in another
// order: each side's sum of N terms is within (N - 1) u sum|x| of the exact
// sum (u = 2^-53), and the final combination -sa/2 - sb/2 - sw/4 rounds twice,
// at most u S each with S = sum|a|/2 + sum|b|/2 + sum|W|/4; so the two values
// differ by at most 2 (N + 1) u S, N the largest of the three counts.
TEST_P(EngineConformance, UniformMeanEnergyOfTheCurrentParameters) {
  EXPECT_THROW((void)engine_->uniform_mean_energy(), UsageError);  // no model yet
  auto check = [&](const Rbm& model, const char* what) {
    double scale = 0.0;
    for (const float a : model.visible_bias()) scale += std::abs(a) / 2.0;
    for (const float b : model.hidden_bias()) scale += std::abs(b) / 2.0;
    for (const float w : model.weights()) scale += std::abs(w) / 4.0;
    const double count = static_cast<double>(
        std::max<std::size_t>({model.weights().size(), model.visible_bias().size(), model.hidden_bias().size()}));
    const double tolerance = 2.0 * (count + 1.0) * std::ldexp(1.0, -53) * scale;
    const double got = engine_->uniform_mean_energy();
    const double expected = model.uniform_mean_energy();
    if (GetParam() == Backend::cpu) {
      EXPECT_EQ(got, expected) << what;
    } else {
      EXPECT_NEAR(got, expected, tolerance) << what;
    }
  };
  // Non-dyadic parameters (every sum rounds), odd sizes and MNIST's shape;
  // biases set too, so that each of the three sums counts.
  std::uint64_t seed = 90;
  for (const auto& [n, m] : std::vector<std::pair<int, int>>{{1, 1}, {33, 7}, {7, 1025}, {784, 500}}) {
    Rbm rbm = Rbm::random(n, m, 0.37, seed++);
    const PhiloxStream stream(seed++, random_stream(RandomPurpose::test, 5));
    std::uint64_t index = 0;
    for (float& a : rbm.visible_bias()) a = static_cast<float>(0.3 - stream.uniform_double(index++));
    for (float& b : rbm.hidden_bias()) b = static_cast<float>(stream.uniform_double(index++) - 0.7);
    engine_->set_model(rbm);
    check(rbm, "as set");
  }
  // After an update the engine's parameters are no longer the ones set.
  const Rbm rbm = Rbm::random(9, 6, 0.5, 97);
  engine_->set_model(rbm);
  engine_->set_data(random_dataset(8, 9, 98));
  const std::vector<int> rows = {0, 3, 5};
  UpdateStep step;
  step.batch_rows = rows;
  step.learning_rate = 0.3;
  engine_->update(step);
  const Rbm updated = engine_->model();
  ASSERT_NE(updated, rbm);
  check(updated, "after an update");
}

TEST_P(EngineConformance, RefusesBadArguments) {
  EXPECT_THROW(engine_->model(), UsageError);  // no model yet
  const Rbm rbm = Rbm::random(4, 3, 0.5, 81);
  engine_->set_model(rbm);
  const Dataset data = random_dataset(5, 4, 82);
  const std::vector<int> good_rows = {0, 1};
  UpdateStep step;
  step.batch_rows = good_rows;
  EXPECT_THROW(engine_->update(step), UsageError);  // no data yet
  EXPECT_THROW(engine_->set_data(random_dataset(5, 3, 83)), UsageError);
  engine_->set_data(data);
  engine_->update(step);  // a good step goes through

  const std::vector<int> bad_rows = {0, 5}, negative_rows = {-1};
  const std::vector<int> no_rows;
  auto refuses = [&](auto change) {
    UpdateStep s = step;
    change(s);
    EXPECT_THROW(engine_->update(s), UsageError);
    EXPECT_THROW(engine_->gradient(s), UsageError);
  };
  refuses([&](UpdateStep& s) { s.batch_rows = bad_rows; });
  refuses([&](UpdateStep& s) { s.batch_rows = negative_rows; });
  refuses([&](UpdateStep& s) { s.batch_rows = no_rows; });
  refuses([&](UpdateStep& s) { s.gibbs_steps = 0; });
  refuses([&](UpdateStep& s) { s.negative = NegativePhase::pcd, s.gibbs_steps = -2; });
  // Beyond the shared cap two half-sweeps would share Philox counters.
  refuses([&](UpdateStep& s) { s.gibbs_steps = detail::max_gibbs_steps + 1; });
  refuses([&](UpdateStep& s) { s.negative = NegativePhase::pcd, s.gibbs_steps = detail::max_gibbs_steps + 1; });
  refuses([&](UpdateStep& s) { s.gibbs_steps = std::numeric_limits<int>::max(); });
  refuses([&](UpdateStep& s) { s.learning_rate = std::numeric_limits<double>::quiet_NaN(); });
  refuses([&](UpdateStep& s) { s.learning_rate = -0.1; });
  refuses([&](UpdateStep& s) { s.momentum = std::numeric_limits<double>::infinity(); });
  refuses([&](UpdateStep& s) { s.weight_decay = -1.0; });
  const std::vector<std::uint8_t> short_v = {1, 0}, good_v = {1, 0, 1, 1}, h = {1, 0, 1}, bad_h = {1, 2, 0};
  refuses([&](UpdateStep& s) { s.negative = NegativePhase::mode, s.mode_visible = short_v, s.mode_hidden = h; });
  refuses([&](UpdateStep& s) { s.negative = NegativePhase::mode, s.mode_visible = good_v, s.mode_hidden = bad_h; });
  refuses([&](UpdateStep& s) { s.negative = NegativePhase::mode; });  // no mode given

  const std::vector<std::uint8_t> visible = {1, 0, 1, 1, 0, 1, 0, 0};
  EXPECT_THROW(engine_->hidden_probabilities(visible, 3), UsageError);  // 8 values for 3 rows of 4
  EXPECT_THROW(engine_->hidden_probabilities(visible, 0), UsageError);
  const std::vector<std::uint8_t> not_binary = {1, 0, 3, 1};
  EXPECT_THROW(engine_->hidden_probabilities(not_binary, 1), UsageError);
  EXPECT_THROW(engine_->gibbs_chain(visible, 2, 0, 1, 1), UsageError);
  EXPECT_THROW(engine_->gibbs_chain(visible, 2, detail::max_gibbs_steps + 1, 1, 1), UsageError);
  EXPECT_THROW(engine_->gibbs_chain(visible, 3, 1, 1, 1), UsageError);
  EXPECT_THROW(engine_->reset_persistent_chains(0, 1), UsageError);

  const Rbm before = engine_->model();
  Rbm broken = rbm;
  broken.weight(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(engine_->set_model(broken), DataError);
  EXPECT_THROW(engine_->set_model(Rbm()), UsageError);
  EXPECT_EQ(engine_->model(), before) << "a refused set_model leaves the previous model";
}

}  // namespace marbm::conformance
