// Simulated annealing replicas on the device (SPEC.md section 4), the CPU
// solver's algorithm draw for draw (host/mode_solvers.cpp, mode_sa_cpu): the
// same derived temperatures and geometric schedule, the same Philox layout
// (stream mode_search 1, replica r owning (steps + 1) x (padded n + padded m)
// words), block Gibbs h | v then v | h, the warm start on replica 0. With
// fields that sum exactly the replica states equal the CPU's.
//
// Small models run one replica per warp in a fused kernel with W in shared
// memory; large ones compute a step's fields as cuBLAS sgemm over the
// replica batch plus one sampling kernel per layer.
#include <cublas_v2.h>

#include <cmath>
#include <string>

#include "error.cuh"
#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "mode_search_internal.cuh"

namespace marbm::detail {

namespace {

// Each layer's share of a step's Philox words, padded to whole blocks.
__host__ __device__ __forceinline__ std::uint64_t padded_units(int units) {
  return (static_cast<std::uint64_t>(units) + 3) / 4 * 4;
}

// Replica r's Philox words: (steps + 1) x (padded n + padded m) indices,
// initial visible state first, then per step the visible draws and, from
// padded n on, the hidden draws (the CPU solver's layout, stream
// mode_search 1).
__device__ __forceinline__ std::uint64_t sa_base(int r, int steps, int n, int m) {
  return static_cast<std::uint64_t>(r) * (static_cast<std::uint64_t>(steps) + 1) * (padded_units(n) + padded_units(m));
}

// The CPU's draw: p = 1 / (1 + exp(-beta field)) in float, h = [u < p]. The
// exponential goes through double so that it rounds as the host's expf does
// (expf on the device may be 2 ulp off, which would move p and, rarely, a draw).
__device__ __forceinline__ std::uint8_t sa_draw(std::uint64_t seed, std::uint64_t index, float beta, float field) {
  const std::uint64_t stream = random_stream(RandomPurpose::mode_search, 1);
  const float p = 1.0f / (1.0f + static_cast<float>(exp(static_cast<double>(-beta * field))));
  return word_to_uniform(philox_word(seed, stream, index)) < p ? 1 : 0;
}

__device__ __forceinline__ std::uint8_t sa_initial(std::uint64_t seed, std::uint64_t index) {
  return static_cast<std::uint8_t>(philox_word(seed, random_stream(RandomPurpose::mode_search, 1), index) >> 31);
}

// Small models: one replica per warp, W in shared memory, block Gibbs h|v
// then v|h at beta_hot * ratio^step; states (0/1 floats) in shared memory.
__global__ void sa_fused_kernel(const float* __restrict__ weights, const float* __restrict__ visible_bias,
                                const float* __restrict__ hidden_bias, int n, int m, int stride, int replicas, int steps,
                                double beta_hot, double ratio, std::uint64_t seed, const std::uint8_t* __restrict__ warm_v,
                                std::uint8_t* __restrict__ out_v, std::uint8_t* __restrict__ out_h,
                                ReplicaOutput states) {
  extern __shared__ float sa_shared[];
  float* w = sa_shared;
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  float* sv = sa_shared + static_cast<std::size_t>(n) * stride + static_cast<std::size_t>(warp) * (n + m);
  float* sh = sv + n;
  load_weights_shared(weights, n, m, stride, 1.0f, w);
  __syncthreads();
  const int r = blockIdx.x * (blockDim.x / kWarp) + warp;
  if (r >= replicas) return;
  const std::uint64_t base = sa_base(r, steps, n, m);
  const bool warm_replica = r == 0 && warm_v != nullptr;
  for (int i = lane; i < n; i += kWarp) sv[i] = warm_replica ? warm_v[i] : sa_initial(seed, base + i);
  for (int j = lane; j < m; j += kWarp) sh[j] = 0.0f;
  __syncwarp();
  double beta = beta_hot;
  for (int step = 0; step < steps; ++step, beta *= ratio) {
    const std::uint64_t offset = base + (static_cast<std::uint64_t>(step) + 1) * (padded_units(n) + padded_units(m));
    const float fbeta = static_cast<float>(beta);
    for (int j = lane; j < m; j += kWarp) {
      float f = hidden_bias[j];
      for (int i = 0; i < n; ++i) {
        if (sv[i] != 0.0f) f += w[static_cast<std::size_t>(i) * stride + j];
      }
      sh[j] = sa_draw(seed, offset + padded_units(n) + j, fbeta, f);
    }
    __syncwarp();
    for (int i = lane; i < n; i += kWarp) {
      const float* row = w + static_cast<std::size_t>(i) * stride;
      float acc = 0.0f;
      for (int j = 0; j < m; ++j) acc += row[j] * sh[j];
      sv[i] = sa_draw(seed, offset + i, fbeta, visible_bias[i] + acc);
    }
    __syncwarp();
  }
  for (int i = lane; i < n; i += kWarp) {
    out_v[static_cast<std::size_t>(r) * n + i] = sv[i] != 0.0f ? 1 : 0;
    if (states.visible != nullptr) states.visible[static_cast<std::size_t>(r) * n + i] = sv[i];
  }
  for (int j = lane; j < m; j += kWarp) {
    out_h[static_cast<std::size_t>(r) * m + j] = sh[j] != 0.0f ? 1 : 0;
    if (states.hidden != nullptr) states.hidden[static_cast<std::size_t>(r) * m + j] = sh[j];
  }
}

// Large models: states as R x n and R x m float matrices of 0/1.
__global__ void sa_initial_kernel(int replicas, int n, int m, int steps, std::uint64_t seed,
                                  const std::uint8_t* __restrict__ warm_v, float* __restrict__ sv,
                                  float* __restrict__ sh) {
  const std::size_t visible_total = static_cast<std::size_t>(replicas) * n;
  const std::size_t total = visible_total + static_cast<std::size_t>(replicas) * m;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    if (k >= visible_total) {
      sh[k - visible_total] = 0.0f;
      continue;
    }
    const int r = static_cast<int>(k / n);
    const int i = static_cast<int>(k % n);
    sv[k] = (r == 0 && warm_v != nullptr) ? warm_v[i] : sa_initial(seed, sa_base(r, steps, n, m) + i);
  }
}

// Samples one layer of every replica from its field product (bias added
// here). `layer_offset` is 0 for visible draws and padded n for hidden ones.
__global__ void sa_sample_kernel(int replicas, int width, int n, int m, int steps, int step, std::uint64_t seed,
                                 std::uint64_t layer_offset, float beta, const float* __restrict__ bias,
                                 const float* __restrict__ product, float* __restrict__ state) {
  const std::size_t total = static_cast<std::size_t>(replicas) * width;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(k / width);
    const int unit = static_cast<int>(k % width);
    const std::uint64_t index = sa_base(r, steps, n, m) +
                                (static_cast<std::uint64_t>(step) + 1) * (padded_units(n) + padded_units(m)) +
                                layer_offset + unit;
    state[k] = sa_draw(seed, index, beta, bias[unit] + product[k]);
  }
}

}  // namespace

