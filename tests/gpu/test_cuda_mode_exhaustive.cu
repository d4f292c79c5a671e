// The device exhaustive search's two kernels and a mode step's E_bar on the
// device: the one-state-per-thread kernel against its CPU twin bit for bit,
// against the old one-state-per-warp kernel, and whole searches with either
// kernel against each other and the CPU oracle, ties included. Skipped
// without a usable device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "detail/mode_exhaustive_plan.hpp"
#include "device_buffer.cuh"
#include "device_test.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"
#include "mode_search.cuh"
#include "mode_search_internal.cuh"
#include "resources.cuh"
#include "test_support.hpp"

namespace marbm::detail {
namespace {

// Weights and biases N(0, scale^2): non-dyadic, every sum rounds.
Rbm random_model(int n, int m, double scale, std::uint64_t seed) {
  Rbm rbm = Rbm::random(n, m, scale, seed);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::test, 41));
  std::uint64_t index = 0;
  for (float& a : rbm.visible_bias()) a = static_cast<float>(scale * standard_normal(stream, index++));
  for (float& b : rbm.hidden_bias()) b = static_cast<float>(scale * standard_normal(stream, index++));
  return rbm;
}

// Ties decided by the tie rule alone (lowest Gray index).
Rbm dyadic_model(int n, int m, std::uint64_t seed) { return test_support::quarter_grid_model(n, m, seed, 43); }

// The plan with another chunk length (tests of the kernel at chunk lengths
// the plan would not pick on this device).
ExhaustivePlan with_chunk_bits(ExhaustivePlan plan, int k, int chunk_bits) {
  plan.chunk_bits = chunk_bits;
  plan.chunks = (std::uint64_t{1} << k) >> chunk_bits;
  plan.blocks = (plan.chunks + kExhaustiveThreadBlock - 1) / kExhaustiveThreadBlock;
  plan.slots = plan.blocks * (kExhaustiveThreadBlock / 32);
  plan.shared_bytes =
      static_cast<std::size_t>(chunk_bits) * (plan.size_class + 1) * exhaustive_row_bytes(plan.size_class);
  return plan;
}

class CudaExhaustive : public ::testing::Test {
 protected:
  void SetUp() override {
    MARBM_SKIP_WITHOUT_DEVICE();
    resources_ = std::make_unique<Resources>(0);
  }

  // The problem on the device.
  struct OnDevice {
    DeviceBuffer<float> rows, bias_k, bias_l;
  };
  OnDevice upload(const ExhaustiveProblem& problem) {
    OnDevice d{DeviceBuffer<float>(problem.rows.size(), resources_->stream()),
               DeviceBuffer<float>(problem.bias_k.size(), resources_->stream()),
               DeviceBuffer<float>(problem.bias_l.size(), resources_->stream())};
    d.rows.copy_from_host(problem.rows);
    d.bias_k.copy_from_host(problem.bias_k);
    d.bias_l.copy_from_host(problem.bias_l);
    return d;
  }
  ExhaustiveLowest lowest(const ExhaustiveProblem& problem, const ExhaustivePlan& plan) {
    const OnDevice d = upload(problem);
    return exhaustive_lowest_device(*resources_, d.rows.data(), d.bias_k.data(), d.bias_l.data(), problem.k,
                                    problem.l, plan);
  }
  std::unique_ptr<Resources> resources_;
};

// Both orientations, every size class with l not a multiple of 4 or of the
// warp, one-unit layers, k from 1 to 22 (more chunks than threads per block).
const std::vector<std::pair<int, int>> kShapes = {{1, 1},   {9, 1},   {1, 9},   {8, 8},   {13, 29}, {33, 7},
                                                  {5, 40},  {16, 16}, {17, 12}, {64, 12}, {20, 20}, {22, 31},
                                                  {64, 22}, {18, 63}};

