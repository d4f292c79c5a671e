// The two halves of run_study, for the distributed study
// (host/study_distributed.cpp): running some of the runs, and the summary.
#pragma once

#include <functional>

#include "marbm/study.hpp"

namespace marbm::detail {

/// Checks the config and trains the runs r (every method) for which
/// `takes_run(r)` is true (all when it is empty). The result has every
/// (method, run) slot; the others keep an empty history. No summary.
/// `on_run_finished` is called for the runs made here, as they finish.
StudyResult run_study_runs(const StudyConfig& config, const std::function<bool(int)>& takes_run,
                           const StudyProgress& progress, const StudyRunFinished& on_run_finished = {});

/// Fills result.summary from result.runs.
void summarize_study(StudyResult& result);

}  // namespace marbm::detail
