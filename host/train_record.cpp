// The records of a training run: model-file metadata and the JSON summary
// (train_record.hpp).
#include "marbm/train_record.hpp"

#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"

namespace marbm {
namespace {

// Full precision, so that a value read back is the value that was used.
std::string exact_text(double value) {
  std::ostringstream out;
  out.precision(17);
  out << value;
  return out.str();
}

// A finite number as JSON, NaN or infinity as null (JSON has no NaN).
nlohmann::json json_number(double value) {
  if (!std::isfinite(value)) return nullptr;
  return value;
}

// One line; bytes that are not UTF-8 (file names) become U+FFFD instead of failing.
std::string json_line(const nlohmann::json& object) {
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void add_held_out(nlohmann::json& object, const HeldOutMetrics& h) {
  object["test_mean_log_likelihood"] = json_number(h.mean_log_likelihood);
  object["test_mean_log_likelihood_low"] = json_number(h.mean_log_likelihood_low);
  object["test_mean_log_likelihood_high"] = json_number(h.mean_log_likelihood_high);
  object["test_log_z_method"] = h.exact ? "exact" : "ais";
  object["test_reconstruction_error"] = json_number(h.reconstruction_error);
  object["free_energy_gap"] = json_number(h.free_energy_gap);
}

}  // namespace

Metadata train_metadata(const TrainRecord& record, const TrainConfig& config, const TrainResult& result,
                        long iterations) {
  Metadata metadata;
  metadata["created_by"] = record.program + " " + version();
  metadata["data"] = record.data_description.empty() ? record.data : record.data_description;
  metadata["data_rows"] = std::to_string(record.data_rows);
  metadata["method"] = std::string(to_string(config.method));
  metadata["k"] = std::to_string(config.gibbs_steps);
  metadata["learning_rate"] = exact_text(config.learning_rate);
  if (config.learning_rate_schedule != LearningRateSchedule::constant) {
    metadata["learning_rate_schedule"] = std::string(to_string(config.learning_rate_schedule));
    metadata["final_learning_rate"] = exact_text(config.final_learning_rate);
  }
  metadata["momentum"] = exact_text(config.momentum);
  metadata["weight_decay"] = exact_text(config.weight_decay);
  metadata["batch"] = std::to_string(config.batch_size);
  metadata["iterations"] = std::to_string(iterations);
  metadata["seed"] = std::to_string(config.seed);
  if (config.sample_positive_hidden) metadata["sample_positive_hidden"] = "1";
  if (record.init.empty()) {
    metadata["init_sigma"] = exact_text(record.init_sigma);
    metadata["init_visible_bias"] = record.init_visible_bias;
  } else {
    metadata["init"] = record.init;
  }
  metadata["backend"] = record.backend;
  metadata["seconds"] = exact_text(result.seconds);
  if (config.method == TrainMethod::pcd || config.mode.base == NegativePhase::pcd) {
    metadata["persistent_chains"] = std::to_string(config.persistent_chains);
  }
  if (config.method == TrainMethod::mode) {
    const ModeAssistConfig& mode = config.mode;
    metadata["mode_base"] = mode.base == NegativePhase::pcd ? "pcd" : "cd";
    metadata["mode_p_max"] = exact_text(mode.p_max);
    metadata["mode_alpha"] = exact_text(mode.alpha);
    metadata["mode_beta"] = exact_text(mode.beta);
    metadata["mode_solver"] = mode.solver ? std::string(to_string(*mode.solver)) : std::string("auto");
    metadata["mode_lr_scale"] = mode.push_scaled ? "push" : "constant";
    metadata["mode_target"] = mode.target == ModeTarget::marginal ? "marginal" : "joint";
    metadata["mode_step"] = mode.additive ? "add" : "replace";
    metadata["mode_lr_factor"] = exact_text(mode.lr_factor);
    metadata["mode_states"] = std::to_string(mode.mode_states);
    metadata["mode_steps_taken"] = std::to_string(result.mode_steps);
  }
  if (!result.history.empty()) {
    const TrainMetrics& last = result.history.back();
    if (std::isfinite(last.kl)) metadata["final_kl"] = exact_text(last.kl);
    if (std::isfinite(last.mean_log_likelihood)) {
      metadata["final_mean_log_likelihood"] = exact_text(last.mean_log_likelihood);
    }
    if (std::isfinite(last.log_z)) metadata["log_z"] = exact_text(last.log_z);
  }
  return metadata;
}

std::string train_evaluation_json(const TrainMetrics& metrics, const HeldOutMetrics* held_out) {
  nlohmann::json point = {{"event", "evaluation"},
                          {"iteration", metrics.iteration},
                          {"kl", json_number(metrics.kl)},
                          {"mean_log_likelihood", json_number(metrics.mean_log_likelihood)},
                          {"log_z", json_number(metrics.log_z)},
                          {"p_mode", json_number(metrics.p_mode)},
                          {"mode_steps", metrics.mode_steps},
                          {"seconds", json_number(metrics.seconds)}};
  if (held_out) add_held_out(point, *held_out);
  return json_line(point);
}

std::string train_summary_json(const TrainRecord& record, const TrainConfig& config, const TrainResult& result,
                               long iterations, const HeldOutMetrics* held_out,
                               const std::vector<std::string>* history) {
  TrainMetrics last;
  if (!result.history.empty()) last = result.history.back();
  nlohmann::json out;
  out["out"] = record.out;
  out["data"] = record.data;
  out["method"] = std::string(to_string(config.method));
  out["n_visible"] = record.n_visible;
  out["n_hidden"] = record.n_hidden;
  out["iterations"] = iterations;
  out["seconds"] = result.seconds;
  out["kl"] = json_number(last.kl);
  out["rows_distinct"] = record.rows_distinct;
  out["mean_log_likelihood"] = json_number(last.mean_log_likelihood);
  out["log_z"] = json_number(last.log_z);
  out["backend"] = record.backend;
  out["seed"] = config.seed;
  if (config.method == TrainMethod::mode) out["mode_steps"] = result.mode_steps;
  if (held_out) {
    out["test_data"] = record.test_data;
    add_held_out(out, *held_out);
  }
  if (history) {
    nlohmann::json points = nlohmann::json::array();
    for (const std::string& text : *history) {
      nlohmann::json point = nlohmann::json::parse(text, nullptr, false);
      if (point.is_discarded()) throw UsageError("train_summary_json: a history entry is not JSON");
      points.push_back(std::move(point));
    }
    out["event"] = "summary";
    out["history"] = std::move(points);
  }
  return json_line(out);
}

std::string output_file_problem(const std::string& text) {
  namespace fs = std::filesystem;
  if (text.empty()) return "the path is empty";
  const fs::path path(text);
  std::error_code error;
  if (fs::is_directory(path, error)) return "'" + text + "' is a folder, not a file name";
  fs::path folder = path.parent_path();
  if (folder.empty()) folder = ".";
  if (!fs::is_directory(folder, error)) return "folder '" + folder.string() + "' does not exist";
  if (::access(folder.c_str(), W_OK) != 0) return "folder '" + folder.string() + "' is not writable";
  // Decided: a read-only file is not replaced (a symlink is followed and
  // its target replaced, the link kept).
  const auto status = fs::status(path, error);
  const bool no_write_bits =
      fs::exists(status) &&
      (status.permissions() & (fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write)) ==
          fs::perms::none;
  if (fs::exists(status) && (::access(path.c_str(), W_OK) != 0 || no_write_bits)) {
    return "'" + text + "' is read-only; it is not replaced";
  }
  return {};
}

}  // namespace marbm
