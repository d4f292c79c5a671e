// The checks every ground-state search applies to its options, on either
// backend (host/mode.cpp defines them; cuda/mode_search.cu calls them too).
#pragma once

#include "marbm/mode.hpp"

namespace marbm::detail {

/// Throws UsageError, in one line naming the option, for a search of an
/// n_visible x n_hidden model with bad replicas, steps, time step, inverse
/// temperatures, enumeration limit or warm start.
void check_mode_search_config(int n_visible, int n_hidden, const ModeSearchConfig& config);

}  // namespace marbm::detail
