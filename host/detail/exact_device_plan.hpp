// Host-side decisions of exact log Z on the device (cuda/exact_enumeration.cu):
// which kernel enumerates, how many codes each worker walks, the launch shape
// and shared memory, and the subset table of the register kernel. Pure host
// arithmetic, so that every decision is tested without a device
// (tests/test_exact_device_plan.cpp).
//
// The kernels. k is the enumerated (smaller) layer, L the other layer's units.
//  - registers (L <= 64): one thread per chunk of codes, the L fields in
//    registers (template 16/32/64, padding skipped by a predicate on L). With
//    low_bits = 4 the lowest four enumerated units are not walked: a thread
//    sums each block of 16 states at once as the log of a product of
//    (c_l + b_l T[s][l]) over a table T of the 16 low subsets (one exp per
//    field per block instead of per state, see make_exact_low_table).
//  - warp (64 < L <= 1024): one warp per chunk, the fields split across the
//    lanes (lane i holds fields i, i + 32, ...), the sum over the other layer
//    reduced with shuffles.
//  - scratch (L > 1024): one thread per chunk, fields in global scratch.
//  - legacy_registers / legacy_scratch: the kernels before the two above
//    (every state pays an exp per padded field slot; the wide layer streams
//    its fields through global scratch), kept selectable with
//    MARBM_EXACT_KERNEL=legacy so that a device run can compare the two.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "marbm/error.hpp"

#if defined(__CUDACC__)
#define MARBM_EXACT_HOST_DEVICE __host__ __device__
#else
#define MARBM_EXACT_HOST_DEVICE
#endif
// Unrolled in the device pass only (host compilers warn on the pragma).
#if defined(__CUDA_ARCH__)
#define MARBM_EXACT_UNROLL _Pragma("unroll")
#else
#define MARBM_EXACT_UNROLL
#endif

