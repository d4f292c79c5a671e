// What `marbm train` records about a run, for every program that trains: the
// metadata of the model file (`--out`) and the JSON summary (`--json`). The
// command-line tool and the Python module both write them through these
// functions, so a model trained either way carries the same description.
#pragma once

#include <string>
#include <vector>

#include "marbm/held_out.hpp"
#include "marbm/model_io.hpp"
#include "marbm/train.hpp"

namespace marbm {

/// How a run was set up beyond its TrainConfig.
struct TrainRecord {
  std::string program = "marbm train";  ///< metadata created_by: this, a space and version()
  std::string data;                     ///< the data as given: a data spec, or a description of an array
  std::string data_description;         ///< Dataset::description (metadata "data"; empty: `data`)
  int data_rows = 0;
  bool rows_distinct = false;           ///< whether the training rows are distinct (summary)
  int n_visible = 0;
  int n_hidden = 0;
  std::string init;                     ///< the model continued (a file name); empty: a new model
  double init_sigma = 0.01;             ///< new models: N(0, sigma^2) parameters
  std::string init_visible_bias = "data";  ///< new models: "data" or "random"
  std::string test_data;                ///< held-out data as given; empty: none
  std::string out;                      ///< the model file written (summary "out")
  std::string backend;                  ///< Engine::description() of the engine that trained
};

/// The model file's metadata after `iterations` updates of `result` (a
/// partial result for checkpoints and diverged runs): created_by, data,
/// method and every setting, the backend, the time and the last evaluation's
/// KL, log-likelihood and log Z when finite. Numbers are written with 17
/// significant digits, so a value read back is the value used.
Metadata train_metadata(const TrainRecord& record, const TrainConfig& config, const TrainResult& result,
                        long iterations);

/// One evaluation as `marbm train --json --eval-every N` prints it: a JSON
/// object on one line (event "evaluation", the metrics, and the held-out
/// metrics when `held_out` is given; non-finite numbers as null).
std::string train_evaluation_json(const TrainMetrics& metrics, const HeldOutMetrics* held_out);

/// The summary `marbm train --json` prints at the end, on one line: out,
/// data, method, shape, iterations, time, the last evaluation's KL,
/// log-likelihood and log Z, backend, seed, mode steps (method mode), the
/// held-out metrics when `held_out` is given, and with `history` (the JSON
/// objects of train_evaluation_json, for runs evaluated every N updates) the
/// event "summary" and that history.
std::string train_summary_json(const TrainRecord& record, const TrainConfig& config, const TrainResult& result,
                               long iterations, const HeldOutMetrics* held_out,
                               const std::vector<std::string>* history);

/// Why `path` cannot take an output file, in words ("folder 'x' does not
/// exist", "'f' is read-only; it is not replaced", ...), or empty when it can:
/// checked before a run so that its result is not lost at the end.
std::string output_file_problem(const std::string& path);

}  // namespace marbm
