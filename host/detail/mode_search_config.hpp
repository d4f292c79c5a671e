// The checks every ground-state search applies to its options, on either
// backend (host/mode.cpp defines them; cuda/mode_search.cu calls them too).
#pragma once

#include <vector>

#include "marbm/mode.hpp"

namespace marbm::detail {

/// A solver's replicas after its dynamics, before the polish: replicas x n and
/// replicas x m floats, row-major (SB: positions x in [-1, 1]; SA: 0/1
/// states). What the tests compare to hold the device solvers to the CPU ones.
struct ReplicaTrajectory {
  int replicas = 0;
  int steps = 0;
  std::vector<float> visible;
  std::vector<float> hidden;
};

/// Throws UsageError, in one line naming the option, for a search of an
/// n_visible x n_hidden model with bad replicas, steps, time step, inverse
/// temperatures, enumeration limit or warm start.
void check_mode_search_config(int n_visible, int n_hidden, const ModeSearchConfig& config);

}  // namespace marbm::detail
