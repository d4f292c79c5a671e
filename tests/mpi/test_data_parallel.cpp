// Data-parallel training: the model after T updates has the same bits for
// any number of ranks (the ctest runs use 1, 2 and 3), for CD, PCD and
// mode-assisted training, on a loop-sized and a BLAS-sized model; and its
// gradient is the plain engine's gradient up to float32 rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

// Rows of a few noisy prototypes: structure to learn, and enough rows for
// batches of several 64-row blocks.
Dataset noisy_prototypes(int rows, int cols, std::uint64_t seed) {
  Dataset data;
  data.n_rows = rows;
  data.n_cols = cols;
  data.description = "noisy prototypes";
  const PhiloxStream stream(seed, 0);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const bool prototype = ((c * (r % 4 + 1)) / 3) % 2 == 0;
      const bool flip = stream.uniform_double(static_cast<std::uint64_t>(r) * cols + c) < 0.1;
      data.values.push_back(static_cast<std::uint8_t>(prototype != flip));
    }
  }
  return data;
}

std::unique_ptr<Engine> data_parallel(std::shared_ptr<Communicator> comm) {
  EngineOptions options;
  options.threads = 1;
  options.quiet = true;
  return make_data_parallel_engine(make_engine(Backend::cpu, options), std::move(comm));
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Case {
  const char* name;
  int n, m, rows, batch;
  TrainMethod method;
  int chains;  // pcd, or the base of mode: 0 = batch size
};

TrainConfig config_for(const Case& c) {
  TrainConfig config;
  config.method = c.method;
  config.batch_size = c.batch;
  config.learning_rate = 0.05;
  config.momentum = 0.5;
  config.weight_decay = 1e-4;
  config.iterations = 40;
  config.eval_every = 20;
  config.seed = 23;
  config.persistent_chains = c.chains;
  config.exact_metrics = c.n <= 24 || c.m <= 24;
  if (c.method == TrainMethod::mode) {
    config.mode.p_max = 0.6;  // many mode steps in 40 updates
    config.mode.alpha = 10.0;
    config.mode.beta = 0.0;
    config.mode.base = c.chains > 0 ? NegativePhase::pcd : NegativePhase::cd;
  }
  return config;
}

class DataParallel : public ::testing::TestWithParam<Case> {};

TEST_P(DataParallel, ModelAfterTUpdatesHasTheSameBitsForAnyRankCount) {
  const Case c = GetParam();
  auto world = world_communicator();
  const Dataset data = noisy_prototypes(c.rows, c.n, 17);
  const Rbm initial = Rbm::random(c.n, c.m, 0.1, 5);
  const TrainConfig config = config_for(c);

  auto distributed_engine = data_parallel(world);
  const TrainResult distributed = train(*distributed_engine, data, initial, config);
  // The same run as one process, on every rank.
  auto single_engine = data_parallel(single_process_communicator());
  const TrainResult single = train(*single_engine, data, initial, config);

  EXPECT_TRUE(same_bits(distributed.model.weights(), single.model.weights())) << c.name;
  EXPECT_TRUE(same_bits(distributed.model.visible_bias(), single.model.visible_bias())) << c.name;
  EXPECT_TRUE(same_bits(distributed.model.hidden_bias(), single.model.hidden_bias())) << c.name;
  EXPECT_EQ(distributed.mode_steps, single.mode_steps);
  if (c.method == TrainMethod::mode) EXPECT_GT(single.mode_steps, 0);
  ASSERT_EQ(distributed.history.size(), single.history.size());
  for (std::size_t k = 0; k < single.history.size(); ++k) {
    if (config.exact_metrics) EXPECT_EQ(distributed.history[k].log_z, single.history[k].log_z) << c.name << " " << k;
  }
  // The run learned something (the parameters moved from the start).
  EXPECT_FALSE(same_bits(single.model.weights(), initial.weights()));
  if (c.chains > 0) {
    // Every rank sees the whole population, in chain order.
    EXPECT_EQ(distributed_engine->persistent_chain_states(), single_engine->persistent_chain_states());
    EXPECT_EQ(single_engine->persistent_chain_states().size(), static_cast<std::size_t>(c.chains) * c.n);
  }
}

// A run checkpointed across the ranks and resumed, across the ranks or in
// one process, ends with the uninterrupted run's bits: the chains and the
// velocity travel whole in the checkpoint and are shared again on resume.
TEST_P(DataParallel, CheckpointedAndResumedOnAnyRankCountEqualsTheUninterruptedRun) {
  const Case c = GetParam();
  auto world = world_communicator();
  const Dataset data = noisy_prototypes(c.rows, c.n, 17);
  const Rbm initial = Rbm::random(c.n, c.m, 0.1, 5);
  const TrainConfig config = config_for(c);

  auto uninterrupted_engine = data_parallel(single_process_communicator());
  const TrainResult uninterrupted = train(*uninterrupted_engine, data, initial, config);

  std::vector<TrainCheckpoint> written;
  CheckpointOptions checkpoints;
  checkpoints.every = 15;
  checkpoints.write = [&](const TrainCheckpoint& checkpoint) { written.push_back(checkpoint); };
  auto first_engine = data_parallel(world);
  train(*first_engine, data, initial, config, {}, checkpoints);
  ASSERT_EQ(written.size(), 2u);  // after updates 15 and 30 of 40
  EXPECT_EQ(written[0].iteration, 15);
  if (c.chains > 0) EXPECT_EQ(written[0].chains.size(), static_cast<std::size_t>(c.chains) * c.n);

  for (auto comm : {world, single_process_communicator()}) {
    CheckpointOptions resume;
    resume.resume = &written[0];
    auto engine = data_parallel(comm);
    const TrainResult resumed = train(*engine, data, initial, config, {}, resume);
    EXPECT_TRUE(same_bits(resumed.model.weights(), uninterrupted.model.weights())) << c.name << " " << comm->size();
    EXPECT_TRUE(same_bits(resumed.model.visible_bias(), uninterrupted.model.visible_bias())) << c.name;
    EXPECT_TRUE(same_bits(resumed.model.hidden_bias(), uninterrupted.model.hidden_bias())) << c.name;
    EXPECT_EQ(resumed.mode_steps, uninterrupted.mode_steps) << c.name;
  }
}

// 20 x 12: loop-sized products (float64 sums); 40 x 30: sgemm-sized. Batches
// of 200 and 150 rows are 4 and 3 blocks (the last one partial), chains 130
// are 3 blocks: 2 and 3 ranks get unequal shares; 100 chains are 2 blocks, so
// a third rank holds none.
INSTANTIATE_TEST_SUITE_P(
    Methods, DataParallel,
    ::testing::Values(Case{"cd_loop", 20, 12, 300, 200, TrainMethod::cd, 0},
                      Case{"cd_blas", 40, 30, 300, 150, TrainMethod::cd, 0},
                      Case{"pcd_blas", 40, 30, 300, 150, TrainMethod::pcd, 130},
                      Case{"mode_cd_loop", 20, 12, 300, 200, TrainMethod::mode, 0},
                      Case{"mode_pcd_blas", 40, 30, 300, 150, TrainMethod::mode, 130},
                      Case{"pcd_empty_share", 40, 30, 300, 150, TrainMethod::pcd, 100},
                      Case{"small_batch", 20, 12, 300, 50, TrainMethod::cd, 0}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// The blockwise gradient is the plain engine's gradient: the same random
// numbers (they follow the row's place in the batch), summed in another order.
TEST(DataParallelGradient, EqualsThePlainEnginesGradientUpToRounding) {
  auto world = world_communicator();
  for (const Case c : {Case{"loop", 20, 12, 300, 200, TrainMethod::cd, 0},
                       Case{"blas", 40, 30, 300, 150, TrainMethod::cd, 0}}) {
    const Dataset data = noisy_prototypes(c.rows, c.n, 3);
    const Rbm model = Rbm::random(c.n, c.m, 0.3, 9);
    EngineOptions options;
    options.threads = 1;
    auto plain = make_engine(Backend::cpu, options);
    auto distributed = data_parallel(world);
    for (Engine* engine : {plain.get(), distributed.get()}) {
      engine->set_model(model);
      engine->set_data(data);
    }
    std::vector<int> rows(static_cast<std::size_t>(c.batch));
    for (int r = 0; r < c.batch; ++r) rows[static_cast<std::size_t>(r)] = (7 * r + 3) % c.rows;
    UpdateStep step;
    step.batch_rows = rows;
    step.seed = 41;
    step.step = 2;
    const Gradient expected = plain->gradient(step);
    const Gradient got = distributed->gradient(step);
    ASSERT_EQ(got.weights.size(), expected.weights.size());
    double largest = 0.0;
    for (std::size_t k = 0; k < got.weights.size(); ++k) {
      // float32 sums of <= 200 terms of size <= 1/200: rounding below 1e-6.
      EXPECT_NEAR(got.weights[k], expected.weights[k], 1e-6) << c.name << " " << k;
      largest = std::max(largest, std::abs(expected.weights[k]));
    }
    EXPECT_GT(largest, 1e-3);  // a gradient, not zeros
    for (int i = 0; i < c.n; ++i) EXPECT_NEAR(got.visible_bias[i], expected.visible_bias[i], 1e-12);
    for (int j = 0; j < c.m; ++j) EXPECT_NEAR(got.hidden_bias[j], expected.hidden_bias[j], 1e-6);
  }
}

TEST(DataParallelEngine, RefusesAnEngineWithoutBlockwiseGradients) {
  // A data-parallel engine inside a data-parallel engine is not a cpu engine.
  EXPECT_THROW(make_data_parallel_engine(data_parallel(single_process_communicator()), single_process_communicator()),
               UsageError);
}

}  // namespace
}  // namespace marbm
