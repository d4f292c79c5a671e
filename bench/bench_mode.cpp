// Ground-state search on the CPU: throughput (Google Benchmark) and the runs
// behind time-to-solution TTS99 (bench/peers/compare-mode.sh).
//
//   bench_mode                       Google Benchmark: one search per iteration,
//                                    spin updates/s and the per-replica hit rate
//   bench_mode --write-instances=DIR [--sizes=8,12,16,24] [--count=20] [--exact-max=24]
//                                    the instances as model files, and for sizes up
//                                    to --exact-max their exact ground energy
//                                    (DIR/exact.tsv)
//   bench_mode --reference=DIR [--reference-steps=2000] [--reference-replicas=256]
//                                    long runs of every solver: the lowest energy
//                                    each finds per instance (REF lines)
//   bench_mode --tts=DIR [--steps=3,5,...] [--replicas=128] [--solvers=...]
//                                    per solver, steps setting and instance: the
//                                    replicas reaching the energy of
//                                    DIR/reference.tsv and the CPU seconds (RUN lines)
//
// bench/peers/summarise_tts.py turns RUN lines into per-instance TTS99 =
// t_run log(0.01) / log(1 - p_i), p_i the share of instance i's replicas whose
// polished state has the reference energy and t_run the CPU time per replica.
// Run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for the one-thread figures;
// times are process CPU seconds (the peers script does the same), so figures
// from a busy machine stay comparable: one thread, CPU time = work.
#include <benchmark/benchmark.h>

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "marbm/mode.hpp"
#include "marbm/model_io.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"
#include "measure.hpp"

namespace {

using namespace marbm;
using marbm::bench::process_cpu_seconds;

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
  ModePolish polish = ModePolish::descent;
};
const Solver solvers[] = {{"marbm-sb-discrete", ModeSolver::sb, SbVariant::discrete},
                          {"marbm-sb-ballistic", ModeSolver::sb, SbVariant::ballistic},
                          {"marbm-sa", ModeSolver::sa, SbVariant::discrete},
                          {"marbm-sb-discrete-collapsed", ModeSolver::sb, SbVariant::discrete, ModePolish::collapsed},
                          {"marbm-sb-ballistic-collapsed", ModeSolver::sb, SbVariant::ballistic, ModePolish::collapsed},
                          {"marbm-sa-collapsed", ModeSolver::sa, SbVariant::discrete, ModePolish::collapsed}};


bool reached(double energy, double ground) { return energy <= ground + 1e-9 * std::max(1.0, std::abs(ground)); }

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

std::vector<int> parse_list(std::string_view text) {
  std::vector<int> values;
  while (!text.empty()) {
    const auto comma = text.find(',');
    values.push_back(std::atoi(std::string(text.substr(0, comma)).c_str()));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return values;
}

std::string instance_path(const std::string& folder, int n, int k) {
  return folder + "/n" + std::to_string(n) + "_k" + std::to_string(k) + ".safetensors";
}

// DIR/reference.tsv: "size<TAB>instance<TAB>energy<TAB>source" per instance
// (bench/peers/reference_tts.py writes it from the exact energies and the
// reference runs).
std::map<std::pair<int, int>, double> read_reference(const std::string& folder) {
  std::map<std::pair<int, int>, double> reference;
  std::ifstream in(folder + "/reference.tsv");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    int n = 0, k = 0;
    double energy = 0.0;
    if (fields >> n >> k >> energy) reference[{n, k}] = energy;
  }
  return reference;
}

double tts99(double p, double t_run) {
  if (p <= 0.0) return std::numeric_limits<double>::infinity();
  if (p >= 1.0) return t_run;
  return t_run * std::log(0.01) / std::log1p(-p);
}

// The grid of a solver stops once its median TTS99 (over settings that solve
// every instance) has risen at two settings in a row after its lowest: the
// TTS of longer runs only grows from there (the same rule as peers_mode.py).
bool past_the_minimum(std::vector<double> tts, double& best_median, int& worse) {
  std::sort(tts.begin(), tts.end());
  if (std::isinf(tts.back())) return false;  // not every instance solved
  const std::size_t half = tts.size() / 2;
  const double median = tts.size() % 2 ? tts[half] : 0.5 * (tts[half - 1] + tts[half]);
  if (median < best_median) {
    best_median = median;
    worse = 0;
    return false;
  }
  return ++worse >= 2;
}

