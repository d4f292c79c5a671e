// marbm across the ranks of a Communicator (communicator.hpp): exact log Z,
// studies, data-parallel training and the mode search, each equal to the
// single-process computation with the same settings and seed.
#pragma once

#include "marbm/communicator.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"
#include "marbm/study.hpp"

namespace marbm {

/// log Z by Gray-code enumeration, the chunks split into contiguous ranges,
/// one per rank, and combined by log-sum-exp in chunk order on every rank:
/// bit for bit the single-process log_partition_exact. Collective; CPU.
/// Throws RuntimeFailure beyond the enumeration limit (on every rank).
double log_partition_exact(const Rbm& rbm, Communicator& comm, const ExactOptions& options = {});

/// A study across ranks: run r (every method) trains on rank r mod size,
/// each rank using its cores (cpu) or its device (cuda) as run_study does;
/// rank 0 gathers the runs and gets the whole result, the same as
/// run_study(config) with the same seed except for the timings. Other ranks
/// get their own runs only (the rest have empty histories) and no summary.
/// Collective; throws as run_study does (a failure on one rank only leaves the
/// others waiting: callers abort the run, see Communicator::abort).
StudyResult run_study(const StudyConfig& config, Communicator& comm, const StudyProgress& progress = {});

}  // namespace marbm
