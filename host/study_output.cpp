// A study written into a folder (study.hpp, run_study_in_folder): kl.csv as
// runs finish, then summary.json and kl.png, with a marker while the outputs
// are partial. `marbm study --out DIR` and the Python study(out=DIR) both
// write through here.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "detail/files.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/error.hpp"
#include "marbm/model_io.hpp"
#include "marbm/study.hpp"

namespace marbm {
namespace {

// Present in a study's folder only while (or because) its outputs were being
// replaced.
constexpr const char* incomplete_marker = "INCOMPLETE";

// Creates the folder when missing; its parent must exist so that a typo does
// not silently create a tree of folders. `option` names the argument in messages.
void prepare_output_folder(const std::string& out, const std::string& option) {
  namespace fs = std::filesystem;
  std::error_code error;
  // "DIR/" names DIR: without this its parent would be taken as DIR itself.
  fs::path dir(out);
  while (!dir.has_filename() && dir.has_relative_path()) dir = dir.parent_path();
  if (fs::exists(dir, error)) {
    MARBM_EXPECTS(fs::is_directory(dir, error), UsageError, option + ": '" + out + "' exists and is not a folder");
    return;
  }
  fs::path parent = dir.parent_path();
  if (parent.empty()) parent = ".";
  MARBM_EXPECTS(fs::is_directory(parent, error), UsageError,
                option + ": the parent folder of '" + out + "' does not exist");
  fs::create_directory(dir, error);
  MARBM_EXPECTS(!error, UsageError, option + ": cannot create the folder '" + out + "': " + error.message());
}

std::string exact_text(double value) {
  std::ostringstream out;
  out.precision(17);
  out << value;
  return out.str();
}

// Rewrites kl.csv (atomically: a reader sees the old file or the new one)
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

}  // namespace

StudyResult run_study_in_folder(const StudyConfig& config, Communicator& comm, const StudyOutputOptions& options,
                                StudyOutputFiles* files, const StudyProgress& progress) {
  MARBM_EXPECTS(!options.folder.empty(), UsageError, options.folder_option + ": no output folder given");
  const bool writer = comm.rank() == 0;
  if (writer) prepare_output_folder(options.folder, options.folder_option);
  // One writer per folder: a second study into it is refused at once.
  std::optional<detail::FolderLock> lock;
  if (writer) lock.emplace(options.folder, "marbm study");
  if (writer) detail::remove_stale_temporaries(options.folder);

  // kl.csv is rewritten as runs finish: from the start until the last output
  // is complete, a marker says the outputs are partial or from different
  // studies, and the old plot, which cannot match the new curves, is
  // removed first. Across ranks, rank 0 writes, and its partial kl.csv has
  // its own runs until the others' arrive at the end; every rank saves the
  // models of its own runs (keep_models).
  const std::filesystem::path dir(options.folder);
  const std::string csv = (dir / "kl.csv").string();
  const std::string summary = (dir / "summary.json").string();
  const std::string png = (dir / "kl.png").string();
  const std::string marker = (dir / incomplete_marker).string();
  const std::filesystem::path models = dir / "models";
  if (options.keep_models && writer) {
    std::error_code error;
    std::filesystem::create_directory(models, error);
    MARBM_EXPECTS(!error, RuntimeFailure,
                  "cannot create the folder for the kept models '" + models.string() + "': " + error.message());
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
  if (writer && options.plot) early.emplace(png);
  auto on_run = [&](const StudyRun& run, const Rbm& model) {
    if (partial) partial->add(run);
    if (!options.keep_models) return;
    Metadata metadata;
    metadata["created_by"] = options.program + " " + version();
    metadata["data"] = config.data;
    metadata["method"] = std::string(to_string(run.method));
    metadata["run"] = std::to_string(run.run);
    metadata["seed"] = std::to_string(config.seed + static_cast<std::uint64_t>(run.run));
    metadata["learning_rate"] = exact_text(config.learning_rate);
    metadata["iterations"] = std::to_string(run.diverged_at >= 0 && !run.history.empty()
                                                ? run.history.back().iteration
                                                : config.iterations);
    if (run.diverged_at >= 0) metadata["diverged_at"] = std::to_string(run.diverged_at);
    save_rbm((models / (std::string(to_string(run.method)) + "-" + std::to_string(run.run) + ".safetensors")).string(),
             model, metadata);
  };
  StudyResult result = run_study(config, comm, progress, on_run);

  StudyOutputFiles written;
  if (writer) {
    write_study_csv(result, csv);
    write_study_summary(result, summary);
    written.written = true;
    written.csv = csv;
    written.summary = summary;
    if (options.plot && plot_study(result, csv, png, &written.plot_message, early ? &*early : nullptr)) written.png = png;
    if (options.keep_models) written.models = models.string();
    std::filesystem::remove(marker, ignored);
  }
  if (files) *files = std::move(written);
  return result;
}

}  // namespace marbm
