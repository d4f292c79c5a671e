// The fused ensemble's warp kernel (one warp per member) against its block
// kernel (one block per member), both forced through MARBM_ENSEMBLE_KERNEL.
// Against the CPU engine (the CPU twin) both are checked in
// test_cuda_engine.cpp (CudaEnsemble.FusedMembersMatchTheCpuEngine...), so a
// first device run that fails here tells which kernel is wrong by which of
// those fails too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <iostream>
#include <string>
#include <vector>

#include "detail/ensemble_launch.hpp"
#include "device_test.hpp"
#include "ensemble_kernel_choice.hpp"
#include "marbm/data.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/error.hpp"
#include "marbm/train.hpp"
#include "test_support.hpp"

namespace marbm {
namespace {

using test_support::ScopedEnsembleKernel;

std::vector<TrainResult> train_with(const char* kernel, const Dataset& data, const std::vector<Rbm>& initial,
                                    const std::vector<std::uint64_t>& seeds, const TrainConfig& config) {
  const ScopedEnsembleKernel choice(kernel);
  return train_ensemble(Backend::cuda, data, initial, seeds, config);
}

// Equal, or both NaN (a metric not computed, a mode step not taken).
bool same_or_both_nan(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// Both kernels draw every random number from the same Philox word and sum
// every float32 term in the same order (the warp kernel's lanes take the
// block kernel's threads' items in turn, each item's loop unchanged), so the
// trained parameters must agree bit for bit, and so must everything a single
// thread computes from them (mode energy and push). Only the float64 log Z
// and KL sum their 2^k states in another grouping (32 lane chunks against up
// to 256 thread chunks): at most 2^10 states here, each term off by a few
// ulp, so 1e-12 relative is far above rounding and far below any change of
// a parameter (a flipped draw moves the KL by ~1e-3).
//
// A difference in the parameters is printed with its size: near 1e-7 would
// point at a different float contraction (fma) between the two kernels' code
// generation, ~lr/B (1e-2) at a wrong index or random number in one of them.
TEST(CudaEnsemble, WarpKernelEqualsTheBlockKernel) {
  MARBM_SKIP_WITHOUT_DEVICE();
  struct Case {
    const char* name;
    int n, m, rows, batch;
    TrainMethod method;
    NegativePhase base;
    int chains, k;
    bool exact_metrics, sample_positive_hidden;
    int members;
  };
  const std::vector<Case> cases = {
      // The benchmark's shape; 13 members leave the last block of 4 with one.
      {"cd 6x6 batch 6 (reference), exact KL", 6, 6, 6, 6, TrainMethod::cd, NegativePhase::cd, 0, 1, true, false, 13},
      {"cd-2 9x7 batch 8 of 20 rows (shuffled epochs)", 9, 7, 20, 8, TrainMethod::cd, NegativePhase::cd, 0, 2, true,
       false, 6},
      {"pcd 6x10 batch 4, 12 chains (visible layer enumerated)", 6, 10, 13, 4, TrainMethod::pcd, NegativePhase::cd, 12,
       1, true, false, 5},
      {"pcd 9x7 batch 8, 5 chains, sampled positive h", 9, 7, 20, 8, TrainMethod::pcd, NegativePhase::cd, 5, 1, false,
       true, 4},
      {"mode over cd 8x6", 8, 6, 16, 8, TrainMethod::mode, NegativePhase::cd, 0, 1, true, false, 7},
      {"mode over pcd 7x5, 3 chains", 7, 5, 16, 6, TrainMethod::mode, NegativePhase::pcd, 3, 1, true, false, 4},
      {"mode over cd 3x2 (4 states: most lanes enumerate nothing)", 3, 2, 5, 5, TrainMethod::mode, NegativePhase::cd, 0,
       1, true, false, 9},
      {"cd 16x16 batch 128 (the block kernel opts in)", 16, 16, 128, 128, TrainMethod::cd, NegativePhase::cd, 0, 1,
       false, false, 3},
      // 90,880 bytes a member: the warp kernel too runs one member per block
      // beyond the default 48 KiB, its only launch that opts in.
      {"cd 32x32 batch 128 (both kernels opt in)", 32, 32, 128, 128, TrainMethod::cd, NegativePhase::cd, 0, 1, false,
       false, 3},
      {"cd 32x32 batch 60 (one member per block)", 32, 32, 60, 60, TrainMethod::cd, NegativePhase::cd, 0, 1, false,
       false, 3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Dataset data = random_binary_dataset(c.rows, c.n, 0.4, 60 + c.n);
    TrainConfig config;
    config.method = c.method;
    config.gibbs_steps = c.k;
    config.batch_size = c.batch;
    config.persistent_chains = c.chains;
    config.iterations = 40;
    config.eval_every = 10;
    config.learning_rate = 0.05;
    config.momentum = 0.5;
    config.weight_decay = 1e-3;
    config.exact_metrics = c.exact_metrics;
    config.sample_positive_hidden = c.sample_positive_hidden;
    config.mode.p_max = 1.0;
    config.mode.base = c.base;
    config.mode.solver = ModeSolver::exhaustive;
    ASSERT_TRUE(ensemble_fused_supported(c.n, c.m, data.n_rows, config));
    if (std::string(c.name).find("both kernels opt in") != std::string::npos) {
      const detail::FusedEnsembleShape shape{c.n, c.m, c.batch, c.batch, c.exact_metrics};
      ASSERT_GT(detail::warp_member_bytes(shape), std::size_t{48} * 1024) << "the warp kernel must opt in here";
    }
    std::vector<Rbm> initial;
    std::vector<std::uint64_t> seeds;
    for (int e = 0; e < c.members; ++e) {
      initial.push_back(Rbm::random(c.n, c.m, 0.1, 800 + e));
      seeds.push_back(17 + 5 * e);
    }
    const auto block = train_with("block", data, initial, seeds, config);
    const auto warp = train_with("warp", data, initial, seeds, config);
    ASSERT_EQ(block.size(), initial.size());
    ASSERT_EQ(warp.size(), initial.size());
    for (int e = 0; e < c.members; ++e) {
      SCOPED_TRACE("member " + std::to_string(e));
      EXPECT_TRUE(warp[e].model == block[e].model)
          << "parameters differ by up to " << test_support::max_parameter_difference(warp[e].model, block[e].model);
      EXPECT_GT(test_support::max_parameter_difference(block[e].model, initial[e]), 1e-3)
          << "training moved the member";
      EXPECT_EQ(warp[e].mode_steps, block[e].mode_steps);
      if (c.method == TrainMethod::mode) EXPECT_GT(block[e].mode_steps, 0);
      ASSERT_EQ(warp[e].history.size(), block[e].history.size());
      ASSERT_EQ(block[e].history.size(), 5u);  // t = 0, 10, 20, 30, 40
      for (std::size_t k = 0; k < block[e].history.size(); ++k) {
        const TrainMetrics& w = warp[e].history[k];
        const TrainMetrics& b = block[e].history[k];
        EXPECT_EQ(w.iteration, b.iteration);
        EXPECT_EQ(w.mode_steps, b.mode_steps);
        EXPECT_TRUE(same_or_both_nan(w.mode_energy, b.mode_energy)) << w.mode_energy << " vs " << b.mode_energy;
        EXPECT_TRUE(same_or_both_nan(w.mode_push, b.mode_push)) << w.mode_push << " vs " << b.mode_push;
        EXPECT_TRUE(same_or_both_nan(w.p_mode, b.p_mode));
        if (!c.exact_metrics) {
          EXPECT_TRUE(std::isnan(w.kl) && std::isnan(b.kl));
          continue;
        }
        EXPECT_TRUE(test_support::close_relative(w.log_z, b.log_z, 1e-12)) << "t = " << b.iteration;
        EXPECT_TRUE(test_support::close_relative(w.kl, b.kl, 1e-12)) << "t = " << b.iteration;
        EXPECT_TRUE(test_support::close_relative(w.mean_log_likelihood, b.mean_log_likelihood, 1e-12));
      }
    }
  }
}

// The automatic choice (no variable) trains the reference ensemble with the
// warp kernel (tests/test_ensemble_launch.cpp); whichever it takes, it must
// equal a forced run of that kernel and, with it, the block kernel.
TEST(CudaEnsemble, AutomaticChoiceEqualsTheForcedKernels) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset bars = shifting_bars(6, 3);
  TrainConfig config;
  config.learning_rate = 0.2;
  config.batch_size = 6;
  config.iterations = 300;
  config.eval_every = 100;
  std::vector<Rbm> initial;
  std::vector<std::uint64_t> seeds;
  for (int e = 0; e < 40; ++e) {
    initial.push_back(Rbm::random(6, 6, 0.01, 1 + e));
    seeds.push_back(1 + e);
  }
  const auto automatic = train_with(nullptr, bars, initial, seeds, config);
  const auto warp = train_with("warp", bars, initial, seeds, config);
  const auto block = train_with("block", bars, initial, seeds, config);
  for (std::size_t e = 0; e < initial.size(); ++e) {
    EXPECT_TRUE(automatic[e].model == warp[e].model) << "member " << e;
    EXPECT_TRUE(block[e].model == warp[e].model)
        << "member " << e << ": differ by up to "
        << test_support::max_parameter_difference(block[e].model, warp[e].model);
  }
}

TEST(CudaEnsemble, UnknownKernelChoiceIsOneClearError) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset bars = shifting_bars(6, 3);
  TrainConfig config;
  config.batch_size = 6;
  config.iterations = 5;
  const ScopedEnsembleKernel choice("threads");
  try {
    (void)train_ensemble(Backend::cuda, bars, {Rbm::random(6, 6, 0.01, 1)}, {1}, config);
    FAIL() << "MARBM_ENSEMBLE_KERNEL=threads must be refused";
  } catch (const UsageError& error) {
    EXPECT_EQ(std::string(error.what()), "MARBM_ENSEMBLE_KERNEL must be auto, block or warp, got 'threads'");
  }
}

}  // namespace
}  // namespace marbm