namespace marbm::detail {

enum class ExactDeviceKernel { registers, warp, scratch, legacy_registers, legacy_scratch };

constexpr int exact_threads_per_block = 128;
/// Low units summed through the subset table by the register kernel.
constexpr int exact_table_low_bits = 4;
/// Widest other layer of the warp kernel: 32 fields per lane.
constexpr int exact_warp_max_fields = 1024;
/// The table's factors lie in [e^-range_l, 2]; the product of all of them
/// stays a normal double while the ranges sum to at most this.
constexpr double exact_table_range_limit = 700.0;
/// Field bias of a padded slot of the warp kernel: exp(-|f|) underflows to 0
/// and max(f, 0) is 0, so the slot adds exactly nothing.
constexpr double exact_absent_field = -1.0e300;

struct ExactDevicePlan {
  ExactDeviceKernel kernel = ExactDeviceKernel::registers;
  int pitch = 0;       ///< coupling row length: 16/32/64 (registers), 32 * rows (warp), L (scratch)
  int per_lane = 0;    ///< warp kernel: register slots per lane (4, 8, 16 or 32)
  int low_bits = 0;    ///< registers: units summed through the table, 0 or exact_table_low_bits
  int chunk_log = 0;   ///< each worker walks 2^chunk_log consecutive codes
  std::uint64_t workers = 0;  ///< threads (registers, scratch) or warps (warp)
  unsigned blocks = 0;
  int threads_per_block = exact_threads_per_block;
  std::size_t shared_bytes = 0;  ///< dynamic shared memory per block
};

/// Reads MARBM_EXACT_KERNEL: unset or empty for the current kernels, "legacy"
/// for the previous ones; anything else is a usage error.
inline bool exact_kernel_legacy(const char* value) {
  if (value == nullptr || *value == '\0') return false;
  if (std::string_view(value) == "legacy") return true;
  throw UsageError("MARBM_EXACT_KERNEL must be 'legacy' or unset (got '" + std::string(value) + "')");
}

/// Dynamic shared memory of the register kernel: the coupling (k x pitch),
/// the table (2^low_bits x pitch), the low subsets' bias sums (2^low_bits) and
/// the low high sums (pitch), all doubles.
constexpr std::size_t exact_registers_shared_bytes(int k, int pitch, int low_bits) {
  const std::size_t states = std::size_t{1} << low_bits;
  return (static_cast<std::size_t>(k) * pitch + states * pitch + states + pitch) * sizeof(double);
}

/// The launch of a k x L enumeration (1 <= k <= 62, L >= 1) on a device with
/// `multiprocessors` SMs. table_usable: whether make_exact_low_table accepted
/// the model at the planned low_bits (plan again with false when it did not).
inline ExactDevicePlan plan_exact_device(int k, int fields, int multiprocessors, bool legacy,
                                         bool table_usable = true) {
  ExactDevicePlan plan;
  const bool narrow = fields <= 64;
  if (legacy) {
    plan.kernel = narrow ? ExactDeviceKernel::legacy_registers : ExactDeviceKernel::legacy_scratch;
  } else if (narrow) {
    plan.kernel = ExactDeviceKernel::registers;
  } else if (fields <= exact_warp_max_fields) {
    plan.kernel = ExactDeviceKernel::warp;
  } else {
    plan.kernel = ExactDeviceKernel::scratch;
  }
  const std::uint64_t sms = static_cast<std::uint64_t>(multiprocessors > 0 ? multiprocessors : 1);
  // Enough workers to fill the device (2048 threads per SM); each takes a
  // power-of-two chunk of codes.
  const bool warp = plan.kernel == ExactDeviceKernel::warp;
  const std::uint64_t target = warp ? sms * 64 : sms * 2048;
  while (plan.chunk_log < k && (std::uint64_t{1} << (k - plan.chunk_log)) > target) ++plan.chunk_log;
  switch (plan.kernel) {
    case ExactDeviceKernel::registers:
    case ExactDeviceKernel::legacy_registers:
      plan.pitch = fields <= 16 ? 16 : fields <= 32 ? 32 : 64;
      break;
    case ExactDeviceKernel::warp: {
      const int rows = (fields + 31) / 32;
      plan.pitch = rows * 32;
      plan.per_lane = rows <= 4 ? 4 : rows <= 8 ? 8 : rows <= 16 ? 16 : 32;
      break;
    }
    case ExactDeviceKernel::scratch:
    case ExactDeviceKernel::legacy_scratch: {
      plan.pitch = fields;
      // Fields in global scratch: at most 256 MiB of it.
      const std::uint64_t limit = (std::uint64_t{256} << 20) / (sizeof(double) * static_cast<std::uint64_t>(fields));
      while (plan.chunk_log < k && (std::uint64_t{1} << (k - plan.chunk_log)) > limit) ++plan.chunk_log;
      break;
    }
  }
  plan.workers = std::uint64_t{1} << (k - plan.chunk_log);
  const std::uint64_t per_block = warp ? exact_threads_per_block / 32 : exact_threads_per_block;
  plan.blocks = static_cast<unsigned>((plan.workers + per_block - 1) / per_block);
  if (plan.kernel == ExactDeviceKernel::registers) {
    plan.low_bits = table_usable && plan.chunk_log >= exact_table_low_bits ? exact_table_low_bits : 0;
    plan.shared_bytes = exact_registers_shared_bytes(k, plan.pitch, plan.low_bits);
  } else if (plan.kernel == ExactDeviceKernel::legacy_registers) {
    plan.shared_bytes = static_cast<std::size_t>(k) * plan.pitch * sizeof(double);
  }
  return plan;
}

/// The register kernel's subset table for the low g units of the enumerated
/// layer. With lh_l (ll_l) the sum of the positive (negative) couplings of the
/// low units to field l, range_l = lh_l - ll_l, and S_sl the sum over low
/// subset s:
///   table[s][l] = exp(S_sl - lh_l), in [e^-range_l, 1];
/// for a block whose high units give field f_l, t_l = f_l + lh_l,
/// a_l = max(t_l, 0), u_l = exp(-|t_l|) and (c_l, b_l) = (u_l, 1) when t_l > 0,
/// else (1, u_l):
///   softplus(f_l + S_sl) = a_l + log(c_l + b_l table[s][l]),
/// each factor in [e^-range_l, 2]. usable: the ranges sum to at most
/// exact_table_range_limit, so a product of all factors is a normal double.
struct ExactLowTable {
  bool usable = false;
  int low_bits = 0;
  std::vector<double> table;       ///< 2^g x pitch (1 in padded slots)
  std::vector<double> low_linear;  ///< 2^g: the subset's enumerated biases summed
  std::vector<double> low_high;    ///< pitch: lh_l (0 in padded slots)
  double range_sum = 0.0;
};

/// coupling: k rows of `pitch` doubles (row e: enumerated unit e's couplings
/// to the other layer), linear: the k enumerated biases. 0 <= g <= k.
inline ExactLowTable make_exact_low_table(const double* coupling, const double* linear, int k, int fields, int pitch,
                                          int g) {
  ExactLowTable out;
  out.low_bits = g < k ? g : k;
  g = out.low_bits;
  const std::size_t states = std::size_t{1} << g;
  out.table.assign(states * pitch, 1.0);
  out.low_linear.assign(states, 0.0);
  out.low_high.assign(pitch, 0.0);
  for (int l = 0; l < fields; ++l) {
    double high = 0.0, low = 0.0;
    for (int e = 0; e < g; ++e) {
      const double w = coupling[static_cast<std::size_t>(e) * pitch + l];
      (w > 0.0 ? high : low) += w;
    }
    out.low_high[l] = high;
    out.range_sum += high - low;
  }
  out.usable = out.range_sum <= exact_table_range_limit;
  for (std::size_t s = 0; s < states; ++s) {
    long double bias = 0.0L;
    for (int e = 0; e < g; ++e)
      if ((s >> e) & 1u) bias += linear[e];
    out.low_linear[s] = static_cast<double>(bias);
    for (int l = 0; l < fields; ++l) {
      // In long double and rounded once, as the CPU's table.
      long double sum = -static_cast<long double>(out.low_high[l]);
      for (int e = 0; e < g; ++e)
        if ((s >> e) & 1u) sum += coupling[static_cast<std::size_t>(e) * pitch + l];
      out.table[s * pitch + l] = static_cast<double>(std::exp(sum));
    }
  }
  return out;
}

/// The register kernel's sum over one block (kLow = 0: one state): for each
/// low subset s, term[s] = linear_sum + low_linear[s] + sum_l a_l +
/// log prod_l (c_l + b_l table[s][l]) over the fields l < `fields`
/// (see ExactLowTable; kStride: the table's row length). The device kernel
/// and its CPU twin (exact_device_twin_log_z) run this same code.
template <int kFields, int kLow>
MARBM_EXACT_HOST_DEVICE inline void exact_table_terms(const double (&field)[kFields], int fields, double linear_sum,
                                                      const double* table, const double* low_linear,
                                                      const double* low_high, double (&term)[1 << kLow]) {
  constexpr int kStates = 1 << kLow;
  double product[kStates];
MARBM_EXACT_UNROLL
  for (int s = 0; s < kStates; ++s) product[s] = 1.0;
  double shift = linear_sum;
MARBM_EXACT_UNROLL
  for (int l = 0; l < kFields; ++l) {
    if (l < fields) {  // the same for every thread: padding costs nothing
      const double t = field[l] + low_high[l];
      const double u = exp(-fabs(t));
      const bool positive = t > 0.0;
      const double c = positive ? u : 1.0;
      const double b = positive ? 1.0 : u;
      shift += positive ? t : 0.0;
MARBM_EXACT_UNROLL
      for (int s = 0; s < kStates; ++s) product[s] *= fma(b, table[s * kFields + l], c);
    }
  }
MARBM_EXACT_UNROLL
  for (int s = 0; s < kStates; ++s) term[s] = shift + low_linear[s] + log(product[s]);
}

/// One lane's share of a state in the warp kernel: the sum of max(f, 0) and
/// the product of (1 + e^-|f|) over its rows (<= 32 factors in (1, 2]).
template <int kPerLane>
MARBM_EXACT_HOST_DEVICE inline void exact_lane_partial(const double (&field)[kPerLane], int rows, double& positive,
                                                       double& product) {
  positive = 0.0;
  product = 1.0;
MARBM_EXACT_UNROLL
  for (int i = 0; i < kPerLane; ++i) {
    if (i < rows) {
      positive += fmax(field[i], 0.0);
      product *= 1.0 + exp(-fabs(field[i]));
    }
  }
}

/// Running log-sum-exp of the kernels (max, then sum of exp(x - max)).
MARBM_EXACT_HOST_DEVICE inline void exact_accumulate(double x, double& running_max, double& running_sum) {
  if (x > running_max) {
    running_sum = running_sum * exp(running_max - x) + 1.0;
    running_max = x;
  } else {
    running_sum += exp(x - running_max);
  }
}

// ---------------------------------------------------------------- CPU twin
//
// The current kernels' walks, run on the host with the same per-block and
// per-lane code, the same chunks and the same shuffle pairing (the warp is
// emulated lane by lane). Only exp, log and the order in which workers are
// combined differ from the device, so the device result must match this to
// float64 rounding, and this must match the CPU's exact log Z.

namespace exact_twin {

inline void combine(double worker_max, double worker_sum, double& max, double& sum) {
  if (!(worker_sum > 0.0)) return;
  if (worker_max > max) {
    sum = sum * std::exp(max - worker_max) + worker_sum;
    max = worker_max;
  } else {
    sum += worker_sum * std::exp(worker_max - max);
  }
}

template <int kFields, int kLow>
void table_walk(const ExactDevicePlan& plan, const double* coupling, const double* linear, const double* field_bias,
                int k, int fields, const ExactLowTable& low, double& max, double& sum) {
  constexpr int kStates = 1 << kLow;
  // The kernel's shared copy has rows of kFields doubles; so has coupling here
  // (plan.pitch == kFields) and so has the table.
  const int high_log = plan.chunk_log - kLow;
  for (std::uint64_t worker = 0; worker < plan.workers; ++worker) {
    double running_max = -INFINITY, running_sum = 0.0;
    const std::uint64_t first = worker << high_log;
    const std::uint64_t count = std::uint64_t{1} << high_log;
    std::uint64_t gray = first ^ (first >> 1);
    double field[kFields];
    for (int l = 0; l < kFields; ++l) field[l] = l < fields ? field_bias[l] : 0.0;
    double linear_sum = 0.0;
    for (int e = 0; e < k - kLow; ++e) {
      if ((gray >> e) & 1u) {
        linear_sum += linear[kLow + e];
        for (int l = 0; l < fields; ++l) field[l] += coupling[(kLow + e) * kFields + l];
      }
    }
    for (std::uint64_t step = 0;; ++step) {
      double term[kStates];
      exact_table_terms<kFields, kLow>(field, fields, linear_sum, low.table.data(), low.low_linear.data(),
                                       low.low_high.data(), term);
      for (int s = 0; s < kStates; ++s) exact_accumulate(term[s], running_max, running_sum);
      if (step + 1 == count) break;
      const int e = __builtin_ctzll(first + step + 1);
      gray ^= std::uint64_t{1} << e;
      const double sign = ((gray >> e) & 1u) ? 1.0 : -1.0;
      linear_sum += sign * linear[kLow + e];
      for (int l = 0; l < fields; ++l) field[l] += sign * coupling[(kLow + e) * kFields + l];
    }
    combine(running_max, running_sum, max, sum);
  }
}

template <int kPerLane>
void warp_walk(const ExactDevicePlan& plan, const double* coupling, const double* linear, const double* field_bias,
               int k, double& max, double& sum) {
  const int rows = plan.pitch / 32;
  std::vector<double> field(32 * static_cast<std::size_t>(kPerLane));
  for (std::uint64_t warp = 0; warp < plan.workers; ++warp) {
    double running_max = -INFINITY, running_sum = 0.0;
    const std::uint64_t first = warp << plan.chunk_log;
    const std::uint64_t count = std::uint64_t{1} << plan.chunk_log;
    std::uint64_t gray = first ^ (first >> 1);
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < kPerLane; ++i) field[lane * kPerLane + i] = i < rows ? field_bias[i * 32 + lane] : 0.0;
    double linear_sum = 0.0;
    for (int e = 0; e < k; ++e) {
      if ((gray >> e) & 1u) {
        linear_sum += linear[e];
        for (int lane = 0; lane < 32; ++lane)
          for (int i = 0; i < rows; ++i) field[lane * kPerLane + i] += coupling[e * plan.pitch + i * 32 + lane];
      }
    }
    for (std::uint64_t step = 0;; ++step) {
      double positive[32], product[32];
      for (int lane = 0; lane < 32; ++lane) {
        double lane_field[kPerLane];
        for (int i = 0; i < kPerLane; ++i) lane_field[i] = field[lane * kPerLane + i];
        exact_lane_partial<kPerLane>(lane_field, rows, positive[lane], product[lane]);
      }
      for (int offset = 1; offset < 16; offset <<= 1) {  // __shfl_xor_sync, lane by lane
        double next_product[32], next_positive[32];
        for (int lane = 0; lane < 32; ++lane) {
          next_product[lane] = product[lane] * product[lane ^ offset];
          next_positive[lane] = positive[lane] + positive[lane ^ offset];
        }
        for (int lane = 0; lane < 32; ++lane) product[lane] = next_product[lane], positive[lane] = next_positive[lane];
      }
      const double half0 = positive[0] + std::log(product[0]);
      const double half16 = positive[16] + std::log(product[16]);
      exact_accumulate(linear_sum + (half0 + half16), running_max, running_sum);
      if (step + 1 == count) break;
      const int e = __builtin_ctzll(first + step + 1);
      gray ^= std::uint64_t{1} << e;
      const double sign = ((gray >> e) & 1u) ? 1.0 : -1.0;
      linear_sum += sign * linear[e];
      for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < rows; ++i) field[lane * kPerLane + i] += sign * coupling[e * plan.pitch + i * 32 + lane];
    }
    combine(running_max, running_sum, max, sum);
  }
}

}  // namespace exact_twin

