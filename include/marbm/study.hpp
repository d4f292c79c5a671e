// Exact-KL studies: R independent runs of several training methods on one
// small model, with exact KL curves, a summary and a plot.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "marbm/engine.hpp"
#include "marbm/train.hpp"

namespace marbm {

/// Settings of a study. The defaults are the reference experiment of SPEC.md
/// section 8 (shifting bars 6/3, 6 hidden, batch 6, CD-1, lr 0.2, 20,000
/// updates, 10 runs, cd and mode, KL every 200).
struct StudyConfig {
  std::string data = "shifting-bars:6:3";
  int hidden = 6;
  std::vector<TrainMethod> methods = {TrainMethod::cd, TrainMethod::mode};
  int runs = 10;
  long iterations = 20000;
  int batch_size = 6;
  double learning_rate = 0.2;  ///< the rate of the first update (of every update when constant)
  LearningRateSchedule learning_rate_schedule = LearningRateSchedule::constant;
  double final_learning_rate = 0.0;  ///< the rate of the last update (linear, exponential)
  double momentum = 0.0;
  double weight_decay = 0.0;
  int persistent_chains = 0;         ///< pcd (and mode on pcd) chains; 0: the batch size
  int gibbs_steps = 1;
  long eval_every = 200;
  std::uint64_t seed = 1;  ///< run r starts from Rbm::random(n, m, init_sigma, seed + r) for every method
  double init_sigma = 0.01;
  /// Positive phase with sampled hidden units instead of p(h|v), as the
  /// paper's code does (TrainConfig::sample_positive_hidden).
  bool sample_positive_hidden = false;
  Backend backend = Backend::cpu;
  int threads = 0;         ///< runs in parallel; 0: OMP_NUM_THREADS when set, else all processors
  ModeAssistConfig mode;
  /// Held-out data spec (empty: none): at every evaluation each run also
  /// records the exact mean log-likelihood of these rows, their
  /// reconstruction error and the free-energy gap.
  std::string test_data;
};

/// One run's KL curve.
struct StudyRun {
  TrainMethod method = TrainMethod::cd;
  int run = 0;
  std::vector<TrainMetrics> history;
  /// With test data, at each point of `history` (empty otherwise): the
  /// held-out mean log-likelihood (exact, with that point's log Z), the
  /// held-out reconstruction error and the free-energy gap (held-out minus
  /// training rows; see HeldOutMetrics).
  std::vector<double> test_mean_log_likelihood;
  std::vector<double> test_reconstruction_error;
  std::vector<double> free_energy_gap;
  double seconds = 0.0;
  long diverged_at = -1;  ///< updates done when the parameters were found non-finite; -1: finished
};

/// Final-KL statistics of one method over its runs.
/// Final-KL statistics are over the runs that finished (NaN when none did);
/// `diverged` lists (run, update) of the others.
struct MethodSummary {
  double median_final_kl = 0.0;
  double min_final_kl = 0.0;
  double max_final_kl = 0.0;
  double seconds = 0.0;  ///< summed training time of its runs
  /// With test data: the median over finished runs of the final held-out
  /// mean log-likelihood; NaN otherwise.
  double median_final_test_mean_log_likelihood = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::pair<int, long>> diverged;  ///< (run, diverged_at) of the runs that diverged
};

struct StudyResult {
  StudyConfig config;
  std::vector<StudyRun> runs;                       ///< ordered by method, then run
  std::map<TrainMethod, MethodSummary> summary;
  double seconds = 0.0;                             ///< wall time of the whole study
  int threads = 0;                                  ///< runs trained at once on the cpu backend (0 on cuda)
};

/// Called after each finished run with (runs done, runs in all).
using StudyProgress = std::function<void(int, int)>;

/// Called once for each run as it finishes (serialized: never two at once;
/// from the calling thread or one of the study's worker threads) with the run's curve and its final parameters (for a diverged run, the last
/// parameters found finite). Exceptions it throws stop the study.
using StudyRunFinished = std::function<void(const StudyRun& run, const Rbm& final_model)>;

/// Runs the study. Throws UsageError for bad settings (model not enumerable,
/// unknown data...), DataError for bad data.
StudyResult run_study(const StudyConfig& config, const StudyProgress& progress = {},
                      const StudyRunFinished& on_run_finished = {});

/// The text of DIR/kl.csv for `runs` (any subset of a study's runs, written
/// in the order given): header `method,run,iteration,kl,p_mode,status` (plus
/// `,test_mean_log_likelihood,test_reconstruction_error,free_energy_gap` when
/// `with_test` is set), one row per
/// evaluation (status ok), and for a run that diverged one last row at the
/// update it was found non-finite (kl and p_mode nan, status diverged).
std::string study_csv_text(const std::vector<StudyRun>& runs, bool with_test);
/// Writes study_csv_text of all the study's runs to `path` atomically.
void write_study_csv(const StudyResult& result, const std::string& path);
/// DIR/summary.json: keyed by method name plus "settings".
void write_study_summary(const StudyResult& result, const std::string& path);
/// gnuplot started ahead of a study's plot, waiting for its script on a
/// pipe, so that its start-up (loading its libraries, a good part of a
/// 6 x 6 study's time) overlaps the runs. Hand it to plot_study. Never
/// throws: when it cannot start, plot_study starts gnuplot as usual. An
/// unused one ends its gnuplot on destruction.
class EarlyPlotter {
 public:
  explicit EarlyPlotter(const std::string& png_path);
  ~EarlyPlotter();
  EarlyPlotter(const EarlyPlotter&) = delete;
  EarlyPlotter& operator=(const EarlyPlotter&) = delete;

