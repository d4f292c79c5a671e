// A study across the ranks of a communicator: run r on rank r mod R, the
// runs gathered on rank 0 in (method, run) order, as one process orders them.
#include <chrono>
#include <cstring>
#include <type_traits>
#include <vector>

#include "detail/study_parts.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/error.hpp"
#include "marbm/study.hpp"

namespace marbm {

namespace {

static_assert(std::is_trivially_copyable_v<TrainMetrics>, "TrainMetrics travels between ranks as bytes");

struct RunHeader {
  int method_index = 0;
  int run = 0;
  double seconds = 0.0;
  long diverged_at = -1;
  long points = 0;
  long test_points = 0;  ///< held-out values per vector (test_data)
};

template <typename T>
void append(std::vector<std::byte>& out, const T& value) {
  const auto* bytes = reinterpret_cast<const std::byte*>(&value);
  out.insert(out.end(), bytes, bytes + sizeof(T));
}

template <typename T>
T take(const std::vector<std::byte>& in, std::size_t& at) {
  MARBM_EXPECTS(at + sizeof(T) <= in.size(), RuntimeFailure, "distributed study: a rank sent a truncated result");
  T value;
  std::memcpy(&value, in.data() + at, sizeof(T));
  at += sizeof(T);
  return value;
}

}  // namespace

StudyResult run_study(const StudyConfig& config, Communicator& comm, const StudyProgress& progress,
                      const StudyRunFinished& on_run_finished) {
  if (comm.size() == 1) return run_study(config, progress, on_run_finished);
  const auto start = std::chrono::steady_clock::now();
  const int rank = comm.rank(), size = comm.size();
  StudyResult result =
      detail::run_study_runs(config, [&](int run) { return run % size == rank; }, progress, on_run_finished);

  std::vector<std::byte> mine;
  const int runs = config.runs;
  for (std::size_t job = 0; job < result.runs.size(); ++job) {
    const StudyRun& run = result.runs[job];
    if (run.run % size != rank) continue;
    RunHeader header;
    header.method_index = static_cast<int>(job) / runs;
    header.run = run.run;
    header.seconds = run.seconds;
    header.diverged_at = run.diverged_at;
    header.points = static_cast<long>(run.history.size());
    header.test_points = static_cast<long>(run.test_mean_log_likelihood.size());
    append(mine, header);
    for (const TrainMetrics& metrics : run.history) append(mine, metrics);
    for (const auto* values : {&run.test_mean_log_likelihood, &run.test_reconstruction_error, &run.free_energy_gap}) {
      for (std::size_t i = 0; i < static_cast<std::size_t>(header.test_points); ++i) {
        append(mine, i < values->size() ? (*values)[i] : 0.0);
      }
    }
  }
  const auto parts = comm.gather(mine, 0);
  if (rank != 0) return result;  // this rank's runs only, no summary

  for (const auto& part : parts) {
    std::size_t at = 0;
    while (at < part.size()) {
      const auto header = take<RunHeader>(part, at);
      MARBM_EXPECTS(header.method_index >= 0 && header.method_index < static_cast<int>(config.methods.size()) &&
                        header.run >= 0 && header.run < runs && header.points >= 0 && header.test_points >= 0,
                    RuntimeFailure, "distributed study: a rank sent a run outside the study");
      StudyRun& run = result.runs[static_cast<std::size_t>(header.method_index) * runs + header.run];
      run.seconds = header.seconds;
      run.diverged_at = header.diverged_at;
      run.history.resize(static_cast<std::size_t>(header.points));
      for (TrainMetrics& metrics : run.history) metrics = take<TrainMetrics>(part, at);
      for (auto* values : {&run.test_mean_log_likelihood, &run.test_reconstruction_error, &run.free_energy_gap}) {
        values->resize(static_cast<std::size_t>(header.test_points));
        for (double& value : *values) value = take<double>(part, at);
      }
    }
  }
  detail::summarize_study(result);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace marbm
