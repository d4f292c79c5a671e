// Ensembles of mid-size RBMs on the device: the batched path of
// train_ensemble (strided-batched GEMMs over the members) beside the same
// members trained one after another, each by marbm::train on a cuda engine.
//   - E = 64 members of 100 x 64 and E = 16 members of 784 x 500;
//   - CD-1 at batch 100 on 1,000 random binary rows, no exact metrics.
//
//   bench_cuda_ensemble --benchmark_counters_tabular=true
//
// Counters: batched_updates_per_s_per_member, single_updates_per_s_per_member
// and speedup = their ratio (wall time, warm device). Without a device every
// benchmark reports an error and the binary exits 0.
// BM_CudaEnsembleModeSteps: mode-assisted members with a mode step every
// update, the members' exhaustive searches in one batched launch against one
// search per member (never run on a GPU yet).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/mode.hpp"
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

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// `members` starting models n x m (weights N(0, 0.01^2)) and their seeds 1,
// 2, ...
std::pair<std::vector<marbm::Rbm>, std::vector<std::uint64_t>> starting_members(int members, int n, int m) {
  std::vector<marbm::Rbm> initial;
  std::vector<std::uint64_t> seeds;
  for (int e = 0; e < members; ++e) {
    initial.push_back(marbm::Rbm::random(n, m, 0.01, static_cast<std::uint64_t>(e + 1)));
    seeds.push_back(static_cast<std::uint64_t>(e + 1));
  }
  return {initial, seeds};
}

// Whether this shape trains as a batched ensemble (not fused, not refused);
// if not, the benchmark is marked with the reason.
bool takes_batched_path(benchmark::State& state, int n, int m, const marbm::Dataset& data,
                        const marbm::TrainConfig& config) {
  if (marbm::ensemble_batched_supported(n, m, data.n_rows, config) &&
      !marbm::ensemble_fused_supported(n, m, data.n_rows, config)) {
    return true;
  }
  state.SkipWithError("this shape does not take the batched path");
  return false;
}

// Args: members, n, m, updates per member.
void BM_CudaEnsembleBatchedVsSingle(benchmark::State& state) {
  if (!have_device(state)) return;
  const int members = static_cast<int>(state.range(0));
  const int n = static_cast<int>(state.range(1)), m = static_cast<int>(state.range(2));
  const long updates = state.range(3);
  const marbm::Dataset data = marbm::random_binary_dataset(1000, n, 0.2, 3);
  const auto [initial, seeds] = starting_members(members, n, m);
  marbm::TrainConfig config;
  config.method = marbm::TrainMethod::cd;
  config.learning_rate = 0.05;
  config.batch_size = 100;
  config.iterations = updates;
  config.exact_metrics = false;
  if (!takes_batched_path(state, n, m, data, config)) return;
  auto engine = marbm::make_engine(marbm::Backend::cuda);
  marbm::TrainConfig warm = config;
  warm.iterations = 5;
  (void)marbm::train_ensemble(marbm::Backend::cuda, data, initial, seeds, warm);  // warm-up (cuBLAS, allocator)
  (void)marbm::train(*engine, data, initial.front(), warm);
  double batched = 0.0, single = 0.0;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    const auto results = marbm::train_ensemble(marbm::Backend::cuda, data, initial, seeds, config);
    benchmark::DoNotOptimize(results.data());
    const double batched_seconds = seconds_since(start);
    start = std::chrono::steady_clock::now();
    for (int e = 0; e < members; ++e) {
      marbm::TrainConfig member_config = config;
      member_config.seed = seeds[e];
      const auto result = marbm::train(*engine, data, initial[e], member_config);
      benchmark::DoNotOptimize(result.model.weights().data());
    }
    const double single_seconds = seconds_since(start);
    state.SetIterationTime(batched_seconds);
    batched += batched_seconds;
    single += single_seconds;
  }
  const double runs = static_cast<double>(state.iterations());
  state.counters["members"] = members;
  state.counters["batched_updates_per_s_per_member"] = static_cast<double>(updates) * runs / batched;
  state.counters["single_updates_per_s_per_member"] = static_cast<double>(updates) * members * runs / single;
  state.counters["speedup"] = single / batched;
}

