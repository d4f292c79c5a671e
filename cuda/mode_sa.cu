// Simulated annealing replicas on the device (SPEC.md section 4), the CPU
// solver's algorithm draw for draw (host/mode_solvers.cpp, mode_sa_cpu): the
// same derived temperatures and geometric schedule, the same Philox layout
// (stream mode_search 1, replica r owning (steps + 1) x (padded n + padded m)
// words), block Gibbs h | v then v | h, the warm start on replica 0. With
// fields that sum exactly the replica states equal the CPU's.
//
// Each layer's share of a step starts on a Philox block boundary (the
// padding), so four consecutive units draw from one block: the kernels
// compute one Philox block per four draws (the CPU's fill_uniforms does the
// same), and the stream is the one the CPU solver has always drawn.
//
// Models whose larger layer has at most 256 units run the fused kernel
// (sa_replicas_kernel): one replica per warp, several per block sharing W
// in shared memory (opted in up to the device's limit; detail/replica_plan.hpp
// decides the shape); larger ones compute a step's fields as cuBLAS sgemm
// over the replica batch plus one sampling kernel per layer, the steps
// launched as CUDA graphs of kGraphSteps steps.
//
// MARBM_REPLICA_KERNELS=legacy selects the earlier kernels (the legacy
// namespace: four replicas per block within the default shared memory, one
// Philox block per draw, steps launched one by one).
//
// None of this has run on a GPU yet: compiled, reviewed, tested on the CPU
// twins only (tests/gpu/test_cuda_mode.cpp runs where a device is present).
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

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
__device__ __forceinline__ std::uint8_t sa_draw_word(std::uint32_t word, float beta, float field) {
  const float p = 1.0f / (1.0f + static_cast<float>(exp(static_cast<double>(-beta * field))));
  return word_to_uniform(word) < p ? 1 : 0;
}

__device__ __forceinline__ std::uint8_t sa_draw(std::uint64_t seed, std::uint64_t index, float beta, float field) {
  return sa_draw_word(philox_word(seed, random_stream(RandomPurpose::mode_search, 1), index), beta, field);
}

// The 128 words of blocks first_block .. first_block + 31, one Philox block
// per lane (lane L computes block first_block + L), traded so that lane L
// ends with word 32 k + L of the range in words[k], k < 4. With first_block
// the block of a layer's unit 128 c, words[k] is then the word of the lane's
// unit 128 c + 32 k + L. Called by every lane of the warp (full-mask
// shuffles).
__device__ __forceinline__ void warp_words(std::uint64_t seed, std::uint64_t stream, std::uint64_t first_block, int lane,
                                           std::uint32_t (&words)[4]) {
  const uint4 block = philox_block(seed, stream, first_block + static_cast<std::uint64_t>(lane));
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int source = 8 * k + lane / 4;  // block (32 k + lane) / 4, word (32 k + lane) % 4
    const uint4 traded = make_uint4(__shfl_sync(kFullMask, block.x, source), __shfl_sync(kFullMask, block.y, source),
                                    __shfl_sync(kFullMask, block.z, source), __shfl_sync(kFullMask, block.w, source));
    words[k] = word_at(traded, lane & 3);
  }
}

__device__ __forceinline__ std::uint8_t sa_initial(std::uint64_t seed, std::uint64_t index) {
  return static_cast<std::uint8_t>(philox_word(seed, random_stream(RandomPurpose::mode_search, 1), index) >> 31);
}

namespace legacy {

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

}  // namespace legacy

// ------------------------------------------------------------ current kernels

