// The launch shape of the fused SB/SA replica kernels (cuda/mode_sb.cu,
// cuda/mode_sa.cu): whether a model stays in the fused kernel, the size class
// its unroll is compiled for, how many replicas (one per warp) share a block's
// copy of W in shared memory, and the dynamic shared memory that takes. Pure
// host arithmetic, tested without a device (tests/test_device_limits.cpp);
// the device side feeds it the kernel's static shared memory, the device's
// limits and its SM count.
#pragma once

#include <algorithm>
#include <cstddef>

#include "detail/shared_memory.hpp"

namespace marbm::detail {

enum class ReplicaKernel { sb, sa };

/// Lanes per warp, one replica per warp.
constexpr int kReplicaLanes = 32;
/// Size classes of the fused kernels: a lane owns up to `owned` units of each
/// layer (unit lane + 32 k), so a layer of up to 32 x owned units. The SB
/// kernel is compiled once per class (its per-unit registers unrolled); the
/// largest class bounds the fused path at 256 units per layer.
constexpr int kReplicaOwnedClasses[] = {1, 2, 4, 8};
constexpr int kReplicaMaxOwned = 8;
/// At most this many replicas (warps) per block.
constexpr int kReplicaMaxWarps = 32;

/// The smallest class whose lanes cover both layers; 0 when none does.
constexpr int replica_owned_class(int n, int m) {
  const int larger = n > m ? n : m;
  for (const int owned : kReplicaOwnedClasses) {
    if (kReplicaLanes * owned >= larger) return owned;
  }
  return 0;
}

/// The most warps a block of the class may have: the block's threads times
/// the registers a thread needs must fit the SM's 64 K registers. The SB
/// kernel keeps six floats per owned unit in registers (x, y and the field of
/// each layer): up to 64 registers a thread (1,024 threads) through class 4,
/// up to 128 (512 threads) for class 8. The SA kernel keeps no per-unit
/// registers: 1,024 threads for every class. The kernels' __launch_bounds__
/// say the same (cuda/mode_sb.cu, cuda/mode_sa.cu).
constexpr int replica_max_warps(ReplicaKernel kernel, int owned) {
  return kernel == ReplicaKernel::sb && owned > 4 ? 16 : kReplicaMaxWarps;
}

constexpr std::size_t pad4(std::size_t count) { return (count + 3) / 4 * 4; }

/// W's row stride in shared memory: odd, so that lanes reading one column of
/// different rows hit different banks.
constexpr int replica_weight_stride(int m) { return m % 2 == 1 ? m : m + 1; }

/// Dynamic shared memory of a fused block, in bytes: W (n rows of the odd
/// stride), the per-unit terms every replica reads (n + m floats: the Ising
/// linear terms for SB, the biases for SA) and each warp's replica state
/// (n + m floats: positions or signs for SB, 0/1 states for SA), every part
/// padded to whole float4 so that the parts start 16-byte aligned.
constexpr std::size_t replica_shared_bytes(int n, int m, int warps) {
  const std::size_t layers = pad4(static_cast<std::size_t>(n)) + pad4(static_cast<std::size_t>(m));
  const std::size_t weights = pad4(static_cast<std::size_t>(n) * static_cast<std::size_t>(replica_weight_stride(m)));
  return (weights + (1 + static_cast<std::size_t>(warps)) * layers) * sizeof(float);
}

struct ReplicaPlan {
  bool fused = false;       ///< the fused kernel (else the cuBLAS path)
  int owned = 0;            ///< size class (units per lane and layer); 0 when not fused
  int warps = 0;            ///< replicas per block
  int blocks = 0;           ///< ceil(replicas / warps)
  std::size_t shared_bytes = 0;  ///< dynamic shared memory per block
  bool opt_in = false;      ///< the launch must opt in to shared_bytes
};

/// The fused launch of `replicas` replicas of an n x m model, or none.
/// Replicas per block: enough that every SM gets a block (ceil(replicas /
/// SMs)), at most the class's maximum, then fewer while W plus the warps'
/// state exceed the shared memory a block may have (`static_bytes` of the
/// kernel's own included). Not fused when the larger layer exceeds the
/// largest class or W with one warp does not fit.
constexpr ReplicaPlan plan_replica_kernel(ReplicaKernel kernel, int n, int m, int replicas, int multiprocessors,
                                          std::size_t static_bytes, const SharedMemoryLimits& limits) {
  ReplicaPlan plan;
  if (n < 1 || m < 1 || replicas < 1) return plan;
  const int owned = replica_owned_class(n, m);
  if (owned == 0) return plan;
  const int sms = multiprocessors > 0 ? multiprocessors : 1;
  const int spread = replicas / sms + (replicas % sms != 0 ? 1 : 0);
  int warps = std::clamp(spread, 1, replica_max_warps(kernel, owned));
  while (warps > 0 && !plan_shared_memory(static_bytes, replica_shared_bytes(n, m, warps), limits).fits) --warps;
  if (warps == 0) return plan;
  const SharedMemoryPlan memory = plan_shared_memory(static_bytes, replica_shared_bytes(n, m, warps), limits);
  plan.fused = true;
  plan.owned = owned;
  plan.warps = warps;
  plan.blocks = replicas / warps + (replicas % warps != 0 ? 1 : 0);
  plan.shared_bytes = replica_shared_bytes(n, m, warps);
  plan.opt_in = memory.opt_in;
  return plan;
}

}  // namespace marbm::detail
