// Exact log Z by Gray-code enumeration on the device (see exact_enumeration.cuh).
#include <cmath>
#include <cstdint>
#include <string>

#include "device_buffer.cuh"
#include "error.cuh"
#include "exact_enumeration.cuh"
#include "launch.cuh"
#include "marbm/error.hpp"

namespace marbm::detail {

namespace {

constexpr int kThreads = 128;
// Padding for unused field slots: exp(-|f|) underflows to 0 and max(f, 0) is
// 0, so a padded slot contributes exactly nothing to the sum of softplus.
constexpr double kAbsentField = -1.0e300;

// The enumerated layer has k units with biases `linear`; the other layer has
// `fields` units whose fields start at `field_bias` and gain coupling column e
// (stride `pitch`) when enumerated unit e is on.
struct Problem {
  const double* coupling = nullptr;    // k columns of `pitch` doubles
  const double* linear = nullptr;      // k
  const double* field_bias = nullptr;  // pitch (padded with kAbsentField)
  int k = 0;
  int fields = 0;
  int pitch = 0;
  int chunk_log = 0;                   // each thread enumerates 2^chunk_log consecutive codes
  std::uint64_t threads = 0;
};

__global__ void prepare_problem_kernel(const float* __restrict__ weights, const float* __restrict__ visible_bias,
                                       const float* __restrict__ hidden_bias, int n, int m, bool enumerate_hidden,
                                       int pitch, double* __restrict__ coupling, double* __restrict__ linear,
                                       double* __restrict__ field_bias) {
  const int k = enumerate_hidden ? m : n;
  const int fields = enumerate_hidden ? n : m;
  const int total = k * pitch;
  for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += gridDim.x * blockDim.x) {
    const int e = idx / pitch;
    const int l = idx % pitch;
    double value = 0.0;
    if (l < fields) {
      // enumerate hidden: column e is W[:, e]; enumerate visible: W[e, :].
      value = enumerate_hidden ? weights[static_cast<std::size_t>(l) * m + e]
                               : weights[static_cast<std::size_t>(e) * m + l];
    }
    coupling[idx] = value;
  }
  for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < pitch; idx += gridDim.x * blockDim.x) {
    if (idx < k) linear[idx] = enumerate_hidden ? hidden_bias[idx] : visible_bias[idx];
    field_bias[idx] = idx < fields ? (enumerate_hidden ? visible_bias[idx] : hidden_bias[idx]) : kAbsentField;
  }
}

__device__ inline void accumulate(double x, double& running_max, double& running_sum) {
  if (x > running_max) {
    running_sum = running_sum * exp(running_max - x) + 1.0;
    running_max = x;
  } else {
    running_sum += exp(x - running_max);
  }
}

// Block-wide combine of (max, sum) pairs into slot blockIdx.x of the outputs.
__device__ void block_combine(double running_max, double running_sum, double* block_max, double* block_sum) {
  __shared__ double shared_max[kThreads];
  __shared__ double shared_sum[kThreads];
  shared_max[threadIdx.x] = running_max;
  __syncthreads();
  for (int offset = blockDim.x / 2; offset > 0; offset /= 2) {
    if (threadIdx.x < offset) shared_max[threadIdx.x] = fmax(shared_max[threadIdx.x], shared_max[threadIdx.x + offset]);
    __syncthreads();
  }
  const double top = shared_max[0];
  // A thread that saw nothing has sum 0 (and max -inf): it contributes 0.
  shared_sum[threadIdx.x] = running_sum > 0.0 ? running_sum * exp(running_max - top) : 0.0;
  __syncthreads();
  for (int offset = blockDim.x / 2; offset > 0; offset /= 2) {
    if (threadIdx.x < offset) shared_sum[threadIdx.x] += shared_sum[threadIdx.x + offset];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    block_max[blockIdx.x] = top;
    block_sum[blockIdx.x] = shared_sum[0];
  }
}

// The term of one enumerated state: linear + sum_l softplus(f_l), with
// softplus(f) = max(f, 0) + log(1 + exp(-|f|)) and the logs of up to 64
// factors in (1, 2] taken as one log of their product (at most 2^64).
template <int kFields>
__device__ inline double state_term(const double (&field)[kFields], double linear_sum) {
  double positive = 0.0;
  double product = 1.0;
#pragma unroll
  for (int l = 0; l < kFields; ++l) {
    positive += fmax(field[l], 0.0);
    product *= 1.0 + exp(-fabs(field[l]));
  }
  return linear_sum + positive + log(product);
}

