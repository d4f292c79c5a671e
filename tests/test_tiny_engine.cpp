// The CPU engine's tiny-model path (host/tiny_engine.cpp) against the general
// path: the same Philox words, the same sigmoid bits, and bit-identical models
// after training runs of every method and option on several small shapes.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "detail/cpu_engine.hpp"
#include "detail/tiny_engine.hpp"
#include "marbm/engine.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

TEST(TinyEngine, PhiloxWordsAreTheStreamsWords) {
  std::vector<std::uint32_t> words(4 * 40);
  for (const std::uint64_t seed : {std::uint64_t{0}, std::uint64_t{7}, std::uint64_t{0xfedcba9876543210}}) {
    const PhiloxStream stream(seed, random_stream(RandomPurpose::gibbs, 12345));
    // Block indices of half-sweeps (2^38 apart), across a 2^32 carry, and counts
    // that leave every remainder of 4.
    for (const std::uint64_t first : {std::uint64_t{0}, std::uint64_t{3} << 38, (std::uint64_t{1} << 32) - 5,
                                      ~std::uint64_t{0} - 50}) {
      for (std::size_t count = 1; count <= 40; count += 3) {
        detail::philox_words(stream, first, count, words.data());
        for (std::size_t b = 0; b < count; ++b) {
          const auto expected = stream.block(first + b);
          for (int q = 0; q < 4; ++q) ASSERT_EQ(words[4 * b + q], expected[q]) << "block " << first + b << " word " << q;
        }
      }
    }
  }
}

// Where the vectorised exp is in use it must give libm's bits: every 251st
// float with |x| < 88 (about 8.5 million inputs, every exponent) and the
// multiples of 2^-20 in [-1, 1].
TEST(TinyEngine, ExpReplicaIsBitIdenticalToLibm) {
  if (!detail::tiny_fast_exp()) GTEST_SKIP() << "no AVX2/FMA replica on this CPU (the scalar exp is used)";
  constexpr std::size_t chunk = 4096;
  std::vector<float> x, got(chunk);
  x.reserve(chunk);
  long checked = 0;
  auto flush = [&] {
    detail::tiny_exp_replica(x.data(), got.data(), x.size());
    for (std::size_t k = 0; k < x.size(); ++k) {
      ASSERT_EQ(bits(got[k]), bits(std::exp(x[k]))) << "x = " << x[k] << " (bits " << bits(x[k]) << ")";
    }
    checked += static_cast<long>(x.size());
    x.clear();
  };
  auto add = [&](float value) {
    x.push_back(value);
    if (x.size() == chunk) flush();
  };
  for (std::uint64_t pattern = 0; pattern < (std::uint64_t{1} << 32); pattern += 251) {
    const float value = std::bit_cast<float>(static_cast<std::uint32_t>(pattern));
    if (std::fabs(value) < 88.0f) add(value);
    if (HasFatalFailure()) return;
  }
  for (int k = -(1 << 20); k <= (1 << 20); ++k) {
    add(static_cast<float>(k) * 0x1p-20f);
    if (HasFatalFailure()) return;
  }
  flush();
  EXPECT_GT(checked, 8'000'000);
}

TEST(TinyEngine, SigmoidIsTheGeneralPathsSigmoidIncludingSpecialInputs) {
  std::vector<float> x = {0.0f, -0.0f, 1.0f, -1.0f, 88.0f, -88.0f, 87.99f, -87.99f, 88.5f, -88.5f, 88.8f, -88.8f,
                          103.5f, -103.5f, 104.0f, -104.0f, 1000.0f, -1000.0f, 1e-30f, -1e-30f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), 16.6355f, -16.6355f, 1e30f, -1e30f};
  for (int k = -3000; k <= 3000; ++k) x.push_back(static_cast<float>(k) * 0.0371f);
  std::vector<float> y = x;
  detail::tiny_sigmoid(y.data(), y.size());
  for (std::size_t k = 0; k < x.size(); ++k) {
    const float expected = 1.0f / (1.0f + std::exp(-x[k]));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(y[k])) << "x = " << x[k];
    } else {
      EXPECT_EQ(bits(y[k]), bits(expected)) << "x = " << x[k];
    }
  }
}