struct Run {
  double seconds = 0.0;  // process CPU seconds of the call
  ModeResult result;
};

Run timed_search(const Rbm& rbm, const Solver& solver, int steps, int replicas, std::uint64_t seed) {
  ModeSearchConfig config;
  config.solver = solver.solver;
  config.sb_variant = solver.variant;
  config.polish = solver.polish;
  config.steps = steps;
  config.replicas = replicas;
  config.seed = seed;
  const double start = process_cpu_seconds();
  Run run;
  run.result = find_mode(rbm, config);
  run.seconds = process_cpu_seconds() - start;
  return run;
}

// One line per solver, setting and instance: the replicas that reached the
// reference energy, the CPU seconds of the call and the best energy found.
// A best energy below the reference means the reference is wrong: exit 1.
// The steps grid of a solver stops after the first setting at which every
// replica of every instance reached the reference (longer runs only cost
// more), or when past_the_minimum says so.
int run_tts(const std::string& folder, const std::vector<int>& sizes, int count, const std::vector<int>& grid,
            int replicas, const std::vector<std::string>& only) {
  const auto reference = read_reference(folder);
  std::printf("# RUN\tsolver\tsize\tsteps\tinstance\treplicas\thits\tcpu_s\tbest_energy\n");
  for (int n : sizes) {
    std::vector<Rbm> models;
    std::vector<double> ground;
    for (int k = 0; k < count; ++k) {
      const auto found = reference.find({n, k});
      if (found == reference.end()) {
        std::fprintf(stderr, "bench_mode: %s/reference.tsv has no energy for size %d instance %d\n", folder.c_str(), n, k);
        return 1;
      }
      models.push_back(load_rbm(instance_path(folder, n, k)));
      ground.push_back(found->second);
    }
    for (const Solver& solver : solvers) {
      if (!only.empty() && std::find(only.begin(), only.end(), solver.name) == only.end()) continue;
      double best_median = std::numeric_limits<double>::infinity();
      int worse = 0;
      for (int steps : grid) {
        bool all_hit = true;
        std::vector<double> tts;
        for (int k = 0; k < count; ++k) {
          const Run run = timed_search(models[k], solver, steps, replicas, static_cast<std::uint64_t>(k));
          const ModeResult& result = run.result;
          if (result.energy < ground[k] - 1e-6 * std::max(1.0, std::abs(ground[k]))) {
            std::fprintf(stderr,
                         "bench_mode: %s found energy %.17g below the reference %.17g on size %d instance %d: the "
                         "reference is wrong\n",
                         solver.name, result.energy, ground[k], n, k);
            return 1;
          }
          const int hits = reached(result.energy, ground[k]) ? result.replicas_at_best : 0;
          all_hit = all_hit && hits == result.replicas;
          tts.push_back(tts99(static_cast<double>(hits) / result.replicas, run.seconds / result.replicas));
          std::printf("RUN\t%s\t%d\t%d\t%d\t%d\t%d\t%.6e\t%.17g\n", solver.name, n, result.steps, k, result.replicas,
                      hits, run.seconds, result.energy);
        }
        std::fflush(stdout);
        if (all_hit || past_the_minimum(tts, best_median, worse)) break;
      }
    }
  }
  return 0;
}

