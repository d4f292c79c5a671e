// Ground-state search on trained models: the landscapes training produces,
// not random couplings. Trains checkpoints along CD-1, PCD-1 and
// mode-assisted runs on real and toy data, then runs every solver on every
// checkpoint with its defaults (one thread) and compares with the exhaustive
// ground energy where the smaller layer is enumerable, else with the best
// energy any run found (including a 10x longer local search).
//
// usage: mode_trained --data-dir DIR --out FILE.csv [--quick]
// Prints one line per model and a summary per solver on stdout.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "marbm/marbm.hpp"
#include "tool_main.hpp"
#include "mode_solvers.hpp"

namespace {

struct Problem {
  std::string name;  // data set and shape
  std::string data;  // spec
  int hidden = 0;
  int batch = 100;
  double lr = 0.05;
  long iterations = 3000;
};

struct Model {
  std::string problem;
  std::string method;
  long iteration = 0;
  int seed = 0;
  marbm::Rbm rbm;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Trains one run and keeps the model at each of `checkpoints` (update counts).
std::vector<Model> checkpoints_of(const Problem& problem, const marbm::Dataset& data, marbm::TrainMethod method,
                                  int seed, const std::vector<long>& checkpoints) {
  marbm::TrainConfig config;
  config.method = method;
  config.learning_rate = problem.lr;
  config.batch_size = problem.batch;
  config.iterations = problem.iterations;
  config.seed = static_cast<std::uint64_t>(seed);
  config.exact_metrics = false;
  config.persistent_chains = method == marbm::TrainMethod::pcd ? 100 : 0;
  marbm::EngineOptions options;
  options.threads = 1;
  options.quiet = true;
  auto engine = marbm::make_engine(marbm::Backend::cpu, options);
  std::vector<Model> models;
  const marbm::Rbm initial = marbm::Rbm::random(data.n_cols, problem.hidden, 0.01, config.seed);
  // The callback sees every update count that is a multiple of eval_every;
  // the checkpoints are chosen among them.
  config.eval_every = checkpoints.front();
  marbm::train(*engine, data, initial, config, [&](const marbm::TrainMetrics& m) {
    if (std::find(checkpoints.begin(), checkpoints.end(), m.iteration) == checkpoints.end()) return;
    models.push_back({problem.name, std::string(marbm::to_string(method)), m.iteration, seed, engine->model()});
  });
  return models;
}

struct Outcome {
  double energy = 0.0;
  double seconds = 0.0;
};

int local_replicas = 0;  // --local-replicas / --local-rounds: 0 keeps the solver defaults
int local_rounds = 0;

// The local search starts, as in training, from a minibatch of data rows:
// 100 rows spread over the data set.
std::vector<std::uint8_t> start_rows(const marbm::Dataset& data) {
  std::vector<std::uint8_t> rows;
  const int count = std::min(100, data.n_rows);
  for (int q = 0; q < count; ++q) {
    const auto row = data.row(static_cast<int>(static_cast<long>(q) * data.n_rows / count));
    rows.insert(rows.end(), row.begin(), row.end());
  }
  return rows;
}

Outcome solve(const marbm::Rbm& rbm, marbm::ModeSolver solver, std::uint64_t seed, const marbm::Dataset& data,
              int steps_factor = 1) {
  marbm::ModeSearchConfig config;
  config.solver = solver;
  config.seed = seed;
  if (solver == marbm::ModeSolver::local) {
    config.replicas = local_replicas;
    config.steps = local_rounds;
    config.start_visible = start_rows(data);
  }
  if (steps_factor > 1) {
    // A 10x longer search: ten times the default random starts and rounds.
    config.replicas = marbm::detail::default_local_replicas(rbm.n_visible(), rbm.n_hidden()) * steps_factor;
    config.steps = marbm::detail::default_local_rounds(rbm.n_visible(), rbm.n_hidden()) * steps_factor;
  }
  const auto start = std::chrono::steady_clock::now();
  const marbm::ModeResult result = solver == marbm::ModeSolver::exhaustive ? marbm::mode_exhaustive(rbm)
                                                                           : marbm::find_mode(rbm, config);
  return {result.energy, seconds_since(start)};
}

int run(int argc, char** argv) {
  std::string data_dir, out_path, only;
  bool quick = false;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--data-dir" && a + 1 < argc) data_dir = argv[++a];
    else if (arg == "--out" && a + 1 < argc) out_path = argv[++a];
    else if (arg == "--quick") quick = true;
    else if (arg == "--problems" && a + 1 < argc) only = argv[++a];
    else if (arg == "--local-replicas" && a + 1 < argc) local_replicas = std::stoi(argv[++a]);
    else if (arg == "--local-rounds" && a + 1 < argc) local_rounds = std::stoi(argv[++a]);
    else throw marbm::UsageError("unknown option '" + arg + "'");
  }
  if (data_dir.empty() || out_path.empty()) throw marbm::UsageError("--data-dir and --out are required");
  omp_set_num_threads(1);
  const std::string mnist = "idx:" + data_dir + "/mnist/t10k-images-idx3-ubyte.gz@0:9000";
  const std::string digits = "digits:" + data_dir + "/digits/digits.csv.gz";
  std::vector<Problem> problems = {
      {"bars-and-stripes 4x4, 16x16", "bars-and-stripes:4", 16, 30, 0.1, 3000},
      {"digits 64x16", digits, 16, 100, 0.05, 3000},
      {"digits 64x24", digits, 24, 100, 0.05, 3000},
      {"MNIST 784x20", mnist, 20, 100, 0.05, 3000},
      {"MNIST 784x64", mnist, 64, 100, 0.05, 3000},
      {"MNIST 784x500", mnist, 500, 100, 0.05, 1000},
  };
  if (quick) problems.resize(2);
  if (!only.empty()) {
    // --problems: a comma-separated list of name prefixes ("digits 64x16,MNIST 784x20").
    std::vector<Problem> kept;
    std::string rest = only + ",";
    for (std::size_t comma; (comma = rest.find(',')) != std::string::npos; rest.erase(0, comma + 1)) {
      const std::string prefix = rest.substr(0, comma);
      for (const auto& p : problems) {
        if (!prefix.empty() && p.name.rfind(prefix, 0) == 0) kept.push_back(p);
      }
    }
    problems = kept;
  }
  const std::vector<marbm::TrainMethod> methods = {marbm::TrainMethod::cd, marbm::TrainMethod::pcd,
                                                   marbm::TrainMethod::mode};
  const int seeds = quick ? 1 : 2;

