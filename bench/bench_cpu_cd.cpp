// CPU engine throughput: CD-1 updates of a 784 x 500 RBM at batch 100 on 1
// and 2 threads beside the time of the same five sgemm calls alone (the
// floor), and the update rate and reference-run time of the 6 x 6
// shifting-bars model.
//
//   bench_cpu_cd --benchmark_counters_tabular=true
//
// Counters: updates_per_s and samples_per_s (batch rows per second);
// sgemm_ms = the update's five sgemm calls alone, as plain cblas_sgemm calls
// with OpenBLAS's own threading at the same thread count (the floor);
// update_over_sgemm = update time / sgemm_ms, so 1 means the update costs no
// more than its matrix products. bench/cpu-cd.sh runs it beside PyTorch.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <numeric>
#include <vector>

#include "detail/cpu_elementwise.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/random.hpp"
#include "marbm/train.hpp"
#include "measure.hpp"

namespace {

using marbm::bench::process_cpu_seconds;

// Seconds per CD-1 update spent in its five products alone: p(h|v0) = v0 W,
// p(v|h0) = h0 W^T, p(h|v1) = v1 W, and the statistics v0^T p0 and v1^T p1.
struct Floor {
  double wall = 1e30;  // seconds per update's five sgemm calls, best of five
  double cpu = 1e30;   // process CPU seconds for the same, best of five
};

// OpenBLAS runs on `threads` threads (its own threading) for the floor; the
// engine sets it back to 1 when it next runs.
Floor sgemm_seconds(int n, int m, int batch, int repetitions, int threads) {
  openblas_set_num_threads(threads);
  std::vector<float> w(static_cast<std::size_t>(n) * m, 0.01f), v(static_cast<std::size_t>(batch) * n, 1.0f),
      h(static_cast<std::size_t>(batch) * m, 0.5f), grad(static_cast<std::size_t>(n) * m, 0.0f);
  auto once = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, m, n, 1.0f, v.data(), n, w.data(), m, 1.0f,
                h.data(), m);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, n, m, 1.0f, h.data(), m, w.data(), m, 1.0f,
                v.data(), n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, m, n, 1.0f, v.data(), n, w.data(), m, 1.0f,
                h.data(), m);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, m, batch, 1.0f, v.data(), n, h.data(), m, 0.0f,
                grad.data(), m);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, m, batch, -1.0f, v.data(), n, h.data(), m, 1.0f,
                grad.data(), m);
  };
  once();  // warm up the BLAS threads and caches
  // The best of five runs of `repetitions`: the floor is what sgemm can do.
  Floor best;
  for (int trial = 0; trial < 5; ++trial) {
    const double cpu = process_cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < repetitions; ++r) once();
    benchmark::DoNotOptimize(grad.data());
    best.wall = std::min(best.wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repetitions);
    best.cpu = std::min(best.cpu, (process_cpu_seconds() - cpu) / repetitions);
  }
  openblas_set_num_threads(1);
  return best;
}

// Seconds, on this thread, of an update's elementwise passes alone with the
// given kernels: p(h|v0) and h0 drawn (100 x 500), v1 drawn (100 x 784), p(h|v1)
// (100 x 500); best of five runs of 20.
double elementwise_seconds(const marbm::detail::ElementwiseKernels& kernels, int n, int m, int batch) {
  std::vector<float> hidden(static_cast<std::size_t>(batch) * m), visible(static_cast<std::size_t>(batch) * n),
      states(static_cast<std::size_t>(batch) * n);
  for (std::size_t k = 0; k < hidden.size(); ++k) hidden[k] = static_cast<float>(k % 97) * 0.1f - 4.8f;
  for (std::size_t k = 0; k < visible.size(); ++k) visible[k] = static_cast<float>(k % 89) * 0.1f - 4.4f;
  std::vector<float> p(hidden.size());
  auto once = [&] {
    for (int r = 0; r < batch; ++r) {
      const std::size_t h = static_cast<std::size_t>(r) * m, v = static_cast<std::size_t>(r) * n;
      kernels.logistic_sample(hidden.data() + h, nullptr, p.data() + h, states.data() + h, m, 3, 5, h);
      kernels.logistic_sample(visible.data() + v, nullptr, nullptr, states.data() + v, n, 3, 5, v);
      kernels.logistic(hidden.data() + h, nullptr, p.data() + h, m);
    }
  };
  double best = 1e30;
  for (int trial = 0; trial < 5; ++trial) {
    const double start = process_cpu_seconds();
    for (int r = 0; r < 20; ++r) once();
    benchmark::DoNotOptimize(states.data());
    best = std::min(best, (process_cpu_seconds() - start) / 20);
  }
  return best;
}

// Seconds of the momentum update pass over the n x m weights alone (best of five runs of 20).
double update_pass_seconds(int n, int m) {
  const std::size_t size = static_cast<std::size_t>(n) * m;
  std::vector<float> w(size, 0.01f), velocity(size, 0.0f), g(size, 0.001f);
  double best = 1e30;
  for (int trial = 0; trial < 5; ++trial) {
    const double start = process_cpu_seconds();
    for (int r = 0; r < 20; ++r) {
      for (std::size_t k = 0; k < size; ++k) {
        velocity[k] = 0.0f * velocity[k] + 0.01f * (g[k] - 0.0f * w[k]);
        w[k] += velocity[k];
      }
      benchmark::DoNotOptimize(w.data());
    }
    best = std::min(best, (process_cpu_seconds() - start) / 20);
  }
  return best;
}

