// Exact log Z throughput: enumerated states per second and softplus
// evaluations per second, for the Gray-code enumeration and, as the
// reference it replaces, direct enumeration with libm softplus.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>

#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace {

void set_counters(benchmark::State& state, int enumerated, int other) {
  const double states = static_cast<double>(std::uint64_t{1} << enumerated);
  state.counters["states/s"] = benchmark::Counter(states, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["softplus/s"] = benchmark::Counter(states * other, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}

// Args: visible units, hidden units (the hidden layer is the enumerated one).
void BM_LogPartitionGray(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), m = static_cast<int>(state.range(1));
  const marbm::Rbm rbm = marbm::Rbm::random(n, m, 0.5, 1);
  for (auto _ : state) benchmark::DoNotOptimize(marbm::log_partition_exact(rbm));
  set_counters(state, m, n);
}
BENCHMARK(BM_LogPartitionGray)
    ->Args({64, 16})
    ->Args({64, 20})
    ->Args({64, 22})
    ->Args({64, 24})
    ->Args({784, 16})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The same on one thread, so the per-core figure is visible beside the parallel one.
void BM_LogPartitionGraySingleThread(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), m = static_cast<int>(state.range(1));
  const marbm::Rbm rbm = marbm::Rbm::random(n, m, 0.5, 1);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  for (auto _ : state) benchmark::DoNotOptimize(marbm::log_partition_exact(rbm));
  set_counters(state, m, n);
  omp_set_num_threads(saved);
}
BENCHMARK(BM_LogPartitionGraySingleThread)->Args({64, 20})->Args({24, 20})->Unit(benchmark::kMillisecond)->UseRealTime();

// Direct enumeration (each state from scratch, libm softplus, one thread): the
// baseline the Gray-code kernel is measured against.
void BM_LogPartitionDirect(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), m = static_cast<int>(state.range(1));
  const marbm::Rbm rbm = marbm::Rbm::random(n, m, 0.5, 1);
  for (auto _ : state) benchmark::DoNotOptimize(marbm::log_partition_direct(rbm, 1));
  set_counters(state, m, n);
}
BENCHMARK(BM_LogPartitionDirect)->Args({64, 16})->Unit(benchmark::kMillisecond)->UseRealTime();

// The exact-gradient negative phase.
void BM_ModelExpectations(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), m = static_cast<int>(state.range(1));
  const marbm::Rbm rbm = marbm::Rbm::random(n, m, 0.5, 1);
  for (auto _ : state) benchmark::DoNotOptimize(marbm::model_expectations_exact(rbm));
  set_counters(state, m, n);
}
BENCHMARK(BM_ModelExpectations)->Args({16, 16})->Args({64, 16})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
