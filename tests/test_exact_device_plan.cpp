// Exact log Z on the device, host side (host/detail/exact_device_plan.hpp):
// the kernel choice and launch shape at every boundary, the subset table of
// the register kernel against brute force, and the current kernels' CPU twin
// (the same per-block and per-lane code the device runs) against the CPU's
// exact log Z. Runs without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "detail/exact_device_plan.hpp"
#include "detail/shared_memory.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace marbm::detail {
namespace {

constexpr SharedMemoryLimits kSm90{48 * 1024, 227 * 1024};
// block_combine's static shared memory (two arrays of 128 doubles), as
// -Xptxas -v reports it for every enumeration kernel (2048 bytes smem).
constexpr std::size_t kCombineStatic = 2 * 128 * sizeof(double);

TEST(ExactDevicePlan, KernelChoiceAtEveryBoundary) {
  struct Case {
    int fields;
    ExactDeviceKernel kernel;
    int pitch;
    int per_lane;
  };
  const std::vector<Case> cases = {
      {1, ExactDeviceKernel::registers, 16, 0},     {16, ExactDeviceKernel::registers, 16, 0},
      {17, ExactDeviceKernel::registers, 32, 0},    {32, ExactDeviceKernel::registers, 32, 0},
      {33, ExactDeviceKernel::registers, 64, 0},    {64, ExactDeviceKernel::registers, 64, 0},
      {65, ExactDeviceKernel::warp, 96, 4},         {128, ExactDeviceKernel::warp, 128, 4},
      {129, ExactDeviceKernel::warp, 160, 8},       {256, ExactDeviceKernel::warp, 256, 8},
      {257, ExactDeviceKernel::warp, 288, 16},      {512, ExactDeviceKernel::warp, 512, 16},
      {513, ExactDeviceKernel::warp, 544, 32},      {784, ExactDeviceKernel::warp, 800, 32},
      {1024, ExactDeviceKernel::warp, 1024, 32},    {1025, ExactDeviceKernel::scratch, 1025, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("fields " + std::to_string(c.fields));
    const ExactDevicePlan plan = plan_exact_device(20, c.fields, 132, false);
    EXPECT_EQ(plan.kernel, c.kernel);
    EXPECT_EQ(plan.pitch, c.pitch);
    EXPECT_EQ(plan.per_lane, c.per_lane);
    if (plan.kernel == ExactDeviceKernel::warp) EXPECT_LE(plan.pitch / 32, plan.per_lane);
    EXPECT_GE(plan.pitch, c.fields);
    // The previous kernels, selected by MARBM_EXACT_KERNEL=legacy.
    const ExactDevicePlan legacy = plan_exact_device(20, c.fields, 132, true);
    EXPECT_EQ(legacy.kernel,
              c.fields <= 64 ? ExactDeviceKernel::legacy_registers : ExactDeviceKernel::legacy_scratch);
    EXPECT_EQ(legacy.pitch, c.fields <= 64 ? c.pitch : c.fields);
    EXPECT_EQ(legacy.low_bits, 0);
  }
}

TEST(ExactDevicePlan, ChunksCoverEveryStateOnceAndFillTheDevice) {
  for (const int sms : {1, 7, 108, 132}) {
    for (const int k : {1, 2, 4, 10, 17, 20, 22, 24, 30, 40, 62}) {
      for (const int fields : {7, 33, 64, 100, 784, 2000}) {
        SCOPED_TRACE(std::to_string(sms) + " SMs, k " + std::to_string(k) + ", fields " + std::to_string(fields));
        const ExactDevicePlan plan = plan_exact_device(k, fields, sms, false);
        ASSERT_GE(plan.chunk_log, 0);
        ASSERT_LE(plan.chunk_log, k);
        EXPECT_EQ(plan.workers << plan.chunk_log, std::uint64_t{1} << k);
        const bool warp = plan.kernel == ExactDeviceKernel::warp;
        const std::uint64_t target = static_cast<std::uint64_t>(sms) * (warp ? 64 : 2048);
        if (plan.kernel != ExactDeviceKernel::scratch) {
          EXPECT_LE(plan.workers, target > (std::uint64_t{1} << k) ? (std::uint64_t{1} << k) : target);
          if (plan.chunk_log > 0) EXPECT_GT(plan.workers * 2, target) << "chunks larger than needed";
        } else {
          EXPECT_LE(plan.workers * static_cast<std::uint64_t>(fields) * sizeof(double), std::uint64_t{256} << 20);
        }
        const std::uint64_t per_block = warp ? 4 : 128;
        EXPECT_GE(static_cast<std::uint64_t>(plan.blocks) * per_block, plan.workers);
        EXPECT_LT(static_cast<std::uint64_t>(plan.blocks - 1) * per_block, plan.workers);
        // The table needs 16 states per thread; a table the model does not
        // allow (make_exact_low_table: usable false) falls back to one.
        if (plan.kernel == ExactDeviceKernel::registers) {
          EXPECT_EQ(plan.low_bits, plan.chunk_log >= 4 ? 4 : 0);
          EXPECT_EQ(plan_exact_device(k, fields, sms, false, false).low_bits, 0);
          EXPECT_EQ(plan_exact_device(k, fields, sms, false, false).chunk_log, plan.chunk_log);
          const SharedMemoryPlan shared = plan_shared_memory(kCombineStatic, plan.shared_bytes, kSm90);
          EXPECT_TRUE(shared.fits);
          EXPECT_FALSE(shared.opt_in) << "fits the default 48 KiB even at k = 62 and 64 fields";
        } else {
          EXPECT_EQ(plan.low_bits, 0);
        }
      }
    }
  }
  // The benchmark's target shape on an H100/H200 (132 SMs): 2^18 threads of
  // 2^12 codes, the table on; the wide case 784 x 20: 2^13 warps of 128 codes.
  const ExactDevicePlan big = plan_exact_device(30, 64, 132, false);
  EXPECT_EQ(big.kernel, ExactDeviceKernel::registers);
  EXPECT_EQ(big.chunk_log, 12);
  EXPECT_EQ(big.low_bits, 4);
  EXPECT_EQ(big.blocks, 2048u);
  EXPECT_EQ(big.shared_bytes, (30u * 64 + 16 * 64 + 16 + 64) * sizeof(double));
  const ExactDevicePlan wide = plan_exact_device(20, 784, 132, false);
  EXPECT_EQ(wide.kernel, ExactDeviceKernel::warp);
  EXPECT_EQ(wide.chunk_log, 7);
  EXPECT_EQ(wide.workers, 8192u);
  EXPECT_EQ(wide.blocks, 2048u);
}

TEST(ExactDevicePlan, EnvironmentSwitch) {
  EXPECT_FALSE(exact_kernel_legacy(nullptr));
  EXPECT_FALSE(exact_kernel_legacy(""));
  EXPECT_TRUE(exact_kernel_legacy("legacy"));
  EXPECT_THROW((void)exact_kernel_legacy("old"), UsageError);
  try {
    (void)exact_kernel_legacy("1");
  } catch (const UsageError& error) {
    EXPECT_EQ(std::string(error.what()), "MARBM_EXACT_KERNEL must be 'legacy' or unset (got '1')");
  }
}

ExactPrepared prepare(const Rbm& rbm, int pitch) {
  return exact_prepare_on_host(rbm.weights().data(), rbm.visible_bias().data(), rbm.hidden_bias().data(),
                               rbm.n_visible(), rbm.n_hidden(), pitch);
}

long double softplus_long(long double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

TEST(ExactLowTable, EveryFactorIsTheSoftplusOfItsSubsetAndStaysInRange) {
  const Rbm rbm = Rbm::random(33, 6, 1.5, 17);  // other layer 33 in a pitch of 64
  const ExactPrepared p = prepare(rbm, 64);
  const ExactLowTable low = make_exact_low_table(p.coupling.data(), p.linear.data(), p.k, p.fields, 64, 4);
  ASSERT_TRUE(low.usable);
  ASSERT_EQ(low.low_bits, 4);
  ASSERT_EQ(low.table.size(), 16u * 64);
  for (int l = p.fields; l < 64; ++l) {
    EXPECT_EQ(low.low_high[l], 0.0);
    for (int s = 0; s < 16; ++s) EXPECT_EQ(low.table[s * 64 + l], 1.0);
  }
  for (int s = 0; s < 16; ++s) {
    long double bias = 0.0L;
    for (int e = 0; e < 4; ++e)
      if ((s >> e) & 1) bias += p.linear[e];
    EXPECT_NEAR(low.low_linear[s], static_cast<double>(bias), 1e-15);
  }
  // softplus(f + S_sl) = a + log(c + b T[s][l]) for block fields on both
  // sides of -lh_l and far out, each factor in [e^-range_l, 2].
  for (int l = 0; l < p.fields; ++l) {
    double range = 0.0;
    for (int e = 0; e < 4; ++e) range += std::fabs(p.coupling[e * 64 + l]);
    for (const double f : {-800.0, -40.0, -3.0, -low.low_high[l], -0.5, 0.0, 0.7, 5.0, 60.0, 900.0}) {
      const double t = f + low.low_high[l];
      const double u = std::exp(-std::fabs(t));
      const double c = t > 0 ? u : 1.0, b = t > 0 ? 1.0 : u, a = t > 0 ? t : 0.0;
      for (int s = 0; s < 16; ++s) {
        long double subset = 0.0L;
        for (int e = 0; e < 4; ++e)
          if ((s >> e) & 1) subset += p.coupling[e * 64 + l];
        const double factor = c + b * low.table[s * 64 + l];
        EXPECT_LE(factor, 2.0);
        EXPECT_GE(factor, std::exp(-range) * (1 - 1e-12));
        const long double want = softplus_long(f + subset);
        // Roundings: t = f + lh, exp, the table entry, the fma, the log and
        // the final sum, each within an ulp or two of its operands' size.
        const double tolerance = 8 * 2.220446049250313e-16 * (std::fabs(t) + std::fabs(static_cast<double>(want)) + 1);
        EXPECT_NEAR(a + std::log(factor), static_cast<double>(want), tolerance)
            << "l " << l << " f " << f << " s " << s;
      }
    }
  }
  // g beyond k is clipped; g = 0 is the plain softplus (one row of ones).
  EXPECT_EQ(make_exact_low_table(p.coupling.data(), p.linear.data(), 3, p.fields, 64, 4).low_bits, 3);
  const ExactLowTable none = make_exact_low_table(p.coupling.data(), p.linear.data(), p.k, p.fields, 64, 0);
  EXPECT_TRUE(none.usable);
  EXPECT_EQ(none.range_sum, 0.0);
  for (const double x : none.table) EXPECT_EQ(x, 1.0);
}

TEST(ExactLowTable, RefusedWhenTheProductCouldUnderflow) {
  // 64 fields with |w| = 3 from each of the four low units: ranges sum to
  // 768 > 700; with |w| = 2.5, 640 <= 700.
  for (const double w : {2.5, 3.0}) {
    std::vector<double> coupling(6 * 64), linear(6, 0.1);
    for (std::size_t i = 0; i < coupling.size(); ++i) coupling[i] = (i % 3 == 0) ? -w : w;
    const ExactLowTable low = make_exact_low_table(coupling.data(), linear.data(), 6, 64, 64, 4);
    EXPECT_NEAR(low.range_sum, 4 * 64 * w, 1e-9);
    EXPECT_EQ(low.usable, 4 * 64 * w <= exact_table_range_limit) << w;
  }
}

// The kernels' arithmetic on the CPU against the CPU's exact log Z. A few
// SMs so that k <= 16 already takes the table (chunks of >= 16 codes).
TEST(ExactDeviceTwin, MatchesTheCpuExactLogZ) {
  struct Case {
    int n, m, sms;
    double sigma;
  };
  const std::vector<Case> cases = {
      {1, 1, 132, 0.1},   {6, 6, 132, 1.0},   {20, 7, 1, 1.0},    {17, 33, 132, 1.0}, {33, 15, 1, 0.5},
      {33, 15, 1, 1.0},   {64, 16, 2, 0.5},   {64, 16, 1, 0.1},   {40, 16, 1, 6.0},   {100, 10, 1, 1.0},
      {3, 70, 132, 1.0},  {300, 12, 1, 0.3},  {784, 10, 1, 0.1},  {784, 10, 132, 1.0}, {1024, 6, 1, 0.5},
  };
  for (const Case& c : cases) {
    for (const bool usable : {true, false}) {
      SCOPED_TRACE(std::to_string(c.n) + "x" + std::to_string(c.m) + " sigma " + std::to_string(c.sigma) +
                   " SMs " + std::to_string(c.sms) + (usable ? "" : " without the table"));
      const Rbm rbm = Rbm::random(c.n, c.m, c.sigma, static_cast<std::uint64_t>(c.n * 1000 + c.m));
      const int k = std::min(c.n, c.m), fields = std::max(c.n, c.m);
      ExactDevicePlan plan = plan_exact_device(k, fields, c.sms, false, usable);
      const ExactPrepared p = prepare(rbm, plan.pitch);
      ExactLowTable low =
          make_exact_low_table(p.coupling.data(), p.linear.data(), k, fields, plan.pitch, plan.low_bits);
      if (!low.usable) {
        plan = plan_exact_device(k, fields, c.sms, false, false);
        low = make_exact_low_table(p.coupling.data(), p.linear.data(), k, fields, plan.pitch, plan.low_bits);
      }
      if (c.sigma == 6.0) EXPECT_EQ(plan.low_bits, 0) << "large weights: no table";
      const double cpu = log_partition_exact(rbm);
      const double twin =
          exact_device_twin_log_z(plan, p.coupling.data(), p.linear.data(), p.field_bias.data(), k, fields, low);
      EXPECT_NEAR(twin, cpu, 1e-11 * std::abs(cpu) + 1e-12) << "low_bits " << plan.low_bits;
      if (usable) {  // the one-call form plans exactly so
        ExactDevicePlan used;
        const double again = exact_device_twin_log_z(rbm.weights().data(), rbm.visible_bias().data(),
                                                     rbm.hidden_bias().data(), c.n, c.m, c.sms, &used);
        EXPECT_EQ(again, twin);
        EXPECT_EQ(used.low_bits, plan.low_bits);
      }
    }
  }
}

// The table path must have been taken by some case above: 64 x 16 on one SM
// walks chunks of 2^5 codes.
TEST(ExactDeviceTwin, TheTableIsTakenWhereChunksAllowIt) {
  EXPECT_EQ(plan_exact_device(16, 64, 1, false).low_bits, 4);
  EXPECT_EQ(plan_exact_device(15, 33, 1, false).low_bits, 4);
  EXPECT_EQ(plan_exact_device(16, 64, 2, false).low_bits, 4);
  EXPECT_EQ(plan_exact_device(15, 64, 2, false).low_bits, 0);
  EXPECT_EQ(plan_exact_device(7, 20, 1, false).low_bits, 0);
}

}  // namespace
}  // namespace marbm::detail
