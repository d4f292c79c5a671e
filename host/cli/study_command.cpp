// `marbm study`: R independent runs of several training methods on a small
// model with exact KL curves; writes DIR/kl.csv, DIR/summary.json and
// DIR/kl.png and prints a table. With only --out it runs the reference
// experiment of SPEC.md section 8.
#include <cstdint>
#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/study.hpp"
#include "marbm/train.hpp"

namespace marbm::cli {
namespace {

struct StudyOptions {
  StudyConfig config;  // the defaults are the reference experiment
  std::string methods = "cd,mode";
  std::string backend = "cpu";
  std::string out;
  ModeAssistOptions mode_words;  // the numbers go straight into config.mode
  LearningRateScheduleOptions schedule;
  bool no_plot = false;
  bool keep_models = false;
};

std::vector<TrainMethod> parse_methods(const std::string& text) {
  std::vector<TrainMethod> methods;
  // getline drops an empty last field: "cd," must be refused like ",cd".
  MARBM_EXPECTS(text.empty() || text.back() != ',', UsageError, "--methods: empty method name in '" + text + "'");
  std::stringstream stream(text);
  std::string word;
  while (std::getline(stream, word, ',')) {
    MARBM_EXPECTS(!word.empty(), UsageError, "--methods: empty method name in '" + text + "'");
    MARBM_EXPECTS(word == "cd" || word == "pcd" || word == "mode" || word == "exact", UsageError,
                  "--methods: '" + word + "' is not one of cd|pcd|mode|exact");
    const TrainMethod method = parse_train_method(word);
    for (TrainMethod seen : methods) {
      MARBM_EXPECTS(seen != method, UsageError, "--methods: '" + word + "' given twice");
    }
    methods.push_back(method);
  }
  MARBM_EXPECTS(!methods.empty(), UsageError, "--methods: no method given");
  return methods;
}

std::string fixed(double value, int digits) {
  if (value != value) return "nan";
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

void print_table(const StudyResult& result) {
  const bool with_test = !result.config.test_data.empty();
  std::cout << std::left << std::setw(8) << "method" << std::right << std::setw(14) << "median KL" << std::setw(12)
            << "min KL" << std::setw(12) << "max KL" << std::setw(12) << "time (s)";
  if (with_test) std::cout << std::setw(20) << "median held-out LL";
  std::cout << '\n';
  for (TrainMethod method : result.config.methods) {
    const MethodSummary& s = result.summary.at(method);
    std::cout << std::left << std::setw(8) << to_string(method) << std::right << std::setw(14)
              << fixed(s.median_final_kl, 5) << std::setw(12) << fixed(s.min_final_kl, 5) << std::setw(12)
              << fixed(s.max_final_kl, 5) << std::setw(12) << fixed(s.seconds, 2);
    if (with_test) std::cout << std::setw(20) << fixed(s.median_final_test_mean_log_likelihood, 5);
    std::cout << '\n';
  }
  for (TrainMethod method : result.config.methods) {
    const MethodSummary& s = result.summary.at(method);
    if (s.diverged.empty()) continue;
    std::cout << to_string(method) << ": " << s.diverged.size() << " of " << result.config.runs
              << " runs diverged (KL statistics are over the others):";
    for (const auto& [run, at] : s.diverged) std::cout << " run " << run << " at update " << at << ';';
    std::cout << '\n';
  }
  std::cout << "final KL after " << result.config.iterations << " updates over " << result.config.runs
            << " runs; time = summed training time of the method's runs; wall time " << fixed(result.seconds, 2)
            << " s\n";
}

int run_study_command(StudyOptions& options, const CLI::App& app) {
  StudyConfig& config = options.config;
  config.methods = parse_methods(options.methods);
  config.backend = parse_backend_option(options.backend);
  options.schedule.apply_to(app, config.learning_rate_schedule, config.final_learning_rate);
  const bool uses_chains = std::find(config.methods.begin(), config.methods.end(), TrainMethod::pcd) !=
                               config.methods.end() ||
                           (std::find(config.methods.begin(), config.methods.end(), TrainMethod::mode) !=
                                config.methods.end() &&
                            options.mode_words.base == "pcd");
  if (app.count("--chains") > 0 && !uses_chains) {
    throw UsageError("--chains applies only to the pcd method or mode with --base pcd");
  }
  if (config.backend == Backend::automatic && cuda_devices().empty()) {
    print_note("no usable CUDA device; the study runs on the cpu");
  }
  options.mode_words.apply_to(config.mode);
  // Under mpiexec the runs are shared among the ranks; rank 0 writes.
  Communicator& comm = *world_communicator();
  const bool writer = comm.rank() == 0;
  StudyOutputOptions output;
  output.folder = options.out;
  output.plot = !options.no_plot;
  output.keep_models = options.keep_models;
  ProgressLine progress("study", static_cast<long>(config.methods.size()) * config.runs);
  StudyOutputFiles files;
  const StudyResult result = run_study_in_folder(config, comm, output, &files, [&](int done, int) {
    if (writer && progress.enabled()) progress.update(done, "runs");
  });
  progress.finish();
  if (!files.written) return 0;

  print_table(result);
  if (!options.no_plot && files.png.empty()) print_note(files.plot_message);
  std::cout << "wrote " << files.csv << ", " << files.summary << (files.png.empty() ? std::string() : ", " + files.png)
            << (options.keep_models ? ", " + files.models + "/METHOD-RUN.safetensors" : std::string()) << '\n';
  return 0;
}

Runner setup_study(CLI::App& app) {
  auto options = std::make_shared<StudyOptions>();
  StudyOptions& o = *options;
  StudyConfig& c = o.config;
  app.add_option("--data", c.data, "data spec: shifting-bars:N:L, bars-and-stripes:N, csv:PATH, ...")
      ->capture_default_str();
  app.add_option("--hidden", c.hidden, "hidden units M")->check(integer_at_least(1))->capture_default_str();
  app.add_option("--methods", o.methods, "comma-separated methods: cd, pcd, mode, exact")->capture_default_str();
  app.add_option("--runs", c.runs, "independent runs per method")->check(integer_at_least(1))->capture_default_str();
  app.add_option("--iters", c.iterations, "updates per run")->check(integer_at_least(1))->capture_default_str();
  app.add_option("--batch", c.batch_size, "minibatch size (clipped to the data rows)")
      ->check(integer_at_least(1))
      ->capture_default_str();
  app.add_option("--lr", c.learning_rate, "learning rate (of the first update with --lr-schedule)")
      ->check(positive_number())
      ->capture_default_str();
  o.schedule.add_to(app);
  app.add_option("--momentum", c.momentum, "momentum in [0, 1)")
      ->check(number_in_half_open(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--weight-decay", c.weight_decay, "L2 weight decay on W")
      ->check(non_negative_number())
      ->capture_default_str();
  app.add_option("--chains", c.persistent_chains, "persistent chains for pcd (0: the batch size)")
      ->check(integer_at_least(0));
  app.add_option("--test-data", c.test_data,
                 "held-out data spec: exact held-out mean log-likelihood at every evaluation (kl.csv column "
                 "test_mean_log_likelihood)");
  app.add_flag("--keep-models", o.keep_models, "save each run's final model as DIR/models/METHOD-RUN.safetensors");
  app.add_option("--k", c.gibbs_steps, "Gibbs steps of CD-k / PCD-k")->check(integer_at_least(1))->capture_default_str();
  app.add_option("--eval-every", c.eval_every, "exact KL every N updates")
      ->check(integer_at_least(1))
      ->capture_default_str();
  app.add_option("--seed", c.seed, "run r starts from the parameters of seed + r, the same for every method")
      ->check(integer_at_least(0))
      ->capture_default_str();
  app.add_option("--init-sigma", c.init_sigma, "initial parameters ~ N(0, sigma^2)")
      ->check(non_negative_number())
      ->capture_default_str();
  add_backend_option(app, o.backend);
  add_threads_option(app, c.threads)->description("runs in parallel on the cpu backend (0: OMP_NUM_THREADS when set, else all processors)");
  app.add_option("--out", o.out, "output folder (created if missing; its parent must exist)")->required();
  app.add_flag("--no-plot", o.no_plot, "skip kl.png");
  app.add_flag("--sample-positive-hidden", c.sample_positive_hidden,
               "positive phase with sampled hidden units instead of p(h|v) (as the paper's code)");
  o.mode_words.add_to(app, c.mode);
  return [options, &app] { return run_study_command(*options, app); };
}

const bool registered = register_command(
    {"study", "exact-KL study: R runs of cd/pcd/mode/exact from the same initial parameters", 30, setup_study});

}  // namespace
}  // namespace marbm::cli
