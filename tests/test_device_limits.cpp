// Host-side limits of the CUDA engine, checked without a device: the shared
// memory decision of every kernel that sizes its shared memory at run time,
// the one cap on Gibbs steps that keeps Philox counters distinct, and the
// reporting of errors caught in destructors.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <string>

#include "detail/destructor_errors.hpp"
#include "detail/gibbs_steps.hpp"
#include "detail/mode_batch_plan.hpp"
#include "detail/replica_plan.hpp"
#include "detail/shared_memory.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/rbm.hpp"
#include "marbm/train.hpp"

namespace marbm::detail {
namespace {

// sm_90: 48 KiB without opting in, 227 KiB with.
constexpr SharedMemoryLimits kSm90{48 * 1024, 227 * 1024};
// ensemble_kernel's static shared memory as ptxas reports it for sm_90
// (-Xptxas -v: 6432 bytes smem): the Reduction scratch (3 x 256 eight-byte
// values), four doubles and block_sum's 32 partial sums.
constexpr std::size_t kEnsembleStatic = 6432;

TEST(SharedMemoryPlan, CountsStaticAndDynamicTogether) {
  // The fused-ensemble settings whose dynamic size alone is below 48 KiB but
  // whose total is above: each must opt in (the launch fails otherwise).
  struct Case {
    int n, m, batch;
  };
  for (const Case c : {Case{16, 16, 128}, Case{20, 20, 110}, Case{32, 32, 60}}) {
    const std::size_t dynamic = fused_ensemble_shared_bytes(c.n, c.m, c.batch, c.batch);
    SCOPED_TRACE(std::to_string(c.n) + "x" + std::to_string(c.m) + " batch " + std::to_string(c.batch) + ": " +
                 std::to_string(dynamic) + " dynamic bytes");
    EXPECT_GT(dynamic, kSm90.per_block - kEnsembleStatic);
    EXPECT_LE(dynamic, kSm90.per_block) << "dynamic alone is within the default amount";
    const SharedMemoryPlan plan = plan_shared_memory(kEnsembleStatic, dynamic, kSm90);
    EXPECT_TRUE(plan.fits);
    EXPECT_TRUE(plan.opt_in);
  }
}

TEST(SharedMemoryPlan, EdgesOfTheDefaultAndOptInLimits) {
  const std::size_t limit = kSm90.per_block;
  EXPECT_FALSE(plan_shared_memory(0, limit, kSm90).opt_in);
  EXPECT_TRUE(plan_shared_memory(0, limit, kSm90).fits);
  EXPECT_TRUE(plan_shared_memory(1, limit, kSm90).opt_in);
  EXPECT_FALSE(plan_shared_memory(100, limit - 100, kSm90).opt_in);
  EXPECT_TRUE(plan_shared_memory(100, limit - 99, kSm90).opt_in);
  EXPECT_TRUE(plan_shared_memory(8, kSm90.per_block_opt_in - 8, kSm90).fits);
  const SharedMemoryPlan too_big = plan_shared_memory(8, kSm90.per_block_opt_in - 7, kSm90);
  EXPECT_FALSE(too_big.fits);
  EXPECT_FALSE(too_big.opt_in);
  // A device that cannot opt in (opt-in limit = default) refuses the total.
  EXPECT_FALSE(plan_shared_memory(kEnsembleStatic, 43 * 1024, {48 * 1024, 48 * 1024}).fits);
}

TEST(SharedMemoryPlan, FusedEnsembleLayout) {
  // 6x6, batch 6, cd: 2 x 48 parameters, batch v and h, samples, chains, mode.
  EXPECT_EQ(fused_ensemble_shared_bytes(6, 6, 6, 6), (2 * 48 + 6 * 12 + 6 * 6 + 6 * 12 + 12) * sizeof(float));
  // pcd with more chains than the batch: the widest pass is the chains.
  EXPECT_EQ(fused_ensemble_shared_bytes(4, 3, 2, 5), (2 * 19 + 2 * 7 + 5 * 3 + 5 * 7 + 7) * sizeof(float));
}

// sm_80: 48 KiB without opting in, 163 KiB with; sm_86: 99 KiB.
constexpr SharedMemoryLimits kSm80{48 * 1024, 163 * 1024};
constexpr SharedMemoryLimits kSm86{48 * 1024, 99 * 1024};
constexpr int kH100Sms = 132;

TEST(ReplicaPlan, SizeClassesCoverTheLargerLayer) {
  EXPECT_EQ(replica_owned_class(1, 1), 1);
  EXPECT_EQ(replica_owned_class(12, 9), 1);
  EXPECT_EQ(replica_owned_class(32, 32), 1);
  EXPECT_EQ(replica_owned_class(33, 2), 2);
  EXPECT_EQ(replica_owned_class(5, 64), 2);
  EXPECT_EQ(replica_owned_class(65, 3), 4);
  EXPECT_EQ(replica_owned_class(128, 128), 4);
  EXPECT_EQ(replica_owned_class(129, 3), 8);
  EXPECT_EQ(replica_owned_class(200, 200), 8);
  EXPECT_EQ(replica_owned_class(256, 256), 8);
  EXPECT_EQ(replica_owned_class(257, 3), 0);
  EXPECT_EQ(replica_owned_class(3, 257), 0);
}

TEST(ReplicaPlan, SharedLayoutByHand) {
  // 12 x 9: W 12 rows of stride 9 (odd already) = 108 floats; the per-unit
  // terms and each warp's state 12 + 12 (9 padded to 12) floats.
  EXPECT_EQ(replica_weight_stride(9), 9);
  EXPECT_EQ(replica_weight_stride(10), 11);
  EXPECT_EQ(replica_shared_bytes(12, 9, 8), (108 + 9 * 24) * sizeof(float));
  // 200 x 200: stride 201, 40200 floats of W; 400 per warp and the shared terms.
  EXPECT_EQ(replica_shared_bytes(200, 200, 16), (40200 + 17 * 400) * sizeof(float));
  // Every part starts on a float4 boundary: W padded (7 x 11 = 77 -> 80).
  EXPECT_EQ(replica_shared_bytes(7, 10, 1), (80 + 2 * (8 + 12)) * sizeof(float));
}

TEST(ReplicaPlan, SpreadsReplicasOverTheSms) {
  // 1,024 replicas of a small model on 132 SMs: 8 per block, 128 blocks.
  const ReplicaPlan small = plan_replica_kernel(ReplicaKernel::sb, 12, 9, 1024, kH100Sms, 0, kSm90);
  EXPECT_TRUE(small.fused);
  EXPECT_EQ(small.owned, 1);
  EXPECT_EQ(small.warps, 8);
  EXPECT_EQ(small.blocks, 128);
  EXPECT_EQ(small.shared_bytes, replica_shared_bytes(12, 9, 8));
  EXPECT_FALSE(small.opt_in);
  // Enough replicas: the class's maximum per block, the rest in more blocks.
  const ReplicaPlan many = plan_replica_kernel(ReplicaKernel::sb, 12, 9, 32 * kH100Sms + 1, kH100Sms, 0, kSm90);
  EXPECT_EQ(many.warps, 32);
  EXPECT_EQ(many.blocks, kH100Sms + 1);
  // Fewer replicas than SMs: one per block.
  const ReplicaPlan few = plan_replica_kernel(ReplicaKernel::sa, 12, 9, 37, kH100Sms, 0, kSm90);
  EXPECT_EQ(few.warps, 1);
  EXPECT_EQ(few.blocks, 37);
}

TEST(ReplicaPlan, TwoHundredSquareStaysFusedWithOptIn) {
  const int replicas = 32 * kH100Sms;
  // SB class 8: at most 16 warps (registers); W + 17 x 400 floats = 188,000 B.
  const ReplicaPlan sb = plan_replica_kernel(ReplicaKernel::sb, 200, 200, replicas, kH100Sms, 0, kSm90);
  EXPECT_TRUE(sb.fused);
  EXPECT_EQ(sb.owned, 8);
  EXPECT_EQ(sb.warps, 16);
  EXPECT_TRUE(sb.opt_in);
  EXPECT_EQ(sb.shared_bytes, 188000u);
  // SA: 32 warps, W + 33 x 400 floats = 213,600 B, within 227 KiB.
  const ReplicaPlan sa = plan_replica_kernel(ReplicaKernel::sa, 200, 200, replicas, kH100Sms, 0, kSm90);
  EXPECT_EQ(sa.warps, 32);
  EXPECT_EQ(sa.shared_bytes, 213600u);
  EXPECT_LE(sa.shared_bytes, kSm90.per_block_opt_in);
  // The kernel's static shared memory counts: 32 warps no longer fit when it
  // takes the last 18,849 bytes (227 KiB - 213,600 + 1).
  const std::size_t spare = kSm90.per_block_opt_in - 213600;
  EXPECT_EQ(plan_replica_kernel(ReplicaKernel::sa, 200, 200, replicas, kH100Sms, spare, kSm90).warps, 32);
  EXPECT_LT(plan_replica_kernel(ReplicaKernel::sa, 200, 200, replicas, kH100Sms, spare + 1, kSm90).warps, 32);
}

TEST(ReplicaPlan, FewerWarpsOrTheCublasPathWhereSharedMemoryIsShort) {
  // sm_80 (163 KiB): W (160,800 B) leaves room for two warps' state only:
  // 40200 + 3 x 400 floats = 165,600 B <= 166,912 B < 40200 + 4 x 400 floats.
  const ReplicaPlan sm80 = plan_replica_kernel(ReplicaKernel::sb, 200, 200, 4096, kH100Sms, 0, kSm80);
  EXPECT_TRUE(sm80.fused);
  EXPECT_EQ(sm80.warps, 2);
  EXPECT_EQ(sm80.blocks, 2048);
  EXPECT_LE(sm80.shared_bytes, kSm80.per_block_opt_in);
  EXPECT_GT(replica_shared_bytes(200, 200, 3), kSm80.per_block_opt_in);
  // sm_86 (99 KiB): W alone does not fit.
  EXPECT_FALSE(plan_replica_kernel(ReplicaKernel::sb, 200, 200, 4096, kH100Sms, 0, kSm86).fused);
  // 224 x 224 just fits sm_90 with 16 warps; 256 x 256 (263 KB of W) does not.
  EXPECT_TRUE(plan_replica_kernel(ReplicaKernel::sb, 224, 224, 4096, kH100Sms, 0, kSm90).fused);
  EXPECT_FALSE(plan_replica_kernel(ReplicaKernel::sb, 256, 256, 4096, kH100Sms, 0, kSm90).fused);
  // Beyond the largest class (the 300 x 20 trajectory case): the cuBLAS path.
  EXPECT_FALSE(plan_replica_kernel(ReplicaKernel::sa, 300, 20, 37, kH100Sms, 0, kSm90).fused);
  EXPECT_FALSE(plan_replica_kernel(ReplicaKernel::sb, 784, 500, 512, kH100Sms, 0, kSm90).fused);
  // Nothing to launch.
  EXPECT_FALSE(plan_replica_kernel(ReplicaKernel::sb, 12, 9, 0, kH100Sms, 0, kSm90).fused);
}

TEST(ReplicaPlan, EveryPlanFitsItsLimits) {
  // Exhaustive over shapes, replica counts and devices: a fused plan fits,
  // respects its class's warp cap and covers every replica exactly once.
  for (const SharedMemoryLimits limits : {kSm80, kSm86, kSm90}) {
    for (int n = 1; n <= 260; n += 7) {
      for (int m = 1; m <= 260; m += 11) {
        for (const int replicas : {1, 37, 1024, 5000}) {
          const ReplicaKernel kernel = (n + m) % 2 == 0 ? ReplicaKernel::sb : ReplicaKernel::sa;
          const ReplicaPlan plan = plan_replica_kernel(kernel, n, m, replicas, kH100Sms, 1024, limits);
          if (!plan.fused) {
            EXPECT_TRUE(replica_owned_class(n, m) == 0 || !plan_shared_memory(1024, replica_shared_bytes(n, m, 1), limits).fits)
                << n << "x" << m;
            continue;
          }
          EXPECT_TRUE(plan_shared_memory(1024, plan.shared_bytes, limits).fits) << n << "x" << m;
          EXPECT_GE(plan.warps, 1);
          EXPECT_LE(plan.warps, replica_max_warps(kernel, plan.owned));
          EXPECT_GE(static_cast<long>(plan.blocks) * plan.warps, replicas);
          EXPECT_LT(static_cast<long>(plan.blocks - 1) * plan.warps, replicas);
          EXPECT_GE(kReplicaLanes * plan.owned, std::max(n, m));
        }
      }
    }
  }
}

TEST(WarpExhaustivePlan, SmallModelsTakeOneWarpByHand) {
  // 6 x 4: the hidden layer (4 units) enumerated, 16 states in one chunk of
  // 64; one warp's fields 6 doubles, four warps would fit but one is needed:
  // four per block all the same (the kernel's block shape), one block.
  const WarpExhaustivePlan plan = plan_exhaustive_warp(6, 4, kH100Sms, 0, kSm90);
  ASSERT_TRUE(plan.fits);
  EXPECT_TRUE(plan.enumerate_hidden);
  EXPECT_EQ(plan.k, 4);
  EXPECT_EQ(plan.l, 6);
  EXPECT_EQ(plan.total, 16u);
  EXPECT_EQ(plan.chunk, 64u);
  EXPECT_EQ(plan.warps, 1u);
  EXPECT_EQ(plan.warps_per_block, 4);
  EXPECT_EQ(plan.blocks, 1u);
  EXPECT_EQ(plan.slots, 4u);
  EXPECT_EQ(plan.shared_bytes, 4u * 6 * sizeof(double));
  // n < m: the visible layer is enumerated.
  const WarpExhaustivePlan wide = plan_exhaustive_warp(3, 9, kH100Sms, 0, kSm90);
  EXPECT_FALSE(wide.enumerate_hidden);
  EXPECT_EQ(wide.k, 3);
  EXPECT_EQ(wide.l, 9);
}

TEST(WarpExhaustivePlan, LargeEnumerationsSpreadOverTheSms) {
  // 2^30 states over 132 SMs x 64 warps: chunks of ceil(2^30 / 8448) = 127,101
  // states, 8,448 warps (the last one short), 2,112 blocks of four.
  const WarpExhaustivePlan plan = plan_exhaustive_warp(30, 784, kH100Sms, 0, kSm90);
  ASSERT_TRUE(plan.fits);
  EXPECT_EQ(plan.chunk, 127101u);
  EXPECT_EQ(plan.warps, 8448u);
  EXPECT_GE(plan.chunk * plan.warps, plan.total);
  EXPECT_LT(plan.chunk * (plan.warps - 1), plan.total);
  // 784 doubles = 6,272 bytes per warp: four fit in 48 KiB.
  EXPECT_EQ(plan.warps_per_block, 4);
  EXPECT_EQ(plan.blocks, 2112u);
  // Fields too large for even the opt-in amount: refused, not planned.
  EXPECT_FALSE(plan_exhaustive_warp(4, 30000, kH100Sms, 0, kSm90).fits);
  // Fields beyond the default but within the opt-in amount: one warp per block.
  const WarpExhaustivePlan opt_in = plan_exhaustive_warp(4, 8000, kH100Sms, 0, kSm90);
  ASSERT_TRUE(opt_in.fits);
  EXPECT_EQ(opt_in.warps_per_block, 1);
  EXPECT_EQ(opt_in.shared_bytes, 8000u * sizeof(double));
}

TEST(WarpExhaustivePlan, EveryPlanCoversEveryStateOnce) {
  for (const SharedMemoryLimits limits : {kSm80, kSm86, kSm90}) {
    for (const int sms : {1, 46, kH100Sms}) {
      for (int k = 1; k <= 34; k += 3) {
        for (const int l : {1, 33, 500, 5000}) {
          const WarpExhaustivePlan plan = plan_exhaustive_warp(l, k, sms, 1024, limits);
          if (!plan.fits) {
            EXPECT_FALSE(plan_shared_memory(1024, static_cast<std::size_t>(l) * sizeof(double), limits).fits);
            continue;
          }
          EXPECT_EQ(plan.total, std::uint64_t{1} << std::min(k, l));
          EXPECT_GE(plan.chunk, 64u);
          EXPECT_GE(plan.chunk * plan.warps, plan.total);
          EXPECT_LT(plan.chunk * (plan.warps - 1), plan.total);
          EXPECT_GE(plan.slots, plan.warps);
          EXPECT_LT(plan.slots - plan.warps, static_cast<std::uint64_t>(plan.warps_per_block));
          EXPECT_TRUE(plan_shared_memory(1024, plan.shared_bytes, limits).fits);
          // The grid's x dimension holds every plan's blocks.
          EXPECT_LE(plan.blocks, std::uint64_t{0x7fffffff});
        }
      }
    }
  }
}

TEST(BatchedModeSearch, ModelGroupsFitTheGridsYDimension) {
  EXPECT_TRUE(model_groups(0).empty());
  const std::vector<ModelGroup> one = model_groups(1000);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].first, 0);
  EXPECT_EQ(one[0].count, 1000);
  const std::vector<ModelGroup> three = model_groups(2 * kMaxModelsPerLaunch + 7);
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three[1].first, kMaxModelsPerLaunch);
  EXPECT_EQ(three[2].first, 2 * kMaxModelsPerLaunch);
  EXPECT_EQ(three[2].count, 7);
  const std::vector<ModelGroup> small = model_groups(10, 4);
  ASSERT_EQ(small.size(), 3u);
  EXPECT_EQ(small[2].first, 8);
  EXPECT_EQ(small[2].count, 2);
  EXPECT_THROW(model_groups(-1), UsageError);
}