/// The problem as prepare_problem_kernel lays it out on the device, built on
/// the host: k coupling rows of `pitch` doubles (padded with 0), the k
/// enumerated biases and `pitch` field biases (padded with
/// exact_absent_field). weights: n x m row-major float32, as the model's.
struct ExactPrepared {
  int k = 0, fields = 0;
  std::vector<double> coupling, linear, field_bias;
};

inline ExactPrepared exact_prepare_on_host(const float* weights, const float* visible_bias, const float* hidden_bias,
                                           int n, int m, int pitch) {
  const bool enumerate_hidden = m <= n;
  ExactPrepared p;
  p.k = enumerate_hidden ? m : n;
  p.fields = enumerate_hidden ? n : m;
  p.coupling.assign(static_cast<std::size_t>(p.k) * pitch, 0.0);
  p.linear.assign(p.k, 0.0);
  p.field_bias.assign(pitch, exact_absent_field);
  for (int e = 0; e < p.k; ++e) {
    p.linear[e] = enumerate_hidden ? hidden_bias[e] : visible_bias[e];
    for (int l = 0; l < p.fields; ++l)
      p.coupling[static_cast<std::size_t>(e) * pitch + l] =
          enumerate_hidden ? weights[static_cast<std::size_t>(l) * m + e]
                           : weights[static_cast<std::size_t>(e) * m + l];
  }
  for (int l = 0; l < p.fields; ++l) p.field_bias[l] = enumerate_hidden ? visible_bias[l] : hidden_bias[l];
  return p;
}

