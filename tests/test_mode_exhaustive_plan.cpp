// The device exhaustive search's host side: the kernel/launch-shape plan and
// the CPU twin of the one-state-per-thread kernel (the GPU test compares the
// kernel with the twin bit for bit; here the twin is checked against the CPU
// exhaustive search, mode_exhaustive).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "detail/mode_exhaustive_plan.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"
#include "test_support.hpp"

namespace marbm::detail {
namespace {

TEST(ExhaustivePlan, ThreadKernelUpTo64UnitsInItsSizeClass) {
  for (const auto& [l, size_class] :
       std::vector<std::pair<int, int>>{{1, 16}, {16, 16}, {17, 32}, {32, 32}, {33, 64}, {64, 64}}) {
    const ExhaustivePlan plan = plan_exhaustive(1, l, 132, false);
    EXPECT_EQ(plan.kernel, ExhaustiveKernel::thread) << l;
    EXPECT_EQ(plan.size_class, size_class) << l;
  }
  EXPECT_EQ(plan_exhaustive(3, 65, 132, false).kernel, ExhaustiveKernel::warp);
  EXPECT_EQ(plan_exhaustive(3, 7000, 132, false).kernel, ExhaustiveKernel::warp);
  EXPECT_EQ(plan_exhaustive(3, 20, 132, true).kernel, ExhaustiveKernel::warp);
}

TEST(ExhaustivePlan, ChunksCoverEveryStateOnceAndFillTheDevice) {
  for (const int sms : {1, 8, 132}) {
    for (int k = 1; k <= 62; ++k) {
      for (const int l : {k, 64}) {
        if (l > 64) continue;
        const ExhaustivePlan plan = plan_exhaustive(k, l, sms, false);
        const std::string what = "k " + std::to_string(k) + " l " + std::to_string(l) + " sms " + std::to_string(sms);
        ASSERT_EQ(plan.kernel, ExhaustiveKernel::thread) << what;
        ASSERT_GE(plan.chunk_bits, 0) << what;
        ASSERT_LE(plan.chunk_bits, k) << what;
        // Every Gray index in exactly one chunk of one thread.
        EXPECT_EQ(plan.chunks << plan.chunk_bits, std::uint64_t{1} << k) << what;
        EXPECT_GE(plan.blocks * kExhaustiveThreadBlock, plan.chunks) << what;
        EXPECT_LT((plan.blocks - 1) * kExhaustiveThreadBlock, plan.chunks) << what;  // no empty block
        EXPECT_EQ(plan.slots, plan.blocks * kExhaustiveThreadBlock / 32) << what;
        // A chunk is max(32, 2k) states or more, unless it is the whole enumeration.
        if (plan.chunk_bits < k) {
          EXPECT_GE(std::uint64_t{1} << plan.chunk_bits, static_cast<std::uint64_t>(std::max(32, 2 * k))) << what;
        } else {
          EXPECT_EQ(plan.chunks, 1u) << what;
        }
        // Past the shortest chunk, threads stay within 1024 per SM but fill half of that.
        if (plan.chunk_bits > 7) {
          EXPECT_LE(plan.chunks, static_cast<std::uint64_t>(sms) * 1024) << what;
          EXPECT_GT(plan.chunks, static_cast<std::uint64_t>(sms) * 512) << what;
        }
        EXPECT_LE(plan.blocks, std::uint64_t{0x7fffffff}) << what;  // grid x limit
        // Rows 0..chunk_bits-1 and their biases, within the default 48 KiB (no opt-in).
        EXPECT_EQ(plan.shared_bytes,
                  static_cast<std::size_t>(plan.chunk_bits) * (plan.size_class + 1) * (plan.size_class <= 32 ? 8 : 4))
            << what;
        EXPECT_LE(plan.shared_bytes, std::size_t{48} * 1024) << what;
      }
    }
  }
  // The largest default enumeration on an H100/H200-sized device: 2^32 states,
  // 2^15 per thread, 2^17 threads.
  const ExhaustivePlan big = plan_exhaustive(32, 64, 132, false);
  EXPECT_EQ(big.chunk_bits, 15);
  EXPECT_EQ(big.chunks, std::uint64_t{1} << 17);
  EXPECT_EQ(big.blocks, 1024u);
}

TEST(ExhaustivePlan, RefusesBadShapesAndEnvironmentValues) {
  EXPECT_THROW(plan_exhaustive(0, 4, 1, false), UsageError);
  EXPECT_THROW(plan_exhaustive(5, 4, 1, false), UsageError);
  EXPECT_THROW(plan_exhaustive(63, 64, 1, false), UsageError);
  EXPECT_FALSE(exhaustive_force_warp(nullptr));
  EXPECT_FALSE(exhaustive_force_warp(""));
  EXPECT_FALSE(exhaustive_force_warp("auto"));
  EXPECT_TRUE(exhaustive_force_warp("warp"));
  try {
    exhaustive_force_warp("thread");
    ADD_FAILURE() << "no error";
  } catch (const UsageError& error) {
    EXPECT_NE(std::string(error.what()).find("MARBM_EXHAUSTIVE_KERNEL"), std::string::npos) << error.what();
  }
}

// The enumerated layer's state of Gray index `index`.
std::vector<std::uint8_t> enumerated_state(std::uint64_t index, int k) {
  const std::uint64_t gray = index ^ (index >> 1);
  std::vector<std::uint8_t> state(static_cast<std::size_t>(k));
  for (int u = 0; u < k; ++u) state[u] = static_cast<std::uint8_t>((gray >> u) & 1u);
  return state;
}

// Ties decided by the tie rule alone (lowest Gray index).
Rbm dyadic_model(int n, int m, std::uint64_t seed) { return test_support::quarter_grid_model(n, m, seed, 77); }

TEST(ExhaustiveTwin, FindsTheCpuSearchsModeForEveryChunkLength) {
  // Both orientations, one-unit layers, every size class, chunks from one
  // state to the whole enumeration; random (non-dyadic) and dyadic (tied)
  // parameters.
  const std::vector<std::pair<int, int>> shapes = {{1, 1}, {1, 9}, {9, 1}, {8, 8}, {13, 29}, {33, 7}, {5, 40}, {64, 12}};
  std::uint64_t seed = 500;
  for (const auto& [n, m] : shapes) {
    for (const bool dyadic : {false, true}) {
      const Rbm rbm = dyadic ? dyadic_model(n, m, seed++) : Rbm::random(n, m, 1.5, seed++);
      const ExhaustiveProblem problem = exhaustive_problem(rbm);
      ASSERT_EQ(problem.k, std::min(n, m));
      ASSERT_EQ(problem.l, std::max(n, m));
      const ModeResult cpu = mode_exhaustive(rbm);
      const std::vector<std::uint8_t>& cpu_enumerated = problem.enumerate_hidden ? cpu.hidden : cpu.visible;
      for (const int chunk_bits : {0, 1, problem.k / 2, problem.k}) {
        const std::string what = std::to_string(n) + "x" + std::to_string(m) + (dyadic ? " dyadic" : " random") +
                                 " chunk 2^" + std::to_string(chunk_bits);
        const ExhaustiveLowest twin = exhaustive_thread_twin(problem, chunk_bits);
        EXPECT_EQ(enumerated_state(twin.index, problem.k), cpu_enumerated) << what;
        EXPECT_NEAR(twin.energy, cpu.energy, 1e-12 * std::max(1.0, std::abs(cpu.energy))) << what;
        if (dyadic) EXPECT_EQ(twin.energy, cpu.energy) << what;  // exact arithmetic on both sides
      }
    }
  }
}

TEST(ExhaustiveTwin, TiesGoToTheLowestGrayIndex) {
  // All parameters zero: every state has energy 0; index 0 (the empty state) wins.
  const ExhaustiveProblem zero = exhaustive_problem(Rbm(6, 4));
  const ExhaustiveLowest lowest = exhaustive_thread_twin(zero, 2);
  EXPECT_EQ(lowest.index, 0u);
  EXPECT_EQ(lowest.energy, 0.0);
  // Hidden unit 1 (of the 3 enumerated) has bias 0.5, everything else is 0:
  // every state with unit 1 on has energy -0.5, whatever the others. Gray
  // indices 0, 1, 2 are codes 000, 001, 011: index 2 (units 0 and 1 on) is the
  // first at -0.5, and the CPU search picks the same state.
  Rbm rbm(8, 3);
  rbm.hidden_bias()[1] = 0.5f;
  for (const int chunk_bits : {0, 1, 3}) {
    const ExhaustiveLowest tied = exhaustive_thread_twin(exhaustive_problem(rbm), chunk_bits);
    EXPECT_EQ(tied.energy, -0.5);
    EXPECT_EQ(tied.index, 2u);
  }
  EXPECT_EQ(mode_exhaustive(rbm).hidden, (std::vector<std::uint8_t>{1, 1, 0}));
}

TEST(ExhaustiveTwin, RefusesBadChunks) {
  const ExhaustiveProblem problem = exhaustive_problem(Rbm(4, 3));
  EXPECT_THROW(exhaustive_thread_twin(problem, -1), UsageError);
  EXPECT_THROW(exhaustive_thread_twin(problem, 4), UsageError);
}

}  // namespace
}  // namespace marbm::detail
