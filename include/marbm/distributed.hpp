// marbm across the ranks of a Communicator (communicator.hpp): exact log Z,
// studies, data-parallel training and the mode search, each equal to the
// single-process computation with the same settings and seed.
#pragma once

#include <memory>

#include "marbm/communicator.hpp"
#include "marbm/engine.hpp"
#include "marbm/exact.hpp"
#include "marbm/mode.hpp"
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
/// `on_run_finished` is called on each rank for the runs it makes.
StudyResult run_study(const StudyConfig& config, Communicator& comm, const StudyProgress& progress = {},
                      const StudyRunFinished& on_run_finished = {});

/// The mode search across ranks. Simulated bifurcation and annealing on the
/// cpu: the replicas are cut into 64-replica blocks shared among the ranks in
/// contiguous ranges, and the best polished state is chosen by a
/// min-location reduction (the lowest replica among equal energies) and
/// broadcast: the state and energy of find_mode(rbm, config) with the same
/// total replicas and seed, on every rank. Other solvers and backends run the
/// whole search on every rank (the same result). Collective; throws as
/// find_mode does.
ModeResult find_mode(const Rbm& rbm, const ModeSearchConfig& config, Communicator& comm);

/// An engine for data-parallel training of one model across the ranks of
/// `comm`: every rank runs the training driver (train()) with the same
/// settings, data and initial model on its own engine. Each update's batch is
/// cut into 64-row blocks shared among the ranks in contiguous ranges (and the
/// persistent chains into 64-chain blocks); the blocks' gradient statistics
/// (float64) are summed in block order on every rank, so the model after T
/// updates has the same bits for any number of ranks, one included. (It is not
/// the plain engine's result bit for bit: that one sums the batch in one pass.)
/// Exact log Z is enumerated across the ranks, and the mode search is
/// find_mode(rbm, config, comm). `local` must be a cpu engine (UsageError otherwise). The
/// communicator must outlive the engine's use.
std::unique_ptr<Engine> make_data_parallel_engine(std::unique_ptr<Engine> local, std::shared_ptr<Communicator> comm);

}  // namespace marbm