// A data set of `rows` pseudo-random rows of n bits.
Dataset random_data(int rows, int n, std::uint64_t seed) {
  Dataset data;
  data.n_rows = rows;
  data.n_cols = n;
  data.description = "random";
  const PhiloxStream stream(seed, random_stream(RandomPurpose::test, 1));
  for (int k = 0; k < rows * n; ++k) data.values.push_back(static_cast<std::uint8_t>(stream.bits(static_cast<std::uint64_t>(k)) >> 31));
  return data;
}

::testing::AssertionResult same_bits(const Rbm& a, const Rbm& b) {
  auto compare = [](std::span<const float> x, std::span<const float> y, const char* what) -> std::string {
    if (x.size() != y.size()) return std::string(what) + " sizes differ";
    for (std::size_t k = 0; k < x.size(); ++k) {
      if (bits(x[k]) != bits(y[k])) {
        return std::string(what) + "[" + std::to_string(k) + "]: " + std::to_string(x[k]) + " vs " + std::to_string(y[k]);
      }
    }
    return {};
  };
  for (const std::string& message : {compare(a.weights(), b.weights(), "W"), compare(a.visible_bias(), b.visible_bias(), "a"),
                                     compare(a.hidden_bias(), b.hidden_bias(), "b")}) {
    if (!message.empty()) return ::testing::AssertionFailure() << message;
  }
  return ::testing::AssertionSuccess();
}

struct Case {
  std::string name;
  int n, m, rows;
  TrainConfig config;
};

std::vector<Case> cases() {
  std::vector<Case> all;
  auto base = [](TrainMethod method, int batch) {
    TrainConfig config;
    config.method = method;
    config.batch_size = batch;
    config.learning_rate = 0.3;
    config.iterations = 120;
    config.eval_every = 30;
    config.seed = 11;
    return config;
  };
  const int shapes[][3] = {{6, 6, 6}, {1, 1, 3}, {3, 5, 7}, {9, 4, 20}, {16, 10, 40}, {16, 3, 9}, {2, 16, 4}};
  for (const auto& shape : shapes) {
    const int n = shape[0], m = shape[1], rows = shape[2];
    const std::string tag = std::to_string(n) + "x" + std::to_string(m) + "_";
    all.push_back({tag + "cd1_full_batch", n, m, rows, base(TrainMethod::cd, rows)});
    TrainConfig cd3 = base(TrainMethod::cd, 3);
    cd3.gibbs_steps = 3;
    cd3.momentum = 0.5;
    cd3.weight_decay = 0.01;
    all.push_back({tag + "cd3_batch3_momentum_decay", n, m, rows, cd3});
    TrainConfig sampled = base(TrainMethod::cd, 1);
    sampled.sample_positive_hidden = true;
    all.push_back({tag + "cd1_batch1_sampled_positive", n, m, rows, sampled});
    TrainConfig pcd = base(TrainMethod::pcd, 4);
    pcd.gibbs_steps = 2;
    pcd.persistent_chains = 11;
    pcd.momentum = 0.9;
    all.push_back({tag + "pcd2_11_chains_momentum", n, m, rows, pcd});
    TrainConfig pcd_default = base(TrainMethod::pcd, rows);
    pcd_default.learning_rate_schedule = LearningRateSchedule::exponential;
    pcd_default.final_learning_rate = 0.01;
    all.push_back({tag + "pcd1_batch_chains_schedule", n, m, rows, pcd_default});
    TrainConfig mode = base(TrainMethod::mode, rows);
    mode.mode.p_max = 0.5;
    mode.mode.beta = -1.0;
    mode.weight_decay = 0.001;
    all.push_back({tag + "mode_cd", n, m, rows, mode});
    TrainConfig mode_pcd = mode;
    mode_pcd.mode.base = NegativePhase::pcd;
    mode_pcd.mode.additive = true;
    mode_pcd.sample_positive_hidden = true;
    all.push_back({tag + "mode_pcd_additive", n, m, rows, mode_pcd});
    TrainConfig mode_states = mode;
    mode_states.mode.mode_states = 3;
    mode_states.mode.solver = ModeSolver::local;
    mode_states.batch_size = 2;
    all.push_back({tag + "mode_three_weighted_states", n, m, rows, mode_states});
    TrainConfig marginal = mode;
    marginal.mode.target = ModeTarget::marginal;
    all.push_back({tag + "mode_marginal", n, m, rows, marginal});
    if (n * m <= 36) all.push_back({tag + "exact", n, m, rows, base(TrainMethod::exact, rows)});
  }
  return all;
}

