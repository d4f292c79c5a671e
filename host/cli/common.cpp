// Shared pieces of the CLI subcommands (see common.hpp).
#include "cli/common.hpp"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "detail/files.hpp"
#include "marbm/error.hpp"
#include "marbm/train_record.hpp"

namespace marbm::cli {

namespace {

// Parses the whole of `text` as a finite double; false otherwise (strtod
// alone would accept "nan", "inf", "1e999" -> HUGE_VAL and trailing junk).
// Only decimal notation: no surrounding spaces (a quoting slip) and no hex
// floats ("0x1p3"), which strtod would take.
bool plain_number_text(const std::string& text) {
  if (text.empty()) return false;
  for (const char c : text) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return false;
  }
  return true;
}

bool parse_finite(const std::string& text, double& value) {
  if (!plain_number_text(text)) return false;
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  value = std::strtod(begin, &end);
  if (end == begin || *end != '\0' || errno == ERANGE) return false;
  return std::isfinite(value);
}

// Processors this process may run on (its affinity mask), at least 1.
int available_processors() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
}

std::string not_a_number(const std::string& text) { return "'" + text + "' is not a finite decimal number"; }

}  // namespace

CLI::Validator finite_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0;
        return parse_finite(text, value) ? std::string() : not_a_number(text);
      },
      "FINITE", "finite");
}

CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0;
        if (!parse_finite(text, value)) return not_a_number(text);
        return value > 0 ? std::string() : "'" + text + "' must be greater than 0";
      },
      "POSITIVE", "positive");
}

CLI::Validator non_negative_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0;
        if (!parse_finite(text, value)) return not_a_number(text);
        return value >= 0 ? std::string() : "'" + text + "' must not be negative";
      },
      "NONNEGATIVE", "non_negative");
}

CLI::Validator number_in(double low, double high) {
  std::ostringstream range;
  range << '[' << low << ", " << high << ']';
  return CLI::Validator(
      [low, high, range = range.str()](std::string& text) -> std::string {
        double value = 0;
        if (!parse_finite(text, value)) return not_a_number(text);
        return (value >= low && value <= high) ? std::string() : "'" + text + "' is outside " + range;
      },
      "in " + range.str(), "range");
}

CLI::Validator number_in_half_open(double low, double high) {
  std::ostringstream range;
  range << '[' << low << ", " << high << ')';
  return CLI::Validator(
      [low, high, range = range.str()](std::string& text) -> std::string {
        double value = 0;
        if (!parse_finite(text, value)) return not_a_number(text);
        return (value >= low && value < high) ? std::string() : "'" + text + "' is outside " + range;
      },
      "in " + range.str(), "range");
}

CLI::Validator integer_at_least(long long minimum) {
  return CLI::Validator(
      [minimum](std::string& text) -> std::string {
        const char* begin = text.c_str();
        char* end = nullptr;
        errno = 0;
        const long long value = std::strtoll(begin, &end, 10);
        // Digits with an optional sign: strtoll alone would also skip leading
        // spaces. A leading '+' is accepted, as in data specs.
        const bool digits = !text.empty() && text.find_first_not_of("+-0123456789") == std::string::npos;
        if (!digits || end == begin || *end != '\0') return "'" + text + "' is not an integer";
        if (errno == ERANGE) return "'" + text + "' is out of range";
        if (value < minimum) return "'" + text + "' must be at least " + std::to_string(minimum);
        return {};
      },
      "INT>=" + std::to_string(minimum), "integer_at_least");
}

CLI::Validator writable_file_path() {
  return CLI::Validator(
      [](std::string& text) -> std::string { return output_file_problem(text); },
      "FILE", "writable_file");
}

CLI::Validator one_of(std::initializer_list<std::string_view> words) {
  std::vector<std::string> list(words.begin(), words.end());
  std::string joined;
  for (std::size_t i = 0; i < list.size(); ++i) joined += (i ? "|" : "") + list[i];
  return CLI::Validator(
      [list, joined](std::string& text) -> std::string {
        for (const auto& word : list) {
          if (text == word) return {};
        }
        return "'" + text + "' is not one of " + joined;
      },
      joined, "one_of");
}

CLI::Option* add_backend_option(CLI::App& app, std::string& backend) {
  return app
      .add_option("--backend", backend, "where the work runs: cpu, cuda, or auto (cuda when a device is usable)")
      ->check(one_of({"cpu", "cuda", "auto"}))
      ->capture_default_str();
}

