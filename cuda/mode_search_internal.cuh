// What the ground-state solvers on the device share (cuda/mode_search.cu
// drives them; one file per solver: mode_exhaustive.cu, mode_sb.cu,
// mode_sa.cu). Internal to the CUDA engine.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "detail/mode_exhaustive_plan.hpp"
#include "device_buffer.cuh"
#include "detail/replica_plan.hpp"
#include "device_common.cuh"
#include "launch.cuh"
#include "marbm/mode.hpp"
#include "philox.cuh"
#include "resources.cuh"

namespace marbm::detail {

constexpr unsigned kFullMask = 0xffffffffu;

// The replica kernels in use: the current ones (several replicas per block
// sharing W, unroll by size class, the large-model loop in CUDA graphs) or,
// with MARBM_REPLICA_KERNELS=legacy, the earlier ones (four replicas per
// block within the default shared memory, one Philox block per SA draw, dSB
// fields summed in full each step, the large-model loop launched step by
// step), kept so that a first device run can tell which of the two is wrong.
// Any other value is refused (UsageError). Read at every search.
bool legacy_replica_kernels();

// The launch plan of a fused replica kernel on `device` (detail/replica_plan.hpp)
// with the kernel's static shared memory. When the plan needs more than the
// default, the kernel is opted in to all the device allows a block (not just
// this plan's bytes): the attribute is the kernel's, process-wide, and one
// value for every search keeps a search in another thread from lowering it
// between this one's opt-in and launch.
template <typename Kernel>
ReplicaPlan prepare_replica_kernel(Kernel kernel, ReplicaKernel which, int n, int m, int replicas, int multiprocessors,
                                   int device) {
  const std::size_t static_bytes = static_shared_bytes(kernel);
  const SharedMemoryLimits limits = shared_memory_limits(device);
  const ReplicaPlan plan = plan_replica_kernel(which, n, m, replicas, multiprocessors, static_bytes, limits);
  if (plan.fused && plan.opt_in) {
    MARBM_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(limits.per_block_opt_in - static_bytes)));
  }
  return plan;
}

// The step loop of a large-model search: `record_step(offset)` enqueues one
// step on the search's stream whose index the kernels read as
// *step_base + offset. Steps run kGraphSteps at a time as one CUDA graph
// (captured once per search, then launched again and again, a one-thread
// kernel advancing *step_base by kGraphSteps after each), the remainder
// launched directly. A graph is not kept from one search to the next: its
// kernel arguments (c0, the search's buffers) change with every search, and
// capturing 16 steps (about 50 nodes) costs little beside the 1,000-2,000
// steps of a large-model search. `graphs` false (the legacy path, or MARBM_CUDA_SYNC=1,
// whose synchronisation after each launch a capture cannot take) launches
// every step directly with *step_base left at 0.
constexpr int kGraphSteps = 16;
void run_step_loop(cudaStream_t stream, int steps, int* step_base, bool graphs,
                   const std::function<void(int offset)>& record_step);

// Fused kernels (legacy): replicas (warps) per block, and the most units per
// layer a lane can own (kMaxOwned spins of each layer, strided by the warp
// size).
constexpr int kFusedWarps = 4;
constexpr int kMaxOwned = 8;
constexpr int kMaxFusedUnits = kWarp * kMaxOwned;
constexpr int kReduceThreads = 1024;

// A tree reduction over the block's slots (blockDim.x a power of two, every
// thread has written its slot): the lowest energy, the lowest index on ties,
// ends in slot 0.
template <typename Index>
__device__ void block_lowest(double* energies, Index* indices) {
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const double e = energies[threadIdx.x + half];
      const Index at = indices[threadIdx.x + half];
      if (e < energies[threadIdx.x] || (e == energies[threadIdx.x] && at < indices[threadIdx.x])) {
        energies[threadIdx.x] = e;
        indices[threadIdx.x] = at;
      }
    }
    __syncthreads();
  }
}

// Word `index` of the Philox stream (seed, stream), marbm::PhiloxStream::bits
// on the device (the keying lives in philox.cuh, shared with the samplers).
__device__ __forceinline__ std::uint32_t philox_word(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return word_at(philox_block(seed, stream, index >> 2), static_cast<int>(index & 3));
}

__device__ __forceinline__ float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

// Copies `scale` * W into shared memory with an odd row stride, so that lanes
// reading one column of different rows hit different banks.
__device__ inline void load_weights_shared(const float* __restrict__ weights, int n, int m, int stride, float scale,
                                           float* __restrict__ shared) {
  const int total = n * m;
  for (int k = threadIdx.x; k < total; k += blockDim.x) shared[(k / m) * stride + k % m] = scale * weights[k];
}

inline int odd_stride(int m) { return (m % 2 == 1) ? m : m + 1; }

// Dynamic shared memory of the fused SB and SA kernels: W with an odd row
// stride, and each warp's replica state (n + m floats).
inline std::size_t fused_shared_bytes(int n, int m) {
  return (static_cast<std::size_t>(n) * odd_stride(m) + static_cast<std::size_t>(kFusedWarps) * (n + m)) * sizeof(float);
}

// The fused kernels keep W in shared memory without opting in to more than
// the default per-block amount (static shared memory included).
template <typename Kernel>
bool use_fused(Kernel kernel, int n, int m, int device) {
  if (n > kMaxFusedUnits || m > kMaxFusedUnits) return false;
  const SharedMemoryPlan plan = shared_memory_plan(kernel, fused_shared_bytes(n, m), device);
  return plan.fits && !plan.opt_in;
}