// Sets MARBM_ENSEMBLE_MODE_SEARCH for the lifetime of the guard.
class ModeSearchEnv {
 public:
  explicit ModeSearchEnv(const char* value) { setenv("MARBM_ENSEMBLE_MODE_SEARCH", value, 1); }
  ModeSearchEnv(const ModeSearchEnv&) = delete;
  ModeSearchEnv& operator=(const ModeSearchEnv&) = delete;
  ~ModeSearchEnv() { unsetenv("MARBM_ENSEMBLE_MODE_SEARCH"); }
};

// Mode-assisted members whose modes are enumerable (choose_mode_solver picks
// the exhaustive solver), every update a mode step for every member
// (p_max 1, beta 20: P_mode > 0.999999): the members' searches of an update
// in one batched launch against one search per member
// (MARBM_ENSEMBLE_MODE_SEARCH=per-member), both in the batched ensemble.
// Args: members, n, m, updates per member. Counters:
// batched_updates_per_s_per_member, per_member_updates_per_s_per_member,
// speedup = their ratio, mode_steps per member (equal on both sides).
void BM_CudaEnsembleModeSteps(benchmark::State& state) {
  if (!have_device(state)) return;
  const int members = static_cast<int>(state.range(0));
  const int n = static_cast<int>(state.range(1)), m = static_cast<int>(state.range(2));
  const long updates = state.range(3);
  const marbm::Dataset data = marbm::random_binary_dataset(1000, n, 0.2, 5);
  const auto [initial, seeds] = starting_members(members, n, m);
  marbm::TrainConfig config;
  config.method = marbm::TrainMethod::mode;
  config.mode.p_max = 1.0;
  config.mode.beta = 20.0;
  config.learning_rate = 0.05;
  config.batch_size = 100;
  config.iterations = updates;
  config.exact_metrics = false;
  if (!takes_batched_path(state, n, m, data, config)) return;
  if (marbm::choose_mode_solver(config.mode, n, m, config.batch_size) != marbm::ModeSolver::exhaustive) {
    state.SkipWithError("this shape's mode steps do not take the exhaustive solver");
    return;
  }
  marbm::TrainConfig warm = config;
  warm.iterations = 3;
  (void)marbm::train_ensemble(marbm::Backend::cuda, data, initial, seeds, warm);  // warm-up (cuBLAS, allocator)
  double batched = 0.0, per_member = 0.0;
  long steps = 0;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    const auto results = marbm::train_ensemble(marbm::Backend::cuda, data, initial, seeds, config);
    const double batched_seconds = seconds_since(start);
    steps = 0;
    for (const auto& result : results) steps += result.mode_steps;
    {
      const ModeSearchEnv one_by_one("per-member");
      start = std::chrono::steady_clock::now();
      const auto again = marbm::train_ensemble(marbm::Backend::cuda, data, initial, seeds, config);
      benchmark::DoNotOptimize(again.data());
      per_member += seconds_since(start);
    }
    state.SetIterationTime(batched_seconds);
    batched += batched_seconds;
  }
  const double runs = static_cast<double>(state.iterations());
  state.counters["members"] = members;
  state.counters["mode_steps_per_member"] = static_cast<double>(steps) / members;
  state.counters["batched_updates_per_s_per_member"] = static_cast<double>(updates) * runs / batched;
  state.counters["per_member_updates_per_s_per_member"] = static_cast<double>(updates) * runs / per_member;
  state.counters["speedup"] = per_member / batched;
}
BENCHMARK(BM_CudaEnsembleModeSteps)
    ->Args({64, 100, 12, 50})
    ->Args({16, 200, 14, 20})
    ->UseManualTime()
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);
// Registered after the mode-step entry (50 and 20 updates of small models):
// should the device check's time budget for this binary run out, it cuts off
// the longer entry, not the short one.
BENCHMARK(BM_CudaEnsembleBatchedVsSingle)
    ->Args({64, 100, 64, 500})
    ->Args({16, 784, 500, 200})
    ->UseManualTime()
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
