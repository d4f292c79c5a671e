// Ground-state search on the device against the CPU solvers and the exhaustive
// oracle on the same random instances, including sizes that are not
// multiples of the warp or block size and the large-model (cuBLAS) path.
// Every test skips cleanly when no CUDA device is usable.
#include <gtest/gtest.h>

#include "detail/cuda_entry.hpp"
#include "detail/mode_search_config.hpp"
#include "device_test.hpp"
#include "mode_solvers.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

// Energies are float64 sums of the same float32 parameters in different
// orders: they agree to ~1e-15 relative, so 1e-9 relative separates "the same
// energy" from any genuinely different state (unless two states are within
// 1e-9 of each other, which random Gaussian parameters make negligible).
bool same_energy(double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(1.0, std::abs(b)); }

// Weights N(0, scale^2), biases N(0, bias^2) from the test Philox stream.
Rbm random_model(int n, int m, double scale, double bias, std::uint64_t seed) {
  Rbm rbm = Rbm::random(n, m, scale, seed);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::test, 31));
  std::uint64_t index = 0;
  for (float& a : rbm.visible_bias()) a = static_cast<float>(bias * standard_normal(stream, index++));
  for (float& b : rbm.hidden_bias()) b = static_cast<float>(bias * standard_normal(stream, index++));
  return rbm;
}

ModeSearchConfig device_config(ModeSolver solver, SbVariant variant = SbVariant::discrete, std::uint64_t seed = 1) {
  ModeSearchConfig config;
  config.solver = solver;
  config.sb_variant = variant;
  config.backend = Backend::cuda;
  config.seed = seed;
  return config;
}

// The reported energy must be E of the reported state, and the state binary
// and sized to the layers.
void expect_consistent(const Rbm& rbm, const ModeResult& result, const std::string& what) {
  ASSERT_EQ(static_cast<int>(result.visible.size()), rbm.n_visible()) << what;
  ASSERT_EQ(static_cast<int>(result.hidden.size()), rbm.n_hidden()) << what;
  for (auto u : result.visible) ASSERT_LE(u, 1) << what;
  for (auto u : result.hidden) ASSERT_LE(u, 1) << what;
  EXPECT_TRUE(same_energy(result.energy, rbm.energy(result.visible, result.hidden)))
      << what << ": reported " << result.energy << ", recomputed " << rbm.energy(result.visible, result.hidden);
}

TEST(CudaMode, RefusesAnUnusableDevice) {
  // Without a device every search is refused; with one, a device ordinal past
  // the last (never a skip: the device check fails on skips).
  const Rbm rbm = random_model(6, 5, 1.0, 1.0, 3);
  const int usable = static_cast<int>(cuda_devices().size());
  for (const ModeSolver solver : {ModeSolver::sb, ModeSolver::exhaustive}) {
    ModeSearchConfig config = device_config(solver);
    if (usable == 0) {
      EXPECT_THROW(find_mode(rbm, config), CudaError);
    } else {
      config.device = usable;
      EXPECT_THROW(find_mode(rbm, config), UsageError);
    }
  }
}

TEST(CudaMode, ExhaustiveMatchesCpuOracle) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // Odd and tail sizes, both orientations, one layer of a single unit, and a
  // wide other layer whose float64 fields need more than 48 KiB of shared
  // memory per warp (the opt-in path).
  const std::vector<std::pair<int, int>> shapes = {{8, 8}, {13, 29}, {33, 7}, {16, 20}, {20, 12},
                                                   {5, 40}, {1, 9}, {9, 1}, {7000, 3}};
  std::uint64_t seed = 10;
  for (const auto& [n, m] : shapes) {
    for (double scale : {0.1, 1.0, 3.0}) {
      const Rbm rbm = random_model(n, m, scale, scale, seed++);
      const std::string what = std::to_string(n) + "x" + std::to_string(m) + " scale " + std::to_string(scale);
      const ModeResult cpu = mode_exhaustive(rbm);
      const ModeResult gpu = find_mode(rbm, device_config(ModeSolver::exhaustive));
      expect_consistent(rbm, gpu, what);
      EXPECT_TRUE(same_energy(gpu.energy, cpu.energy)) << what << ": device " << gpu.energy << ", cpu " << cpu.energy;
      EXPECT_EQ(gpu.replicas_at_best, 1) << what;
    }
  }
}