// Long runs of every marbm solver (different seeds from the timed runs), one
// line per solver and instance: the lowest energy found. The reference of a
// size beyond exhaustive enumeration is the lowest over these and the peers'.
int run_reference(const std::string& folder, const std::vector<int>& sizes, int count, int steps, int replicas) {
  std::printf("# REF\tsolver\tsize\tinstance\tenergy\tcpu_s\n");
  for (int n : sizes) {
    for (int k = 0; k < count; ++k) {
      const Rbm rbm = load_rbm(instance_path(folder, n, k));
      for (const Solver& solver : solvers) {
        const Run run = timed_search(rbm, solver, steps, replicas, 1000000 + static_cast<std::uint64_t>(k));
        std::printf("REF\t%s\t%d\t%d\t%.17g\t%.3f\n", solver.name, n, k, run.result.energy, run.seconds);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

// The instances as model files; for sizes up to `exact_max` per layer their
// exact ground energy (mode_exhaustive) in DIR/exact.tsv.
int write_instances(const std::string& folder, const std::vector<int>& sizes, int count, int exact_max) {
  std::filesystem::create_directories(folder);
  std::ofstream exact(folder + "/exact.tsv", std::ios::app);
  for (int n : sizes) {
    for (int k = 0; k < count; ++k) {
      const Rbm rbm = instance(n, k);
      save_rbm(instance_path(folder, n, k), rbm, {{"instance", std::to_string(k)}});
      if (n <= exact_max) {
        char line[128];
        std::snprintf(line, sizeof line, "%d\t%d\t%.17g\texact\n", n, k, mode_exhaustive(rbm).energy);
        exact << line;
      }
    }
    exact.flush();
    std::printf("wrote %d instances of %d x %d to %s%s\n", count, n, n, folder.c_str(),
                n <= exact_max ? " with their exact ground energy" : "");
  }
  return exact ? 0 : 1;
}

}  // namespace

BENCHMARK_CAPTURE(bm_mode_search, sb_discrete, solvers[0])->Arg(16)->Arg(24)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_mode_search, sb_ballistic, solvers[1])->Arg(16)->Arg(24)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_mode_search, sa, solvers[2])->Arg(16)->Arg(24)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK(bm_mode_exhaustive)->Arg(16)->Arg(20)->Arg(24)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  std::vector<int> sizes = {8, 12, 16, 24};
  std::vector<int> grid = {3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000};
  std::vector<std::string> only;
  int count = 20, replicas = 128, exact_max = 24, reference_steps = 2000, reference_replicas = 256;
  std::string tts_folder, reference_folder, instances_folder;
  std::vector<char*> rest = {argv[0]};
  for (int k = 1; k < argc; ++k) {
    const std::string_view arg = argv[k];
    auto value = [&](std::string_view key) { return std::string(arg.substr(key.size())); };
    if (arg.starts_with("--tts=")) {
      tts_folder = value("--tts=");
    } else if (arg.starts_with("--reference=")) {
      reference_folder = value("--reference=");
    } else if (arg.starts_with("--write-instances=")) {
      instances_folder = value("--write-instances=");
    } else if (arg.starts_with("--sizes=")) {
      sizes = parse_list(value("--sizes="));
    } else if (arg.starts_with("--steps=")) {
      grid = parse_list(value("--steps="));
    } else if (arg.starts_with("--count=")) {
      count = std::atoi(value("--count=").c_str());
    } else if (arg.starts_with("--replicas=")) {
      replicas = std::atoi(value("--replicas=").c_str());
    } else if (arg.starts_with("--exact-max=")) {
      exact_max = std::atoi(value("--exact-max=").c_str());
    } else if (arg.starts_with("--reference-steps=")) {
      reference_steps = std::atoi(value("--reference-steps=").c_str());
    } else if (arg.starts_with("--reference-replicas=")) {
      reference_replicas = std::atoi(value("--reference-replicas=").c_str());
    } else if (arg.starts_with("--solvers=")) {
      std::string list = value("--solvers=");
      for (std::size_t at = 0; at <= list.size();) {
        const std::size_t comma = std::min(list.find(',', at), list.size());
        only.push_back(list.substr(at, comma - at));
        at = comma + 1;
      }
    } else {
      rest.push_back(argv[k]);
    }
  }
  for (int n : sizes) {
    if (n < 1 || n > 256) {
      std::fprintf(stderr, "bench_mode: --sizes: %d is outside 1..256\n", n);
      return 2;
    }
  }
  if (exact_max > 30) {
    std::fprintf(stderr, "bench_mode: --exact-max above 30 would enumerate for hours\n");
    return 2;
  }
  if (count < 1 || replicas < 1 || reference_steps < 1 || reference_replicas < 1 || grid.empty() ||
      std::any_of(grid.begin(), grid.end(), [](int s) { return s < 1; })) {
    std::fprintf(stderr, "bench_mode: --count, --replicas, --steps and the reference settings must be positive\n");
    return 2;
  }
  try {
    if (!instances_folder.empty()) return write_instances(instances_folder, sizes, count, exact_max);
    if (!reference_folder.empty()) return run_reference(reference_folder, sizes, count, reference_steps, reference_replicas);
    if (!tts_folder.empty()) return run_tts(tts_folder, sizes, count, grid, replicas, only);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench_mode: %s\n", error.what());
    return 1;
  }
  int rest_count = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_count, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_count, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
