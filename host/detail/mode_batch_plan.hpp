// Host arithmetic of the device's exhaustive mode search and of the batched
// ensemble's mode steps: the exhaustive kernel's launch shape (one model, or
// the same shape for every model of a batched launch), how the models of a
// batched launch split into launches, which searches the batched launch
// covers, and the switch back to one search per member. Pure host code,
// tested without a device (tests/test_device_limits.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "detail/shared_memory.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"

namespace marbm::detail {

/// The exhaustive kernel's launch for an n x m model: the smaller layer (k
/// units) enumerated in Gray-code chunks of `chunk` states, one chunk per
/// warp, `warps_per_block` warps per block, each warp's float64 fields of the
/// other layer (l units) in `shared_bytes` / warps_per_block bytes of shared
/// memory. `slots` = blocks x warps_per_block per-warp results. `fits` false:
/// one warp's fields do not fit a block's shared memory even opted in.
struct WarpExhaustivePlan {
  bool fits = false;
  bool enumerate_hidden = false;
  int k = 0;
  int l = 0;
  std::uint64_t total = 0;
  std::uint64_t chunk = 0;
  std::uint64_t warps = 0;
  int warps_per_block = 0;
  std::uint64_t blocks = 0;
  std::uint64_t slots = 0;
  std::size_t shared_bytes = 0;
};

/// The plan for k = min(n, m) <= 62 (callers check their limit first). Enough
/// warps to fill the device (`multiprocessors` SMs) a few times over, chunks
/// long enough that each warp's exact restart (k x l) is small beside its
/// work. Every model of a batched launch gets this same plan, so its chunks,
/// and with them every float64 rounding, are those of its own search.
inline WarpExhaustivePlan plan_exhaustive_warp(int n, int m, int multiprocessors, std::size_t static_bytes,
                                      const SharedMemoryLimits& limits) {
  WarpExhaustivePlan plan;
  plan.enumerate_hidden = m <= n;
  plan.k = std::min(n, m);
  plan.l = std::max(n, m);
  plan.total = std::uint64_t{1} << plan.k;
  const std::uint64_t target_warps = static_cast<std::uint64_t>(std::max(multiprocessors, 1)) * 64;
  plan.chunk = std::max<std::uint64_t>({std::uint64_t{64}, static_cast<std::uint64_t>(2 * plan.k),
                                        (plan.total + target_warps - 1) / target_warps});
  plan.warps = (plan.total + plan.chunk - 1) / plan.chunk;
  const std::size_t per_warp = static_cast<std::size_t>(plan.l) * sizeof(double);
  plan.fits = plan_shared_memory(static_bytes, per_warp, limits).fits;
  if (!plan.fits) return plan;
  // Up to four warps share a block while they fit without opting in.
  const std::size_t default_room = limits.per_block > static_bytes ? limits.per_block - static_bytes : 0;
  plan.warps_per_block = static_cast<int>(std::clamp<std::size_t>(default_room / per_warp, 1, 4));
  plan.shared_bytes = per_warp * static_cast<std::size_t>(plan.warps_per_block);
  plan.blocks = (plan.warps + plan.warps_per_block - 1) / plan.warps_per_block;
  plan.slots = plan.blocks * static_cast<std::uint64_t>(plan.warps_per_block);
  return plan;
}

/// A batched launch puts its models on the grid's y dimension (at most
/// 65,535 blocks): models [first, first + count) per launch.
constexpr int kMaxModelsPerLaunch = 65535;
struct ModelGroup {
  int first = 0;
  int count = 0;
};
inline std::vector<ModelGroup> model_groups(int models, int per_launch = kMaxModelsPerLaunch) {
  MARBM_EXPECTS(models >= 0 && per_launch >= 1, UsageError, "model groups: bad counts");
  std::vector<ModelGroup> groups;
  for (int first = 0; first < models; first += per_launch) groups.push_back({first, std::min(per_launch, models - first)});
  return groups;
}

/// Whether the batched ensemble's one-launch search covers a member's mode
/// step: the exhaustive solver (what choose_mode_solver picks for enumerable
/// members) with a search to run. The local search (on the host, with
/// several states or not), SB and SA keep the per-member loop.
inline bool batched_mode_search_covers(const ModeSearchConfig& search, bool needs_search) {
  return needs_search && search.solver == ModeSolver::exhaustive;
}

/// MARBM_ENSEMBLE_MODE_SEARCH: unset, empty or "batched" (the members'
/// exhaustive searches of an update in one batched launch), or "per-member"
/// (one search after another, as before; kept for comparison and diagnosis).
/// Anything else is refused.
inline bool ensemble_mode_search_per_member(const char* value) {
  if (value == nullptr || *value == '\0' || std::string_view(value) == "batched") return false;
  MARBM_EXPECTS(std::string_view(value) == "per-member", UsageError,
                "MARBM_ENSEMBLE_MODE_SEARCH must be 'batched' or 'per-member', got '" + std::string(value) + "'");
  return true;
}

}  // namespace marbm::detail
