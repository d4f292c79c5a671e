// The CUDA engine's update structure: the CUDA Graph replay against the
// direct launches (MARBM_CUDA_GRAPH=0), bit for bit over a run, and the bias
// gradients of the one augmented GEMM against the former two GEMVs
// (MARBM_CUDA_BIAS_GEMV=1). Skipped without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cuda_impl.hpp"
#include "device_test.hpp"
#include "engine_conformance.hpp"

namespace marbm::conformance {
namespace {

// An engine made with `variable` set to `value` for its construction (the
// engine reads its switches once, when made).
std::unique_ptr<Engine> engine_with(const char* variable, const char* value) {
  ::setenv(variable, value, 1);
  auto engine = make_engine(Backend::cuda);
  ::unsetenv(variable);
  return engine;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_same_model(Engine& a, Engine& b, const std::string& where) {
  const Rbm x = a.model(), y = b.model();
  EXPECT_TRUE(same_bits(x.weights(), y.weights())) << where << ": weights";
  EXPECT_TRUE(same_bits(x.visible_bias(), y.visible_bias())) << where << ": visible bias";
  EXPECT_TRUE(same_bits(x.hidden_bias(), y.hidden_bias())) << where << ": hidden bias";
  const OptimizerState u = a.optimizer_state(), v = b.optimizer_state();
  EXPECT_TRUE(same_bits(u.weights, v.weights)) << where << ": weight velocity";
  EXPECT_TRUE(same_bits(u.visible_bias, v.visible_bias)) << where << ": visible velocity";
  EXPECT_TRUE(same_bits(u.hidden_bias, v.hidden_bias)) << where << ": hidden velocity";
  EXPECT_EQ(a.persistent_chain_states(), b.persistent_chain_states()) << where << ": chains";
}

TEST(CudaUpdateGraph, ReplaysGiveTheBitsOfTheDirectLaunches) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // Both engines run the same kernels on the same inputs; the graph engine
  // reads seed, step, learning rate, momentum, decay and batch rows from the
  // device block that a replay sees, so any value baked into the capture
  // instead would show as a difference from the second replay on. Shapes
  // with tails (widths not multiples of 4: scalar sampler paths) and without.
  for (const auto [n, m] : {std::array{37, 23}, std::array{64, 48}}) {
    const Rbm rbm = Rbm::random(n, m, 0.3, 7 + n);
    const Dataset data = random_dataset(96, n, 11 + m);
    auto direct = engine_with("MARBM_CUDA_GRAPH", "0");
    auto graph = engine_with("MARBM_CUDA_GRAPH", "1");
    for (Engine* engine : {direct.get(), graph.get()}) {
      engine->set_model(rbm);
      engine->set_data(data);
    }
    std::vector<int> rows(24);
    std::uint64_t t = 0;
    const std::vector<std::uint8_t> v_star(n, 1), h_star(m, 0);
    // `count` updates of one kind; every update its own batch rows and factors.
    auto run = [&](NegativePhase negative, int k, int batch, int count) {
      for (int u = 0; u < count; ++u, ++t) {
        rows.resize(batch);
        for (int r = 0; r < batch; ++r) rows[r] = static_cast<int>((t * 17 + r * 5) % data.n_rows);
        UpdateStep step;
        step.batch_rows = rows;
        step.negative = negative;
        step.gibbs_steps = k;
        step.learning_rate = 0.05 / (1.0 + 0.1 * static_cast<double>(t));
        step.momentum = t < 3 ? 0.0 : 0.5;
        step.weight_decay = 1e-4 * static_cast<double>(t % 3);
        step.seed = 5;
        step.step = t;
        step.mode_visible = v_star;
        step.mode_hidden = h_star;
        direct->update(step);
        graph->update(step);
      }
    };
    const std::string shape = std::to_string(n) + "x" + std::to_string(m);
    run(NegativePhase::cd, 1, 24, 8);  // 1 direct, then captured: 7 replays
    expect_same_model(*direct, *graph, shape + " cd-1");
    run(NegativePhase::mode, 1, 24, 1);  // direct on both; rewrites the weight column
    run(NegativePhase::cd, 1, 24, 4);    // same key as before: 4 replays
    expect_same_model(*direct, *graph, shape + " cd-1 after a mode step");
    run(NegativePhase::pcd, 2, 24, 6);  // 1 direct, 5 replays
    run(NegativePhase::mode, 1, 24, 1);
    run(NegativePhase::pcd, 2, 24, 3);  // 3 replays
    expect_same_model(*direct, *graph, shape + " pcd-2");
    run(NegativePhase::cd, 3, 16, 4);  // another shape: 1 direct, 3 replays
    expect_same_model(*direct, *graph, shape + " cd-3, batch 16");
    EXPECT_EQ(detail::cuda_engine_graph_launches(*direct), 0u);
    // 7 + 4 + 5 + 3 + 3: the first update of each shape runs direct, the
    // second captures; a smaller count means updates fell back to direct.
    EXPECT_EQ(detail::cuda_engine_graph_launches(*graph), 22u) << shape;
  }
}

TEST(CudaUpdateGraph, GradientCallsAndUpdatesInterleave) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // gradient() runs direct on the same buffers between replays: the replay
  // after it still reads its own update's block.
  const int n = 20, m = 12;
  const Rbm rbm = Rbm::random(n, m, 0.3, 3);
  const Dataset data = random_dataset(40, n, 4);
  auto direct = engine_with("MARBM_CUDA_GRAPH", "0");
  auto graph = engine_with("MARBM_CUDA_GRAPH", "1");
  const std::vector<int> rows = all_rows(40);
  for (Engine* engine : {direct.get(), graph.get()}) {
    engine->set_model(rbm);
    engine->set_data(data);
  }
  for (std::uint64_t t = 0; t < 6; ++t) {
    UpdateStep step;
    step.batch_rows = rows;
    step.negative = NegativePhase::cd;
    step.seed = 9;
    step.step = t;
    step.learning_rate = 0.1;
    direct->update(step);
    graph->update(step);
    step.step = 100 + t;
    const Gradient a = direct->gradient(step), b = graph->gradient(step);
    EXPECT_TRUE(same_bits(a.weights, b.weights)) << t;
    EXPECT_TRUE(same_bits(a.visible_bias, b.visible_bias)) << t;
    EXPECT_TRUE(same_bits(a.hidden_bias, b.hidden_bias)) << t;
  }
  expect_same_model(*direct, *graph, "cd-1 with gradient calls");
  EXPECT_GE(detail::cuda_engine_graph_launches(*graph), 4u);
}

TEST(CudaUpdateGraph, BiasGradientsOfTheGemmAgreeWithTheGemvs) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // Same draws (same sampler, same inputs), so the two differ only in the
  // order of float32 sums. Every entry is a sum over the R stacked rows of
  // terms whose absolute values add up to S <= 3 (data rows at most 1/B in
  // all, negative rows at most 1/P or the mode weights' sum 1, and for exact
  // the expectation, at most 1); any order's float32 sum is within
  // (R - 1) 2^-24 S of the exact one (first-order bound), so two orders
  // differ by at most 2 (R - 1) 2^-24 S.
  for (const auto [n, m, data_rows] : {std::array{6, 6, 6}, std::array{13, 7, 50}, std::array{65, 33, 300}}) {
    const Rbm rbm = Rbm::random(n, m, 0.3, 21 + n);
    const Dataset data = random_dataset(data_rows, n, 22 + m);
    auto gemm = engine_with("MARBM_CUDA_BIAS_GEMV", "0");
    auto gemv = engine_with("MARBM_CUDA_BIAS_GEMV", "1");
    for (Engine* engine : {gemm.get(), gemv.get()}) {
      engine->set_model(rbm);
      engine->set_data(data);
      engine->reset_persistent_chains(37, 2);
    }
    const std::vector<int> batch = all_rows(data_rows);
    const std::vector<std::uint8_t> v_star(n, 1), h_star(m, 0);
    for (const NegativePhase negative : {NegativePhase::cd, NegativePhase::pcd, NegativePhase::mode, NegativePhase::exact}) {
      if (negative == NegativePhase::exact && std::min(n, m) > 16) continue;
      UpdateStep step;
      step.batch_rows = batch;
      step.negative = negative;
      step.seed = 4;
      step.step = 2;
      step.mode_visible = v_star;
      step.mode_hidden = h_star;
      const int stacked = data_rows + (negative == NegativePhase::cd    ? data_rows
                                       : negative == NegativePhase::pcd  ? 37
                                       : negative == NegativePhase::mode ? 1
                                                                         : 0);
      const double tolerance = 2.0 * (stacked - 1) * std::ldexp(1.0, -24) * 3.0;
      EXPECT_LE(max_difference(gemm->gradient(step), gemv->gradient(step)), tolerance)
          << n << "x" << m << " negative " << static_cast<int>(negative);
    }
  }
}

}  // namespace
}  // namespace marbm::conformance
