// The one limit on Gibbs steps per update, shared by every engine and path.
//
// Half-sweeps own the high bits of the Philox index (half_sweep * 2^40 + row
// stride + unit; cuda/gibbs.cuh and host/cpu_engine.cpp), and the device code
// counts half-sweeps as int (2 s + 1). k <= 2^20 keeps half_sweep * 2^40 below
// 2^62 and 2 k + 2 far inside int, so no two draws of a run share a counter.
#pragma once

#include <string>

#include "marbm/error.hpp"

namespace marbm::detail {

inline constexpr int max_gibbs_steps = 1 << 20;

/// Throws UsageError "<what>: Gibbs steps k must be in [1, 1048576], got <steps>"
/// unless 1 <= steps <= max_gibbs_steps.
inline void check_gibbs_steps(int steps, const std::string& what) {
  MARBM_EXPECTS(steps >= 1 && steps <= max_gibbs_steps, UsageError,
                what + ": Gibbs steps k must be in [1, " + std::to_string(max_gibbs_steps) + "], got " +
                    std::to_string(steps));
}

}  // namespace marbm::detail
