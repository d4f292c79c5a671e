// AIS on the device: the published protocol (M = 100 runs, 14,500
// intervals) on a 784 x 500 RBM, forward only and with the reverse runs
// (marbm eval's default protocol, 1,000 burn-in sweeps), the same problem as
// bench_ais on the CPU. The target is under 2 s for the default protocol on
// an H100/H200.
//
//   bench_cuda_ais --benchmark_counters_tabular=true
//
// Counters: seconds (wall time of log_partition_ais, the upload included),
// transitions_per_s = runs x sweeps per second, log_z (for a look beside the
// CPU's on the same model and seed). Without a device every benchmark
// reports an error and the binary exits 0.
#include <benchmark/benchmark.h>

#include <string>

#include "marbm/ais.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/rbm.hpp"

namespace {

constexpr int n = 784, m = 500, runs = 100;

// state.range(0): intervals; state.range(1): 1 with the reverse runs.
void BM_CudaAis_784x500(benchmark::State& state) {
  if (marbm::cuda_devices().empty()) {
    state.SkipWithError("no usable CUDA device");
    return;
  }
  const marbm::Rbm rbm = marbm::Rbm::random(n, m, 0.05, 1);
  // MNIST-like density for the base rate and the reverse runs' starting rows.
  const marbm::Dataset data = marbm::random_binary_dataset(1000, n, 0.13, 2);
  marbm::AisOptions options;
  options.runs = runs;
  options.intervals = static_cast<int>(state.range(0));
  options.reverse = state.range(1) != 0;
  options.seed = 3;
  options.backend = marbm::Backend::cuda;
  // One untimed call first: the device context, cuBLAS handle and memory pool.
  marbm::AisOptions warm = options;
  warm.intervals = 10;
  warm.reverse_burn_in = 1;
  (void)marbm::log_partition_ais(rbm, warm, &data);
  double seconds = 0.0, log_z = 0.0;
  for (auto _ : state) {
    const marbm::AisResult result = marbm::log_partition_ais(rbm, options, &data);
    benchmark::DoNotOptimize(result.forward.log_z);
    seconds += result.seconds;
    log_z = result.log_z();
  }
  seconds /= static_cast<double>(state.iterations());
  const double directions = options.reverse ? 2.0 : 1.0;
  const double sweeps = options.intervals * directions + (options.reverse ? options.reverse_burn_in : 0);
  state.counters["seconds"] = seconds;
  state.counters["transitions_per_s"] = runs * sweeps / seconds;
  state.counters["log_z"] = log_z;
  state.SetLabel("M " + std::to_string(runs) + (options.reverse ? ", forward + reverse" : ", forward"));
}
BENCHMARK(BM_CudaAis_784x500)
    ->Args({marbm::ais_published_intervals, 0})
    ->Args({marbm::ais_published_intervals, 1})
    ->Iterations(3)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
