// CUDA engine throughput (device timing):
//   - CD-1 updates of a 784 x 500 RBM at batch 128 and 1024 (the engine
//     replays a CUDA Graph of the update), beside the time of the same cuBLAS
//     products alone: the three field GEMMs and the one gradient GEMM over
//     the augmented stacked rows ([V|1]^T [H|w], which also gives the bias
//     gradients), with the engine's operand strides, timed with CUDA events;
//     and at batch 1024 with MARBM_CUDA_GRAPH=0 (direct launches);
//   - a fused ensemble of 1,000 6 x 6 RBMs on shifting bars (CD-1), with the
//     kernel the launch rule picks and with the block kernel forced;
//   - exact log Z by Gray-code enumeration (states/s), 2^30 states of a
//     64 x 30 model among them.
//
//   bench_cuda_engine --benchmark_counters_tabular=true
//
// Counters: updates_per_s; gemm_ratio = update time / GEMM-only time (the
// target is <= 1.2 at batch 1024); updates_per_s_per_rbm for the ensemble;
// states_per_s and seconds for log Z. Without a device every benchmark
// reports an error and the binary exits 0.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "detail/cuda_entry.hpp"
#include "detail/cuda_update_layout.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/random.hpp"
#include "marbm/train.hpp"

namespace {

bool have_device(benchmark::State& state) {
  if (marbm::cuda_devices().empty()) {
    state.SkipWithError("no usable CUDA device");
    return false;
  }
  return true;
}

#define CHECK_CUDA(call)                                       \
  do {                                                         \
    if ((call) != cudaSuccess) {                               \
      state.SkipWithError("CUDA call failed: " #call);         \
      return;                                                  \
    }                                                          \
  } while (false)

// Milliseconds per CD-1 update spent in its cuBLAS products alone, measured
// with CUDA events over `repetitions` rounds on a stream of its own: the
// floor the update's samplers, gather and step add to. The shapes and strides
// are the engine's (cuda/cuda_engine.cu): V' rows of augmented_stride(n)
// floats, H' and G rows of augmented_stride(m).
float gemm_milliseconds(int n, int m, int batch, int repetitions) {
  cudaStream_t stream = nullptr;
  cublasHandle_t handle = nullptr;
  cudaStreamCreate(&stream);
  cublasCreate(&handle);
  cublasSetStream(handle, stream);
  cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH);
  const int ldv = static_cast<int>(marbm::detail::augmented_stride(n));
  const int ldh = static_cast<int>(marbm::detail::augmented_stride(m));
  float *w = nullptr, *v = nullptr, *h = nullptr, *hs = nullptr, *x = nullptr, *g = nullptr;
  cudaMalloc(&w, sizeof(float) * n * m);
  cudaMalloc(&v, sizeof(float) * 2 * batch * ldv);
  cudaMalloc(&h, sizeof(float) * 2 * batch * ldh);
  cudaMalloc(&hs, sizeof(float) * batch * m);
  cudaMalloc(&x, sizeof(float) * batch * std::max(n, m));
  cudaMalloc(&g, sizeof(float) * (n + 1) * ldh);
  cudaMemset(w, 0, sizeof(float) * n * m);
  cudaMemset(v, 0, sizeof(float) * 2 * batch * ldv);
  cudaMemset(h, 0, sizeof(float) * 2 * batch * ldh);
  cudaMemset(hs, 0, sizeof(float) * batch * m);
  const float one = 1.0f, zero = 0.0f;
  const float* v1 = v + static_cast<std::size_t>(batch) * ldv;
  auto round = [&] {
    cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, batch, n, &one, w, m, v, ldv, &zero, x, m);   // v0 W
    cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, batch, m, &one, w, m, hs, m, &zero, x, n);    // h0 W^T
    cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, batch, n, &one, w, m, v1, ldv, &zero, x, m);  // v1 W
    cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, m + 1, n + 1, 2 * batch, &one, h, ldh, v, ldv, &zero, g,
                ldh);  // [V|1]^T [H|w]
  };
  for (int k = 0; k < 5; ++k) round();  // warm-up (cuBLAS heuristics, clocks)
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, stream);
  for (int k = 0; k < repetitions; ++k) round();
  cudaEventRecord(stop, stream);
  cudaEventSynchronize(stop);
  float ms = 0.0f;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  for (float* p : {w, v, h, hs, x, g}) cudaFree(p);
  cublasDestroy(handle);
  cudaStreamDestroy(stream);
  return ms / static_cast<float>(repetitions);
}