// Fields in registers: for the other layer up to kFields units (padded).
template <int kFields>
__global__ void __launch_bounds__(kThreads) enumerate_registers_kernel(Problem problem, double* block_max,
                                                                       double* block_sum) {
  extern __shared__ double shared_coupling[];  // k * kFields
  for (int idx = threadIdx.x; idx < problem.k * kFields; idx += blockDim.x) shared_coupling[idx] = problem.coupling[idx];
  __syncthreads();

  double running_max = -INFINITY;
  double running_sum = 0.0;
  const std::uint64_t thread = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
  if (thread < problem.threads) {
    const std::uint64_t first = thread << problem.chunk_log;
    const std::uint64_t count = std::uint64_t{1} << problem.chunk_log;
    std::uint64_t gray = first ^ (first >> 1);
    // Exact restart of the fields at the chunk start.
    double field[kFields];
#pragma unroll
    for (int l = 0; l < kFields; ++l) field[l] = problem.field_bias[l];
    double linear_sum = 0.0;
    for (int e = 0; e < problem.k; ++e) {
      if ((gray >> e) & 1u) {
        linear_sum += problem.linear[e];
#pragma unroll
        for (int l = 0; l < kFields; ++l) field[l] += shared_coupling[e * kFields + l];
      }
    }
    for (std::uint64_t step = 0;; ++step) {
      accumulate(state_term<kFields>(field, linear_sum), running_max, running_sum);
      if (step + 1 == count) break;
      const int e = __ffsll(static_cast<long long>(first + step + 1)) - 1;  // the bit that flips
      gray ^= std::uint64_t{1} << e;
      const double sign = ((gray >> e) & 1u) ? 1.0 : -1.0;
      linear_sum += sign * problem.linear[e];
#pragma unroll
      for (int l = 0; l < kFields; ++l) field[l] += sign * shared_coupling[e * kFields + l];
    }
  }
  block_combine(running_max, running_sum, block_max, block_sum);
}

// Any size of the other layer: fields in a global scratch array laid out
// [l][thread] so that a warp's accesses are contiguous.
__global__ void __launch_bounds__(kThreads) enumerate_scratch_kernel(Problem problem, double* scratch,
                                                                     double* block_max, double* block_sum) {
  double running_max = -INFINITY;
  double running_sum = 0.0;
  const std::uint64_t thread = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
  if (thread < problem.threads) {
    const std::uint64_t stride = problem.threads;
    double* field = scratch + thread;
    const std::uint64_t first = thread << problem.chunk_log;
    const std::uint64_t count = std::uint64_t{1} << problem.chunk_log;
    std::uint64_t gray = first ^ (first >> 1);
    double linear_sum = 0.0;
    for (int l = 0; l < problem.fields; ++l) field[l * stride] = problem.field_bias[l];
    for (int e = 0; e < problem.k; ++e) {
      if ((gray >> e) & 1u) {
        linear_sum += problem.linear[e];
        const double* column = problem.coupling + static_cast<std::size_t>(e) * problem.pitch;
        for (int l = 0; l < problem.fields; ++l) field[l * stride] += column[l];
      }
    }
    for (std::uint64_t step = 0;; ++step) {
      double positive = 0.0;
      double log_product = 0.0;
      double product = 1.0;
      for (int l = 0; l < problem.fields; ++l) {
        const double f = field[l * stride];
        positive += fmax(f, 0.0);
        product *= 1.0 + exp(-fabs(f));
        if ((l & 63) == 63) {  // keep the product below 2^64
          log_product += log(product);
          product = 1.0;
        }
      }
      accumulate(linear_sum + positive + log_product + log(product), running_max, running_sum);
      if (step + 1 == count) break;
      const int e = __ffsll(static_cast<long long>(first + step + 1)) - 1;
      gray ^= std::uint64_t{1} << e;
      const double sign = ((gray >> e) & 1u) ? 1.0 : -1.0;
      linear_sum += sign * problem.linear[e];
      const double* column = problem.coupling + static_cast<std::size_t>(e) * problem.pitch;
      for (int l = 0; l < problem.fields; ++l) field[l * stride] += sign * column[l];
    }
  }
  block_combine(running_max, running_sum, block_max, block_sum);
}

__global__ void __launch_bounds__(kThreads) final_combine_kernel(const double* block_max, const double* block_sum,
                                                                 int blocks, double* log_z) {
  double running_max = -INFINITY;
  double running_sum = 0.0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
    if (block_sum[b] <= 0.0) continue;
    const double top = fmax(running_max, block_max[b]);
    running_sum = (running_sum > 0.0 ? running_sum * exp(running_max - top) : 0.0) + block_sum[b] * exp(block_max[b] - top);
    running_max = top;
  }
  __shared__ double out_max[1];
  __shared__ double out_sum[1];
  // Reuse the block combine on a single block; its slot 0 is the answer.
  block_combine(running_max, running_sum, out_max, out_sum);
  __syncthreads();
  if (threadIdx.x == 0) *log_z = out_max[0] + log(out_sum[0]);
}

