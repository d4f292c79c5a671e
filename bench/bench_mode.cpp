// Ground-state search on the CPU: throughput (Google Benchmark) and
// time-to-solution TTS99 against the exact ground state.
//
//   bench_mode                       Google Benchmark: one search per iteration,
//                                    spin updates/s and the per-replica hit rate
//   bench_mode --tts [--sizes=8,16,24] [--count=20] [--steps-grid]
//                                    TTS99 per solver and size, one line each
//   bench_mode --write-instances=DIR [--sizes=...] [--count=...]
//                                    the same instances as safetensors files with
//                                    their exact ground energy, for the peers
//
// TTS99 = t_run * log(0.01) / log(1 - p), p the share of replicas (over all
// instances of a size) whose polished state has the exact ground energy and
// t_run the time of one replica (search time / replicas): the expected time
// to reach the ground state with 99% probability by independent repeats.
// Run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for the one-thread figures.
// --tts times with the process CPU clock (the peers script does the same), so
// figures from a busy machine stay comparable: one thread, CPU time = work.
#include <benchmark/benchmark.h>

#include <time.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "marbm/mode.hpp"
#include "marbm/model_io.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"

namespace {

using namespace marbm;

// Instance k of size n x n: weights and biases N(0, 1), from the Philox
// streams of seed 90000 + 1000 n + k (the peers read the same models).
Rbm instance(int n, int k) {
  const std::uint64_t seed = 90000 + 1000 * static_cast<std::uint64_t>(n) + k;
  Rbm rbm = Rbm::random(n, n, 1.0, seed);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::test, 7));
  std::uint64_t index = 0;
  for (float& a : rbm.visible_bias()) a = static_cast<float>(standard_normal(stream, index++));
  for (float& b : rbm.hidden_bias()) b = static_cast<float>(standard_normal(stream, index++));
  return rbm;
}

struct Solver {
  const char* name;
  ModeSolver solver;
  SbVariant variant;
};
const Solver solvers[] = {{"marbm-sb-discrete", ModeSolver::sb, SbVariant::discrete},
                          {"marbm-sb-ballistic", ModeSolver::sb, SbVariant::ballistic},
                          {"marbm-sa", ModeSolver::sa, SbVariant::discrete}};

double cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

bool reached(double energy, double ground) { return energy <= ground + 1e-9 * std::max(1.0, std::abs(ground)); }

double tts99(double p, double t_run) {
  if (p <= 0.0) return std::numeric_limits<double>::infinity();
  if (p >= 1.0) return t_run;
  return t_run * std::log(0.01) / std::log1p(-p);
}

// ------------------------------------------------------------ Google Benchmark

void bm_mode_search(benchmark::State& state, Solver solver) {
  const int n = static_cast<int>(state.range(0));
  const Rbm rbm = instance(n, 0);
  const double ground = mode_exhaustive(rbm).energy;
  ModeSearchConfig config;
  config.solver = solver.solver;
  config.sb_variant = solver.variant;
  long replicas = 0, hits = 0, spin_updates = 0;
  std::uint64_t seed = 0;
  for (auto _ : state) {
    config.seed = seed++;
    const ModeResult result = find_mode(rbm, config);
    replicas += result.replicas;
    hits += reached(result.energy, ground) ? result.replicas_at_best : 0;
    spin_updates += static_cast<long>(result.replicas) * result.steps * 2 * n;
  }
  state.counters["spin_updates/s"] = benchmark::Counter(static_cast<double>(spin_updates), benchmark::Counter::kIsRate);
  state.counters["replica_hit_rate"] = replicas ? static_cast<double>(hits) / replicas : 0.0;
}