void run_sa(Search& search, const ModeSearchConfig& config, int steps, const ReplicaOutput& output) {
  const int n = search.n, m = search.m, replicas = search.replicas;
  DeviceBuffer<float> ising_field(n + m, search.stream());
  const SearchScalars scalars = prepare_ising(search, ising_field);
  // The CPU solver's schedule (detail::derived_annealing_range). Hot: a flip
  // against a typical field accepted half the time, exp(-beta f) = 1/2. Cold:
  // about 1% of units excited, with |field| spread like a half-normal of
  // scale `typical`: beta = 100 sqrt(2/pi) ln 2 / typical.
  const double pi = std::acos(-1.0);
  const double hot = config.beta_hot > 0.0 ? config.beta_hot : std::log(2.0) / scalars.typical_field;
  const double cold = config.beta_cold > 0.0 ? config.beta_cold
                                             : 100.0 * std::sqrt(2.0 / pi) * std::log(2.0) / scalars.typical_field;
  MARBM_EXPECTS(cold >= hot, UsageError,
                "simulated annealing: beta_cold (" + std::to_string(cold) + ") is below beta_hot (" +
                    std::to_string(hot) + ")");
  const double ratio = steps > 1 ? std::pow(cold / hot, 1.0 / (steps - 1)) : 1.0;

  if (use_fused(sa_fused_kernel, n, m, search.resources.device())) {
    const int blocks = (replicas + kFusedWarps - 1) / kFusedWarps;
    sa_fused_kernel<<<blocks, kFusedWarps * kWarp, fused_shared_bytes(n, m), search.stream()>>>(
        search.weights, search.visible_bias, search.hidden_bias, n, m, odd_stride(m), replicas, steps, hot, ratio,
        config.seed, search.warm_visible(), search.candidates_v.data(), search.candidates_h.data(), output);
    MARBM_CUDA_CHECK_LAST();
    return;
  }

  const std::size_t visible_total = static_cast<std::size_t>(replicas) * n;
  const std::size_t hidden_total = static_cast<std::size_t>(replicas) * m;
  DeviceBuffer<float> sv(visible_total, search.stream()), sh(hidden_total, search.stream());
  DeviceBuffer<float> product_v(visible_total, search.stream()), product_h(hidden_total, search.stream());
  sa_initial_kernel<<<grid_for(visible_total + hidden_total), kGridStrideThreads, 0, search.stream()>>>(
      replicas, n, m, steps, config.seed, search.warm_visible(), sv.data(), sh.data());
  MARBM_CUDA_CHECK_LAST();
  const float one = 1.0f, zero = 0.0f;
  cublasHandle_t handle = search.resources.cublas();
  double beta = hot;
  for (int step = 0; step < steps; ++step, beta *= ratio) {
    const float fbeta = static_cast<float>(beta);
    // h | v: product_h (R x m) = V (R x n) W.
    MARBM_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, replicas, n, &one, search.weights, m, sv.data(),
                                 n, &zero, product_h.data(), m));
    sa_sample_kernel<<<grid_for(hidden_total), kGridStrideThreads, 0, search.stream()>>>(
        replicas, m, n, m, steps, step, config.seed, padded_units(n), fbeta, search.hidden_bias, product_h.data(),
        sh.data());
    MARBM_CUDA_CHECK_LAST();
    // v | h: product_v (R x n) = H (R x m) W^T.
    MARBM_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, replicas, m, &one, search.weights, m, sh.data(),
                                 m, &zero, product_v.data(), n));
    sa_sample_kernel<<<grid_for(visible_total), kGridStrideThreads, 0, search.stream()>>>(
        replicas, n, n, m, steps, step, config.seed, std::uint64_t{0}, fbeta, search.visible_bias, product_v.data(),
        sv.data());
    MARBM_CUDA_CHECK_LAST();
  }
  finish_replicas(search, sv.data(), sh.data(), output);
}

}  // namespace marbm::detail
