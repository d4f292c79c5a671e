// Training methods compared by exact log-likelihood on real data: every
// (variant, learning rate, seed) run trains one RBM whose smaller layer is
// enumerable and records the exact mean log-likelihood of the training and
// held-out rows at each evaluation point, beside the run's CPU time spent
// training (evaluation excluded). Runs go in parallel, one thread each.
//
// usage: mnist_compare --train SPEC --test SPEC --out FILE.csv
//          [--hidden 20] [--iters 3000] [--batch 100] [--eval-every 500]
//          [--seeds 3] [--lrs 0.02,0.05,0.1] [--variants cd,pcd,mode,...]
// Variants: see the table `kVariants` below (`--list` prints it).
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "marbm/marbm.hpp"
#include "tool_main.hpp"

namespace {

using marbm::TrainConfig;

struct Variant {
  const char* name;
  const char* description;
  std::function<void(TrainConfig&)> apply;
  bool random_visible_bias = false;  ///< ignore --init-bias data: visible biases ~ N(0, 0.01^2)
};

void mode_defaults(TrainConfig& c) { c.method = marbm::TrainMethod::mode; }

const std::vector<Variant> kVariants = {
    {"cd", "CD-1", [](TrainConfig& c) { c.method = marbm::TrainMethod::cd; }},
    {"pcd", "PCD-1, 100 chains", [](TrainConfig& c) {
       c.method = marbm::TrainMethod::pcd;
       c.persistent_chains = 100;
     }},
    {"cd-random-bias", "CD-1, visible biases drawn like the weights", [](TrainConfig& c) {
       c.method = marbm::TrainMethod::cd;
     }, true},
    {"pcd-random-bias", "PCD-1, 100 chains, visible biases drawn like the weights", [](TrainConfig& c) {
       c.method = marbm::TrainMethod::pcd;
       c.persistent_chains = 100;
     }, true},
    {"pcd-k10", "PCD-10, 100 chains", [](TrainConfig& c) {
       c.method = marbm::TrainMethod::pcd;
       c.persistent_chains = 100;
       c.gibbs_steps = 10;
     }},
    {"mode", "mode-assisted, SPEC.md section 3 (joint target, lr * push, replaces the CD step)", mode_defaults},
    {"mode-constant", "mode-assisted, joint target, lr_mode = lr", [](TrainConfig& c) {
       mode_defaults(c);
       c.mode.push_scaled = false;
     }},
    {"mode-constant-0.1", "mode-assisted, joint target, lr_mode = 0.1 lr", [](TrainConfig& c) {
       mode_defaults(c);
       c.mode.push_scaled = false;
       c.mode.lr_factor = 0.1;
     }},
    {"mode-marginal", "mode-assisted, marginal target, lr * push", [](TrainConfig& c) {
       mode_defaults(c);
       c.mode.target = marbm::ModeTarget::marginal;
     }},
    {"mode-add", "mode-assisted, mode step added to the CD step, lr * push", [](TrainConfig& c) {
       mode_defaults(c);
       c.mode.additive = true;
     }},
    {"mode-add-constant-0.1", "mode step added to the CD step, lr_mode = 0.1 lr", [](TrainConfig& c) {
       mode_defaults(c);
       c.mode.additive = true;
       c.mode.push_scaled = false;
       c.mode.lr_factor = 0.1;
     }},
    {"mode-states-8", "mode-assisted, 8 lowest minima weighted by exp(-E), lr * push", [](TrainConfig& c) {
       mode_defaults(c);
       c.mode.mode_states = 8;
     }},
    {"mode-states-8-constant", "mode-assisted, 8 lowest minima weighted by exp(-E), lr_mode = lr",
     [](TrainConfig& c) {
       mode_defaults(c);
       c.mode.mode_states = 8;
       c.mode.push_scaled = false;
     }},
    {"mode-pcd", "mode-assisted on PCD-1 (100 chains), lr * push", [](TrainConfig& c) {
       mode_defaults(c);
       c.mode.base = marbm::NegativePhase::pcd;
       c.persistent_chains = 100;
     }},
};

double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

const Variant& find_variant(const std::string& name) {
  for (const auto& v : kVariants) {
    if (name == v.name) return v;
  }
  throw marbm::UsageError("unknown variant '" + name + "' (--list shows them)");
}

struct Row {
  std::string variant;
  double lr = 0.0;
  int seed = 0;
  long iteration = 0;
  double train_ll = 0.0;
  double test_ll = 0.0;
  double train_seconds = 0.0;
  long mode_steps = 0;
  double similarity = 0.0;
};

int run(int argc, char** argv) {
  std::string train_spec, test_spec, out_path, variants_text = "cd,pcd,mode", lrs_text = "0.02,0.05,0.1";
  int hidden = 20, batch = 100, seeds = 3;
  bool data_bias = false;
  long iterations = 3000, eval_every = 500;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    auto value = [&]() -> std::string {
      if (a + 1 >= argc) throw marbm::UsageError("" + arg + " needs a value");
      return argv[++a];
    };
    if (arg == "--list") {
      for (const auto& v : kVariants) std::printf("%-24s %s\n", v.name, v.description);
      return 0;
    }
    if (arg == "--train") train_spec = value();
    else if (arg == "--test") test_spec = value();
    else if (arg == "--out") out_path = value();
    else if (arg == "--variants") variants_text = value();
    else if (arg == "--lrs") lrs_text = value();
    else if (arg == "--init-bias") data_bias = value() == "data";
    else if (arg == "--hidden") hidden = std::stoi(value());
    else if (arg == "--batch") batch = std::stoi(value());
    else if (arg == "--seeds") seeds = std::stoi(value());
    else if (arg == "--iters") iterations = std::stol(value());
    else if (arg == "--eval-every") eval_every = std::stol(value());
    else throw marbm::UsageError("unknown option '" + arg + "'");
  }
  if (train_spec.empty() || test_spec.empty() || out_path.empty()) {
    throw marbm::UsageError("--train, --test and --out are required");
  }
  const marbm::Dataset train_data = marbm::load_dataset(train_spec);
  const marbm::Dataset test_data = marbm::load_dataset(test_spec);
  struct Job {
    const Variant* variant;
    double lr;
    int seed;
  };
  std::vector<Job> jobs;
  for (const auto& name : split(variants_text)) {
    const Variant& variant = find_variant(name);
    for (const auto& lr : split(lrs_text)) {
      for (int seed = 1; seed <= seeds; ++seed) jobs.push_back({&variant, std::stod(lr), seed});
    }
  }
  std::vector<std::vector<Row>> rows(jobs.size());
  std::mutex print_mutex;
  int done = 0;
  // Longest runs first would balance better, but the order keeps the output
  // readable and the runs are of similar length.
#pragma omp parallel for schedule(dynamic, 1)
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const Job& job = jobs[j];
    TrainConfig config;
    config.learning_rate = job.lr;
    config.batch_size = batch;
    config.iterations = iterations;
    config.eval_every = eval_every;
    config.seed = static_cast<std::uint64_t>(job.seed);
    config.exact_metrics = false;
    job.variant->apply(config);
    marbm::EngineOptions options;
    options.threads = 1;
    options.quiet = true;
    auto engine = marbm::make_engine(marbm::Backend::cpu, options);
    marbm::Rbm initial = marbm::Rbm::random(train_data.n_cols, hidden, 0.01, config.seed);
    if (data_bias && !job.variant->random_visible_bias) marbm::set_base_rate_visible_bias(initial, train_data);
    const double start = thread_seconds();
    double evaluating = 0.0;
    auto on_metrics = [&](const marbm::TrainMetrics& m) {
      const double eval_start = thread_seconds();
      const marbm::Rbm model = engine->model();
      // Nested inside the runs' parallel loop, the enumeration stays on this thread.
      const double log_z = marbm::log_partition_exact(model);
      Row row;
      row.variant = job.variant->name;
      row.lr = job.lr;
      row.seed = job.seed;
      row.iteration = m.iteration;
      row.train_ll = marbm::mean_log_likelihood(model, train_data, log_z);
      row.test_ll = marbm::mean_log_likelihood(model, test_data, log_z);
      row.train_seconds = eval_start - start - evaluating;
      row.mode_steps = m.mode_steps;
      row.similarity = m.hidden_similarity;
      rows[j].push_back(row);
      evaluating += thread_seconds() - eval_start;
    };
    marbm::train(*engine, train_data, initial, config, on_metrics);
    const std::lock_guard<std::mutex> lock(print_mutex);
    ++done;
    const Row& last = rows[j].back();
    std::fprintf(stderr, "[%d/%zu] %-22s lr %-5g seed %d: held-out LL %.2f, train LL %.2f, %.1f s\n", done,
                 jobs.size(), last.variant.c_str(), last.lr, last.seed, last.test_ll, last.train_ll,
                 last.train_seconds);
  }
  const std::string temporary = out_path + ".tmp";
  {
    std::ofstream out(temporary);
    out << "variant,lr,seed,iteration,train_ll,test_ll,train_seconds,mode_steps,hidden_similarity\n";
    out.precision(10);
    for (const auto& run_rows : rows) {
      for (const auto& r : run_rows) {
        out << r.variant << ',' << r.lr << ',' << r.seed << ',' << r.iteration << ',' << r.train_ll << ','
            << r.test_ll << ',' << r.train_seconds << ',' << r.mode_steps << ',' << r.similarity << '\n';
      }
    }
    if (!out) throw marbm::RuntimeFailure("cannot write '" + temporary + "'");
  }
  if (std::rename(temporary.c_str(), out_path.c_str()) != 0) {
    throw marbm::RuntimeFailure("cannot rename '" + temporary + "' to '" + out_path + "'");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return marbm::bench::run_tool("mnist_compare", run, argc, argv); }