// The state a search works on: parameters (device pointers owned by the
// caller), the transposed weights, optional warm start, candidate states.
struct Search {
  Resources& resources;
  const float* weights;
  const float* visible_bias;
  const float* hidden_bias;
  int n;
  int m;
  DeviceBuffer<float> transposed;
  DeviceBuffer<std::uint8_t> warm_v;
  DeviceBuffer<std::uint8_t> warm_h;
  DeviceBuffer<std::uint8_t> candidates_v;
  DeviceBuffer<std::uint8_t> candidates_h;
  int replicas = 0;    // search replicas (the first candidates)
  int candidates = 0;  // replicas, plus the warm start when given

  cudaStream_t stream() const { return resources.stream(); }
  const std::uint8_t* warm_visible() const { return warm_v.empty() ? nullptr : warm_v.data(); }
  const std::uint8_t* warm_hidden() const { return warm_h.empty() ? nullptr : warm_h.data(); }
  void allocate_candidates(int search_replicas);
};

// Where a solver leaves the replicas' continuous state for the trajectory
// tests (R x n and R x m floats: SB positions, SA 0/1 states), or nulls.
struct ReplicaOutput {
  float* visible = nullptr;
  float* hidden = nullptr;
};

struct SearchScalars {
  double c0 = 1.0;
  double typical_field = 1.0;
};

// The Ising linear terms a/2 + W 1/4 and b/2 + W^T 1/4 (n + m floats) into
// ising_field on the device; c0 and the typical local field read back to the
// host (the CPU solvers' IsingForm::scale and derived_annealing_range).
SearchScalars prepare_ising(Search& search, DeviceBuffer<float>& ising_field);

// The end of a solver's large path: the replicas' states (R x n and R x m
// floats: positions or 0/1) become the candidates ([value > 0]), and are
// copied to `output` where it asks for them.
void finish_replicas(Search& search, const float* visible, const float* hidden, const ReplicaOutput& output);

// The solvers: each leaves search.replicas candidate states in
// search.candidates_v / candidates_h (the polish follows in mode_search.cu).
void run_sb(Search& search, const ModeSearchConfig& config, int steps, const ReplicaOutput& output = {});
void run_sa(Search& search, const ModeSearchConfig& config, int steps, const ReplicaOutput& output = {});
void run_exhaustive(Search& search, const ModeSearchConfig& config);
// Throws RuntimeFailure when min(n, m) exceeds config.max_enumerated_units.
void check_enumerable(int n, int m, const ModeSearchConfig& config);

// The models of a batched search, all n x m: model q (0 <= q < count) is
// member members[q], whose parameters start at weights + member x
// weights_stride, visible_bias + member x visible_stride, hidden_bias +
// member x hidden_stride; its transposed weights (m x n) at transposed +
// q x n x m. enumerate_hidden: m <= n (the exhaustive plan's choice). The
// index products are taken in size_t.
struct BatchedModels {
  const float* weights = nullptr;
  std::size_t weights_stride = 0;
  const float* visible_bias = nullptr;
  std::size_t visible_stride = 0;
  const float* hidden_bias = nullptr;
  std::size_t hidden_stride = 0;
  const float* transposed = nullptr;
  const int* members = nullptr;
  int n = 0;
  int m = 0;
  bool enumerate_hidden = false;

  __device__ const float* weights_of(int q) const {
    return weights + static_cast<std::size_t>(members[q]) * weights_stride;
  }
  __device__ const float* visible_of(int q) const {
    return visible_bias + static_cast<std::size_t>(members[q]) * visible_stride;
  }
  __device__ const float* hidden_of(int q) const {
    return hidden_bias + static_cast<std::size_t>(members[q]) * hidden_stride;
  }
  __device__ const float* transposed_of(int q) const {
    return transposed + static_cast<std::size_t>(q) * n * m;
  }
  // The exhaustive kernel's view: row u couples enumerated unit u to the
  // other layer; bias of the enumerated and of the other layer.
  __device__ const float* rows(int q) const { return enumerate_hidden ? transposed_of(q) : weights_of(q); }
  __device__ const float* bias_k(int q) const { return enumerate_hidden ? hidden_of(q) : visible_of(q); }
  __device__ const float* bias_l(int q) const { return enumerate_hidden ? visible_of(q) : hidden_of(q); }
};

// The exhaustive search of `count` models in one launch per stage (grid y
// over models, each model's blocks and chunks as in its own run_exhaustive):
// model q's decoded state into candidates_v + q n and candidates_h + q m.
void run_exhaustive_batched(Resources& resources, const BatchedModels& models, int count, std::uint8_t* candidates_v,
                            std::uint8_t* candidates_h);

// The exhaustive search's kernels (cuda/mode_exhaustive.cu). The plan on this
// device: plan_exhaustive with MARBM_EXHAUSTIVE_KERNEL read (UsageError for a
// bad value).
ExhaustivePlan device_exhaustive_plan(Resources& resources, int k, int l);
// Enumerates the k-unit layer (rows k x l, device pointers) with the kernel
// `plan` names, on resources.stream(); each warp's lowest (energy, Gray index)
// into the slots (allocated here).
void launch_exhaustive(Resources& resources, const float* rows, const float* bias_k, const float* bias_l, int k, int l,
                       const ExhaustivePlan& plan, DeviceBuffer<double>& slot_energy,
                       DeviceBuffer<std::uint64_t>& slot_index);
// launch_exhaustive's slots reduced on the host (tests and benchmarks).
ExhaustiveLowest exhaustive_lowest_device(Resources& resources, const float* rows, const float* bias_k,
                                          const float* bias_l, int k, int l, const ExhaustivePlan& plan);

}  // namespace marbm::detail