TEST(CudaMode, ExhaustiveWideLayerSolvesOrRefusesClearly) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // 25000 float64 fields take 200000 bytes of shared memory per warp: within
  // the opt-in limit of sm_90 (232448 bytes), beyond that of sm_80 (166912)
  // and sm_86/sm_89 (101376). Where they fit the search must be exact; where
  // they do not, the refusal must be a RuntimeFailure naming shared memory,
  // not a CUDA error from the launch configuration.
  const Rbm rbm = random_model(25000, 2, 0.1, 0.1, 17);
  try {
    const ModeResult gpu = find_mode(rbm, device_config(ModeSolver::exhaustive));
    expect_consistent(rbm, gpu, "25000x2");
    EXPECT_TRUE(same_energy(gpu.energy, mode_exhaustive(rbm).energy));
  } catch (const RuntimeFailure& error) {
    EXPECT_NE(std::string(error.what()).find("shared memory"), std::string::npos) << error.what();
  }
}

TEST(CudaMode, ExhaustiveRefusesBeyondLimit) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Rbm rbm = random_model(12, 14, 1.0, 1.0, 4);
  ModeSearchConfig config = device_config(ModeSolver::exhaustive);
  config.max_enumerated_units = 10;
  EXPECT_THROW(find_mode(rbm, config), RuntimeFailure);
}

struct SolverCase {
  const char* name;
  ModeSolver solver;
  SbVariant variant;
};

class CudaModeSolvers : public ::testing::TestWithParam<SolverCase> {};

// Random instances: sizes 8..24 per layer (square, tall, wide, tails of the
// warp), weight scales 0.1, 1, 3 with biases, plus tall models whose larger
// layer exceeds the fused kernel (the cuBLAS path) yet stays enumerable.
TEST_P(CudaModeSolvers, ReachTheOracleWithDefaults) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const SolverCase& c = GetParam();
  const PhiloxStream stream(77, random_stream(RandomPurpose::test, 2));
  int instances = 0, hits = 0;
  std::uint64_t index = 0;
  for (int trial = 0; trial < 110; ++trial) {
    int n = 8 + static_cast<int>(stream.bits(index++) % 17);
    int m = 8 + static_cast<int>(stream.bits(index++) % 17);
    if (trial == 0) n = 13, m = 29;
    if (trial == 1) n = 33, m = 7;
    if (trial >= 100) {  // GEMM path: 260..320 visible, 8..14 hidden
      n = 260 + static_cast<int>(stream.bits(index++) % 61);
      m = 8 + static_cast<int>(stream.bits(index++) % 7);
    }
    const double scale = trial % 3 == 0 ? 0.1 : (trial % 3 == 1 ? 1.0 : 3.0);
    const Rbm rbm = random_model(n, m, scale, scale, 1000 + trial);
    // The CPU oracle is fast up to 2^20 states; beyond, the device oracle
    // (checked against the CPU one above).
    const double oracle = std::min(n, m) <= 20 ? mode_exhaustive(rbm).energy
                                               : find_mode(rbm, device_config(ModeSolver::exhaustive)).energy;
    const ModeResult result = find_mode(rbm, device_config(c.solver, c.variant, 5 + trial));
    const std::string what = std::string(c.name) + " " + std::to_string(n) + "x" + std::to_string(m);
    expect_consistent(rbm, result, what);
    EXPECT_GE(result.energy, oracle - 1e-9 * std::max(1.0, std::abs(oracle))) << what << ": below the exact minimum";
    EXPECT_GE(result.replicas_at_best, 1) << what;
    EXPECT_LE(result.replicas_at_best, result.replicas) << what;
    ++instances;
    hits += same_energy(result.energy, oracle) ? 1 : 0;
  }
  // >= 99% of the instances (at most one miss in 110).
  EXPECT_GE(hits, static_cast<int>(std::ceil(0.99 * instances))) << c.name << ": " << hits << " of " << instances;
}