Backend parse_backend_option(std::string_view text) {
  if (text == "cpu") return Backend::cpu;
  if (text == "cuda") return Backend::cuda;
  if (text == "auto") return Backend::automatic;
  throw UsageError("--backend: '" + std::string(text) + "' is not one of cpu|cuda|auto");
}

CLI::Option* add_threads_option(CLI::App& app, int& threads) {
  return app.add_option("--threads", threads, "CPU threads (0: OMP_NUM_THREADS when set, else all processors)")
      ->check(integer_at_least(0))
      ->capture_default_str();
}

int checked_threads(int threads, bool quiet) {
  // More threads than processors only costs memory (OpenBLAS reserves a
  // buffer per thread) and can hang under an address-space limit.
  const int processors = available_processors();
  MARBM_EXPECTS(threads <= max_threads_option, UsageError,
                "--threads " + std::to_string(threads) + " is more than " + std::to_string(max_threads_option));
  if (threads > processors) {
    if (!quiet) {
      print_note("--threads " + std::to_string(threads) + ": " + std::to_string(processors) +
                 " processors are available; using " + std::to_string(processors));
    }
    threads = processors;
  }
  return threads;
}

void use_threads(int threads, bool quiet) {
  const int checked = checked_threads(threads, quiet);
  if (checked > 0) omp_set_num_threads(checked);
}

std::unique_ptr<Engine> make_engine_for(std::string_view backend_text, int threads, bool quiet) {
  const Backend backend = parse_backend_option(backend_text);
  if (backend == Backend::cuda) {
    if (!cuda_compiled()) {
      throw CudaError("--backend cuda: this build of marbm has no CUDA engine (configure with MARBM_CUDA=ON)");
    }
    if (cuda_devices().empty()) {
      throw CudaError("--backend cuda: no usable CUDA device (no device, or the driver is missing)");
    }
  }
  EngineOptions options;
  options.threads = checked_threads(threads, quiet);
  options.quiet = quiet;
  return make_engine(backend, options);
}