TEST_F(CudaExhaustive, ThreadKernelEqualsItsCpuTwinBitForBit) {
  std::uint64_t seed = 700;
  for (const auto& [n, m] : kShapes) {
    for (const bool dyadic : {false, true}) {
      const Rbm rbm = dyadic ? dyadic_model(n, m, seed++) : random_model(n, m, 1.0, seed++);
      const ExhaustiveProblem problem = exhaustive_problem(rbm);
      const ExhaustivePlan planned = plan_exhaustive(problem.k, problem.l, resources_->multiprocessors(), false);
      ASSERT_EQ(planned.kernel, ExhaustiveKernel::thread);
      // The planned chunk, one state per chunk (each restarted from scratch:
      // k x l work per state, so only up to 2^16 states) and one chunk for all.
      std::vector<int> chunk_lengths = {planned.chunk_bits, problem.k};
      if (problem.k <= 16) chunk_lengths.push_back(0);
      for (const int chunk_bits : chunk_lengths) {
        const ExhaustivePlan plan = with_chunk_bits(planned, problem.k, chunk_bits);
        const std::string what = std::to_string(n) + "x" + std::to_string(m) + (dyadic ? " dyadic" : " random") +
                                 " chunk 2^" + std::to_string(chunk_bits);
        const ExhaustiveLowest device = lowest(problem, plan);
        const ExhaustiveLowest twin = exhaustive_thread_twin(problem, chunk_bits);
        EXPECT_EQ(device.index, twin.index) << what;
        EXPECT_EQ(device.energy, twin.energy) << what;  // same float64 operations in the same order
      }
    }
  }
}

TEST_F(CudaExhaustive, ThreadKernelAgreesWithTheWarpKernel) {
  // The two kernels restart their fields at different states and sum them in
  // different orders: energies agree to float64 rounding (|E| <= sum of ~k + l
  // terms of size ~1, so 1e-12 relative is thousands of roundings), and the
  // index exactly, since Gaussian parameters put no two states within 1e-12
  // and dyadic ones make every sum exact.
  std::uint64_t seed = 800;
  for (const auto& [n, m] : kShapes) {
    for (const bool dyadic : {false, true}) {
      const Rbm rbm = dyadic ? dyadic_model(n, m, seed++) : random_model(n, m, 1.0, seed++);
      const ExhaustiveProblem problem = exhaustive_problem(rbm);
      const std::string what = std::to_string(n) + "x" + std::to_string(m) + (dyadic ? " dyadic" : " random");
      const int sms = resources_->multiprocessors();
      const ExhaustiveLowest thread = lowest(problem, plan_exhaustive(problem.k, problem.l, sms, false));
      const ExhaustiveLowest warp = lowest(problem, plan_exhaustive(problem.k, problem.l, sms, true));
      EXPECT_EQ(thread.index, warp.index) << what;
      EXPECT_NEAR(thread.energy, warp.energy, 1e-12 * std::max(1.0, std::abs(warp.energy))) << what;
      if (dyadic) EXPECT_EQ(thread.energy, warp.energy) << what;
    }
  }
}

// find_mode with the exhaustive solver on the device, MARBM_EXHAUSTIVE_KERNEL
// set to `kernel` (null: unset) for the call.
ModeResult device_search(const Rbm& rbm, const char* kernel) {
  if (kernel == nullptr) {
    unsetenv("MARBM_EXHAUSTIVE_KERNEL");
  } else {
    setenv("MARBM_EXHAUSTIVE_KERNEL", kernel, 1);
  }
  ModeSearchConfig config;
  config.solver = ModeSolver::exhaustive;
  config.backend = Backend::cuda;
  try {
    ModeResult result = find_mode(rbm, config);
    unsetenv("MARBM_EXHAUSTIVE_KERNEL");
    return result;
  } catch (...) {
    unsetenv("MARBM_EXHAUSTIVE_KERNEL");
    throw;
  }
}