/// exact_device_twin_log_z on a prepared problem, with the table built (and
/// refused) as log_partition_exact_device does: the plan is planned again
/// without the table when the model does not allow it.
inline double exact_device_twin_log_z(const float* weights, const float* visible_bias, const float* hidden_bias, int n,
                                      int m, int multiprocessors, ExactDevicePlan* used_plan = nullptr);

/// log Z by the current kernels' arithmetic on the host, for a registers or
/// warp plan. coupling (k rows of plan.pitch), linear (k) and field_bias
/// (plan.pitch) as the device prepares them: padded couplings 0, padded field
/// biases exact_absent_field. low: make_exact_low_table at plan.low_bits
/// (registers only).
inline double exact_device_twin_log_z(const ExactDevicePlan& plan, const double* coupling, const double* linear,
                                      const double* field_bias, int k, int fields, const ExactLowTable& low) {
  double max = -INFINITY, sum = 0.0;
  if (plan.kernel == ExactDeviceKernel::registers) {
    const bool table = plan.low_bits == exact_table_low_bits;
    constexpr int g = exact_table_low_bits;
    const double* c = coupling;
    switch (plan.pitch) {
      case 16:
        table ? exact_twin::table_walk<16, g>(plan, c, linear, field_bias, k, fields, low, max, sum)
              : exact_twin::table_walk<16, 0>(plan, c, linear, field_bias, k, fields, low, max, sum);
        break;
      case 32:
        table ? exact_twin::table_walk<32, g>(plan, c, linear, field_bias, k, fields, low, max, sum)
              : exact_twin::table_walk<32, 0>(plan, c, linear, field_bias, k, fields, low, max, sum);
        break;
      default:
        table ? exact_twin::table_walk<64, g>(plan, c, linear, field_bias, k, fields, low, max, sum)
              : exact_twin::table_walk<64, 0>(plan, c, linear, field_bias, k, fields, low, max, sum);
        break;
    }
  } else if (plan.kernel == ExactDeviceKernel::warp) {
    switch (plan.per_lane) {
      case 4: exact_twin::warp_walk<4>(plan, coupling, linear, field_bias, k, max, sum); break;
      case 8: exact_twin::warp_walk<8>(plan, coupling, linear, field_bias, k, max, sum); break;
      case 16: exact_twin::warp_walk<16>(plan, coupling, linear, field_bias, k, max, sum); break;
      default: exact_twin::warp_walk<32>(plan, coupling, linear, field_bias, k, max, sum); break;
    }
  } else {
    throw UsageError("exact_device_twin_log_z: only the registers and warp kernels have a twin here");
  }
  return max + std::log(sum);
}

inline double exact_device_twin_log_z(const float* weights, const float* visible_bias, const float* hidden_bias, int n,
                                      int m, int multiprocessors, ExactDevicePlan* used_plan) {
  const int k = m <= n ? m : n, fields = m <= n ? n : m;
  ExactDevicePlan plan = plan_exact_device(k, fields, multiprocessors, false);
  const ExactPrepared p = exact_prepare_on_host(weights, visible_bias, hidden_bias, n, m, plan.pitch);
  ExactLowTable low = make_exact_low_table(p.coupling.data(), p.linear.data(), k, fields, plan.pitch, plan.low_bits);
  if (!low.usable) {
    plan = plan_exact_device(k, fields, multiprocessors, false, false);
    low = make_exact_low_table(p.coupling.data(), p.linear.data(), k, fields, plan.pitch, plan.low_bits);
  }
  if (used_plan != nullptr) *used_plan = plan;
  return exact_device_twin_log_z(plan, p.coupling.data(), p.linear.data(), p.field_bias.data(), k, fields, low);
}

}  // namespace marbm::detail