TEST_P(CudaModeSolvers, WarmStartFromTheOptimumKeepsIt) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const SolverCase& c = GetParam();
  for (int trial = 0; trial < 6; ++trial) {
    const Rbm rbm = random_model(14 + trial, 17 - trial, 2.0, 1.0, 300 + trial);
    const ModeResult oracle = mode_exhaustive(rbm);
    ModeSearchConfig config = device_config(c.solver, c.variant, trial);
    // Too few replicas and steps to find it unaided most of the time.
    config.replicas = 2;
    config.steps = 3;
    config.warm_visible = oracle.visible;
    config.warm_hidden = oracle.hidden;
    const ModeResult result = find_mode(rbm, config);
    expect_consistent(rbm, result, c.name);
    EXPECT_TRUE(same_energy(result.energy, oracle.energy)) << c.name << ": " << result.energy << " vs " << oracle.energy;
  }
}

TEST_P(CudaModeSolvers, PolishNeverRaisesTheWarmStart) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const SolverCase& c = GetParam();
  const PhiloxStream stream(9, random_stream(RandomPurpose::test, 3));
  std::uint64_t index = 0;
  for (int trial = 0; trial < 10; ++trial) {
    const int n = trial % 2 == 0 ? 19 : 300;  // fused and cuBLAS paths
    const int m = 23;
    const Rbm rbm = random_model(n, m, 1.0, 0.5, 500 + trial);
    std::vector<std::uint8_t> v(n), h(m);
    for (auto& u : v) u = stream.bits(index++) & 1u;
    for (auto& u : h) u = stream.bits(index++) & 1u;
    const double start = rbm.energy(v, h);
    std::vector<std::uint8_t> pv = v, ph = h;
    const double cpu_polished = polish_descent(rbm, pv, ph);
    ModeSearchConfig config = device_config(c.solver, c.variant, trial);
    config.replicas = 1;
    config.steps = 1;
    config.warm_visible = v;
    config.warm_hidden = h;
    const ModeResult result = find_mode(rbm, config);
    expect_consistent(rbm, result, c.name);
    const double tolerance = 1e-9 * std::max(1.0, std::abs(start));
    EXPECT_LE(result.energy, start + tolerance) << c.name;
    // The polished warm start is a candidate: the device polish descends at
    // least as far as the CPU one from the same state (same rule).
    EXPECT_LE(result.energy, cpu_polished + tolerance) << c.name;
  }
}

TEST_P(CudaModeSolvers, SameSeedSameResult) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const SolverCase& c = GetParam();
  for (const auto& [n, m] : std::vector<std::pair<int, int>>{{21, 18}, {290, 40}}) {
    const Rbm rbm = random_model(n, m, 1.0, 1.0, 42);
    ModeSearchConfig config = device_config(c.solver, c.variant, 123);
    config.replicas = 64;
    config.steps = 200;
    const ModeResult first = find_mode(rbm, config);
    const ModeResult second = find_mode(rbm, config);
    EXPECT_EQ(first.visible, second.visible) << c.name;
    EXPECT_EQ(first.hidden, second.hidden) << c.name;
    EXPECT_EQ(first.energy, second.energy) << c.name;
    EXPECT_EQ(first.replicas_at_best, second.replicas_at_best) << c.name;
    EXPECT_EQ(first.replicas, 64);
    EXPECT_EQ(first.steps, 200);
  }
}