TEST_F(CudaExhaustive, WholeSearchGivesTheSameModeWithEitherKernel) {
  // The state decides the reported energy (the polish computes it), so the
  // two kernels' results are equal field for field; the CPU oracle finds the
  // same state (ties: the lowest Gray index on both).
  std::uint64_t seed = 900;
  for (const auto& [n, m] : kShapes) {
    for (const bool dyadic : {false, true}) {
      const Rbm rbm = dyadic ? dyadic_model(n, m, seed++) : random_model(n, m, 1.0, seed++);
      const std::string what = std::to_string(n) + "x" + std::to_string(m) + (dyadic ? " dyadic" : " random");
      const ModeResult thread = device_search(rbm, nullptr);
      const ModeResult warp = device_search(rbm, "warp");
      const ModeResult cpu = mode_exhaustive(rbm);
      EXPECT_EQ(thread.visible, warp.visible) << what;
      EXPECT_EQ(thread.hidden, warp.hidden) << what;
      EXPECT_EQ(thread.energy, warp.energy) << what;
      EXPECT_EQ(thread.visible, cpu.visible) << what;
      EXPECT_EQ(thread.hidden, cpu.hidden) << what;
      EXPECT_NEAR(thread.energy, cpu.energy, 1e-12 * std::max(1.0, std::abs(cpu.energy))) << what;
    }
  }
  EXPECT_THROW(device_search(random_model(4, 3, 1.0, 1), "thread"), UsageError);
}

TEST_F(CudaExhaustive, LargestEnumerationSameWithEitherKernel) {
  // 2^32 states (the default max_enumerated_units) with the larger layer at
  // 64, the largest size class; dyadic, so equal energies tie exactly.
  for (const bool dyadic : {false, true}) {
    const Rbm rbm = dyadic ? dyadic_model(64, 32, 31) : random_model(64, 32, 0.5, 32);
    const ExhaustiveProblem problem = exhaustive_problem(rbm);
    const int sms = resources_->multiprocessors();
    const ExhaustiveLowest thread = lowest(problem, plan_exhaustive(32, 64, sms, false));
    const ExhaustiveLowest warp = lowest(problem, plan_exhaustive(32, 64, sms, true));
    EXPECT_EQ(thread.index, warp.index) << dyadic;
    EXPECT_NEAR(thread.energy, warp.energy, 1e-12 * std::max(1.0, std::abs(warp.energy))) << dyadic;
  }
}

TEST_F(CudaExhaustive, MeanEnergyOnTheDeviceWithinFloat64Rounding) {
  // Separate tensors (the ensemble members' layout) and non-dyadic values. The
  // bound: each side's sum of N terms is within (N - 1) u sum|x| of the exact
  // sum (u = 2^-53), and -sa/2 - sb/2 - sw/4 rounds twice, at most u S each,
  // S = sum|a|/2 + sum|b|/2 + sum|W|/4: the values differ by <= 2 (N + 1) u S.
  std::uint64_t seed = 1000;
  for (const auto& [n, m] : std::vector<std::pair<int, int>>{{1, 1}, {3, 1030}, {784, 500}}) {
    const Rbm rbm = random_model(n, m, 0.3, seed++);
    DeviceBuffer<float> w(rbm.weights().size(), resources_->stream());
    DeviceBuffer<float> a(rbm.visible_bias().size(), resources_->stream());
    DeviceBuffer<float> b(rbm.hidden_bias().size(), resources_->stream());
    w.copy_from_host(rbm.weights());
    a.copy_from_host(rbm.visible_bias());
    b.copy_from_host(rbm.hidden_bias());
    double scale = 0.0;
    for (const float x : rbm.visible_bias()) scale += std::abs(x) / 2.0;
    for (const float x : rbm.hidden_bias()) scale += std::abs(x) / 2.0;
    for (const float x : rbm.weights()) scale += std::abs(x) / 4.0;
    const double count = static_cast<double>(std::max<std::size_t>(rbm.weights().size(), std::max(n, m)));
    const double tolerance = 2.0 * (count + 1.0) * std::ldexp(1.0, -53) * scale;
    const double device = uniform_mean_energy_device(resources_->stream(), w.data(), a.data(), b.data(), n, m);
    EXPECT_NEAR(device, rbm.uniform_mean_energy(), tolerance) << n << "x" << m;
  }
}

}  // namespace
}  // namespace marbm::detail