// CD-1 updates through the public engine interface. The engine's stream is
// its own, so a round of updates is timed from the host with a device-wide
// synchronization at both ends (rounds of 50 updates make the launch and
// synchronization overhead part of what a user sees). `graph` false: the
// engine made under MARBM_CUDA_GRAPH=0.
void cd1_updates(benchmark::State& state, bool graph) {
  if (!have_device(state)) return;
  const int n = 784, m = 500, batch = static_cast<int>(state.range(0));
  const int rounds = 50;
  if (!graph) setenv("MARBM_CUDA_GRAPH", "0", 1);
  auto engine = marbm::make_engine(marbm::Backend::cuda);
  if (!graph) unsetenv("MARBM_CUDA_GRAPH");
  engine->set_model(marbm::Rbm::random(n, m, 0.01, 1));
  const marbm::Dataset data = marbm::random_binary_dataset(4 * batch, n, 0.2, 2);
  engine->set_data(data);
  std::vector<std::vector<int>> batches(4, std::vector<int>(batch));
  for (int b = 0; b < 4; ++b) std::iota(batches[b].begin(), batches[b].end(), b * batch);
  marbm::UpdateStep step;
  step.negative = marbm::NegativePhase::cd;
  step.gibbs_steps = 1;
  step.learning_rate = 0.01;
  step.seed = 3;
  std::uint64_t t = 0;
  for (int k = 0; k < 10; ++k) {  // warm-up
    step.batch_rows = batches[t % 4];
    step.step = t++;
    engine->update(step);
  }
  CHECK_CUDA(cudaDeviceSynchronize());
  double total_seconds = 0.0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < rounds; ++k) {
      step.batch_rows = batches[t % 4];
      step.step = t++;
      engine->update(step);
    }
    CHECK_CUDA(cudaDeviceSynchronize());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    total_seconds += seconds;
  }
  const double per_update = total_seconds / (static_cast<double>(state.iterations()) * rounds);
  const double gemm = gemm_milliseconds(n, m, batch, 200) * 1e-3;
  state.counters["updates_per_s"] = 1.0 / per_update;
  state.counters["samples_per_s"] = batch / per_update;
  state.counters["update_us"] = per_update * 1e6;
  state.counters["gemm_only_us"] = gemm * 1e6;
  state.counters["gemm_ratio"] = per_update / gemm;
}
void BM_CudaCd1Update(benchmark::State& state) { cd1_updates(state, true); }
void BM_CudaCd1UpdateDirect(benchmark::State& state) { cd1_updates(state, false); }
BENCHMARK(BM_CudaCd1Update)->Arg(128)->Arg(1024)->UseManualTime()->Iterations(20)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaCd1UpdateDirect)->Arg(1024)->UseManualTime()->Iterations(20)->Unit(benchmark::kMillisecond);