TEST(BatchedModeSearch, CoversTheExhaustiveSolverOnly) {
  ModeSearchConfig search;
  search.solver = ModeSolver::exhaustive;
  EXPECT_TRUE(batched_mode_search_covers(search, true));
  EXPECT_FALSE(batched_mode_search_covers(search, false)) << "marginal target, enumerable: no search to batch";
  for (const ModeSolver other : {ModeSolver::local, ModeSolver::sb, ModeSolver::sa}) {
    search.solver = other;
    EXPECT_FALSE(batched_mode_search_covers(search, true));
  }
}

TEST(BatchedModeSearch, TheSwitchBackToOneSearchPerMember) {
  EXPECT_FALSE(ensemble_mode_search_per_member(nullptr));
  EXPECT_FALSE(ensemble_mode_search_per_member(""));
  EXPECT_FALSE(ensemble_mode_search_per_member("batched"));
  EXPECT_TRUE(ensemble_mode_search_per_member("per-member"));
  EXPECT_THROW(ensemble_mode_search_per_member("per_member"), UsageError);
  EXPECT_THROW(ensemble_mode_search_per_member("1"), UsageError);
}

TEST(GibbsStepCap, OneLimitWithOneMessage) {
  EXPECT_NO_THROW(check_gibbs_steps(1, "x"));
  EXPECT_NO_THROW(check_gibbs_steps(max_gibbs_steps, "x"));
  EXPECT_THROW(check_gibbs_steps(0, "x"), UsageError);
  EXPECT_THROW(check_gibbs_steps(-1, "x"), UsageError);
  EXPECT_THROW(check_gibbs_steps(std::numeric_limits<int>::max(), "x"), UsageError);
  try {
    check_gibbs_steps(max_gibbs_steps + 1, "train");
    FAIL() << "k = 2^20 + 1 must be refused";
  } catch (const UsageError& error) {
    EXPECT_EQ(std::string(error.what()), "train: Gibbs steps k must be in [1, 1048576], got 1048577");
  }
  // The cap keeps every half-sweep's Philox index (half_sweep * 2^40 + ...)
  // inside 64 bits and the device's int half-sweep count (2 k + 2) positive.
  EXPECT_LT((2.0 * max_gibbs_steps + 2) * 1099511627776.0, 18446744073709551616.0 / 4);
  EXPECT_LT(2LL * max_gibbs_steps + 2, static_cast<long long>(std::numeric_limits<int>::max()));
}

TEST(GibbsStepCap, TrainingRefusesBeforeAnyWork) {
  const Dataset data = random_binary_dataset(6, 4, 0.5, 3);
  TrainConfig config;
  config.iterations = 1;
  config.gibbs_steps = max_gibbs_steps + 1;
  auto engine = make_engine(Backend::cpu);
  EXPECT_THROW((void)train(*engine, data, Rbm::random(4, 3, 0.1, 1), config), UsageError);
}

TEST(CleanupErrors, ReportedOnceAndCounted) {
  const long before = destructor_error_count();
  ::testing::internal::CaptureStderr();
  report_destructor_error("first failure");
  report_destructor_error("second failure");
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(destructor_error_count(), before + 2);
  // Only the process's first report is printed (one line).
  EXPECT_EQ(printed.find("second failure"), std::string::npos) << printed;
  if (before == 0) {
    EXPECT_NE(printed.find("marbm: error in cleanup (not thrown): first failure"), std::string::npos) << printed;
    EXPECT_EQ(printed.find('\n'), printed.size() - 1) << printed;
  } else {
    EXPECT_TRUE(printed.empty()) << printed;
  }
}

}  // namespace
}  // namespace marbm::detail