TEST(TinyEngine, TrainingIsBitIdenticalToTheGeneralPath) {
  int compared = 0;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const Dataset data = random_data(c.rows, c.n, 3);
    const Rbm initial = Rbm::random(c.n, c.m, 0.5, 5);
    EngineOptions options;
    options.threads = 1;
    const auto tiny = detail::make_cpu_engine(options, true);
    const auto general = detail::make_cpu_engine(options, false);
    const TrainResult a = train(*tiny, data, initial, c.config);
    const TrainResult b = train(*general, data, initial, c.config);
    ASSERT_TRUE(same_bits(a.model, b.model));
    ASSERT_EQ(a.history.size(), b.history.size());
    for (std::size_t k = 0; k < a.history.size(); ++k) {
      EXPECT_EQ(a.history[k].log_z, b.history[k].log_z) << "evaluation " << k;
      EXPECT_EQ(a.history[k].kl, b.history[k].kl) << "evaluation " << k;
    }
    EXPECT_EQ(a.mode_steps, b.mode_steps);
    if (c.config.method == TrainMethod::mode) EXPECT_GT(a.mode_steps, 10);
    // The runs moved the model: identical because both paths trained alike.
    EXPECT_FALSE(same_bits(a.model, initial));
    ++compared;
  }
  EXPECT_EQ(compared, 68);
}

// The engine interface directly: updates of every kind in a row, with the
// velocity carried between them, on one engine of each path.
TEST(TinyEngine, MixedUpdatesThroughTheEngineAreBitIdentical) {
  const int n = 7, m = 5;
  const Dataset data = random_data(13, n, 9);
  const Rbm initial = Rbm::random(n, m, 0.8, 2);
  const auto tiny = detail::make_cpu_engine({}, true);
  const auto general = detail::make_cpu_engine({}, false);
  for (Engine* engine : {tiny.get(), general.get()}) {
    engine->set_model(initial);
    engine->set_data(data);
    engine->reset_persistent_chains(5, 4);
  }
  const std::vector<int> rows = {0, 3, 3, 12, 7};
  const std::vector<std::uint8_t> mode_v = {1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0};
  const std::vector<std::uint8_t> mode_h = {0, 1, 1, 0, 1, 1, 1, 0, 0, 0};
  const std::vector<double> weights = {0.75, 0.25};
  for (int t = 0; t < 60; ++t) {
    UpdateStep step;
    step.batch_rows = std::span<const int>(rows.data(), 1 + t % 5);
    step.negative = t % 3 == 0 ? NegativePhase::cd : t % 3 == 1 ? NegativePhase::pcd : NegativePhase::mode;
    step.gibbs_steps = 1 + t % 4;
    step.learning_rate = 0.05 + 0.01 * (t % 7);
    step.momentum = t % 2 ? 0.7 : 0.0;
    step.weight_decay = t % 5 == 0 ? 0.02 : 0.0;
    step.sample_positive_hidden = t % 4 == 1;
    step.seed = 21;
    step.step = static_cast<std::uint64_t>(t);
    if (step.negative == NegativePhase::mode) {
      step.mode_visible = t % 2 ? std::span<const std::uint8_t>(mode_v) : std::span<const std::uint8_t>(mode_v.data(), n);
      step.mode_hidden = t % 2 ? std::span<const std::uint8_t>(mode_h) : std::span<const std::uint8_t>(mode_h.data(), m);
      if (t % 2) step.mode_weights = weights;
    }
    tiny->update(step);
    general->update(step);
    ASSERT_TRUE(same_bits(tiny->model(), general->model())) << "after update " << t;
    ASSERT_EQ(tiny->persistent_chain_states(), general->persistent_chain_states()) << "after update " << t;
    const OptimizerState va = tiny->optimizer_state(), vb = general->optimizer_state();
    ASSERT_EQ(va.weights, vb.weights);
    ASSERT_EQ(va.visible_bias, vb.visible_bias);
    ASSERT_EQ(va.hidden_bias, vb.hidden_bias);
  }
  EXPECT_FALSE(same_bits(tiny->model(), initial));
}

}  // namespace
}  // namespace marbm