  std::ofstream out(out_path + ".tmp");
  out << "problem,method,seed,iteration,enumerable,reference,solver,energy,seconds,solved\n";
  out.precision(12);
  struct Tally {
    int solved = 0;
    int total = 0;
    double seconds = 0.0;
    double reference_seconds = 0.0;
  };
  std::map<std::string, Tally> tally;  // "enumerable|solver" or "large|solver"
  const std::vector<marbm::ModeSolver> solvers = {marbm::ModeSolver::local, marbm::ModeSolver::sb,
                                                  marbm::ModeSolver::sa};
  for (const auto& problem : problems) {
    const marbm::Dataset data = marbm::load_dataset(problem.data);
    const bool large = problem.hidden >= 500;
    const std::vector<long> checkpoints =
        large ? std::vector<long>{500, 1000} : std::vector<long>{problem.iterations / 6, problem.iterations / 2,
                                                                  problem.iterations};
    for (const auto method : methods) {
      if (large && method != marbm::TrainMethod::cd) continue;  // 784x500: CD-1 checkpoints only (time)
      for (int seed = 1; seed <= seeds; ++seed) {
        for (const Model& model : checkpoints_of(problem, data, method, seed, checkpoints)) {
          const int k = std::min(model.rbm.n_visible(), model.rbm.n_hidden());
          const bool enumerable = k <= 24;
          std::map<marbm::ModeSolver, Outcome> outcome;
          for (const auto solver : solvers) outcome[solver] = solve(model.rbm, solver, 7, data);
          Outcome reference;
          if (enumerable) {
            reference = solve(model.rbm, marbm::ModeSolver::exhaustive, 0, data);
          } else {
            reference = solve(model.rbm, marbm::ModeSolver::local, 11, data, 10);
            for (const auto& [solver, o] : outcome) reference.energy = std::min(reference.energy, o.energy);
          }
          const double tolerance = 1e-6 * std::max(1.0, std::abs(reference.energy));
          std::printf("%-28s %-5s seed %d update %5ld  reference %12.4f (%s, %.3f s)", model.problem.c_str(),
                      model.method.c_str(), seed, model.iteration, reference.energy,
                      enumerable ? "exhaustive" : "best found", reference.seconds);
          for (const auto solver : solvers) {
            const Outcome& o = outcome[solver];
            const bool solved = o.energy <= reference.energy + tolerance;
            const std::string solver_name(marbm::to_string(solver));
            std::printf("  %s %s%.4f (%.4f s)", solver_name.c_str(), solved ? "" : "MISS ", o.energy, o.seconds);
            Tally& t = tally[(enumerable ? "enumerable|" : "large|") + solver_name];
            t.solved += solved ? 1 : 0;
            ++t.total;
            t.seconds += o.seconds;
            t.reference_seconds += reference.seconds;
            out << model.problem << ',' << model.method << ',' << seed << ',' << model.iteration << ','
                << (enumerable ? 1 : 0) << ',' << reference.energy << ',' << solver_name << ',' << o.energy << ','
                << o.seconds << ',' << (solved ? 1 : 0) << '\n';
          }
          std::printf("\n");
          std::fflush(stdout);
        }
      }
    }
  }
  out.close();
  if (std::rename((out_path + ".tmp").c_str(), out_path.c_str()) != 0) {
    throw marbm::RuntimeFailure("cannot write '" + out_path + "'");
  }
  std::printf("\nsummary (one thread, solver defaults)\n");
  for (const auto& [key, t] : tally) {
    std::printf("%-22s solved %3d / %3d (%.1f%%), time %.3f s = %.2f%% of the reference's %.3f s\n", key.c_str(),
                t.solved, t.total, 100.0 * t.solved / t.total, t.seconds, 100.0 * t.seconds / t.reference_seconds,
                t.reference_seconds);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return marbm::bench::run_tool("mode_trained", run, argc, argv); }
