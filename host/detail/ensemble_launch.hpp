// The launch of the fused ensemble (cuda/ensemble.cu), decided on the host
// without a device: which of its two kernels runs, how many members share a
// block, the threads and the dynamic shared memory. Pure arithmetic on the
// setting, the kernels' static shared memory and the device's limits, so
// that it is tested on the CPU (tests/test_ensemble_launch.cpp).
//
// - block kernel (ensemble_kernel): one thread block per member, 32..256
//   threads, block-wide barriers and reductions. Suits members whose passes
//   have many parallel items, when few members are trained.
// - warp kernel (ensemble_warp_kernel): one warp per member, several members
//   per block, warp barriers and shuffles only, the enumeration's fields in
//   shared memory (no local-memory stack). Suits tiny members (a 6x6 member
//   has 12 sampling groups and 48 parameters: most of a 64-thread block idles).
//   For larger members it is no win even when the members alone would fill
//   the device: a member's shared memory caps the members resident per SM
//   alike for both kernels, and the block kernel gives each of them more
//   threads.
//
// MARBM_ENSEMBLE_KERNEL=block|warp forces one of them (auto or unset: the
// rule below); both draw the same Philox numbers and do the same float32
// arithmetic in the same order, so the choice changes no parameter.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "detail/shared_memory.hpp"
#include "marbm/error.hpp"

namespace marbm::detail {

enum class FusedEnsembleKernel { none, block, warp };
enum class FusedKernelChoice { automatic, block, warp };

/// MARBM_ENSEMBLE_KERNEL's value (null or empty: automatic). Throws
/// UsageError naming the variable for anything but auto, block or warp.
inline FusedKernelChoice parse_fused_kernel_choice(const char* value) {
  if (value == nullptr) return FusedKernelChoice::automatic;
  const std::string_view text(value);
  if (text.empty() || text == "auto") return FusedKernelChoice::automatic;
  if (text == "block") return FusedKernelChoice::block;
  if (text == "warp") return FusedKernelChoice::warp;
  throw UsageError("MARBM_ENSEMBLE_KERNEL must be auto, block or warp, got '" + std::string(text) + "'");
}

/// One member's setting as the fused kernels see it.
struct FusedEnsembleShape {
  int n = 0, m = 0;
  int batch = 0;            ///< rows per update (clipped to the data set)
  int chains = 0;           ///< persistent chains, or the batch for cd
  bool enumerates = false;  ///< exact metrics or mode steps: the Gray-code enumeration runs
};

/// The block kernel's threads: enough for the parameters or the widest
/// sampling pass (one thread per row and 4 units), a power of two from 32 to
/// 256 (its reductions halve it).
constexpr int block_kernel_threads(const FusedEnsembleShape& s) {
  const int rows = std::max(s.batch, s.chains);
  const int work = std::max(s.n * s.m, rows * ((std::max(s.n, s.m) + 3) / 4));
  int threads = 32;
  while (threads < work && threads < 256) threads *= 2;
  return threads;
}

constexpr int kWarpLanes = 32;
/// Members (warps) per block of the warp kernel at most: 128 threads, so that
/// sm_90's 32 resident blocks per SM still allow its 64 resident warps.
constexpr int kWarpKernelMembersPerBlock = 4;

/// The warp kernel's enumeration scratch per member: one float64 field per
/// lane and unit of the larger layer (the layer the enumeration sums over),
/// stored unit-major so that the 32 lanes touch consecutive words.
constexpr std::size_t warp_scratch_bytes(const FusedEnsembleShape& s) {
  return s.enumerates ? static_cast<std::size_t>(kWarpLanes) * std::max(s.n, s.m) * sizeof(double) : 0;
}

/// The warp kernel's shared memory per member: the scratch, then the block
/// kernel's per-member floats (fused_ensemble_shared_bytes), the whole rounded
/// up to 16 bytes so that every member's slice starts 16-byte aligned.
constexpr std::size_t warp_member_bytes(const FusedEnsembleShape& s) {
  const std::size_t bytes = warp_scratch_bytes(s) + fused_ensemble_shared_bytes(s.n, s.m, s.batch, s.chains);
  return (bytes + 15) / 16 * 16;
}

struct FusedEnsembleLaunch {
  FusedEnsembleKernel kernel = FusedEnsembleKernel::none;  ///< none: neither fits the device
  int members_per_block = 0;
  int threads = 0;                 ///< per block
  long long blocks = 0;
  std::size_t dynamic_bytes = 0;   ///< per block
  bool opt_in = false;             ///< the launch must raise the kernel's dynamic shared memory limit
};

/// The launch of `members` members of shape `s` on a device with shared
/// memory `limits`, given each kernel's static shared memory
/// (cudaFuncGetAttributes).
///
/// automatic: the warp kernel when it fits and the member is small (the
/// block kernel would run at most 64 threads, so one warp covers every pass
/// in at most two rounds); else the block kernel when it fits; else the warp
/// kernel when it fits (its
/// members need less shared memory: no reduction arrays); else none (the
/// caller trains the members on engines). A forced choice gives that kernel
/// or none. The warp kernel packs kWarpKernelMembersPerBlock members per
/// block (fewer when the ensemble is smaller or when that keeps the block
/// under the default 48 KiB), one member with an opt-in beyond that.
/// The thresholds are reasoned, not measured: no GPU has run either kernel.
inline FusedEnsembleLaunch plan_fused_ensemble(const FusedEnsembleShape& s, int members, FusedKernelChoice choice,
                                               std::size_t block_static_bytes, std::size_t warp_static_bytes,
                                               const SharedMemoryLimits& limits) {
  FusedEnsembleLaunch block;
  {
    const std::size_t dynamic = fused_ensemble_shared_bytes(s.n, s.m, s.batch, s.chains);
    const SharedMemoryPlan plan = plan_shared_memory(block_static_bytes, dynamic, limits);
    if (plan.fits && members > 0) {
      block = {FusedEnsembleKernel::block, 1, block_kernel_threads(s), members, dynamic, plan.opt_in};
    }
  }
  FusedEnsembleLaunch warp;
  {
    const std::size_t per_member = warp_member_bytes(s);
    int per_block = std::clamp(members, 1, kWarpKernelMembersPerBlock);
    while (per_block > 1 && warp_static_bytes + per_block * per_member > limits.per_block) --per_block;
    const std::size_t dynamic = per_block * per_member;
    const SharedMemoryPlan plan = plan_shared_memory(warp_static_bytes, dynamic, limits);
    if (plan.fits && members > 0) {
      warp = {FusedEnsembleKernel::warp, per_block, per_block * kWarpLanes, (members + per_block - 1) / per_block,
              dynamic, plan.opt_in};
    }
  }
  switch (choice) {
    case FusedKernelChoice::block: return block;
    case FusedKernelChoice::warp: return warp;
    case FusedKernelChoice::automatic: break;
  }
  const bool small = block_kernel_threads(s) <= 64;
  if (warp.kernel != FusedEnsembleKernel::none && small) return warp;
  if (block.kernel != FusedEnsembleKernel::none) return block;
  return warp;
}

}  // namespace marbm::detail
