// The CPU ground-state solvers behind find_mode (host/mode.cpp,
// host/mode_solvers.cpp). Internal.
#pragma once

#include <cstdint>

#include "marbm/mode.hpp"
#include "marbm/rbm.hpp"

namespace marbm::detail {

/// Descent polish on raw state arrays (n and m entries); no size checks.
void polish_descent_raw(const Rbm& rbm, std::uint8_t* visible, std::uint8_t* hidden);

/// Simulated bifurcation replicas on the CPU (OpenMP across replicas).
ModeResult mode_sb_cpu(const Rbm& rbm, const ModeSearchConfig& config);
/// Simulated annealing replicas (block Gibbs) on the CPU.
ModeResult mode_sa_cpu(const Rbm& rbm, const ModeSearchConfig& config);

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