// 100x67 cannot be enumerated: with the same steps and time step, the device
// search with 32 times the CPU's replicas must reach at least the CPU
// solver's energy. For dSB and SA replica r draws the same Philox numbers on
// both backends, so the device replicas include the CPU's starting points
// (only float rounding separates the trajectories); bSB replicas on the
// device are more diverse still. 1e-6 relative allows rounding of the
// energy, not a different local minimum.
TEST_P(CudaModeSolvers, AtLeastAsLowAsCpuOnUnenumerableModels) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const SolverCase& c = GetParam();
  for (int trial = 0; trial < 3; ++trial) {
    const Rbm rbm = random_model(100, 67, 1.0, 1.0, 700 + trial);
    ModeSearchConfig cpu_config = device_config(c.solver, c.variant, trial);
    cpu_config.backend = Backend::cpu;
    cpu_config.replicas = 32;
    cpu_config.steps = 500;
    const ModeResult cpu = find_mode(rbm, cpu_config);
    ModeSearchConfig gpu_config = cpu_config;
    gpu_config.backend = Backend::cuda;
    gpu_config.replicas = 32 * 32;
    const ModeResult gpu = find_mode(rbm, gpu_config);
    expect_consistent(rbm, gpu, c.name);
    EXPECT_LE(gpu.energy, cpu.energy + 1e-6 * std::abs(cpu.energy)) << c.name << " trial " << trial;
  }
}

// 784 x 500 (MNIST-sized) runs the cuBLAS path; compared with a short CPU run
// of the same solver (8 replicas, 500 steps). Tolerance 1e-3 relative: both
// are heuristics on a glassy landscape, the device one with 64x the replicas
// and 4x the steps; a device search that is broken lands far above.
TEST_P(CudaModeSolvers, LargeModelNoWorseThanCpu) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const SolverCase& c = GetParam();
  const Rbm rbm = random_model(784, 500, 0.05, 0.1, 2024);
  ModeSearchConfig cpu_config = device_config(c.solver, c.variant, 7);
  cpu_config.backend = Backend::cpu;
  cpu_config.replicas = 8;
  cpu_config.steps = 500;
  const ModeResult cpu = find_mode(rbm, cpu_config);
  const ModeResult gpu = find_mode(rbm, device_config(c.solver, c.variant, 7));
  expect_consistent(rbm, gpu, c.name);
  EXPECT_LE(gpu.energy, cpu.energy + 1e-3 * std::abs(cpu.energy)) << c.name << ": device " << gpu.energy << ", cpu "
                                                                  << cpu.energy;
  EXPECT_LT(gpu.energy, rbm.uniform_mean_energy()) << c.name;
}

// ------------------------------------------------------------ trajectories
//
// The device solvers are the CPU ones on the same Philox streams: for a
// fixed seed the replicas after s steps (before the polish) must be the
// CPU's. Parameters on a dyadic grid (multiples of 1/16 in [-1, 1]) make
// every field sum exact in float in any order, so where the two backends sum
// in different orders (the cuBLAS path, the CPU's patched dSB fields, its
// vectorised SA sums) the states still agree exactly.

Rbm dyadic_model(int n, int m, std::uint64_t seed) {
  Rbm rbm(n, m);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::test, 41));
  std::uint64_t index = 0;
  auto next = [&] { return static_cast<float>(static_cast<int>(stream.bits(index++) % 33) - 16) / 16.0f; };
  for (float& w : rbm.weights()) w = next();
  for (float& a : rbm.visible_bias()) a = next();
  for (float& b : rbm.hidden_bias()) b = next();
  return rbm;
}

struct TrajectoryCase {
  const char* name;
  int n, m;
  bool warm;
  int replicas;
};

// The fused kernels at every size class the cases reach (1 and 8 units per
// lane), one replica per block (37 replicas: fewer than the SMs) and many
// (4,099 and 2,000: 32 and 16 warps a block on a 132-SM device, the last
// block partly empty), W in the default shared memory and opted in (200 x
// 200: 188,000 bytes with 16 warps); 300 x 20 runs the cuBLAS path.
const std::vector<TrajectoryCase>& trajectory_cases() {
  static const std::vector<TrajectoryCase> cases = {
      {"fused 12x9", 12, 9, false, 37},       {"fused 12x9 warm", 12, 9, true, 37},
      {"fused 12x9 many", 12, 9, false, 4099}, {"fused 120x130", 120, 130, false, 37},
      {"fused 200x200", 200, 200, false, 2000}, {"cuBLAS 300x20", 300, 20, false, 37}};
  return cases;
}

