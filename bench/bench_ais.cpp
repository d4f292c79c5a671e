// AIS on the CPU: the published protocol (M = 100 runs, 14,500 intervals) on
// a 784 x 500 RBM, forward only and with the reverse runs, beside the time of
// its matrix products alone (the floor).
//
//   bench_ais --benchmark_counters_tabular=true
//
// Counters: transitions_per_s = runs x intervals per second (each transition
// is one weight update and one block-Gibbs sweep of one run); sgemm_fraction
// = (time of the two sgemm calls per run block and beta, laid out as AIS lays
// them out: fixed blocks, one single-threaded call per block and OpenMP
// thread) / (AIS time), so 1 means AIS costs no more than its products.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "marbm/ais.hpp"
#include "marbm/data.hpp"
#include "marbm/rbm.hpp"

namespace {

constexpr int n = 784, m = 500, runs = 100;

// Seconds per beta of the products alone: V W (rows x m) and H W^T (rows x n)
// for each block of runs, blocks in parallel, BLAS single-threaded.
double sgemm_seconds_per_beta(int repetitions) {
  const int block_rows = std::min(64, (runs + 1) / 2);
  const int blocks = (runs + block_rows - 1) / block_rows;
  const std::vector<float> w(static_cast<std::size_t>(n) * m, 0.01f);
  const int saved = openblas_get_num_threads();
  openblas_set_num_threads(1);
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::min(blocks, omp_get_max_threads()))
  for (int b = 0; b < blocks; ++b) {
    std::vector<float> v(static_cast<std::size_t>(block_rows) * n, 1.0f), h(static_cast<std::size_t>(block_rows) * m, 1.0f);
    std::vector<float> hf(h.size()), vf(v.size());
    for (int r = 0; r < repetitions; ++r) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, block_rows, m, n, 1.0f, v.data(), n, w.data(), m, 0.0f,
                  hf.data(), m);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, block_rows, n, m, 1.0f, h.data(), m, w.data(), m, 0.0f,
                  vf.data(), n);
    }
    benchmark::DoNotOptimize(vf.data());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  openblas_set_num_threads(saved);
  return seconds / repetitions;
}

// state.range(0): intervals; state.range(1): 1 with the reverse runs.
void BM_Ais_784x500(benchmark::State& state) {
  const marbm::Rbm rbm = marbm::Rbm::random(n, m, 0.05, 1);
  // MNIST-like density for the base rate and the reverse runs' starting rows.
  const marbm::Dataset data = marbm::random_binary_dataset(1000, n, 0.13, 2);
  marbm::AisOptions options;
  options.runs = runs;
  options.intervals = static_cast<int>(state.range(0));
  options.reverse = state.range(1) != 0;
  options.seed = 3;
  double seconds = 0.0;
  for (auto _ : state) {
    const marbm::AisResult result = marbm::log_partition_ais(rbm, options, &data);
    benchmark::DoNotOptimize(result.forward.log_z);
    seconds += result.seconds;
  }
  seconds /= static_cast<double>(state.iterations());
  const double directions = options.reverse ? 2.0 : 1.0;
  // Reverse runs also make burn-in sweeps before annealing.
  const double sweeps = options.intervals * directions + (options.reverse ? options.reverse_burn_in : 0);
  const double floor = sgemm_seconds_per_beta(200) * sweeps;
  state.counters["seconds"] = seconds;
  state.counters["transitions_per_s"] = runs * sweeps / seconds;
  state.counters["sgemm_floor_s"] = floor;
  state.counters["sgemm_fraction"] = floor / seconds;
  state.SetLabel("M " + std::to_string(runs) + ", " + std::to_string(omp_get_max_threads()) + " threads" +
                 (options.reverse ? ", forward + reverse" : ", forward"));
}
BENCHMARK(BM_Ais_784x500)
    ->Args({marbm::ais_published_intervals, 0})
    ->Args({marbm::ais_published_intervals, 1})
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
