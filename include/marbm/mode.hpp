// Ground-state (mode) search: argmin_{v,h} E(v,h) (SPEC.md section 4).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "marbm/rbm.hpp"

namespace marbm {

/// Where computations run. `automatic`: cuda when a device is usable, else
/// cpu. make_engine says so in a one-line notice on stderr when it falls
/// back; find_mode falls back silently (training calls it at every mode step).
enum class Backend { cpu, cuda, automatic };

/// Parses "cpu" | "cuda" | "auto"; throws UsageError otherwise.
Backend parse_backend(std::string_view text);
std::string_view to_string(Backend backend);

enum class ModeSolver {
  exhaustive,  ///< enumerate the smaller layer; the oracle
  sb,          ///< simulated bifurcation replicas
  sa,          ///< simulated annealing replicas (block Gibbs at rising beta)
  /// Seeded local search: single-flip steepest descent on the smaller layer
  /// with the other layer always set optimally, from the warm start, the
  /// given start states and random states, then perturbation rounds on the
  /// best. Finds the mode of trained models at a small fraction of the
  /// exhaustive search's cost; always runs on the CPU (its work is a few
  /// passes over W per start).
  local,
};
/// Parses "exhaustive" | "sb" | "sa" | "local"; throws UsageError otherwise.
ModeSolver parse_mode_solver(std::string_view text);
std::string_view to_string(ModeSolver solver);

enum class SbVariant {
  ballistic,  ///< bSB: field from positions x
  discrete,   ///< dSB: field from sign(x)
};

/// The polish every sb / sa replica gets before the best one is chosen.
enum class ModePolish {
  /// Block descent: h = argmin E(v, .), v = argmin E(., h) until nothing
  /// changes (polish_descent).
  descent,
  /// The block descent, then steepest single flips of the smaller layer, each
  /// re-optimising the whole other layer, until none lowers E: fewer, lower
  /// local minima for a few passes over W more. CPU only.
  collapsed,
};
/// Parses "descent" | "collapsed"; throws UsageError otherwise.
ModePolish parse_mode_polish(std::string_view text);
std::string_view to_string(ModePolish polish);

/// Options of a ground-state search. Zero means "choose by size" for the
/// fields documented so.
struct ModeSearchConfig {
  ModeSolver solver = ModeSolver::sb;
  SbVariant sb_variant = SbVariant::discrete;
  Backend backend = Backend::cpu;
  int device = 0;              ///< cuda: device ordinal (an engine's find_mode uses the engine's device)
  int replicas = 0;             ///< independent replicas; 0: default for the size
  int steps = 0;                ///< integration / annealing steps (local: perturbation rounds); 0: default
  double time_step = 0.0;       ///< SB dt; 0: default
  double beta_hot = 0.0;        ///< SA initial inverse temperature; 0: derived from parameters
  double beta_cold = 0.0;       ///< SA final inverse temperature; 0: derived from parameters
  ModePolish polish = ModePolish::descent;  ///< sb, sa: the polish of every replica
  std::uint64_t seed = 0;
  int max_enumerated_units = 32;  ///< exhaustive refuses beyond 2^this states
  /// Optional warm start (both empty or both sized to the layers): one
  /// replica starts here (training passes the previous mode).
  std::vector<std::uint8_t> warm_visible;
  std::vector<std::uint8_t> warm_hidden;
  /// Optional extra start states for the local solver: whole visible rows
  /// (a multiple of n values, 0/1), e.g. the current minibatch or persistent
  /// chains. Each start's hidden layer is set optimally before the descent.
  /// Other solvers ignore them.
  std::vector<std::uint8_t> start_visible;
  /// local: how many of the distinct local minima found, lowest first, to
  /// return in ModeResult::minima_visible (0: none).
  int keep_minima = 0;
};

/// The best state found and how the search went.
struct ModeResult {
  std::vector<std::uint8_t> visible;
  std::vector<std::uint8_t> hidden;
  double energy = 0.0;        ///< E(visible, hidden), float64
  int replicas = 0;
  int steps = 0;
  int replicas_at_best = 0;   ///< replicas whose polished state has the best energy
  double seconds = 0.0;
  /// local with keep_minima > 0: distinct local minima found, lowest energy
  /// first (rows of n values), and their energies.
  std::vector<std::uint8_t> minima_visible;
  std::vector<double> minima_energy;
};

/// Finds the mode of `rbm` with the configured solver on the configured
/// backend. Every solver ends with the descent polish. Synchronous.
/// Throws UsageError for bad options, RuntimeFailure when exhaustive is
/// beyond its limit, CudaError when cuda is asked for and unusable.
ModeResult find_mode(const Rbm& rbm, const ModeSearchConfig& config);

/// Exact mode by enumerating the smaller layer (the other set optimally).
ModeResult mode_exhaustive(const Rbm& rbm, int max_enumerated_units = 32);

/// Descent polish in place: alternate h = argmin E(v, .) and v = argmin E(., h)
/// until nothing changes. Never raises E. Returns the final energy.
double polish_descent(const Rbm& rbm, std::span<std::uint8_t> visible, std::span<std::uint8_t> hidden);

}  // namespace marbm
