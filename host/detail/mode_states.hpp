// The check of a mode step's negative-phase states, shared by every engine:
// K rows of v and h, 0/1 values, and K weights (>= 0, summing to 1) unless
// K = 1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include "marbm/engine.hpp"
#include "marbm/error.hpp"

namespace marbm::detail {

/// Returns K, the number of states of `step` (negative == mode), after
/// checking them against an n x m model; UsageError "<what>: ..." otherwise.
inline int check_mode_states(const UpdateStep& step, int n, int m, const std::string& what) {
  const std::size_t count = n > 0 ? step.mode_visible.size() / static_cast<std::size_t>(n) : 0;
  MARBM_EXPECTS(count >= 1 && step.mode_visible.size() == count * static_cast<std::size_t>(n) &&
                    step.mode_hidden.size() == count * static_cast<std::size_t>(m),
                UsageError,
                what + ": the mode states hold " + std::to_string(step.mode_visible.size()) + " visible and " +
                    std::to_string(step.mode_hidden.size()) + " hidden values, not whole states of " +
                    std::to_string(n) + " + " + std::to_string(m) + " units");
  auto binary = [](auto values) { return std::all_of(values.begin(), values.end(), [](auto x) { return x <= 1; }); };
  MARBM_EXPECTS(binary(step.mode_visible) && binary(step.mode_hidden), UsageError,
                what + ": the mode states hold a value other than 0 or 1");
  MARBM_EXPECTS(step.mode_weights.size() == count || (count == 1 && step.mode_weights.empty()), UsageError,
                what + ": " + std::to_string(count) + " mode states need as many weights, got " +
                    std::to_string(step.mode_weights.size()));
  double sum = 0.0;
  for (const double w : step.mode_weights) {
    MARBM_EXPECTS(std::isfinite(w) && w >= 0.0, UsageError, what + ": mode weights must be finite and >= 0");
    sum += w;
  }
  MARBM_EXPECTS(step.mode_weights.empty() || std::abs(sum - 1.0) <= 1e-9, UsageError,
                what + ": mode weights must sum to 1, got " + std::to_string(sum));
  return static_cast<int>(count);
}

/// Weight of mode state k (1 for a single state given without weights).
inline double mode_state_weight(const UpdateStep& step, int k) {
  return step.mode_weights.empty() ? 1.0 : step.mode_weights[static_cast<std::size_t>(k)];
}

}  // namespace marbm::detail