// One replica per warp, blockDim.x / 32 replicas per block sharing W in
// shared memory (layout: detail/replica_shared_bytes): W (n rows of
// `stride`), the biases (padded n, then m), and per warp its replica's 0/1
// states (padded n, then m). Lane owns units lane + 32 k of each layer; the
// Philox words of 128 units come from one block per lane (warp_words).
// Block Gibbs h | v then v | h at beta_hot * ratio^step. The hidden fields
// sum W's rows of the visible units that are on in ascending order, as the
// CPU does (equal bit for bit); the visible fields sum row . h in order (the
// CPU's vectorised sum differs in order: equal when the sums are exact).
__global__ void __launch_bounds__(kReplicaLanes * kReplicaMaxWarps, 1)
    sa_replicas_kernel(const float* __restrict__ weights, const float* __restrict__ visible_bias,
                       const float* __restrict__ hidden_bias, int n, int m, int stride, int replicas, int steps,
                       double beta_hot, double ratio, std::uint64_t seed, const std::uint8_t* __restrict__ warm_v,
                       std::uint8_t* __restrict__ out_v, std::uint8_t* __restrict__ out_h, ReplicaOutput states) {
  extern __shared__ float4 sa_replica_shared[];
  float* shared = reinterpret_cast<float*>(sa_replica_shared);
  const int pn = static_cast<int>(padded_units(n)), pm = static_cast<int>(padded_units(m));
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  float* w = shared;
  float* bias_v = shared + pad4(static_cast<std::size_t>(n) * stride);
  float* bias_h = bias_v + pn;
  float* sv = bias_v + (pn + pm) + warp * (pn + pm);
  float* sh = sv + pn;
  load_weights_shared(weights, n, m, stride, 1.0f, w);
  for (int u = threadIdx.x; u < n + m; u += blockDim.x) {
    if (u < n) {
      bias_v[u] = visible_bias[u];
    } else {
      bias_h[u - n] = hidden_bias[u - n];
    }
  }
  __syncthreads();
  const int r = blockIdx.x * (blockDim.x / kWarp) + warp;
  if (r >= replicas) return;  // after the only block-wide barrier; whole warps leave
  const std::uint64_t stream = random_stream(RandomPurpose::mode_search, 1);
  const std::uint64_t units = padded_units(n) + padded_units(m);
  const std::uint64_t base = sa_base(r, steps, n, m);  // a multiple of 4: whole blocks
  const bool warm_replica = r == 0 && warm_v != nullptr;
  std::uint32_t words[4];
  for (int c = 0; c * 128 < n; ++c) {  // warp-uniform bound: every lane trades words
    warp_words(seed, stream, base / 4 + 32 * static_cast<std::uint64_t>(c), lane, words);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int i = 128 * c + kWarp * k + lane;
      if (i < n) sv[i] = warm_replica ? warm_v[i] : static_cast<float>(words[k] >> 31);
    }
  }
  for (int j = lane; j < m; j += kWarp) sh[j] = 0.0f;
  __syncwarp();
  double beta = beta_hot;
  for (int step = 0; step < steps; ++step, beta *= ratio) {
    const std::uint64_t offset = base + (static_cast<std::uint64_t>(step) + 1) * units;
    const float fbeta = static_cast<float>(beta);
    // h | v: reads sv only, each lane writes its own sh[j].
    for (int c = 0; c * 128 < m; ++c) {
      warp_words(seed, stream, (offset + padded_units(n)) / 4 + 32 * static_cast<std::uint64_t>(c), lane, words);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int j = 128 * c + kWarp * k + lane;
        if (j < m) {
          float f = bias_h[j];
          for (int i = 0; i < n; ++i) {
            if (sv[i] != 0.0f) f += w[i * stride + j];
          }
          sh[j] = sa_draw_word(words[k], fbeta, f);
        }
      }
    }
    __syncwarp();
    // v | h: reads sh only, each lane writes its own sv[i].
    for (int c = 0; c * 128 < n; ++c) {
      warp_words(seed, stream, offset / 4 + 32 * static_cast<std::uint64_t>(c), lane, words);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int i = 128 * c + kWarp * k + lane;
        if (i < n) {
          const float* row = w + i * stride;
          float acc = 0.0f;
          for (int j = 0; j < m; ++j) acc += row[j] * sh[j];
          sv[i] = sa_draw_word(words[k], fbeta, bias_v[i] + acc);
        }
      }
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

