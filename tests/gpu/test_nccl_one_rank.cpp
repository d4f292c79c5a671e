// The NCCL data-parallel engine with one rank is the plain CUDA engine: the
// same rows, draws and scales, and the all-reduce of one rank is a copy, so
// every method ends on the same bits.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "device_test.hpp"
#include "marbm/communicator.hpp"
#include "marbm/data.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

TEST(CudaNcclOneRank, TrainsTheSameBitsAsThePlainCudaEngine) {
  MARBM_SKIP_WITHOUT_DEVICE();
  if (!nccl_compiled()) GTEST_SKIP() << "this build has no NCCL (MARBM_NCCL)";
  ASSERT_GT(nccl_version(), 0) << "NCCL is compiled but cannot be used";
  const Dataset data = bars_and_stripes(3);
  const Rbm initial = Rbm::random(9, 7, 0.1, 2);
  for (const TrainMethod method : {TrainMethod::cd, TrainMethod::pcd, TrainMethod::exact, TrainMethod::mode}) {
    TrainConfig config;
    config.method = method;
    config.batch_size = 10;
    config.iterations = 200;
    config.learning_rate = 0.05;
    config.momentum = 0.5;
    config.weight_decay = 1e-4;
    config.seed = 6;
    config.persistent_chains = method == TrainMethod::pcd ? 13 : 0;
    config.mode.p_max = 0.5;
    config.mode.alpha = 10.0;
    config.mode.beta = 0.0;
    auto nccl = make_cuda_data_parallel_engine(single_process_communicator(), EngineOptions{});
    EXPECT_NE(nccl->description().find("NCCL, 1 rank"), std::string::npos) << nccl->description();
    auto plain = make_engine(Backend::cuda);
    const TrainResult distributed = train(*nccl, data, initial, config);
    const TrainResult alone = train(*plain, data, initial, config);
    EXPECT_TRUE(same_bits(distributed.model.weights(), alone.model.weights())) << to_string(method);
    EXPECT_TRUE(same_bits(distributed.model.visible_bias(), alone.model.visible_bias())) << to_string(method);
    EXPECT_TRUE(same_bits(distributed.model.hidden_bias(), alone.model.hidden_bias())) << to_string(method);
    EXPECT_FALSE(same_bits(alone.model.weights(), initial.weights()));
    EXPECT_EQ(distributed.mode_steps, alone.mode_steps);
    if (method == TrainMethod::pcd) {
      EXPECT_EQ(nccl->persistent_chain_states(), plain->persistent_chain_states());
    }
  }
}

}  // namespace
}  // namespace marbm