void ModeAssistOptions::add_to(CLI::App& app, ModeAssistConfig& mode) {
  app.add_option("--base", base, "mode: negative phase of the other steps, cd or pcd")
      ->check(one_of({"cd", "pcd"}))
      ->capture_default_str();
  app.add_option("--p-max", mode.p_max, "mode: P_mode = p_max * sigmoid(alpha t/T + beta)")
      ->check(number_in(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--alpha", mode.alpha, "mode: schedule slope")->check(finite_number())->capture_default_str();
  app.add_option("--beta", mode.beta, "mode: schedule offset")->check(finite_number())->capture_default_str();
  app.add_option("--mode-solver", solver, "mode: exhaustive, sb, sa, local or auto (by estimated cost)")
      ->check(one_of({"exhaustive", "sb", "sa", "local", "auto"}))
      ->capture_default_str();
  app.add_option("--mode-lr-scale", lr_scale, "mode: learning rate of mode steps, lr * push or lr")
      ->check(one_of({"push", "constant"}))
      ->capture_default_str();
  app.add_option("--mode-target", target,
                 "mode: state a mode step pushes down, joint (argmin E(v,h)) or marginal (argmax p(v))")
      ->check(one_of({"joint", "marginal"}))
      ->capture_default_str();
  app.add_option("--mode-step", schedule,
                 "mode: a mode step replaces that update's cd/pcd step (replace) or comes after it (add)")
      ->check(one_of({"replace", "add"}))
      ->capture_default_str();
  app.add_option("--mode-lr-factor", mode.lr_factor, "mode: multiplies the mode step's learning rate")
      ->check(positive_number())
      ->capture_default_str();
  app.add_option("--mode-states", mode.mode_states,
                 "mode: low-energy states a mode step averages, weighted by exp(-E) (1: the mode alone)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--mode-replicas", mode.search.replicas, "mode: solver replicas (0: by size)")
      ->check(integer_at_least(0));
  app.add_option("--mode-steps", mode.search.steps, "mode: solver steps (0: by size)")->check(integer_at_least(0));
}

void ModeAssistOptions::apply_to(ModeAssistConfig& mode) const {
  mode.base = base == "pcd" ? NegativePhase::pcd : NegativePhase::cd;
  if (solver == "auto") {
    mode.solver.reset();
  } else {
    mode.solver = parse_mode_solver(solver);
  }
  mode.push_scaled = lr_scale == "push";
  mode.target = target == "marginal" ? ModeTarget::marginal : ModeTarget::joint;
  mode.additive = schedule == "add";
}

void LearningRateScheduleOptions::add_to(CLI::App& app) {
  app.add_option("--lr-schedule", schedule,
                 "learning rate over the run: constant, linear or exponential (from --lr at the first update to "
                 "--lr-final at the last)")
      ->check(one_of({"constant", "linear", "exponential"}))
      ->capture_default_str();
  app.add_option("--lr-final", final_rate, "learning rate of the last update (linear: >= 0, exponential: > 0)")
      ->check(non_negative_number());
}

void LearningRateScheduleOptions::apply_to(const CLI::App& app, LearningRateSchedule& schedule_out,
                                           double& final_out) const {
  schedule_out = parse_learning_rate_schedule(schedule);
  const bool given = app.count("--lr-final") > 0;
  if (schedule_out == LearningRateSchedule::constant) {
    if (given) throw UsageError("--lr-final applies only to --lr-schedule linear or exponential");
    final_out = 0.0;
    return;
  }
  if (!given) throw UsageError("--lr-schedule " + schedule + " needs --lr-final RATE (the rate of the last update)");
  if (schedule_out == LearningRateSchedule::exponential && !(final_rate > 0.0)) {
    throw UsageError("--lr-final must be > 0 with --lr-schedule exponential (got " + format_number(final_rate) + ")");
  }
  final_out = final_rate;
}

const std::vector<std::string>& ModeAssistOptions::names() {
  static const std::vector<std::string> list = {"--base",          "--p-max",       "--alpha",
                                                "--beta",          "--mode-solver", "--mode-lr-scale",
                                                "--mode-replicas", "--mode-steps",  "--mode-target",
                                                "--mode-step",     "--mode-lr-factor", "--mode-states"};
  return list;
}

Dataset load_data_option(const std::string& spec) {
  Dataset data = load_dataset(spec);
  if (data.n_rows <= 0 || data.n_cols <= 0) {
    throw DataError("--data " + spec + ": the data set is empty");
  }
  return data;
}

Rbm load_model_option(const std::string& path, Metadata* metadata) {
  // load_rbm names the file in its errors and lets only marbm::Error out.
  return load_rbm(path, metadata);
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

nlohmann::json json_number(double value) {
  if (!std::isfinite(value)) return nullptr;
  return value;
}

void print_json(const nlohmann::json& object) {
  // Strings can quote file names that are not UTF-8; such bytes print as
  // U+FFFD instead of failing the command after its work is done.
  std::cout << object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

std::string format_number(double value, int digits) {
  if (std::isnan(value)) return "nan";
  std::ostringstream out;
  out.precision(digits);
  out << value;
  return out.str();
}

std::string one_line(std::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

int print_error(std::string_view message, int status) noexcept {
  try {
    // Messages quote file names and contents: raw bytes become \xNN.
    std::cerr << "marbm: error: " << detail::printable(one_line(message)) << '\n' << std::flush;
  } catch (...) {
    std::fputs("marbm: error: (message unavailable)\n", stderr);
  }
  return status;
}

void print_note(std::string_view message) noexcept {
  try {
    std::cerr << "marbm: note: " << detail::printable(one_line(message)) << '\n' << std::flush;
  } catch (...) {
  }
}

void print_warning(std::string_view message) noexcept {
  try {
    std::cerr << "marbm: warning: " << one_line(message) << '\n' << std::flush;
  } catch (...) {
  }
}

ProgressLine::ProgressLine(std::string label, long total)
    : label_(std::move(label)),
      total_(total),
      enabled_(stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()),
      last_() {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::update(long done, std::string_view note) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const bool last = total_ > 0 && done >= total_;
  if (shown_ && !last && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  std::ostringstream line;
  line << label_ << ' ' << done;
  if (total_ > 0) {
    line << '/' << total_ << " (" << static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total_))
         << "%)";
  }
  line << ' ' << format_number(seconds, 3) << " s";
  if (total_ > 0 && done > 0 && done < total_) {
    const double remaining = seconds * static_cast<double>(total_ - done) / static_cast<double>(done);
    line << ", ~" << format_number(remaining, 2) << " s left";
  }
  if (!note.empty()) line << "  " << note;
  // \r back to column 0, \033[K erases what a longer earlier line left.
  std::cerr << '\r' << line.str() << "\033[K" << std::flush;
  shown_ = true;
}

void ProgressLine::clear() {
  if (enabled_ && shown_) {
    std::cerr << "\r\033[K" << std::flush;
    shown_ = false;
  }
}

void ProgressLine::finish() {
  clear();
  enabled_ = false;
}

}  // namespace marbm::cli
