// Host-side limits of the CUDA engine, checked without a device: the shared
// memory decision of every kernel that sizes its shared memory at run time,
// the one cap on Gibbs steps that keeps Philox counters distinct, and the
// reporting of errors caught in destructors.
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "detail/destructor_errors.hpp"
#include "detail/gibbs_steps.hpp"
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
