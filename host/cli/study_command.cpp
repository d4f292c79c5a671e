// `marbm study`: R independent runs of several training methods on a small
// model with exact KL curves; writes DIR/kl.csv, DIR/summary.json and
// DIR/kl.png and prints a table. With only --out it runs the reference
// experiment of SPEC.md section 8.
#include <cstdint>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "detail/files.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/model_io.hpp"
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

// Present in a study's folder only while (or because) its outputs were being
// replaced.
constexpr const char* incomplete_marker = "INCOMPLETE";

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

// Creates DIR when missing; its parent must exist so that a typo does not
// silently create a tree of folders.
void prepare_output_folder(const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code error;
  // "DIR/" names DIR: without this its parent would be taken as DIR itself.
  fs::path dir(out);
  while (!dir.has_filename() && dir.has_relative_path()) dir = dir.parent_path();
  if (fs::exists(dir, error)) {
    MARBM_EXPECTS(fs::is_directory(dir, error), UsageError, "--out: '" + out + "' exists and is not a folder");
    return;
  }
  fs::path parent = dir.parent_path();
  if (parent.empty()) parent = ".";
  MARBM_EXPECTS(fs::is_directory(parent, error), UsageError,
                "--out: the parent folder of '" + out + "' does not exist");
  fs::create_directory(dir, error);
  MARBM_EXPECTS(!error, UsageError, "--out: cannot create the folder '" + out + "': " + error.message());
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

// Rewrites DIR/kl.csv (atomically: a reader sees the old file or the new one)
// with the runs finished so far, in method and run order. A rewrite costs
// time in proportion to the rows, so rewrites are spaced: at least 0.2 s and
// four times the last rewrite's duration apart; the first finished run is
// always written, and the caller writes the complete file at the end.
class PartialCsv {
 public:
  PartialCsv(std::string path, const StudyConfig& config) : path_(std::move(path)), config_(config) {}

  void add(const StudyRun& run) {
    runs_.push_back(run);
    const auto now = std::chrono::steady_clock::now();
    if (written_ && now - last_ < std::max(std::chrono::duration<double>(0.2), 4.0 * last_duration_)) return;
    std::vector<StudyRun> ordered = runs_;
    auto index = [&](const StudyRun& r) {
      const auto at = std::find(config_.methods.begin(), config_.methods.end(), r.method) - config_.methods.begin();
      return std::pair<long, int>(at, r.run);
    };
    std::sort(ordered.begin(), ordered.end(), [&](const StudyRun& a, const StudyRun& b) { return index(a) < index(b); });
    detail::write_file_atomically(path_, study_csv_text(ordered, !config_.test_data.empty()), "study CSV");
    written_ = true;
    last_ = std::chrono::steady_clock::now();
    last_duration_ = last_ - now;
  }

 private:
  std::string path_;
  const StudyConfig& config_;
  std::vector<StudyRun> runs_;
  bool written_ = false;
  std::chrono::steady_clock::time_point last_;
  std::chrono::duration<double> last_duration_{0.0};
};

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
  if (writer) prepare_output_folder(options.out);
  // One writer per folder: a second study into it is refused at once.
  std::optional<detail::FolderLock> lock;
  if (writer) lock.emplace(options.out, "marbm study");
  if (writer) detail::remove_stale_temporaries(options.out);

  // kl.csv is rewritten as runs finish: from the start until the last output
  // is complete, a marker says the outputs are partial or from different
  // studies, and the old plot, which cannot match the new curves, is
  // removed first. Under mpiexec rank 0 writes, and its partial kl.csv has
  // its own runs until the others' arrive at the end; every rank saves the
  // models of its own runs (--keep-models).
  const std::filesystem::path dir(options.out);
  const std::string csv = (dir / "kl.csv").string();
  const std::string png = (dir / "kl.png").string();
  const std::string marker = (dir / incomplete_marker).string();
  const std::filesystem::path models = dir / "models";
  if (options.keep_models && writer) {
    std::error_code error;
    std::filesystem::create_directory(models, error);
    MARBM_EXPECTS(!error, RuntimeFailure, "--keep-models: cannot create the folder '" + models.string() + "': " +
                                              error.message());
  }
  std::error_code ignored;
  if (writer) {
    detail::write_file_atomically(marker,
                                  "A study is writing kl.csv, summary.json and kl.png here, or did not finish;\n"
                                  "they may be partial or come from different studies.\n",
                                  "marker");
    std::filesystem::remove(png, ignored);
  }
  // The models folder exists before any rank saves into it.
  comm.barrier();

  std::optional<PartialCsv> partial;
  if (writer) partial.emplace(csv, config);
  // gnuplot starts now, so that its start-up overlaps the runs.
  std::optional<EarlyPlotter> early;
  if (writer && !options.no_plot) early.emplace(png);
  ProgressLine progress("study", static_cast<long>(config.methods.size()) * config.runs);
  auto on_run = [&](const StudyRun& run, const Rbm& model) {
    if (partial) partial->add(run);
    if (!options.keep_models) return;
    Metadata metadata;
    metadata["created_by"] = "marbm study " + version();
    metadata["data"] = config.data;
    metadata["method"] = std::string(to_string(run.method));
    metadata["run"] = std::to_string(run.run);
    metadata["seed"] = std::to_string(config.seed + static_cast<std::uint64_t>(run.run));
    metadata["learning_rate"] = format_number(config.learning_rate, 17);
    metadata["iterations"] = std::to_string(run.diverged_at >= 0 && !run.history.empty()
                                                ? run.history.back().iteration
                                                : config.iterations);
    if (run.diverged_at >= 0) metadata["diverged_at"] = std::to_string(run.diverged_at);
    save_rbm((models / (std::string(to_string(run.method)) + "-" + std::to_string(run.run) + ".safetensors")).string(),
             model, metadata);
  };
  const StudyResult result = run_study(
      config, comm,
      [&](int done, int) {
        if (writer && progress.enabled()) progress.update(done, "runs");
      },
      on_run);
  progress.finish();
  if (!writer) return 0;

  write_study_csv(result, csv);
  write_study_summary(result, (dir / "summary.json").string());
  bool plotted = false;
  std::string message;
  if (!options.no_plot) plotted = plot_study(result, csv, png, &message, early ? &*early : nullptr);
  std::filesystem::remove(marker, ignored);
  print_table(result);
  if (!options.no_plot && !plotted) print_note(message);
  std::cout << "wrote " << csv << ", " << (dir / "summary.json").string() << (plotted ? ", " + png : std::string())
            << (options.keep_models ? ", " + models.string() + "/METHOD-RUN.safetensors" : std::string()) << '\n';
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