const char* openblas_threading() {
  switch (openblas_get_parallel()) {
    case 0: return "sequential";
    case 1: return "pthreads";
    case 2: return "openmp";
    default: return "unknown";
  }
}

void BM_CpuCd1Update_784x500_Batch100(benchmark::State& state) {
  const int n = 784, m = 500, batch = 100;
  const int threads = static_cast<int>(state.range(0));
  marbm::EngineOptions options;
  options.threads = threads;
  auto engine = marbm::make_engine(marbm::Backend::cpu, options);
  engine->set_model(marbm::Rbm::random(n, m, 0.01, 1));
  // MNIST-like density: about 13% of binarized pixels are on.
  engine->set_data(marbm::random_binary_dataset(1000, n, 0.13, 2));
  std::vector<int> rows(batch);
  marbm::UpdateStep step;
  step.negative = marbm::NegativePhase::cd;
  step.learning_rate = 0.01;
  step.seed = 3;
  std::uint64_t t = 0;
  const double cpu_start = process_cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    for (int r = 0; r < batch; ++r) rows[r] = static_cast<int>((t * batch + r) % 1000);
    step.batch_rows = rows;
    step.step = t++;
    engine->update(step);
  }
  const double update_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / static_cast<double>(t);
  const double update_cpu_seconds = (process_cpu_seconds() - cpu_start) / static_cast<double>(t);
  const Floor floor_times = sgemm_seconds(n, m, batch, 20, threads);
  const double floor = floor_times.wall;
  state.counters["updates_per_s"] = benchmark::Counter(static_cast<double>(t), benchmark::Counter::kIsRate);
  state.counters["samples_per_s"] = benchmark::Counter(static_cast<double>(t) * batch, benchmark::Counter::kIsRate);
  state.counters["sgemm_ms"] = floor * 1e3;
  state.counters["update_ms"] = update_seconds * 1e3;
  state.counters["update_over_sgemm"] = update_seconds / floor;
  // The same in process CPU time (all threads), which a shared machine's load disturbs less.
  state.counters["sgemm_cpu_ms"] = floor_times.cpu * 1e3;
  state.counters["update_cpu_ms"] = update_cpu_seconds * 1e3;
  // Parts of the update on one thread: its elementwise passes with the
  // kernels the engine uses and with the baseline ones, and the update pass.
  if (threads == 1) {
    state.counters["elementwise_ms"] = elementwise_seconds(marbm::detail::elementwise_kernels(), n, m, batch) * 1e3;
    state.counters["elementwise_baseline_ms"] =
        elementwise_seconds(marbm::detail::baseline_elementwise_kernels(), n, m, batch) * 1e3;
    state.counters["update_pass_ms"] = update_pass_seconds(n, m) * 1e3;
  }
  state.counters["gflops"] = 5.0 * 2.0 * n * m * batch / update_seconds * 1e-9;
  state.SetLabel(engine->description() + ", OpenBLAS " + openblas_threading() + ", kernels " +
                 marbm::detail::elementwise_kernels().name);
}
BENCHMARK(BM_CpuCd1Update_784x500_Batch100)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

void BM_CpuCd1Update_ShiftingBars6x6(benchmark::State& state) {
  const marbm::Dataset data = marbm::shifting_bars(6, 3);
  auto engine = marbm::make_engine(marbm::Backend::cpu);
  engine->set_model(marbm::Rbm::random(6, 6, 0.01, 1));
  engine->set_data(data);
  std::vector<int> rows(6);
  std::iota(rows.begin(), rows.end(), 0);
  marbm::UpdateStep step;
  step.batch_rows = rows;
  step.negative = marbm::NegativePhase::cd;
  step.learning_rate = 0.2;
  step.seed = 3;
  std::uint64_t t = 0;
  for (auto _ : state) {
    step.step = t++;
    engine->update(step);
  }
  state.counters["updates_per_s"] = benchmark::Counter(static_cast<double>(t), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CpuCd1Update_ShiftingBars6x6)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The reference experiment's CD-1 run (SPEC.md section 8): 20,000 updates,
// batch 6, lr 0.2, exact KL every 200 updates, through the training driver.
void BM_CpuReferenceRun_ShiftingBars6x6(benchmark::State& state) {
  const marbm::Dataset data = marbm::shifting_bars(6, 3);
  const marbm::Rbm initial = marbm::Rbm::random(6, 6, 0.01, 1);
  marbm::TrainConfig config;
  config.method = marbm::TrainMethod::cd;
  config.learning_rate = 0.2;
  config.batch_size = 6;
  config.iterations = 20000;
  config.eval_every = 200;
  auto engine = marbm::make_engine(marbm::Backend::cpu);
  double kl = 0.0;
  for (auto _ : state) {
    const marbm::TrainResult result = marbm::train(*engine, data, initial, config);
    kl = result.history.back().kl;
  }
  state.counters["final_kl"] = kl;
  state.counters["updates_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 20000.0, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CpuReferenceRun_ShiftingBars6x6)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