// Large models: states as R x n and R x m float matrices of 0/1. One thread
// per four consecutive units of a replica's layer (one Philox block).
__global__ void sa_initial4_kernel(int replicas, int n, int m, int steps, std::uint64_t seed,
                                   const std::uint8_t* __restrict__ warm_v, float* __restrict__ sv,
                                   float* __restrict__ sh) {
  const std::uint64_t stream = random_stream(RandomPurpose::mode_search, 1);
  const std::size_t groups = padded_units(n) / 4;
  const std::size_t total = static_cast<std::size_t>(replicas) * groups;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(k / groups);
    const int first = static_cast<int>(k % groups) * 4;
    const bool warm_replica = r == 0 && warm_v != nullptr;
    const uint4 block = philox_block(seed, stream, (sa_base(r, steps, n, m) + first) / 4);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int i = first + w;
      if (i < n) {
        sv[static_cast<std::size_t>(r) * n + i] = warm_replica ? warm_v[i] : static_cast<float>(word_at(block, w) >> 31);
      }
    }
  }
  const std::size_t hidden_total = static_cast<std::size_t>(replicas) * m;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < hidden_total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    sh[k] = 0.0f;
  }
}

// Samples one layer of every replica from its field product (bias added
// here), four consecutive units per thread from one Philox block. The step
// is *step_base + offset (run_step_loop), its beta the host's float from
// `betas`. `layer_offset` is 0 for visible draws and padded n for hidden ones.
__global__ void sa_sample4_kernel(int replicas, int width, int n, int m, int steps, std::uint64_t seed,
                                  std::uint64_t layer_offset, const float* __restrict__ betas,
                                  const int* __restrict__ step_base, int offset, const float* __restrict__ bias,
                                  const float* __restrict__ product, float* __restrict__ state) {
  const int step = *step_base + offset;
  const float beta = betas[step];
  const std::uint64_t stream = random_stream(RandomPurpose::mode_search, 1);
  const std::uint64_t layer = (static_cast<std::uint64_t>(step) + 1) * (padded_units(n) + padded_units(m)) + layer_offset;
  const std::size_t groups = padded_units(width) / 4;
  const std::size_t total = static_cast<std::size_t>(replicas) * groups;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(k / groups);
    const int first = static_cast<int>(k % groups) * 4;
    const uint4 block = philox_block(seed, stream, (sa_base(r, steps, n, m) + layer + first) / 4);
    const std::size_t row = static_cast<std::size_t>(r) * width;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int unit = first + w;
      if (unit < width) state[row + unit] = sa_draw_word(word_at(block, w), beta, bias[unit] + product[row + unit]);
    }
  }
}

namespace legacy {

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

}  // namespace legacy

}  // namespace