// Where the device runs the fused kernel and the CPU its per-replica path
// (fewer than 32 replicas or n m < 128^2, host/mode_solvers.cpp), both sum
// every field in the same order: SB trajectories equal bit for bit whatever
// the parameters.
bool summed_alike(const TrajectoryCase& c) {
  const bool fused = c.n <= 256 && c.m <= 256;
  const bool cpu_per_replica = c.replicas < 32 || c.n * c.m < 128 * 128;
  return fused && cpu_per_replica;
}

ModeSearchConfig trajectory_config(ModeSolver solver, SbVariant variant, const TrajectoryCase& c, int steps,
                                   const Rbm& rbm) {
  ModeSearchConfig config = device_config(solver, variant, 19);
  config.replicas = c.replicas;  // not a multiple of the replicas per block
  config.steps = steps;
  if (c.warm) {
    const ModeResult warm = mode_exhaustive(rbm);
    config.warm_visible = warm.visible;
    config.warm_hidden = warm.hidden;
  }
  return config;
}

// Sets MARBM_REPLICA_KERNELS for the lifetime of the guard (the earlier
// kernels with "legacy"), then restores what was there.
class ReplicaKernelsEnv {
 public:
  explicit ReplicaKernelsEnv(const char* value) {
    const char* before = std::getenv("MARBM_REPLICA_KERNELS");
    had_ = before != nullptr;
    if (had_) before_ = before;
    setenv("MARBM_REPLICA_KERNELS", value, 1);
  }
  ReplicaKernelsEnv(const ReplicaKernelsEnv&) = delete;
  ReplicaKernelsEnv& operator=(const ReplicaKernelsEnv&) = delete;
  ~ReplicaKernelsEnv() {
    if (had_) {
      setenv("MARBM_REPLICA_KERNELS", before_.c_str(), 1);
    } else {
      unsetenv("MARBM_REPLICA_KERNELS");
    }
  }

 private:
  bool had_ = false;
  std::string before_;
};

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(double(a[k]) - double(b[k])));
  return worst;
}

TEST(CudaModeTrajectories, SaReplicaStatesEqualTheCpus) {
  MARBM_SKIP_WITHOUT_DEVICE();
  for (const TrajectoryCase& c : trajectory_cases()) {
    SCOPED_TRACE(c.name);
    const Rbm rbm = dyadic_model(c.n, c.m, 3 + c.n);
    const ModeSearchConfig config = trajectory_config(ModeSolver::sa, SbVariant::discrete, c, 60, rbm);
    const detail::ReplicaTrajectory cpu = detail::mode_trajectory_cpu(rbm, config);
    const detail::ReplicaTrajectory gpu = detail::mode_trajectory_cuda(rbm, config);
    ASSERT_EQ(gpu.replicas, cpu.replicas);
    EXPECT_EQ(gpu.visible, cpu.visible);
    EXPECT_EQ(gpu.hidden, cpu.hidden);
  }
}

TEST(CudaModeTrajectories, DsbPositionsEqualTheCpus) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // Exact field sums and the same rounded operations per step: equal
  // positions, not only equal signs.
  for (const TrajectoryCase& c : trajectory_cases()) {
    SCOPED_TRACE(c.name);
    const Rbm rbm = dyadic_model(c.n, c.m, 5 + c.n);
    for (const int steps : {1, 40, 200}) {
      SCOPED_TRACE(std::to_string(steps) + " steps");
      const ModeSearchConfig config = trajectory_config(ModeSolver::sb, SbVariant::discrete, c, steps, rbm);
      const detail::ReplicaTrajectory cpu = detail::mode_trajectory_cpu(rbm, config);
      const detail::ReplicaTrajectory gpu = detail::mode_trajectory_cuda(rbm, config);
      EXPECT_EQ(gpu.visible, cpu.visible) << "max difference " << max_abs_difference(gpu.visible, cpu.visible);
      EXPECT_EQ(gpu.hidden, cpu.hidden) << "max difference " << max_abs_difference(gpu.hidden, cpu.hidden);
    }
  }
}

