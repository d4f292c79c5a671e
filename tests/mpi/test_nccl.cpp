// Data-parallel training on GPU ranks (NCCL). Without a device every rank
// refuses the same way, and none is left waiting in a collective; with one
// GPU per rank (the ctest distributed_nccl_2_gpu_ranks: mpiexec -n 2, skipped
// below 2 devices) the ranks train what one device trains, up to float
// rounding, and repeat their own run bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "marbm/communicator.hpp"
#include "marbm/data.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

TEST(CudaDataParallelSetup, EveryRankRefusesInOneLineWithoutADevice) {
  if (!cuda_devices().empty()) GTEST_SKIP() << "a CUDA device is usable here";
  auto world = world_communicator();
  try {
    (void)make_cuda_data_parallel_engine(world, EngineOptions{});
    FAIL() << "no device, yet an engine was made";
  } catch (const CudaError& error) {
    const std::string what = error.what();
    EXPECT_EQ(what.find("data-parallel training on GPUs: "), 0u) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    // The first reason of the lowest rank: the build, else rank 0's device.
    if (!cuda_compiled()) {
      EXPECT_NE(what.find("no CUDA engine"), std::string::npos) << what;
    } else if (!nccl_compiled()) {
      EXPECT_NE(what.find("no NCCL"), std::string::npos) << what;
    } else {
      EXPECT_NE(what.find("rank 0 on "), std::string::npos) << what;
    }
  }
  // Every rank got here: nobody waits in a collective.
  world->barrier();
}

TEST(CudaDataParallelSetup, LocalRankCountsTheRanksOnThisHost) {
  auto world = world_communicator();
  const int local = local_rank(*world);
  EXPECT_GE(local, 0);
  EXPECT_LE(local, world->rank());
  // The tests run on one host: the local rank is the rank.
  EXPECT_EQ(local, world->rank());
  EXPECT_EQ(local_rank(*single_process_communicator()), 0);
}

Dataset stripes(int rows, int cols) {
  Dataset data;
  data.n_rows = rows;
  data.n_cols = cols;
  data.description = "stripes";
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) data.values.push_back(static_cast<std::uint8_t>(((c + r) / (r % 3 + 1)) % 2));
  }
  return data;
}

// Whether every rank has NCCL and a GPU of its own (decided together, so
// that every rank runs or skips the test).
bool every_rank_has_a_gpu(Communicator& world) {
  const int local = local_rank(world);
  const std::size_t devices = cuda_devices().size();
  std::vector<double> missing{world.size() >= 2 && nccl_version() > 0 && static_cast<std::size_t>(local) < devices
                                  ? 0.0
                                  : 1.0};
  world.all_reduce_max(missing);
  return missing[0] == 0.0;
}

TEST(CudaDataParallelRanks, TrainWhatOneDeviceTrainsUpToRounding) {
  auto world = world_communicator();
  if (!every_rank_has_a_gpu(*world)) {
    GTEST_SKIP() << "needs mpiexec with 2 or more ranks, NCCL and one GPU per rank (NCCL refuses two ranks on one GPU)";
  }
  EngineOptions options;
  options.device = local_rank(*world);
  const Dataset data = stripes(90, 12);
  const Rbm initial = Rbm::random(12, 9, 0.1, 4);

  // One step: the gradient summed over the ranks is the one device's.
  {
    auto distributed = make_cuda_data_parallel_engine(world, options);
    auto plain = make_engine(Backend::cuda, options);
    for (Engine* engine : {distributed.get(), plain.get()}) {
      engine->set_model(initial);
      engine->set_data(data);
    }
    std::vector<int> rows;
    for (int r = 0; r < 77; ++r) rows.push_back((5 * r + 1) % data.n_rows);
    for (const NegativePhase negative : {NegativePhase::cd, NegativePhase::pcd}) {
      UpdateStep step;
      step.batch_rows = rows;
      step.negative = negative;
      step.seed = 8;
      step.step = 3;
      if (negative == NegativePhase::pcd) {
        for (Engine* engine : {distributed.get(), plain.get()}) engine->reset_persistent_chains(31, 8);
      }
      const Gradient expected = plain->gradient(step);
      const Gradient got = distributed->gradient(step);
      double largest = 0.0;
      for (std::size_t k = 0; k < expected.weights.size(); ++k) {
        // float32 sums of <= 108 terms of size <= 1/31.
        EXPECT_NEAR(got.weights[k], expected.weights[k], 2e-6) << k;
        largest = std::max(largest, std::abs(expected.weights[k]));
      }
      EXPECT_GT(largest, 1e-3);
      for (std::size_t i = 0; i < expected.visible_bias.size(); ++i) {
        EXPECT_NEAR(got.visible_bias[i], expected.visible_bias[i], 2e-6);
      }
      for (std::size_t j = 0; j < expected.hidden_bias.size(); ++j) {
        EXPECT_NEAR(got.hidden_bias[j], expected.hidden_bias[j], 2e-6);
      }
      if (negative == NegativePhase::pcd) {
        // The chains, gathered in chain order, are the one device's.
        EXPECT_EQ(distributed->persistent_chain_states(), plain->persistent_chain_states());
      }
    }
  }

  // Whole runs: the same on every rank, bit for bit when repeated, and the
  // one device's up to rounding (a short run, so that no draw near its
  // threshold flips).
  for (const TrainMethod method : {TrainMethod::cd, TrainMethod::pcd, TrainMethod::mode}) {
    TrainConfig config;
    config.method = method;
    config.batch_size = 45;
    config.iterations = 30;
    config.learning_rate = 0.05;
    config.momentum = 0.5;
    config.seed = 12;
    config.persistent_chains = method == TrainMethod::pcd ? 20 : 0;
    config.mode.p_max = 0.5;
    config.mode.alpha = 10.0;
    config.mode.beta = 0.0;
    auto first = make_cuda_data_parallel_engine(world, options);
    const TrainResult once = train(*first, data, initial, config);
    auto second = make_cuda_data_parallel_engine(world, options);
    const TrainResult again = train(*second, data, initial, config);
    auto plain = make_engine(Backend::cuda, options);
    const TrainResult alone = train(*plain, data, initial, config);
    const auto weights = once.model.weights();
    ASSERT_EQ(std::memcmp(weights.data(), again.model.weights().data(), weights.size() * sizeof(float)), 0);
    const auto everyone = world->all_gather(std::as_bytes(weights));
    for (const auto& theirs : everyone) {
      ASSERT_EQ(theirs.size(), weights.size_bytes());
      EXPECT_EQ(std::memcmp(theirs.data(), weights.data(), theirs.size()), 0) << "the ranks hold different models";
    }
    if (method == TrainMethod::mode) EXPECT_GT(once.mode_steps, 0);
    EXPECT_EQ(once.mode_steps, alone.mode_steps);
    for (std::size_t k = 0; k < weights.size(); ++k) EXPECT_NEAR(weights[k], alone.model.weights()[k], 1e-4) << k;
  }
}

}  // namespace
}  // namespace marbm
