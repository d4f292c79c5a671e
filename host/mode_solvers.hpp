// The CPU ground-state solvers behind find_mode (host/mode.cpp,
// host/mode_solvers.cpp). Internal.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "detail/mode_search_config.hpp"
#include "marbm/communicator.hpp"
#include "marbm/mode.hpp"
#include "marbm/rbm.hpp"

// The few inner loops that dominate a search are compiled twice, for AVX2
// and for the baseline, and the loader picks one (GCC/Clang function
// multiversioning): the library is built without -march, so the baseline
// alone would run 4 floats (2 doubles) per instruction. AVX2 gives no FMA
// here, so results stay those of separate multiplies and adds.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MARBM_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MARBM_VECTOR_CLONES
#endif

namespace marbm::detail {

/// Wall seconds since `start`, for ModeResult::seconds.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The descent polish of one model, set up once and run on many replicas:
/// float64 copies of W and W^T, fields patched with the rows of the units
/// that change (a replica already at a local minimum costs two field
/// evaluations). Thread-safe: each thread passes its own Scratch.
class DescentPolish {
 public:
  struct Scratch {
    std::vector<double> field_visible;
    std::vector<double> field_hidden;
    std::vector<int> index;
    std::vector<double> sign;
  };
  explicit DescentPolish(const Rbm& rbm);
  /// Polishes raw state arrays (n and m entries, no size checks) in place;
  /// returns E of the result from the float64 fields.
  double run(std::uint8_t* visible, std::uint8_t* hidden, Scratch& scratch) const;

 private:
  int n_ = 0;
  int m_ = 0;
  std::vector<double> weights_;             // n x m
  std::vector<double> weights_transposed_;  // m x n
  std::vector<double> visible_bias_;
  std::vector<double> hidden_bias_;
};

/// The collapsed descent (ModePolish::collapsed) after the block descent:
/// single flips of the smaller layer, each re-optimising the whole other
/// layer, steepest first, until none lowers E (host/mode_local.cpp, the
/// local solver's descent). Thread-safe: each thread passes its own Scratch.
class CollapsedPolish {
 public:
  struct Scratch {
    std::vector<double> field;
    std::vector<double> positive;
  };
  explicit CollapsedPolish(const Rbm& rbm);
  ~CollapsedPolish();
  CollapsedPolish(const CollapsedPolish&) = delete;
  CollapsedPolish& operator=(const CollapsedPolish&) = delete;
  /// Descends from (visible, hidden) in place, the other layer left at its
  /// optimum; returns E of the result.
  double run(std::uint8_t* visible, std::uint8_t* hidden, Scratch& scratch) const;

 private:
  struct Form;
  std::unique_ptr<Form> form_;
};

/// SB or SA replicas (config.solver) on the CPU across the ranks of `comm`:
/// 64-replica blocks in contiguous ranges per rank, the best state chosen by
/// a min-location reduction (lowest replica on ties) and broadcast. The same
/// state and energy as mode_sb_cpu / mode_sa_cpu with the same config.
ModeResult mode_replicas_distributed(const Rbm& rbm, const ModeSearchConfig& config, Communicator& comm);
/// Simulated bifurcation replicas on the CPU (OpenMP across replicas).
ModeResult mode_sb_cpu(const Rbm& rbm, const ModeSearchConfig& config);
/// Simulated annealing replicas (block Gibbs) on the CPU.
ModeResult mode_sa_cpu(const Rbm& rbm, const ModeSearchConfig& config);
/// The seeded local search (host/mode_local.cpp).
ModeResult mode_local_cpu(const Rbm& rbm, const ModeSearchConfig& config);
int default_local_replicas(int n_visible, int n_hidden);
int default_local_rounds(int n_visible, int n_hidden);
/// The replicas of mode_sb_cpu / mode_sa_cpu (config.solver decides) after
/// the dynamics, before the polish (config checked by the caller).
ReplicaTrajectory mode_trajectory_cpu(const Rbm& rbm, const ModeSearchConfig& config);

/// Defaults used when the config leaves a field at zero.
int default_mode_replicas(ModeSolver solver, int n_visible, int n_hidden);
int default_mode_steps(ModeSolver solver, int n_visible, int n_hidden);
double default_sb_time_step(SbVariant variant);
int default_sb_replicas(SbVariant variant, int n_visible, int n_hidden);
int default_sb_steps(SbVariant variant, int n_visible, int n_hidden);

/// SA inverse temperatures derived from the parameters: hot, about half of
/// the flips against a typical local field accepted; cold, about 1% of units
/// excited.
struct AnnealingRange {
  double hot = 0.0;
  double cold = 0.0;
};
AnnealingRange derived_annealing_range(const Rbm& rbm);

}  // namespace marbm::detail
