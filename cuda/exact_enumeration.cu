// Exact log Z by Gray-code enumeration on the device (see exact_enumeration.cuh).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "detail/exact_device_plan.hpp"
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
constexpr double kAbsentField = exact_absent_field;

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

// ---------------------------------------------------------------- current kernels
//
// The kernels before this point (enumerate_registers_kernel,
// enumerate_scratch_kernel) are the previous ones, kept selectable with
// MARBM_EXACT_KERNEL=legacy (host/detail/exact_device_plan.hpp).

// The table kernel's problem: Problem plus the subset table of the low units
// (make_exact_low_table): kStates x kFields table entries, kStates low bias
// sums and kFields low high sums.
struct TableProblem {
  Problem base;
  const double* table = nullptr;
  const double* low_linear = nullptr;
  const double* low_high = nullptr;
};

// Fields in registers, the other layer up to kFields units; slots at and
// beyond problem.fields are skipped by a warp-uniform predicate (33 fields
// cost 33 exp, not 64). The lowest kLow enumerated units are not walked:
// each step of the Gray walk over the high units is a block of 2^kLow
// states, summed through the table with one exp per field per block:
//   term(s) = linear + low_linear[s] + sum_l a_l + log prod_l (c_l + b_l T[s][l])
// (exact_device_plan.hpp). kLow = 0 is the plain per-state softplus sum:
// T = 1, low_high = 0, the factor is 1 + exp(-|f|). Every factor lies in
// [e^-range_l, 2], so the product of up to 64 of them is a normal double
// without rescaling when the host accepted the table.
template <int kFields, int kLow>
__global__ void __launch_bounds__(kThreads) enumerate_table_kernel(TableProblem tp, double* block_max,
                                                                   double* block_sum) {
  constexpr int kStates = 1 << kLow;
  const Problem& problem = tp.base;
  extern __shared__ double shared[];
  double* s_coupling = shared;                            // k x kFields
  double* s_table = s_coupling + problem.k * kFields;     // kStates x kFields
  double* s_low_linear = s_table + kStates * kFields;     // kStates
  double* s_low_high = s_low_linear + kStates;            // kFields
  for (int idx = threadIdx.x; idx < problem.k * kFields; idx += blockDim.x) s_coupling[idx] = problem.coupling[idx];
  for (int idx = threadIdx.x; idx < kStates * kFields; idx += blockDim.x) s_table[idx] = tp.table[idx];
  for (int idx = threadIdx.x; idx < kStates; idx += blockDim.x) s_low_linear[idx] = tp.low_linear[idx];
  for (int idx = threadIdx.x; idx < kFields; idx += blockDim.x) s_low_high[idx] = tp.low_high[idx];
  __syncthreads();

  double running_max = -INFINITY;
  double running_sum = 0.0;
  const int fields = problem.fields;
  const std::uint64_t thread = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
  if (thread < problem.threads) {
    // The thread's chunk: 2^(chunk_log - kLow) blocks of the high units
    // (kLow .. k-1), walked in Gray-code order.
    const int high_log = problem.chunk_log - kLow;
    const std::uint64_t first = thread << high_log;
    const std::uint64_t count = std::uint64_t{1} << high_log;
    std::uint64_t gray = first ^ (first >> 1);
    double field[kFields];
#pragma unroll
    for (int l = 0; l < kFields; ++l) field[l] = l < fields ? problem.field_bias[l] : 0.0;
    double linear_sum = 0.0;
    for (int e = 0; e < problem.k - kLow; ++e) {
      if ((gray >> e) & 1u) {
        linear_sum += problem.linear[kLow + e];
        const double* column = s_coupling + (kLow + e) * kFields;
#pragma unroll
        for (int l = 0; l < kFields; ++l)
          if (l < fields) field[l] += column[l];
      }
    }
    for (std::uint64_t step = 0;; ++step) {
      double term[kStates];
      exact_table_terms<kFields, kLow>(field, fields, linear_sum, s_table, s_low_linear, s_low_high, term);
#pragma unroll
      for (int s = 0; s < kStates; ++s) exact_accumulate(term[s], running_max, running_sum);
      if (step + 1 == count) break;
      const int e = __ffsll(static_cast<long long>(first + step + 1)) - 1;  // the block bit that flips
      gray ^= std::uint64_t{1} << e;
      const double sign = ((gray >> e) & 1u) ? 1.0 : -1.0;
      linear_sum += sign * problem.linear[kLow + e];
      const double* column = s_coupling + (kLow + e) * kFields;
#pragma unroll
      for (int l = 0; l < kFields; ++l)
        if (l < fields) field[l] += sign * column[l];
    }
  }
  block_combine(running_max, running_sum, block_max, block_sum);
}