 private:
  friend bool plot_study(const StudyResult&, const std::string&, const std::string&, std::string*, EarlyPlotter*);
  void stop() noexcept;
  int pid_ = -1;
  int pipe_ = -1;
  std::string folder_, temporary_png_, log_;
};

/// DIR/kl.png through gnuplot: returns false and sets `message` when no
/// plotter is available or it failed (the CSV is still valid). `early`: a
/// gnuplot already started for `png_path`.
bool plot_study(const StudyResult& result, const std::string& csv_path, const std::string& png_path,
                std::string* message, EarlyPlotter* early = nullptr);


class Communicator;

/// Where and what run_study_in_folder writes.
struct StudyOutputOptions {
  std::string folder;                ///< created when missing; its parent must exist
  std::string folder_option = "--out";  ///< how messages name the folder's argument
  bool plot = true;                  ///< kl.png (through gnuplot)
  bool keep_models = false;          ///< each run's final model as folder/models/METHOD-RUN.safetensors
  std::string program = "marbm study";  ///< the kept models' created_by: this, a space and version()
};

/// What run_study_in_folder wrote (on rank 0; nothing on the other ranks).
struct StudyOutputFiles {
  bool written = false;
  std::string csv, summary;
  std::string png;           ///< empty when no plot was asked for or plotting failed
  std::string plot_message;  ///< why plotting failed (no gnuplot, say)
  std::string models;        ///< the kept models' folder; empty unless keep_models
};

/// run_study(config, comm) writing its outputs into a folder, as `marbm
/// study --out DIR` does: kl.csv (rewritten atomically as runs finish),
/// summary.json and kl.png, each replaced atomically; while they are being
/// replaced the folder holds a file INCOMPLETE, and an old kl.png is removed
/// first. One study per folder at a time (RuntimeFailure otherwise). Rank 0
/// writes; every rank saves its own runs' models. Collective. Throws as
/// run_study does, UsageError for a bad folder.
StudyResult run_study_in_folder(const StudyConfig& config, Communicator& comm, const StudyOutputOptions& options,
                                StudyOutputFiles* files = nullptr, const StudyProgress& progress = {});

}  // namespace marbm
