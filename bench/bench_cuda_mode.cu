// Ground-state search on the device.
//
// BM_DeviceModeTts99: time-to-solution (TTS99) versus size for dSB, bSB and SA
// with their device defaults, against the exact ground state (device Gray-code
// enumeration). One run of R replicas takes t and reaches the ground state in
// a fraction p of its replicas (replicas_at_best / R when the best is exact);
// the run succeeds with P = 1 - (1 - p)^R and TTS99 = t ln(0.01) / ln(1 - P)
// (t when P >= 0.99; infinite when no replica succeeded).
//
// BM_DeviceModeLarge: the 784 x 500 instance, best energy reached versus
// steps (and time), beside the GEMM-only floor of the same steps. Set
// MARBM_BENCH_INSTANCE to a path to also write the instance as a model file
// (safetensors), which bench/peers/sb_gpu_peer.py reads to run the
// simulated-bifurcation package on the same problem.
//
// BM_DeviceModeShared200: a 200 x 200 model with 4,224 replicas (32 per
// SM of an H100/H200), 1,000 steps: the fused kernels with W shared by the
// replicas of a block in opted-in shared memory, beside the legacy kernels
// (MARBM_REPLICA_KERNELS=legacy), which at this size take the cuBLAS path
// (W does not fit their 48 KiB).
//
// BM_DeviceExhaustive: the exhaustive search's enumeration kernel alone
// (events around the launch) with the one-state-per-thread kernel and with the
// old one-state-per-warp kernel, at 20 x 20 (a training mode step) and at the
// enumeration limit (2^32 states, larger layer 64: the largest size class).
//
// BM_DeviceModeStepMeanEnergy: a mode step's E_bar on the CUDA engine, 784 x
// 500, computed on the device (one double back) and from a host copy of the
// model (what a mode step did before).
//
// Timings exclude the parameter upload and the cuBLAS handle creation: the
// resources and parameters stay on the device, as in training.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "device_buffer.cuh"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"
#include "marbm/model_io.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"
#include "detail/mode_exhaustive_plan.hpp"
#include "mode_search.cuh"
#include "mode_search_internal.cuh"
#include "resources.cuh"

namespace {

using marbm::detail::DeviceBuffer;
using marbm::detail::Resources;

// Weights N(0, scale^2), biases N(0, bias^2).
marbm::Rbm random_model(int n, int m, double scale, double bias, std::uint64_t seed) {
  marbm::Rbm rbm = marbm::Rbm::random(n, m, scale, seed);
  const marbm::PhiloxStream stream(seed, marbm::random_stream(marbm::RandomPurpose::test, 31));
  std::uint64_t index = 0;
  for (float& a : rbm.visible_bias()) a = static_cast<float>(bias * marbm::standard_normal(stream, index++));
  for (float& b : rbm.hidden_bias()) b = static_cast<float>(bias * marbm::standard_normal(stream, index++));
  return rbm;
}

// One device, its stream and handle, for the whole run (nullptr without a device).
Resources* resources() {
  static std::unique_ptr<Resources> shared = []() -> std::unique_ptr<Resources> {
    if (marbm::cuda_devices().empty()) return nullptr;
    return std::make_unique<Resources>(0, false);
  }();
  return shared.get();
}

// A model's parameters on the device.
struct DeviceModel {
  int n = 0;
  int m = 0;
  DeviceBuffer<float> weights, visible_bias, hidden_bias;

  DeviceModel(Resources& res, const marbm::Rbm& rbm)
      : n(rbm.n_visible()),
        m(rbm.n_hidden()),
        weights(rbm.weights().size(), res.stream()),
        visible_bias(rbm.visible_bias().size(), res.stream()),
        hidden_bias(rbm.hidden_bias().size(), res.stream()) {
    weights.copy_from_host(rbm.weights());
    visible_bias.copy_from_host(rbm.visible_bias());
    hidden_bias.copy_from_host(rbm.hidden_bias());
    res.synchronize();
  }