// A wide other layer: one warp per chunk of codes, lane i holding fields
// i, i + 32, ... (rows = pitch / 32 <= kPerLane of them; slots beyond the
// layer are padded with kAbsentField and zero coupling, so they add exactly
// nothing). Per state each lane sums max(f, 0) and multiplies (1 + e^-|f|)
// over its fields; xor shuffles within each half-warp combine them (16 lanes x
// 32 factors in (1, 2]: the product stays below 2^512), one log per
// half-warp, one more shuffle adds the halves. Every lane ends with the same
// value (each butterfly step combines the same two operands on both lanes),
// so the log-sum-exp runs warp-uniformly; lane 0 reports it.
template <int kPerLane>
__global__ void __launch_bounds__(kThreads) enumerate_warp_kernel(Problem problem, double* block_max,
                                                                  double* block_sum) {
  constexpr unsigned kFullMask = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int rows = problem.pitch / 32;
  const std::uint64_t warp = (blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x) >> 5;
  double running_max = -INFINITY;
  double running_sum = 0.0;
  if (warp < problem.threads) {  // warp-uniform: blockDim.x is a multiple of 32
    const std::uint64_t first = warp << problem.chunk_log;
    const std::uint64_t count = std::uint64_t{1} << problem.chunk_log;
    std::uint64_t gray = first ^ (first >> 1);
    double field[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) field[i] = i < rows ? problem.field_bias[i * 32 + lane] : 0.0;
    double linear_sum = 0.0;
    for (int e = 0; e < problem.k; ++e) {
      if ((gray >> e) & 1u) {
        linear_sum += problem.linear[e];
        const double* column = problem.coupling + static_cast<std::size_t>(e) * problem.pitch + lane;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i)
          if (i < rows) field[i] += column[i * 32];
      }
    }
    for (std::uint64_t step = 0;; ++step) {
      double positive = 0.0;
      double product = 1.0;
      exact_lane_partial<kPerLane>(field, rows, positive, product);
#pragma unroll
      for (int offset = 1; offset < 16; offset <<= 1) {
        product *= __shfl_xor_sync(kFullMask, product, offset);
        positive += __shfl_xor_sync(kFullMask, positive, offset);
      }
      double half = positive + log(product);
      half += __shfl_xor_sync(kFullMask, half, 16);
      exact_accumulate(linear_sum + half, running_max, running_sum);
      if (step + 1 == count) break;
      const int e = __ffsll(static_cast<long long>(first + step + 1)) - 1;
      gray ^= std::uint64_t{1} << e;
      const double sign = ((gray >> e) & 1u) ? 1.0 : -1.0;
      linear_sum += sign * problem.linear[e];
      const double* column = problem.coupling + static_cast<std::size_t>(e) * problem.pitch + lane;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i)
        if (i < rows) field[i] += sign * column[i * 32];
    }
  }
  if (lane != 0) {
    running_max = -INFINITY;
    running_sum = 0.0;
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

template <int kFields, int kLow>
void launch_table(const TableProblem& problem, const ExactDevicePlan& plan, double* block_max, double* block_sum,
                  const Resources& resources) {
  MARBM_EXPECTS(prepare_shared_memory(enumerate_table_kernel<kFields, kLow>, plan.shared_bytes, resources.device()),
                RuntimeFailure,
                "exact enumeration on the device: " + std::to_string(problem.base.k) +
                    " enumerated units need more shared memory than this device gives a block");
  enumerate_table_kernel<kFields, kLow>
      <<<plan.blocks, kThreads, plan.shared_bytes, resources.stream()>>>(problem, block_max, block_sum);
  MARBM_CUDA_CHECK_LAST();
}

template <int kFields>
void launch_table_fields(const TableProblem& problem, const ExactDevicePlan& plan, double* block_max,
                         double* block_sum, const Resources& resources) {
  if (plan.low_bits == exact_table_low_bits) {
    launch_table<kFields, exact_table_low_bits>(problem, plan, block_max, block_sum, resources);
  } else {
    launch_table<kFields, 0>(problem, plan, block_max, block_sum, resources);
  }
}

template <int kPerLane>
void launch_warp(const Problem& problem, const ExactDevicePlan& plan, double* block_max, double* block_sum,
                 const Resources& resources) {
  enumerate_warp_kernel<kPerLane><<<plan.blocks, kThreads, 0, resources.stream()>>>(problem, block_max, block_sum);
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
  static_assert(kThreads == exact_threads_per_block);
  const bool legacy = exact_kernel_legacy(std::getenv("MARBM_EXACT_KERNEL"));
  ExactDevicePlan plan = plan_exact_device(k, fields, resources.multiprocessors(), legacy);
  const cudaStream_t stream = resources.stream();
  const int pitch = plan.pitch;

  DeviceBuffer<double> coupling(static_cast<std::size_t>(k) * pitch, stream);
  DeviceBuffer<double> linear(static_cast<std::size_t>(pitch > k ? pitch : k), stream);
  DeviceBuffer<double> field_bias(static_cast<std::size_t>(pitch), stream);
  prepare_problem_kernel<<<(k * pitch + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
      weights, visible_bias, hidden_bias, n_visible, n_hidden, enumerate_hidden, pitch, coupling.data(),
      linear.data(), field_bias.data());
  MARBM_CUDA_CHECK_LAST();

  Problem problem;
  problem.coupling = coupling.data();
  problem.linear = linear.data();
  problem.field_bias = field_bias.data();
  problem.k = k;
  problem.fields = fields;
  problem.pitch = pitch;
  problem.chunk_log = plan.chunk_log;
  problem.threads = plan.workers;

  DeviceBuffer<double> block_max(plan.blocks, stream);
  DeviceBuffer<double> block_sum(plan.blocks, stream);
  DeviceBuffer<double> scratch;
  DeviceBuffer<double> table, low_linear, low_high;
  switch (plan.kernel) {
    case ExactDeviceKernel::registers: {
      // The subset table is built on the host from the prepared coupling
      // (at most 62 x 64 doubles), in long double as the CPU's.
      const std::vector<double> host_coupling = coupling.to_host();
      const std::vector<double> host_linear = linear.to_host();
      ExactLowTable low =
          make_exact_low_table(host_coupling.data(), host_linear.data(), k, fields, pitch, plan.low_bits);
      if (!low.usable) {
        plan = plan_exact_device(k, fields, resources.multiprocessors(), legacy, false);
        low = make_exact_low_table(host_coupling.data(), host_linear.data(), k, fields, pitch, plan.low_bits);
      }
      table = DeviceBuffer<double>(low.table.size(), stream);
      table.copy_from_host(std::span<const double>(low.table));
      low_linear = DeviceBuffer<double>(low.low_linear.size(), stream);
      low_linear.copy_from_host(std::span<const double>(low.low_linear));
      low_high = DeviceBuffer<double>(low.low_high.size(), stream);
      low_high.copy_from_host(std::span<const double>(low.low_high));
      TableProblem table_problem;
      table_problem.base = problem;
      table_problem.table = table.data();
      table_problem.low_linear = low_linear.data();
      table_problem.low_high = low_high.data();
      if (pitch == 16) {
        launch_table_fields<16>(table_problem, plan, block_max.data(), block_sum.data(), resources);
      } else if (pitch == 32) {
        launch_table_fields<32>(table_problem, plan, block_max.data(), block_sum.data(), resources);
      } else {
        launch_table_fields<64>(table_problem, plan, block_max.data(), block_sum.data(), resources);
      }
      break;
    }
    case ExactDeviceKernel::warp:
      if (plan.per_lane == 4) {
        launch_warp<4>(problem, plan, block_max.data(), block_sum.data(), resources);
      } else if (plan.per_lane == 8) {
        launch_warp<8>(problem, plan, block_max.data(), block_sum.data(), resources);
      } else if (plan.per_lane == 16) {
        launch_warp<16>(problem, plan, block_max.data(), block_sum.data(), resources);
      } else {
        launch_warp<32>(problem, plan, block_max.data(), block_sum.data(), resources);
      }
      break;
    case ExactDeviceKernel::legacy_registers:
      if (pitch == 16) {
        launch_registers<16>(problem, plan.blocks, block_max.data(), block_sum.data(), resources);
      } else if (pitch == 32) {
        launch_registers<32>(problem, plan.blocks, block_max.data(), block_sum.data(), resources);
      } else {
        launch_registers<64>(problem, plan.blocks, block_max.data(), block_sum.data(), resources);
      }
      break;
    case ExactDeviceKernel::scratch:
    case ExactDeviceKernel::legacy_scratch:
      scratch = DeviceBuffer<double>(static_cast<std::size_t>(problem.threads) * fields, stream);
      enumerate_scratch_kernel<<<plan.blocks, kThreads, 0, stream>>>(problem, scratch.data(), block_max.data(),
                                                                      block_sum.data());
      MARBM_CUDA_CHECK_LAST();
      break;
  }
  DeviceBuffer<double> log_z(1, stream);
  final_combine_kernel<<<1, kThreads, 0, stream>>>(block_max.data(), block_sum.data(), static_cast<int>(plan.blocks),
                                                    log_z.data());
  MARBM_CUDA_CHECK_LAST();
  return log_z.to_host()[0];
}

}  // namespace marbm::detail
