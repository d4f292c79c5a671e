// Device code every kernel file shares: grid sizing, the logistic, the
// deterministic block sum, and the sampling and random-number layout that
// makes the engines agree (counter-based Philox, DESIGN.md house style 6).
// The last is written only here: the single engine (gibbs.cu), the fused
// ensemble kernel (ensemble.cu) and the batched ensemble (ensemble_batched.cu)
// all draw through sample_unit_group and chain_start_group, so they cannot
// drift apart; the CPU engine's counterpart is host/cpu_engine.cpp (same
// indices, same 24-bit uniforms). AIS on the device (ais.cu) draws through
// ais_sample_group, whose counterpart is host/ais.cpp.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "gibbs.cuh"
#include "philox.cuh"

namespace marbm::detail {

/// Threads per block of the elementwise (grid-stride) kernels.
constexpr int kGridStrideThreads = 256;

/// Blocks for a grid-stride loop over `count` items, `per_thread` items per
/// thread, `threads` per block: at least 1, at most 65535 * 16 (the loops
/// cover the rest).
inline unsigned grid_for(std::size_t count, int per_thread = 1, int threads = kGridStrideThreads) {
  const std::size_t work = (count + per_thread - 1) / per_thread;
  const std::size_t blocks = std::clamp<std::size_t>((work + threads - 1) / threads, 1, 65535u * 16u);
  return static_cast<unsigned>(blocks);
}

__device__ inline float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

constexpr int kWarp = 32;

/// Butterfly sum: every lane ends with the bitwise same value (addition is
/// commutative), so lane-divergent decisions cannot arise from it.
__device__ __forceinline__ double warp_sum(double value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

/// Block sum in a fixed order (deterministic run to run). blockDim.x must be
/// a multiple of the warp size; every thread of the block must call it. All
/// threads get the result.
__device__ inline double block_sum(double value) {
  __shared__ double partial[kWarp];
  __shared__ double total;
  value = warp_sum(value);
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  __syncthreads();  // an earlier call's readers are done with `partial`
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / kWarp;
    double v = lane < warps ? partial[lane] : 0.0;
    v = warp_sum(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  const double result = total;
  __syncthreads();  // `partial` and `total` may be reused by a later call
  return result;
}

/// Units first .. first + 3 (first a multiple of 4; those below `width`) of
/// row `row` in half-sweep `half_sweep`: p = sigmoid(field(unit)), sample =
/// [uniform < p] with the uniform from the Philox word at
/// gibbs_random_index(half_sweep, row, width, unit); then store(unit, p, sample).
/// One Philox block serves the four units.
template <typename Field, typename Store>
__device__ inline void sample_unit_group(std::uint64_t seed, std::uint64_t stream, std::uint64_t half_sweep,
                                         std::uint64_t row, int width, int first, Field field, Store store) {
  const uint4 words = philox_block(seed, stream, gibbs_random_index(half_sweep, row, width, first) >> 2);
  for (int lane = 0; lane < 4 && first + lane < width; ++lane) {
    const int unit = first + lane;
    const float p = sigmoid_f(field(unit));
    store(unit, p, word_to_uniform(word_at(words, lane)) < p ? 1.0f : 0.0f);
  }
}

/// The persistent-chain start of units first .. first + 3 of chain `row`
/// (Engine::reset_persistent_chains): bit 31 of the word at
/// gibbs_random_index(0, row, width, unit); store(unit, 0 or 1).
template <typename Store>
__device__ inline void chain_start_group(std::uint64_t seed, std::uint64_t stream, std::uint64_t row, int width,
                                         int first, Store store) {
  const uint4 words = philox_block(seed, stream, gibbs_random_index(0, row, width, first) >> 2);
  for (int lane = 0; lane < 4 && first + lane < width; ++lane)
    store(first + lane, static_cast<float>(word_at(words, lane) >> 31));
}

/// AIS draws (host/ais.cpp's layout): units first .. first + 3 (first a
/// multiple of 4; those below `width`) of one run read Philox block
/// (first_word + first) / 4 of (seed, stream), first_word a multiple of 4.
/// Unit u gets p = probability(u) (a double) and, with `draw`, the sample
/// [uniform < p] with the uniform of word first_word + u compared in double,
/// as on the CPU; then store(u, sample). Without `draw`, probability(u) is
/// still called (for what it accumulates) and nothing is stored.
template <typename Probability, typename Store>
__device__ inline void ais_sample_group(std::uint64_t seed, std::uint64_t stream, std::uint64_t first_word, int first,
                                        int width, Probability probability, Store store, bool draw) {
  uint4 words = make_uint4(0, 0, 0, 0);
  if (draw) words = philox_block(seed, stream, (first_word + static_cast<std::uint64_t>(first)) >> 2);
  for (int lane = 0; lane < 4 && first + lane < width; ++lane) {
    const int unit = first + lane;
    const double p = probability(unit);
    if (draw) store(unit, static_cast<double>(word_to_uniform(word_at(words, lane))) < p ? 1.0f : 0.0f);
  }
}

}  // namespace marbm::detail