// 1,000 independent 6 x 6 RBMs on shifting bars 6/3, CD-1, all 6 patterns per
// batch, lr 0.2, exact KL only at t = 0 and the end: the fused kernel, timed
// as one train_ensemble call (host set-up, copies and results included; the
// 20,000-update run shows the figure with those amortised). BM_CudaEnsemble6x6
// takes the kernel the launch rule picks (the warp kernel for this shape:
// tests/test_ensemble_launch.cpp); BM_CudaEnsemble6x6BlockKernel forces the
// block kernel (MARBM_ENSEMBLE_KERNEL=block) for comparison.
void run_ensemble_6x6(benchmark::State& state, const char* kernel) {
  if (!have_device(state)) return;
  const int members = 1000;
  const long iterations = state.range(0);
  const marbm::Dataset data = marbm::shifting_bars(6, 3);
  std::vector<marbm::Rbm> initial;
  std::vector<std::uint64_t> seeds;
  for (int e = 0; e < members; ++e) {
    initial.push_back(marbm::Rbm::random(6, 6, 0.01, static_cast<std::uint64_t>(e + 1)));
    seeds.push_back(static_cast<std::uint64_t>(e + 1));
  }
  marbm::TrainConfig config;
  config.method = marbm::TrainMethod::cd;
  config.learning_rate = 0.2;
  config.batch_size = 6;
  config.iterations = iterations;
  if (kernel != nullptr) ::setenv("MARBM_ENSEMBLE_KERNEL", kernel, 1);
  (void)marbm::train_ensemble(marbm::Backend::cuda, data, initial, seeds, config);  // warm-up
  double total_seconds = 0.0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    const auto results = marbm::train_ensemble(marbm::Backend::cuda, data, initial, seeds, config);
    benchmark::DoNotOptimize(results.data());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    total_seconds += seconds;
  }
  if (kernel != nullptr) ::unsetenv("MARBM_ENSEMBLE_KERNEL");
  const double per_run = total_seconds / static_cast<double>(state.iterations());
  state.counters["members"] = members;
  state.counters["updates_per_s_per_rbm"] = static_cast<double>(iterations) / per_run;
  state.counters["updates_per_s_total"] = static_cast<double>(iterations) * members / per_run;
}
void BM_CudaEnsemble6x6(benchmark::State& state) { run_ensemble_6x6(state, nullptr); }
void BM_CudaEnsemble6x6BlockKernel(benchmark::State& state) { run_ensemble_6x6(state, "block"); }
BENCHMARK(BM_CudaEnsemble6x6)->Arg(2000)->Arg(20000)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaEnsemble6x6BlockKernel)->Arg(2000)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);

// Exact log Z of an n x m model (2^min(n, m) states) on the device; the
// third argument 1 runs the previous kernels (MARBM_EXACT_KERNEL=legacy), so
// that the device check prints both: 64 x 30 (the register kernel and its
// subset table), 33 x 30 (padding: 33 of 64 register slots) and 784 x 20 (the
// warp kernel for a wide other layer against the global-scratch one).
void BM_CudaExactLogZ(benchmark::State& state) {
  if (!have_device(state)) return;
  const int n = static_cast<int>(state.range(0)), m = static_cast<int>(state.range(1));
  const bool legacy = state.range(2) != 0;
  const char* saved = std::getenv("MARBM_EXACT_KERNEL");
  const std::string restore = saved != nullptr ? saved : "";
  if (legacy) {
    setenv("MARBM_EXACT_KERNEL", "legacy", 1);
  } else {
    unsetenv("MARBM_EXACT_KERNEL");
  }
  const marbm::Rbm rbm = marbm::Rbm::random(n, m, 0.1, 4);
  (void)marbm::detail::log_partition_exact_cuda(rbm, {});  // warm-up
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(marbm::detail::log_partition_exact_cuda(rbm, {}));
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (saved != nullptr) {
    setenv("MARBM_EXACT_KERNEL", restore.c_str(), 1);
  } else {
    unsetenv("MARBM_EXACT_KERNEL");
  }
  const double states = static_cast<double>(std::uint64_t{1} << std::min(n, m));
  state.counters["states"] = states;
  state.counters["legacy"] = legacy ? 1 : 0;
  state.counters["states_per_s"] = benchmark::Counter(states, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CudaExactLogZ)
    ->Args({64, 24, 0})
    ->Args({64, 30, 0})
    ->Args({64, 30, 1})
    ->Args({33, 30, 0})
    ->Args({33, 30, 1})
    ->Args({784, 20, 0})
    ->Args({784, 20, 1})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