template <int kFields>
void launch_registers(const Problem& problem, unsigned blocks, double* block_max, double* block_sum,
                      const Resources& resources) {
  const cudaStream_t stream = resources.stream();
  const std::size_t shared = static_cast<std::size_t>(problem.k) * kFields * sizeof(double);
  MARBM_EXPECTS(prepare_shared_memory(enumerate_registers_kernel<kFields>, shared, resources.device()),
                RuntimeFailure,
                "exact enumeration on the device: " + std::to_string(problem.k) +
                    " enumerated units need more shared memory than this device gives a block");
  enumerate_registers_kernel<kFields><<<blocks, kThreads, shared, stream>>>(problem, block_max, block_sum);
  MARBM_CUDA_CHECK_LAST();
}

}  // namespace

double log_partition_exact_device(Resources& resources, const float* weights, const float* visible_bias,
                                  const float* hidden_bias, int n_visible, int n_hidden,
                                  const ExactOptions& options) {
  MARBM_EXPECTS(n_visible >= 1 && n_hidden >= 1, UsageError, "exact log Z: the model has an empty layer");
  const bool enumerate_hidden = n_hidden <= n_visible;
  const int k = enumerate_hidden ? n_hidden : n_visible;
  const int fields = enumerate_hidden ? n_visible : n_hidden;
  if (k > options.max_enumerated_units || k > 62) {
    throw RuntimeFailure("exact log Z: 2^" + std::to_string(k) + " states exceed the enumeration limit 2^" +
                         std::to_string(options.max_enumerated_units) + " (min(n, m) = " + std::to_string(k) + ")");
  }
  const cudaStream_t stream = resources.stream();
  const int pitch = fields <= 16 ? 16 : fields <= 32 ? 32 : fields <= 64 ? 64 : fields;

  DeviceBuffer<double> coupling(static_cast<std::size_t>(k) * pitch, stream);
  DeviceBuffer<double> linear(static_cast<std::size_t>(pitch > k ? pitch : k), stream);
  DeviceBuffer<double> field_bias(static_cast<std::size_t>(pitch), stream);
  prepare_problem_kernel<<<(k * pitch + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
      weights, visible_bias, hidden_bias, n_visible, n_hidden, enumerate_hidden, pitch, coupling.data(),
      linear.data(), field_bias.data());
  MARBM_CUDA_CHECK_LAST();

  // Enough threads to fill the device; each takes a power-of-two chunk of codes.
  const std::uint64_t target_threads = static_cast<std::uint64_t>(resources.multiprocessors()) * 2048;
  int chunk_log = 0;
  while (k - chunk_log > 0 && (std::uint64_t{1} << (k - chunk_log)) > target_threads) ++chunk_log;
  // Wide other layers keep their fields in global scratch: at most 256 MiB of it.
  if (pitch > 64) {
    const std::uint64_t scratch_limit = (std::uint64_t{256} << 20) / (sizeof(double) * static_cast<std::uint64_t>(fields));
    while (k - chunk_log > 0 && (std::uint64_t{1} << (k - chunk_log)) > scratch_limit) ++chunk_log;
  }
  Problem problem;
  problem.coupling = coupling.data();
  problem.linear = linear.data();
  problem.field_bias = field_bias.data();
  problem.k = k;
  problem.fields = fields;
  problem.pitch = pitch;
  problem.chunk_log = chunk_log;
  problem.threads = std::uint64_t{1} << (k - chunk_log);
  const unsigned blocks = static_cast<unsigned>((problem.threads + kThreads - 1) / kThreads);

  DeviceBuffer<double> block_max(blocks, stream);
  DeviceBuffer<double> block_sum(blocks, stream);
  DeviceBuffer<double> scratch;
  if (pitch == 16) {
    launch_registers<16>(problem, blocks, block_max.data(), block_sum.data(), resources);
  } else if (pitch == 32) {
    launch_registers<32>(problem, blocks, block_max.data(), block_sum.data(), resources);
  } else if (pitch == 64) {
    launch_registers<64>(problem, blocks, block_max.data(), block_sum.data(), resources);
  } else {
    scratch = DeviceBuffer<double>(static_cast<std::size_t>(problem.threads) * fields, stream);
    enumerate_scratch_kernel<<<blocks, kThreads, 0, stream>>>(problem, scratch.data(), block_max.data(),
                                                               block_sum.data());
    MARBM_CUDA_CHECK_LAST();
  }
  DeviceBuffer<double> log_z(1, stream);
  final_combine_kernel<<<1, kThreads, 0, stream>>>(block_max.data(), block_sum.data(), static_cast<int>(blocks),
                                                    log_z.data());
  MARBM_CUDA_CHECK_LAST();
  return log_z.to_host()[0];
}

}  // namespace marbm::detail
