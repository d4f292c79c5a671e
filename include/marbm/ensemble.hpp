// Ensembles: many independent RBMs of one shape trained at once (the runs of
// a study over seeds).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/mode.hpp"
#include "marbm/rbm.hpp"
#include "marbm/train.hpp"

namespace marbm {

/// Called with the member index (0-based, as in `initial`) and its metrics.
using EnsembleMetricsCallback = std::function<void(int member, const TrainMetrics&)>;

/// Trains E = initial.size() independent RBMs of the same shape on `data`
/// with one TrainConfig; member e starts from initial[e] and uses seed
/// seeds[e] in place of config.seed. Returns one TrainResult per member, in
/// order, as marbm::train would for that member.
///
/// Backends:
/// - cpu: members in parallel over OpenMP threads, each with its own cpu
///   engine (one thread) and marbm::train; nested parallelism is off.
///   on_metrics is called as metrics arrive, serialized (never concurrently).
/// - cuda: small models (see ensemble_fused_supported) run as one fused
///   kernel, a thread block per member with its parameters and batch in
///   shared memory: CD-k/PCD-k steps, mode steps with the exact mode found in
///   the kernel, exact KL / log-likelihood / log Z at the evaluation points.
///   Tiny members (those the block kernel would give at most 64 threads,
///   6x6 among them) run one warp per member instead, several per block,
///   with the same float32 arithmetic and draws
///   (MARBM_ENSEMBLE_KERNEL=block|warp forces either kernel).
///   The Philox keying is the engines' (gibbs stream of the update, batch
///   order, mode choice), but float sums run in another order, so a member's
///   trajectory matches marbm::train's statistically, not bit for bit.
///   on_metrics is called after the kernel, member by member; `seconds` in
///   those metrics is the ensemble's wall time prorated by iteration.
///   Mid-size and larger models (cd, pcd and mode settings the fused kernel
///   does not take; see ensemble_batched_supported) run batched: parameters,
///   momentum and chains of all members as stacked [E x ...] device arrays;
///   each half-sweep's fields are one cublasSgemmStridedBatched over the
///   members and one sampling launch keyed by each member's seed, so member e
///   draws exactly the random numbers of a cuda engine trained with seeds[e]
///   (cuBLAS may sum in another order: trajectories agree to rounding, not
///   bit for bit). Mode steps are decided per member by marbm's rule and
///   searched on the member's parameter slice; exact metrics use the device
///   enumeration. on_metrics is called as metrics arrive, from the calling
///   thread. The exact method, a learning-rate schedule other than constant
///   (and a fused setting beyond the device's shared memory) fall back to marbm::train on cuda engines, four host threads
///   each training members in turn on an engine of its own (their streams
///   overlap on the device); on_metrics is then serialized as on cpu.
/// - automatic: cuda when a device is usable, else cpu.
///
/// Throws UsageError for empty or mismatched inputs (sizes, seeds count, data
/// columns) and for bad settings (as marbm::train), CudaError when cuda is
/// asked for and unusable.
std::vector<TrainResult> train_ensemble(Backend backend, const Dataset& data, const std::vector<Rbm>& initial,
                                        const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                        const EnsembleMetricsCallback& on_metrics = {});

/// Whether the cuda backend trains this ensemble with the fused one-block-per-
/// member kernel: n, m <= 32; method cd, pcd or mode (mode solver exhaustive,
/// or automatic with min(n, m) <= auto_exhaustive_units, and min(n, m) <= 20);
/// batch and persistent chains <= 128 rows; exact metrics only when
/// min(n, m) <= 20; a constant learning rate. Pure function of its arguments (no device query).
bool ensemble_fused_supported(int n_visible, int n_hidden, int data_rows, const TrainConfig& config);

/// Whether the cuda backend trains this ensemble, when the fused kernel does
/// not, with the batched path: all members' state stacked on the device, each
/// half-sweep one strided-batched GEMM and one sampling launch over all
/// members. Method cd, pcd or mode with a cd or pcd base (any mode solver and
/// target); not the exact method; a constant learning rate. Pure function of its arguments.
bool ensemble_batched_supported(int n_visible, int n_hidden, int data_rows, const TrainConfig& config);

}  // namespace marbm