  marbm::ModeResult find(Resources& res, const marbm::ModeSearchConfig& config) const {
    return marbm::detail::find_mode_device(res, weights.data(), visible_bias.data(), hidden_bias.data(), n, m, config);
  }
};

marbm::ModeSearchConfig config_for(int solver_code, std::uint64_t seed) {
  marbm::ModeSearchConfig config;
  config.backend = marbm::Backend::cuda;
  config.seed = seed;
  config.solver = solver_code == 2 ? marbm::ModeSolver::sa : marbm::ModeSolver::sb;
  config.sb_variant = solver_code == 1 ? marbm::SbVariant::ballistic : marbm::SbVariant::discrete;
  return config;
}

const char* solver_label(int solver_code) { return solver_code == 0 ? "dsb" : (solver_code == 1 ? "bsb" : "sa"); }

// Args: solver (0 dSB, 1 bSB, 2 SA), units per layer (square model).
void BM_DeviceModeTts99(benchmark::State& state) {
  Resources* res = resources();
  if (res == nullptr) {
    state.SkipWithError("no usable CUDA device");
    return;
  }
  const int solver = static_cast<int>(state.range(0));
  const int size = static_cast<int>(state.range(1));
  const marbm::Rbm rbm = random_model(size, size, 1.0, 1.0, 4000 + size);
  const DeviceModel model(*res, rbm);
  // The exact ground state, once, outside the timing.
  static std::map<int, double> exact;
  if (exact.count(size) == 0) {
    marbm::ModeSearchConfig oracle;
    oracle.solver = marbm::ModeSolver::exhaustive;
    oracle.backend = marbm::Backend::cuda;
    exact[size] = model.find(*res, oracle).energy;
  }
  const double ground = exact[size];
  double successes = 0.0, replicas = 0.0, seconds = 0.0;
  std::uint64_t seed = 1;
  for (auto _ : state) {
    const marbm::ModeResult result = model.find(*res, config_for(solver, seed++));
    const bool exact_hit = std::abs(result.energy - ground) <= 1e-9 * std::max(1.0, std::abs(ground));
    successes += exact_hit ? result.replicas_at_best : 0;
    replicas += result.replicas;
    seconds += result.seconds;
    state.SetIterationTime(result.seconds);
    state.counters["replicas"] = result.replicas;
    state.counters["steps"] = result.steps;
  }
  const double p = successes / replicas;
  const double run = seconds / static_cast<double>(state.iterations());
  const double r = replicas / static_cast<double>(state.iterations());
  const double run_success = 1.0 - std::pow(1.0 - p, r);
  const double tts = run_success >= 0.99 ? run
                     : run_success <= 0.0 ? std::numeric_limits<double>::infinity()
                                          : run * std::log(0.01) / std::log(1.0 - run_success);
  state.counters["p_replica"] = p;
  state.counters["tts99_ms"] = tts * 1e3;
  state.SetLabel(solver_label(solver));
}
BENCHMARK(BM_DeviceModeTts99)
    ->ArgsProduct({{0, 1, 2}, {12, 16, 20, 24, 28}})
    ->Iterations(10)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

const marbm::Rbm& large_instance() {
  // Small weights and biases, like an RBM early in MNIST training.
  static const marbm::Rbm rbm = [] {
    marbm::Rbm model = random_model(784, 500, 0.05, 0.1, 2024);
    if (const char* path = std::getenv("MARBM_BENCH_INSTANCE"); path != nullptr && *path != '\0') {
      marbm::save_rbm(path, model, {{"purpose", "784x500 ground-state benchmark instance"}});
    }
    return model;
  }();
  return rbm;
}

// Args: solver (0 dSB, 1 bSB, 2 SA), steps; replicas are the device default.
void BM_DeviceModeLarge(benchmark::State& state) {
  Resources* res = resources();
  if (res == nullptr) {
    state.SkipWithError("no usable CUDA device");
    return;
  }
  const int solver = static_cast<int>(state.range(0));
  const int steps = static_cast<int>(state.range(1));
  const marbm::Rbm& rbm = large_instance();
  const DeviceModel model(*res, rbm);
  double best = std::numeric_limits<double>::infinity();
  int replicas = 0;
  std::uint64_t seed = 1;
  for (auto _ : state) {
    marbm::ModeSearchConfig config = config_for(solver, seed++);
    config.steps = steps;
    const marbm::ModeResult result = model.find(*res, config);
    state.SetIterationTime(result.seconds);
    best = std::min(best, result.energy);
    replicas = result.replicas;
  }
  // The floor: the same number of field evaluations as bare sgemm calls
  // (two R x 784 x 500 products per step), timed with events.
  const int n = model.n, m = model.m;
  DeviceBuffer<float> batch_v(static_cast<std::size_t>(replicas) * n, res->stream());
  DeviceBuffer<float> batch_h(static_cast<std::size_t>(replicas) * m, res->stream());
  batch_v.fill_zero();
  batch_h.fill_zero();
  cudaEvent_t start, stop;
  MARBM_CUDA_TRY(cudaEventCreate(&start));
  MARBM_CUDA_TRY(cudaEventCreate(&stop));
  const float one = 1.0f, zero = 0.0f;
  MARBM_CUDA_TRY(cudaEventRecord(start, res->stream()));
  for (int step = 0; step < steps; ++step) {
    MARBM_CUBLAS_TRY(cublasSgemm(res->cublas(), CUBLAS_OP_T, CUBLAS_OP_N, n, replicas, m, &one, model.weights.data(), m,
                                 batch_h.data(), m, &zero, batch_v.data(), n));
    MARBM_CUBLAS_TRY(cublasSgemm(res->cublas(), CUBLAS_OP_N, CUBLAS_OP_N, m, replicas, n, &one, model.weights.data(), m,
                                 batch_v.data(), n, &zero, batch_h.data(), m));
  }
  MARBM_CUDA_TRY(cudaEventRecord(stop, res->stream()));
  MARBM_CUDA_TRY(cudaEventSynchronize(stop));
  float floor_ms = 0.0f;
  MARBM_CUDA_TRY(cudaEventElapsedTime(&floor_ms, start, stop));
  MARBM_CUDA_TRY(cudaEventDestroy(start));
  MARBM_CUDA_TRY(cudaEventDestroy(stop));

  state.counters["best_energy"] = best;
  state.counters["replicas"] = replicas;
  state.counters["gemm_floor_ms"] = floor_ms;
  state.counters["spin_updates/s"] = benchmark::Counter(static_cast<double>(replicas) * steps * (n + m),
                                                        benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(solver_label(solver));
}
BENCHMARK(BM_DeviceModeLarge)
    ->ArgsProduct({{0, 1, 2}, {100, 300, 1000, 2000}})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Args: solver (0 dSB, 1 bSB, 2 SA), kernels (0 current, 1 legacy).
void BM_DeviceModeShared200(benchmark::State& state) {
  Resources* res = resources();
  if (res == nullptr) {
    state.SkipWithError("no usable CUDA device");
    return;
  }
  const int solver = static_cast<int>(state.range(0));
  const bool legacy = state.range(1) != 0;
  static const marbm::Rbm rbm = random_model(200, 200, 0.1, 0.1, 2200);
  const DeviceModel model(*res, rbm);
  if (legacy) {
    setenv("MARBM_REPLICA_KERNELS", "legacy", 1);
  } else {
    unsetenv("MARBM_REPLICA_KERNELS");
  }
  constexpr int kReplicas = 4224;
  constexpr int kSteps = 1000;
  double best = std::numeric_limits<double>::infinity();
  std::uint64_t seed = 1;
  for (auto _ : state) {
    marbm::ModeSearchConfig config = config_for(solver, seed++);
    config.replicas = kReplicas;
    config.steps = kSteps;
    const marbm::ModeResult result = model.find(*res, config);
    state.SetIterationTime(result.seconds);
    best = std::min(best, result.energy);
  }
  unsetenv("MARBM_REPLICA_KERNELS");
  state.counters["best_energy"] = best;
  state.counters["replicas"] = kReplicas;
  state.counters["spin_updates/s"] = benchmark::Counter(static_cast<double>(kReplicas) * kSteps * 400.0,
                                                        benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(solver_label(solver)) + (legacy ? " legacy" : " current"));
}
BENCHMARK(BM_DeviceModeShared200)
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Args: kernel (0 one state per thread, as planned; 1 the old one per warp), k, l.
void BM_DeviceExhaustive(benchmark::State& state) {
  Resources* res = resources();
  if (res == nullptr) {
    state.SkipWithError("no usable CUDA device");
    return;
  }
  const bool warp = state.range(0) == 1;
  const int k = static_cast<int>(state.range(1));
  const int l = static_cast<int>(state.range(2));
  const marbm::detail::ExhaustiveProblem problem =
      marbm::detail::exhaustive_problem(random_model(l, k, 1.0, 1.0, 5000 + k));
  DeviceBuffer<float> rows(problem.rows.size(), res->stream());
  DeviceBuffer<float> bias_k(problem.bias_k.size(), res->stream());
  DeviceBuffer<float> bias_l(problem.bias_l.size(), res->stream());
  rows.copy_from_host(problem.rows);
  bias_k.copy_from_host(problem.bias_k);
  bias_l.copy_from_host(problem.bias_l);
  const marbm::detail::ExhaustivePlan plan = marbm::detail::plan_exhaustive(k, l, res->multiprocessors(), warp);
  DeviceBuffer<double> slot_energy;
  DeviceBuffer<std::uint64_t> slot_index;
  cudaEvent_t start, stop;
  MARBM_CUDA_TRY(cudaEventCreate(&start));
  MARBM_CUDA_TRY(cudaEventCreate(&stop));
  for (auto _ : state) {
    MARBM_CUDA_TRY(cudaEventRecord(start, res->stream()));
    marbm::detail::launch_exhaustive(*res, rows.data(), bias_k.data(), bias_l.data(), k, l, plan, slot_energy,
                                     slot_index);
    MARBM_CUDA_TRY(cudaEventRecord(stop, res->stream()));
    MARBM_CUDA_TRY(cudaEventSynchronize(stop));
    float ms = 0.0f;
    MARBM_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms / 1e3);
  }
  MARBM_CUDA_TRY(cudaEventDestroy(start));
  MARBM_CUDA_TRY(cudaEventDestroy(stop));
  state.counters["states/s"] = benchmark::Counter(std::ldexp(1.0, k), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(warp ? "one state per warp (old)" : "one state per thread");
}
BENCHMARK(BM_DeviceExhaustive)
    ->Args({0, 20, 20})
    ->Args({1, 20, 20})
    ->Args({0, 32, 64})
    ->Args({1, 32, 64})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Args: 0 E_bar on the device, 1 from a host copy of the model.
void BM_DeviceModeStepMeanEnergy(benchmark::State& state) {
  if (resources() == nullptr) {
    state.SkipWithError("no usable CUDA device");
    return;
  }
  const bool copy = state.range(0) == 1;
  const std::unique_ptr<marbm::Engine> engine = marbm::make_engine(marbm::Backend::cuda);
  engine->set_model(random_model(784, 500, 0.05, 0.1, 2024));
  double value = 0.0;
  for (auto _ : state) {
    const auto begin = std::chrono::steady_clock::now();
    value = copy ? engine->model().uniform_mean_energy() : engine->uniform_mean_energy();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
  }
  state.counters["mean_energy"] = value;
  state.SetLabel(copy ? "host copy of the model" : "on the device");
}
BENCHMARK(BM_DeviceModeStepMeanEnergy)->Arg(0)->Arg(1)->Iterations(50)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