namespace {

// The earlier kernels (MARBM_REPLICA_KERNELS=legacy), as they were.
void run_sa_legacy(Search& search, const ModeSearchConfig& config, int steps, const ReplicaOutput& output, double hot,
                   double ratio) {
  const int n = search.n, m = search.m, replicas = search.replicas;
  if (use_fused(legacy::sa_fused_kernel, n, m, search.resources.device())) {
    const int blocks = (replicas + kFusedWarps - 1) / kFusedWarps;
    legacy::sa_fused_kernel<<<blocks, kFusedWarps * kWarp, fused_shared_bytes(n, m), search.stream()>>>(
        search.weights, search.visible_bias, search.hidden_bias, n, m, odd_stride(m), replicas, steps, hot, ratio,
        config.seed, search.warm_visible(), search.candidates_v.data(), search.candidates_h.data(), output);
    MARBM_CUDA_CHECK_LAST();
    return;
  }

  const std::size_t visible_total = static_cast<std::size_t>(replicas) * n;
  const std::size_t hidden_total = static_cast<std::size_t>(replicas) * m;
  DeviceBuffer<float> sv(visible_total, search.stream()), sh(hidden_total, search.stream());
  DeviceBuffer<float> product_v(visible_total, search.stream()), product_h(hidden_total, search.stream());
  legacy::sa_initial_kernel<<<grid_for(visible_total + hidden_total), kGridStrideThreads, 0, search.stream()>>>(
      replicas, n, m, steps, config.seed, search.warm_visible(), sv.data(), sh.data());
  MARBM_CUDA_CHECK_LAST();
  const float one = 1.0f, zero = 0.0f;
  cublasHandle_t handle = search.resources.cublas();
  double beta = hot;
  for (int step = 0; step < steps; ++step, beta *= ratio) {
    const float fbeta = static_cast<float>(beta);
    MARBM_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, replicas, n, &one, search.weights, m, sv.data(),
                                 n, &zero, product_h.data(), m));
    legacy::sa_sample_kernel<<<grid_for(hidden_total), kGridStrideThreads, 0, search.stream()>>>(
        replicas, m, n, m, steps, step, config.seed, padded_units(n), fbeta, search.hidden_bias, product_h.data(),
        sh.data());
    MARBM_CUDA_CHECK_LAST();
    MARBM_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, replicas, m, &one, search.weights, m, sh.data(),
                                 m, &zero, product_v.data(), n));
    legacy::sa_sample_kernel<<<grid_for(visible_total), kGridStrideThreads, 0, search.stream()>>>(
        replicas, n, n, m, steps, step, config.seed, std::uint64_t{0}, fbeta, search.visible_bias, product_v.data(),
        sv.data());
    MARBM_CUDA_CHECK_LAST();
  }
  finish_replicas(search, sv.data(), sh.data(), output);
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

  if (legacy_replica_kernels()) {
    run_sa_legacy(search, config, steps, output, hot, ratio);
    return;
  }
  const ReplicaPlan plan = prepare_replica_kernel(sa_replicas_kernel, ReplicaKernel::sa, n, m, replicas,
                                                  search.resources.multiprocessors(), search.resources.device());
  if (plan.fused) {
    sa_replicas_kernel<<<plan.blocks, plan.warps * kWarp, plan.shared_bytes, search.stream()>>>(
        search.weights, search.visible_bias, search.hidden_bias, n, m, replica_weight_stride(m), replicas, steps, hot,
        ratio, config.seed, search.warm_visible(), search.candidates_v.data(), search.candidates_h.data(), output);
    MARBM_CUDA_CHECK_LAST();
    return;
  }

  const std::size_t visible_total = static_cast<std::size_t>(replicas) * n;
  const std::size_t hidden_total = static_cast<std::size_t>(replicas) * m;
  DeviceBuffer<float> sv(visible_total, search.stream()), sh(hidden_total, search.stream());
  DeviceBuffer<float> product_v(visible_total, search.stream()), product_h(hidden_total, search.stream());
  // Every step's beta as the host computes it (beta *= ratio in double, then float).
  std::vector<float> host_betas(static_cast<std::size_t>(steps));
  double beta = hot;
  for (int step = 0; step < steps; ++step, beta *= ratio) host_betas[step] = static_cast<float>(beta);
  DeviceBuffer<float> betas(host_betas.size(), search.stream());
  betas.copy_from_host(host_betas);
  DeviceBuffer<int> step_base(1, search.stream());
  const std::size_t visible_groups = static_cast<std::size_t>(replicas) * (padded_units(n) / 4);
  const std::size_t hidden_groups = static_cast<std::size_t>(replicas) * (padded_units(m) / 4);
  sa_initial4_kernel<<<grid_for(std::max(visible_groups, hidden_total)), kGridStrideThreads, 0, search.stream()>>>(
      replicas, n, m, steps, config.seed, search.warm_visible(), sv.data(), sh.data());
  MARBM_CUDA_CHECK_LAST();
  const float one = 1.0f, zero = 0.0f;
  cublasHandle_t handle = search.resources.cublas();
  run_step_loop(search.stream(), steps, step_base.data(), true, [&](int offset) {
    // h | v: product_h (R x m) = V (R x n) W.
    MARBM_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, replicas, n, &one, search.weights, m, sv.data(),
                                 n, &zero, product_h.data(), m));
    sa_sample4_kernel<<<grid_for(hidden_groups), kGridStrideThreads, 0, search.stream()>>>(
        replicas, m, n, m, steps, config.seed, padded_units(n), betas.data(), step_base.data(), offset,
        search.hidden_bias, product_h.data(), sh.data());
    MARBM_CUDA_CHECK_LAST();
    // v | h: product_v (R x n) = H (R x m) W^T.
    MARBM_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, replicas, m, &one, search.weights, m, sh.data(),
                                 m, &zero, product_v.data(), n));
    sa_sample4_kernel<<<grid_for(visible_groups), kGridStrideThreads, 0, search.stream()>>>(
        replicas, n, n, m, steps, config.seed, std::uint64_t{0}, betas.data(), step_base.data(), offset,
        search.visible_bias, product_v.data(), sv.data());
    MARBM_CUDA_CHECK_LAST();
  });
  finish_replicas(search, sv.data(), sh.data(), output);
}

}  // namespace marbm::detail
