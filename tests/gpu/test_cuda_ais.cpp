// AIS on the device against its CPU twin: the same schedule, base model and
// Philox words, so run by run the log weights agree (up to the float rounding
// of the fields, which can flip a rare draw and send that run elsewhere), and
// the estimates land on the exact log Z as the CPU's do. Skips without a device.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "device_test.hpp"
#include "marbm/ais.hpp"
#include "marbm/data.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

// A model with structure (scaled random weights and biases) that AIS must
// anneal through, small enough for exact log Z.
Rbm structured_model(int n, int m, std::uint64_t seed) {
  Rbm rbm = Rbm::random(n, m, 0.6, seed);
  for (int i = 0; i < n; ++i) rbm.visible_bias()[i] = static_cast<float>(0.3 * std::sin(1.7 * i));
  for (int j = 0; j < m; ++j) rbm.hidden_bias()[j] = static_cast<float>(-0.2 + 0.1 * std::cos(2.3 * j));
  return rbm;
}

// Runs whose log weights the two backends agree on to `tolerance`.
int agreeing_runs(const std::vector<double>& a, const std::vector<double>& b, double tolerance) {
  EXPECT_EQ(a.size(), b.size());
  int agree = 0;
  for (std::size_t r = 0; r < std::min(a.size(), b.size()); ++r) agree += std::fabs(a[r] - b[r]) <= tolerance;
  return agree;
}

TEST(CudaAis, LogWeightsAreTheCpuRunsAndTheEstimateHitsTheExactLogZ) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Rbm rbm = structured_model(20, 12, 3);
  const Dataset data = shifting_bars(20, 6);
  const double exact = log_partition_exact(rbm);
  AisOptions options;
  options.runs = 64;
  options.intervals = 1000;
  options.reverse_burn_in = 50;
  options.seed = 11;
  options.backend = Backend::cpu;
  const AisResult cpu = log_partition_ais(rbm, options, &data);
  options.backend = Backend::cuda;
  const AisResult gpu = log_partition_ais(rbm, options, &data);
  ASSERT_TRUE(gpu.has_reverse);
  EXPECT_EQ(gpu.runs, 64);
  EXPECT_EQ(gpu.intervals, cpu.intervals);
  EXPECT_EQ(gpu.log_z_base, cpu.log_z_base);
  // Same draws: all runs but a rare flipped one carry the CPU's weight. The
  // weights sum ~12,000 float-rounded fields' softplus differences, so 1e-6
  // is far above rounding and far below what one different draw changes.
  EXPECT_GE(agreeing_runs(cpu.forward.log_weights, gpu.forward.log_weights, 1e-6), 60);
  EXPECT_GE(agreeing_runs(cpu.reverse.log_weights, gpu.reverse.log_weights, 1e-6), 60);
  // And the device's estimate is an AIS estimate of this log Z: within the
  // +-3 se intervals of both directions (with a margin of 0.05 nats for the
  // schedule's bias, far below what a wrong weight or draw would cause).
  EXPECT_NEAR(gpu.forward.log_z, exact, 3.0 * gpu.forward.standard_error + 0.05);
  EXPECT_NEAR(gpu.reverse.log_z, exact, 3.0 * gpu.reverse.standard_error + 0.05);
  EXPECT_LE(gpu.low(), exact + 0.05);
  EXPECT_GE(gpu.high(), exact - 0.05);
}

TEST(CudaAis, WiderModelsWithoutDataFollowTheCpuToo) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // Widths that are not multiples of 4 or of a warp, through the cuBLAS
  // products at a size where they tile, with the base model at p = 0.5 and
  // the reverse runs started from base-rate samples.
  const Rbm rbm = structured_model(203, 61, 5);
  AisOptions options;
  options.runs = 37;
  options.intervals = 60;
  options.reverse_burn_in = 7;
  options.seed = 2;
  options.backend = Backend::cpu;
  const AisResult cpu = log_partition_ais(rbm, options);
  options.backend = Backend::cuda;
  double last_progress = -1.0;
  bool monotone = true;
  options.progress = [&](double fraction) {
    monotone = monotone && fraction >= last_progress;
    last_progress = fraction;
  };
  const AisResult gpu = log_partition_ais(rbm, options);
  EXPECT_TRUE(monotone);
  EXPECT_DOUBLE_EQ(last_progress, 1.0);
  EXPECT_GE(agreeing_runs(cpu.forward.log_weights, gpu.forward.log_weights, 1e-4), 33);
  EXPECT_GE(agreeing_runs(cpu.reverse.log_weights, gpu.reverse.log_weights, 1e-4), 33);
  // A short schedule on a model this size: the two directions disagree, and
  // the device's bracket is wide exactly where the CPU's is.
  EXPECT_NEAR(gpu.forward.log_z, cpu.forward.log_z, 3.0 * (cpu.forward.standard_error + gpu.forward.standard_error) + 1e-3);
  EXPECT_NEAR(gpu.reverse.log_z, cpu.reverse.log_z, 3.0 * (cpu.reverse.standard_error + gpu.reverse.standard_error) + 1e-3);
}

TEST(CudaAis, AskingForAMissingDeviceIsOneClearError) {
  // Runs with or without a device: a device ordinal past the last one, or no
  // device at all, is refused with a marbm::Error, not a crash.
  AisOptions options;
  options.runs = 4;
  options.intervals = 10;
  options.backend = Backend::cuda;
  options.device = static_cast<int>(cuda_devices().size());
  EXPECT_THROW((void)log_partition_ais(Rbm::random(5, 4, 0.1, 1), options), Error);
}

}  // namespace
}  // namespace marbm
