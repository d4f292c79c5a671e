// What every subcommand of the CLI shares: option validators that refuse NaN
// and out-of-range values with one line, backend parsing and engine creation,
// data and model loading with errors that name the input, JSON output on
// stdout and a progress line on stderr that appears only on a terminal.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/mode.hpp"
#include "marbm/model_io.hpp"
#include "marbm/rbm.hpp"
#include "marbm/train.hpp"

namespace marbm::cli {

// ------------------------------------------------------------------ validators
// Each returns a CLI11 validator; a failing value gives a CLI::ValidationError
// that main() prints as one line naming the option (exit 2). Numbers must be
// finite: strtod accepts "nan" and "inf", these do not.

/// Any finite real number.
CLI::Validator finite_number();
/// A finite number > 0.
CLI::Validator positive_number();
/// A finite number >= 0.
CLI::Validator non_negative_number();
/// A finite number in [low, high] (closed interval).
CLI::Validator number_in(double low, double high);
/// A finite number in [low, high) (momentum-like values).
CLI::Validator number_in_half_open(double low, double high);
/// An integer >= minimum (rejects fractions, NaN and overflow).
CLI::Validator integer_at_least(long long minimum);
/// A path a file can be written to: its folder exists and it is not a folder.
CLI::Validator writable_file_path();
/// One of the given words, e.g. one_of({"cd", "pcd"}).
CLI::Validator one_of(std::initializer_list<std::string_view> words);

// ------------------------------------------------------------------ backends

/// Adds `--backend cpu|cuda|auto` bound to `backend` (default as given).
CLI::Option* add_backend_option(CLI::App& app, std::string& backend);

/// Parses a backend name (UsageError naming --backend otherwise).
Backend parse_backend_option(std::string_view text);

/// The largest --threads accepted at all; beyond the processors available,
/// make_engine_for uses the processors (with a note).
inline constexpr int max_threads_option = 4096;

/// The one rule for CPU threads: every command takes `--threads N`; 0 (the
/// default) is OMP_NUM_THREADS when set, else every processor. Adds the
/// option bound to `threads`.
CLI::Option* add_threads_option(CLI::App& app, int& threads);

/// The thread count `--threads` asks for, checked: above max_threads_option
/// refused, above the processors available the processors (with a note
/// unless `quiet`); 0 stays 0 (the runtime default).
int checked_threads(int threads, bool quiet);

/// checked_threads, then made the process's OpenMP default (for commands
/// whose library calls take no thread count); 0 changes nothing.
void use_threads(int threads, bool quiet);

/// Creates the engine a command asked for. `cuda` without a usable device (or
/// without the CUDA engine compiled in) throws CudaError with one line saying
/// so; `auto` falls back to cpu with a one-line notice unless `quiet`.
std::unique_ptr<Engine> make_engine_for(std::string_view backend, int threads, bool quiet);

// ------------------------------------------------------------------ mode-assisted training

/// The options of mode-assisted training that `train` and `study` share:
/// --base, --p-max, --alpha, --beta, --mode-solver, --mode-lr-scale,
/// --mode-target, --mode-replicas and --mode-steps. Numbers are bound to the
/// ModeAssistConfig given to add_to(); the words are kept here (they also go
/// into model metadata) and apply_to() turns them into the config's fields.
struct ModeAssistOptions {
  std::string base = "cd";
  std::string solver = "auto";
  std::string lr_scale = "push";
  std::string target = "joint";
  std::string schedule = "replace";

  /// Adds the options to `app`, with `mode`'s current values as defaults.
  void add_to(CLI::App& app, ModeAssistConfig& mode);
  /// Sets `mode`'s base, solver (nullopt for auto), learning-rate scaling
  /// and target from the words.
  void apply_to(ModeAssistConfig& mode) const;
  /// The option names, e.g. for refusing them outside mode training.
  static const std::vector<std::string>& names();
};

// ------------------------------------------------------------------ learning-rate schedule

/// `--lr-schedule constant|linear|exponential` and `--lr-final RATE`, shared
/// by `train` and `study`.
struct LearningRateScheduleOptions {
  std::string schedule = "constant";
  double final_rate = 0.0;

  /// Adds the two options to `app`.
  void add_to(CLI::App& app);
  /// Sets the config's schedule and final rate. UsageError when a linear or
  /// exponential schedule has no --lr-final, when --lr-final comes with the
  /// constant schedule, or when an exponential one's final rate is 0.
  void apply_to(const CLI::App& app, LearningRateSchedule& schedule_out, double& final_out) const;
};

// ------------------------------------------------------------------ inputs

/// load_dataset(spec), refusing an empty data set. Errors from the loader
/// already name the spec or file; UsageError for a malformed spec (exit 2),
/// DataError for bad contents (exit 1).
Dataset load_data_option(const std::string& spec);

/// load_rbm(path) with `metadata`; DataError naming the file on any problem.
Rbm load_model_option(const std::string& path, Metadata* metadata = nullptr);

// ------------------------------------------------------------------ output

/// Whether stderr is a terminal (progress lines go there only then).
bool stderr_is_terminal();

/// A finite number as JSON, NaN or infinity as null (JSON has no NaN).
nlohmann::json json_number(double value);

/// Prints `object` on stdout as one line followed by a newline, then flushes.
void print_json(const nlohmann::json& object);

/// A number for humans: up to `digits` significant digits, "nan" for NaN.
std::string format_number(double value, int digits = 6);

/// `text` with every line break replaced by a space, so that an error message
/// is exactly one line.
std::string one_line(std::string_view text);

/// Prints "marbm: error: <message>" as one line on stderr and returns
/// `status`. Never throws.
int print_error(std::string_view message, int status) noexcept;

/// Prints "marbm: note: <message>" as one line on stderr. Never throws.
void print_note(std::string_view message) noexcept;
/// "marbm: warning: MESSAGE" on stderr, one line.
void print_warning(std::string_view message) noexcept;

/// A single self-overwriting status line on stderr, shown only when stderr
/// is a terminal and at most about ten times a second; finish() (or the
/// destructor) erases it so that later output starts on a clean line.
class ProgressLine {
 public:
  /// `label` starts the line; `total` is the amount of work (0: unknown).
  ProgressLine(std::string label, long total);
  ~ProgressLine();
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  /// Reports `done` units of work and an optional note (e.g. the last KL).
  void update(long done, std::string_view note = {});
  /// Erases the line before other stderr output (it comes back on update()).
  void clear();
  /// Erases the line for good.
  void finish();

  bool enabled() const { return enabled_; }

 private:
  std::string label_;
  long total_ = 0;
  bool enabled_ = false;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace marbm::cli