// Exhaustive enumeration: states/s, the floor every solver must beat.
void bm_mode_exhaustive(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const Rbm rbm = instance(n, 0);
  for (auto _ : state) benchmark::DoNotOptimize(mode_exhaustive(rbm).energy);
  state.counters["states/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * std::ldexp(1.0, n), benchmark::Counter::kIsRate);
}

// ------------------------------------------------------------ TTS and instances

std::vector<int> parse_sizes(std::string_view text) {
  std::vector<int> sizes;
  while (!text.empty()) {
    const auto comma = text.find(',');
    sizes.push_back(std::atoi(std::string(text.substr(0, comma)).c_str()));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return sizes;
}

int run_tts(const std::vector<int>& sizes, int count, bool steps_grid) {
  std::printf("# TTS\tsolver\tsize\tsteps\treplicas\tp_replica\tt_run_s\ttts99_s\tinstances_solved\n");
  for (int n : sizes) {
    std::vector<Rbm> models;
    std::vector<double> ground;
    for (int k = 0; k < count; ++k) {
      models.push_back(instance(n, k));
      ground.push_back(mode_exhaustive(models.back()).energy);
    }
    for (const Solver& solver : solvers) {
      // Steps: the default, or a grid around it (TTS is often lowest for
      // shorter runs than the reliable default).
      std::vector<int> steps_list = {0};
      if (steps_grid) steps_list = {3, 5, 10, 20, 50, 100, 200};
      for (int steps : steps_list) {
        ModeSearchConfig config;
        config.solver = solver.solver;
        config.sb_variant = solver.variant;
        config.steps = steps;
        double seconds = 0.0;
        long replicas = 0, hits = 0;
        int solved = 0, used_steps = 0, used_replicas = 0;
        for (int k = 0; k < count; ++k) {
          config.seed = static_cast<std::uint64_t>(k);
          const double start = cpu_seconds();
          const ModeResult result = find_mode(models[k], config);
          seconds += cpu_seconds() - start;
          replicas += result.replicas;
          used_steps = result.steps;
          used_replicas = result.replicas;
          if (reached(result.energy, ground[k])) {
            hits += result.replicas_at_best;
            ++solved;
          }
        }
        const double p = static_cast<double>(hits) / static_cast<double>(replicas);
        const double t_run = seconds / static_cast<double>(replicas);
        std::printf("TTS\t%s\t%d\t%d\t%d\t%.4f\t%.3e\t%.3e\t%d/%d\n", solver.name, n, used_steps, used_replicas, p,
                    t_run, tts99(p, t_run), solved, count);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

int write_instances(const std::string& folder, const std::vector<int>& sizes, int count) {
  std::filesystem::create_directories(folder);
  for (int n : sizes) {
    for (int k = 0; k < count; ++k) {
      const Rbm rbm = instance(n, k);
      const ModeResult exact = mode_exhaustive(rbm);
      char energy[64];
      std::snprintf(energy, sizeof energy, "%.17g", exact.energy);
      const std::string path = folder + "/n" + std::to_string(n) + "_k" + std::to_string(k) + ".safetensors";
      save_rbm(path, rbm, {{"ground_energy", energy}, {"instance", std::to_string(k)}});
    }
    std::printf("wrote %d instances of %d x %d to %s\n", count, n, n, folder.c_str());
  }
  return 0;
}

}  // namespace

BENCHMARK_CAPTURE(bm_mode_search, sb_discrete, solvers[0])->Arg(16)->Arg(24)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_mode_search, sb_ballistic, solvers[1])->Arg(16)->Arg(24)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_mode_search, sa, solvers[2])->Arg(16)->Arg(24)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK(bm_mode_exhaustive)->Arg(16)->Arg(20)->Arg(24)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  std::vector<int> sizes = {8, 12, 16, 20, 24};
  int count = 20;
  bool tts = false, steps_grid = false;
  std::string instances_folder;
  std::vector<char*> rest = {argv[0]};
  for (int k = 1; k < argc; ++k) {
    const std::string_view arg = argv[k];
    if (arg == "--tts") {
      tts = true;
    } else if (arg == "--steps-grid") {
      steps_grid = true;
    } else if (arg.starts_with("--sizes=")) {
      sizes = parse_sizes(arg.substr(8));
    } else if (arg.starts_with("--count=")) {
      count = std::atoi(std::string(arg.substr(8)).c_str());
    } else if (arg.starts_with("--write-instances=")) {
      instances_folder = std::string(arg.substr(18));
    } else {
      rest.push_back(argv[k]);
    }
  }
  for (int n : sizes) {
    if (n < 1 || n > 30) {
      std::fprintf(stderr, "bench_mode: --sizes: %d is outside 1..30 (the exact ground state is enumerated)\n", n);
      return 2;
    }
  }
  if (count < 1) {
    std::fprintf(stderr, "bench_mode: --count must be at least 1\n");
    return 2;
  }
  if (!instances_folder.empty()) return write_instances(instances_folder, sizes, count);
  if (tts) return run_tts(sizes, count, steps_grid);
  int rest_count = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_count, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_count, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