TEST(CudaModeTrajectories, BsbPositionsFollowTheCpus) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // Gaussian parameters, so the sums round. Where both sum in the same
  // order (summed_alike): the same positions. Elsewhere (the cuBLAS path, or
  // the CPU's matrix-product path) the orders differ, and the momentum gain
  // (1.8 per step at dt 2) grows rounding differences, so the device is held
  // to the CPU over a few steps only, within 1e-4.
  for (const TrajectoryCase& c : trajectory_cases()) {
    SCOPED_TRACE(c.name);
    const Rbm rbm = random_model(c.n, c.m, 0.5, 0.5, 11 + c.n);
    const bool fused = summed_alike(c);
    const ModeSearchConfig config = trajectory_config(ModeSolver::sb, SbVariant::ballistic, c, fused ? 60 : 6, rbm);
    const detail::ReplicaTrajectory cpu = detail::mode_trajectory_cpu(rbm, config);
    const detail::ReplicaTrajectory gpu = detail::mode_trajectory_cuda(rbm, config);
    const double tolerance = fused ? 1e-6 : 1e-4;
    EXPECT_LE(max_abs_difference(gpu.visible, cpu.visible), tolerance);
    EXPECT_LE(max_abs_difference(gpu.hidden, cpu.hidden), tolerance);
    // The dynamics moved the positions away from the start (|x| <= 0.1).
    const auto far = std::count_if(cpu.visible.begin(), cpu.visible.end(), [](float x) { return std::abs(x) > 0.2f; });
    EXPECT_GT(far, 0);
  }
}

TEST(CudaModeTrajectories, DsbPositionsEqualTheCpusOnGaussianParameters) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // The fused dSB kernel sums the first fields in the CPU's order and then
  // patches them with the flipped spins' rows in the CPU's order
  // (add_gathered_rows), so where the CPU takes its per-replica path the
  // positions are equal bit for bit even when the sums round. (The legacy
  // kernel, summing every field in full each step, agrees only to rounding.)
  for (const TrajectoryCase& c : trajectory_cases()) {
    if (!summed_alike(c)) continue;
    SCOPED_TRACE(c.name);
    const Rbm rbm = random_model(c.n, c.m, 0.5, 0.5, 13 + c.n);
    for (const int steps : {1, 40, 200}) {
      SCOPED_TRACE(std::to_string(steps) + " steps");
      const ModeSearchConfig config = trajectory_config(ModeSolver::sb, SbVariant::discrete, c, steps, rbm);
      const detail::ReplicaTrajectory cpu = detail::mode_trajectory_cpu(rbm, config);
      const detail::ReplicaTrajectory gpu = detail::mode_trajectory_cuda(rbm, config);
      EXPECT_EQ(gpu.visible, cpu.visible) << "max difference " << max_abs_difference(gpu.visible, cpu.visible);
      EXPECT_EQ(gpu.hidden, cpu.hidden) << "max difference " << max_abs_difference(gpu.hidden, cpu.hidden);
    }
  }
}

