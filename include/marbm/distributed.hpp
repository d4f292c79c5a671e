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
/// the plain engine's result bit for bit: that one sums the batch in one pass;
/// `marbm train` on the cpu wraps its engine in this one with a
/// single-process communicator, so that it writes the files mpiexec runs do.)
/// Exact log Z is enumerated across the ranks, and the mode search is
/// find_mode(rbm, config, comm). `local` must be a cpu engine (UsageError otherwise). The
/// communicator must outlive the engine's use.
std::unique_ptr<Engine> make_data_parallel_engine(std::unique_ptr<Engine> local, std::shared_ptr<Communicator> comm);

/// Whether this build sums gradients between GPU ranks with NCCL (MARBM_NCCL;
/// only with the CUDA engine, in whose library NCCL lives).
bool nccl_compiled();

/// NCCL's version code (ncclGetVersion: e.g. 22703 for 2.27.3); 0 when the
/// build has no NCCL or the CUDA engine library cannot be loaded (this loads
/// it). Never throws.
int nccl_version();

/// This rank's index among the ranks on its host (ranks grouped by host
/// name, counted in rank order): the usual choice of GPU is
/// local_rank % device count. Collective.
int local_rank(Communicator& comm);

/// An engine for data-parallel training of one model across GPU ranks, one
/// GPU per rank (options.device on each): every rank runs train() with the
/// same settings, data and initial model. Each update's batch rows, and the
/// persistent chains, are cut into contiguous shares, one per rank; a rank's
/// rows draw the random numbers they draw in the whole batch, and its
/// gradient, scaled by the whole batch, is summed over the ranks with
/// ncclAllReduce on the engine's stream (no copy through the host); mode and
/// exact terms are added by rank 0. Every rank applies the same step, so the
/// run differs from the one-device run only by the float rounding of the
/// sums; for a fixed set of ranks and devices it repeats bit for bit (not
/// across rank counts: that is claimed for the cpu engine only). The mode is
/// searched on rank 0 and broadcast over `comm`; checkpoints gather the
/// chains over `comm`. The batch size and chain count must be at least the
/// rank count (UsageError at the update). Collective: rank 0 makes the NCCL
/// id and broadcasts it over `comm`. Throws, on every rank, CudaError when
/// a rank has no usable device or the build has no NCCL, UsageError when two
/// ranks would share a GPU (NCCL needs one GPU per rank).
std::unique_ptr<Engine> make_cuda_data_parallel_engine(std::shared_ptr<Communicator> comm,
                                                       const EngineOptions& options = {});

}  // namespace marbm