TEST(CudaModeTrajectories, CurrentKernelsEqualTheLegacyOnes) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // MARBM_REPLICA_KERNELS=legacy runs the earlier kernels: on dyadic
  // parameters (exact sums) SA states and dSB positions of the two agree bit
  // for bit on every path. With Gaussian parameters, SA draws the same words
  // from the same sums in both fused kernels (equal), and both fused bSB
  // kernels sum in the CPU's order (equal). If a device run finds the
  // current kernels off the CPU, this test says whether the legacy ones are
  // too.
  auto both = [](const Rbm& rbm, const ModeSearchConfig& config) {
    const detail::ReplicaTrajectory current = detail::mode_trajectory_cuda(rbm, config);
    const ReplicaKernelsEnv legacy("legacy");
    return std::pair{current, detail::mode_trajectory_cuda(rbm, config)};
  };
  for (const TrajectoryCase& c : trajectory_cases()) {
    SCOPED_TRACE(c.name);
    const Rbm dyadic = dyadic_model(c.n, c.m, 7 + c.n);
    for (const auto& [solver, variant] : {std::pair{ModeSolver::sa, SbVariant::discrete},
                                          std::pair{ModeSolver::sb, SbVariant::discrete}}) {
      const auto [current, legacy] = both(dyadic, trajectory_config(solver, variant, c, 40, dyadic));
      EXPECT_EQ(current.visible, legacy.visible) << (solver == ModeSolver::sa ? "sa" : "dsb");
      EXPECT_EQ(current.hidden, legacy.hidden) << (solver == ModeSolver::sa ? "sa" : "dsb");
    }
    // Fused in both (the legacy fused kernel takes 256 units per layer within
    // 48 KiB of shared memory: 12 x 9 only among the cases).
    if (c.n * c.m > 1000) continue;
    const Rbm gaussian = random_model(c.n, c.m, 0.5, 0.5, 17 + c.n);
    for (const auto& [solver, variant] : {std::pair{ModeSolver::sa, SbVariant::discrete},
                                          std::pair{ModeSolver::sb, SbVariant::ballistic}}) {
      const auto [current, legacy] = both(gaussian, trajectory_config(solver, variant, c, 40, gaussian));
      EXPECT_EQ(current.visible, legacy.visible) << (solver == ModeSolver::sa ? "sa" : "bsb");
      EXPECT_EQ(current.hidden, legacy.hidden) << (solver == ModeSolver::sa ? "sa" : "bsb");
    }
  }
}

TEST(CudaModeTrajectories, UnknownKernelSelectionIsRefused) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Rbm rbm = dyadic_model(12, 9, 3);
  const ReplicaKernelsEnv bogus("newest");
  ModeSearchConfig config = device_config(ModeSolver::sa);
  config.replicas = 4;
  config.steps = 3;
  try {
    (void)find_mode(rbm, config);
    FAIL() << "MARBM_REPLICA_KERNELS=newest must be refused";
  } catch (const UsageError& error) {
    EXPECT_NE(std::string(error.what()).find("MARBM_REPLICA_KERNELS"), std::string::npos) << error.what();
  }
}

TEST(CudaModeTrajectories, PolishedBestReplicaEqualsTheCpus) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // Same replicas in, the same descent and tie rules: the same best state,
  // energy and number of replicas at it.
  for (const SolverCase c : {SolverCase{"dsb", ModeSolver::sb, SbVariant::discrete},
                             SolverCase{"sa", ModeSolver::sa, SbVariant::discrete}}) {
    for (const TrajectoryCase& t : trajectory_cases()) {
      SCOPED_TRACE(std::string(c.name) + " " + t.name);
      const Rbm rbm = dyadic_model(t.n, t.m, 23 + t.n);
      ModeSearchConfig config = trajectory_config(c.solver, c.variant, t, 50, rbm);
      const ModeResult gpu = find_mode(rbm, config);
      config.backend = Backend::cpu;
      const ModeResult cpu = find_mode(rbm, config);
      EXPECT_EQ(gpu.visible, cpu.visible);
      EXPECT_EQ(gpu.hidden, cpu.hidden);
      EXPECT_TRUE(same_energy(gpu.energy, cpu.energy)) << gpu.energy << " vs " << cpu.energy;
      EXPECT_EQ(gpu.replicas_at_best, cpu.replicas_at_best);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Solvers, CudaModeSolvers,
                         ::testing::Values(SolverCase{"dsb", ModeSolver::sb, SbVariant::discrete},
                                           SolverCase{"bsb", ModeSolver::sb, SbVariant::ballistic},
                                           SolverCase{"sa", ModeSolver::sa, SbVariant::discrete}),
                         [](const ::testing::TestParamInfo<SolverCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace marbm
