// train_ensemble on the device: one fused kernel, a thread block per member,
// for small models; marbm::train on a few concurrent cuda engines otherwise.
//
// Per member the block keeps W, a, b, the velocity and the batch in shared
// memory and runs every update of the run without leaving the kernel:
// batch rows (the driver's epoch shuffle), positive phase, CD-k/PCD-k chain
// or the exact mode (Gray-code enumeration of the smaller layer), fused
// gradient + momentum/decay update, and exact log Z / KL at the evaluation
// points. Random numbers follow the engines' Philox keying (gibbs.cuh).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda_impl.hpp"
#include "detail/ensemble_launch.hpp"
#include "detail/ensemble_member.hpp"
#include "detail/gibbs_steps.hpp"
#include "device_buffer.cuh"
#include "ensemble_batched.cuh"
#include "error.cuh"
#include "gibbs.cuh"
#include "launch.cuh"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/random.hpp"
#include "philox.cuh"
#include "resources.cuh"
#include "device_common.cuh"

namespace marbm::detail {

namespace {

constexpr int kMaxUnits = 32;

struct MemberMetrics {
  long long iteration;
  double kl;
  double mean_log_likelihood;
  double log_z;
  double p_mode;
  double mode_push;
  double mode_energy;
  long long mode_steps;
};

struct EnsembleProblem {
  int n = 0, m = 0;
  int rows = 0;          // data rows
  int batch = 0;         // B
  int chains = 0;        // P (pcd), else 0
  int gibbs_steps = 1;
  long long total = 0;   // T
  long long eval_every = 0;
  float learning_rate = 0, momentum = 0, weight_decay = 0;
  bool sample_positive_hidden = false;
  bool persistent = false;
  bool mode = false;
  double p_max = 0, alpha = 0, beta = 0;
  bool push_scaled = true;
  bool exact_metrics = false;
  int distinct = 0;                       // distinct data rows
  const std::uint8_t* data = nullptr;     // rows x n
  const float* distinct_rows = nullptr;   // distinct x n
  const double* distinct_weight = nullptr;  // count / rows
  double data_neg_entropy = 0;            // sum_d w_d log w_d
  const float* initial = nullptr;         // members x P
  const std::uint64_t* seeds = nullptr;
  float* final_parameters = nullptr;      // members x P
  int* order = nullptr;                   // members x rows
  MemberMetrics* history = nullptr;       // members x evals
  int evals = 0;
};

__device__ inline double softplus_d(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }

// Shared scratch for block reductions.
struct Reduction {
  double a[256];
  double b[256];
  long long index[256];
};

// log(sum exp) of per-thread (max, sum) pairs.
__device__ double block_log_sum_exp(double running_max, double running_sum, Reduction& r) {
  __syncthreads();
  r.a[threadIdx.x] = running_max;
  __syncthreads();
  for (int offset = blockDim.x / 2; offset > 0; offset /= 2) {
    if (threadIdx.x < offset) r.a[threadIdx.x] = fmax(r.a[threadIdx.x], r.a[threadIdx.x + offset]);
    __syncthreads();
  }
  const double top = r.a[0];
  __syncthreads();
  const double scaled = running_sum > 0.0 ? running_sum * exp(running_max - top) : 0.0;
  return top + log(block_sum(scaled));
}

// The lowest (energy, code) over the block; ties go to the lower code.
__device__ long long block_argmin(double energy, long long code, Reduction& r, double* best_energy) {
  __syncthreads();
  r.a[threadIdx.x] = energy;
  r.index[threadIdx.x] = code;
  __syncthreads();
  for (int offset = blockDim.x / 2; offset > 0; offset /= 2) {
    if (threadIdx.x < offset) {
      const double e2 = r.a[threadIdx.x + offset];
      const long long c2 = r.index[threadIdx.x + offset];
      if (e2 < r.a[threadIdx.x] || (e2 == r.a[threadIdx.x] && c2 < r.index[threadIdx.x])) {
        r.a[threadIdx.x] = e2;
        r.index[threadIdx.x] = c2;
      }
    }
    __syncthreads();
  }
  const long long best = r.index[0];
  *best_energy = r.a[0];
  __syncthreads();
  return best;
}

// Samples one layer for `rows` rows from the other layer's states `in`:
// hidden (to_hidden) fields b_j + sum_i in[r, i] W[i, j], visible fields
// a_i + sum_j in[r, j] W[i, j]; one (row, 4 units) group per step of a loop
// starting at `first_group` with step `group_step`, one Philox block each, at
// the engines' index layout. No barrier: the caller adds the one its threads
// share (sample_block a block's, warp_sample a warp's).
__device__ __forceinline__ void sample_groups(int first_group, int group_step, const float* weights, const float* bias,
                                              int n, int m, bool to_hidden, const float* in, int rows, float* samples,
                                              float* probabilities, bool probabilities_get_samples, std::uint64_t seed,
                                              std::uint64_t stream, std::uint64_t half_sweep) {
  const int width = to_hidden ? m : n;
  const int in_width = to_hidden ? n : m;
  const int groups_per_row = (width + 3) / 4;
  for (int g = first_group; g < rows * groups_per_row; g += group_step) {
    const int r = g / groups_per_row;
    const int first = (g % groups_per_row) * 4;
    const float* x = in + r * in_width;
    sample_unit_group(
        seed, stream, half_sweep, r, width, first,
        [&](int u) {
          float field = bias[u];
          if (to_hidden) {
            for (int k = 0; k < in_width; ++k) field += x[k] * weights[k * m + u];
          } else {
            for (int k = 0; k < in_width; ++k) field += x[k] * weights[u * m + k];
          }
          return field;
        },
        [&](int u, float p, float sample) {
          if (samples != nullptr) samples[r * width + u] = sample;
          if (probabilities != nullptr) probabilities[r * width + u] = probabilities_get_samples ? sample : p;
        });
  }
}

// sample_groups over the block's threads, one thread per group.
__device__ void sample_block(const float* weights, const float* bias, int n, int m, bool to_hidden, const float* in,
                             int rows, float* samples, float* probabilities, bool probabilities_get_samples,
                             std::uint64_t seed, std::uint64_t stream, std::uint64_t half_sweep) {
  sample_groups(threadIdx.x, blockDim.x, weights, bias, n, m, to_hidden, in, rows, samples, probabilities,
                probabilities_get_samples, seed, stream, half_sweep);
  __syncthreads();
}

// Enumerates the smaller layer in Gray-code chunks (one per thread, fields in
// float64 restarted exactly at the chunk start) and calls visit(code, linear,
// fields) for each state, where fields are the other layer's b + W^T v (or
// a + W h) and linear the enumerated layer's bias sum.
template <typename Visit>
__device__ void enumerate_smaller(const float* weights, const float* a, const float* b, int n, int m, Visit visit) {
  const bool hidden = m <= n;
  const int k = hidden ? m : n;
  const int other = hidden ? n : m;
  const float* enumerated_bias = hidden ? b : a;
  const float* other_bias = hidden ? a : b;
  int chunk_log = 0;
  while (k - chunk_log > 0 && (1LL << (k - chunk_log)) > static_cast<long long>(blockDim.x)) ++chunk_log;
  const long long threads = 1LL << (k - chunk_log);
  if (static_cast<long long>(threadIdx.x) >= threads) return;
  const long long first = static_cast<long long>(threadIdx.x) << chunk_log;
  const long long count = 1LL << chunk_log;
  auto coupling = [&](int e, int l) -> double { return hidden ? weights[l * m + e] : weights[e * m + l]; };
  double fields[kMaxUnits];
  long long gray = first ^ (first >> 1);
  double linear = 0.0;
  for (int l = 0; l < other; ++l) fields[l] = other_bias[l];
  for (int e = 0; e < k; ++e) {
    if ((gray >> e) & 1) {
      linear += enumerated_bias[e];
      for (int l = 0; l < other; ++l) fields[l] += coupling(e, l);
    }
  }
  for (long long step = 0;; ++step) {
    visit(gray, linear, fields, other);
    if (step + 1 == count) break;
    const int e = __ffsll(first + step + 1) - 1;
    gray ^= 1LL << e;
    const double sign = ((gray >> e) & 1) ? 1.0 : -1.0;
    linear += sign * enumerated_bias[e];
    for (int l = 0; l < other; ++l) fields[l] += sign * coupling(e, l);
  }
}

// E(v, h) in float64.
__device__ double energy_of(const float* weights, const float* a, const float* b, int n, int m, const float* v,
                            const float* h) {
  double e = 0.0;
  for (int i = 0; i < n; ++i) {
    if (v[i] == 0.0f) continue;
    e -= a[i];
    for (int j = 0; j < m; ++j) e -= h[j] != 0.0f ? static_cast<double>(weights[i * m + j]) : 0.0;
  }
  for (int j = 0; j < m; ++j) e -= h[j] != 0.0f ? static_cast<double>(b[j]) : 0.0;
  return e;
}

__global__ void ensemble_kernel(EnsembleProblem problem) {
  extern __shared__ float shared[];
  __shared__ Reduction reduction;
  __shared__ double shared_scalar[4];

  const int member = blockIdx.x;
  const int n = problem.n, m = problem.m;
  const int weight_count = n * m;
  const int parameter_count = weight_count + n + m;
  const int batch = problem.batch;
  const int chains = problem.persistent ? problem.chains : batch;
  const int widest_rows = batch > chains ? batch : chains;
  const std::uint64_t seed = problem.seeds[member];

  float* weights = shared;
  float* a = weights + weight_count;
  float* b = a + n;
  float* velocity = shared + parameter_count;
  float* v_data = velocity + parameter_count;          // batch x n
  float* h_data = v_data + batch * n;                  // batch x m: p(h|v) or samples
  float* h_samples = h_data + batch * m;               // widest x m
  float* v_negative = h_samples + widest_rows * m;     // chains x n (pcd: the persistent chains)
  float* h_negative = v_negative + chains * n;         // chains x m: p(h|v_k)
  float* v_mode = h_negative + chains * m;             // n
  float* h_mode = v_mode + n;                          // m
  int* order = problem.order + static_cast<std::size_t>(member) * problem.rows;

  for (int p = threadIdx.x; p < parameter_count; p += blockDim.x) {
    weights[p] = problem.initial[static_cast<std::size_t>(member) * parameter_count + p];
    velocity[p] = 0.0f;
  }
  for (int r = threadIdx.x; r < problem.rows; r += blockDim.x) order[r] = r;
  if (problem.persistent) {
    // reset_persistent_chains(P, seed): bit 31 of the word at r * stride + u.
    const int groups_per_row = (n + 3) / 4;
    const std::uint64_t stream = random_stream(RandomPurpose::persistent_chains, 0);
    for (int g = threadIdx.x; g < chains * groups_per_row; g += blockDim.x) {
      const int r = g / groups_per_row;
      const int first = (g % groups_per_row) * 4;
      chain_start_group(seed, stream, r, n, first, [&](int u, float value) { v_negative[r * n + u] = value; });
    }
  }
  __syncthreads();

  long long mode_steps = 0;
  double last_push = nan(""), last_energy = nan("");
  int eval_index = 0;
  const long long per_epoch = (problem.rows + batch - 1) / batch;

  auto probability_of_mode = [&](long long t) {
    return problem.p_max / (1.0 + exp(-(problem.alpha * static_cast<double>(t) / static_cast<double>(problem.total) +
                                        problem.beta)));
  };

  auto evaluate = [&](long long t) {
    MemberMetrics metrics;
    metrics.iteration = t;
    metrics.kl = metrics.mean_log_likelihood = metrics.log_z = nan("");
    if (problem.exact_metrics) {
      double running_max = -INFINITY, running_sum = 0.0;
      enumerate_smaller(weights, a, b, n, m, [&](long long, double linear, const double* fields, int other) {
        double x = linear;
        for (int l = 0; l < other; ++l) x += softplus_d(fields[l]);
        if (x > running_max) {
          running_sum = running_sum * exp(running_max - x) + 1.0;
          running_max = x;
        } else {
          running_sum += exp(x - running_max);
        }
      });
      const double log_z = block_log_sum_exp(running_max, running_sum, reduction);
      // log p(v) = -F(v) - log Z over the distinct data rows.
      double log_likelihood = 0.0;
      for (int d = threadIdx.x; d < problem.distinct; d += blockDim.x) {
        const float* v = problem.distinct_rows + static_cast<std::size_t>(d) * n;
        double minus_free_energy = 0.0;
        for (int i = 0; i < n; ++i) minus_free_energy += v[i] != 0.0f ? static_cast<double>(a[i]) : 0.0;
        for (int j = 0; j < m; ++j) {
          double field = b[j];
          for (int i = 0; i < n; ++i) field += v[i] != 0.0f ? static_cast<double>(weights[i * m + j]) : 0.0;
          minus_free_energy += softplus_d(field);
        }
        log_likelihood += problem.distinct_weight[d] * (minus_free_energy - log_z);
      }
      log_likelihood = block_sum(log_likelihood);
      metrics.log_z = log_z;
      metrics.mean_log_likelihood = log_likelihood;
      metrics.kl = problem.data_neg_entropy - log_likelihood;
    }
    metrics.p_mode = problem.mode ? probability_of_mode(t) : 0.0;
    metrics.mode_push = last_push;
    metrics.mode_energy = last_energy;
    metrics.mode_steps = mode_steps;
    if (threadIdx.x == 0 && eval_index < problem.evals)
      problem.history[static_cast<std::size_t>(member) * problem.evals + eval_index] = metrics;
    ++eval_index;
  };
  auto due = [&](long long t) {
    return t == 0 || t == problem.total || (problem.eval_every > 0 && t % problem.eval_every == 0);
  };

  evaluate(0);
  for (long long t = 0; t < problem.total; ++t) {
    const std::uint64_t gibbs = random_stream(RandomPurpose::gibbs, static_cast<std::uint64_t>(t));
    // Batch rows: the driver's schedule (a Philox Fisher-Yates shuffle per
    // epoch when one batch does not cover the data set).
    const long long epoch = t / per_epoch;
    const long long position = t % per_epoch;
    if (batch < problem.rows && position == 0) {
      if (threadIdx.x == 0) {
        const std::uint64_t stream = random_stream(RandomPurpose::batch_order, static_cast<std::uint64_t>(epoch));
        for (int r = 0; r < problem.rows; ++r) order[r] = r;
        for (int i = problem.rows - 1; i > 0; --i) {
          int j = static_cast<int>(philox_uniform_double(seed, stream, static_cast<std::uint64_t>(i)) * (i + 1));
          j = j < i ? j : i;
          const int swap = order[i];
          order[i] = order[j];
          order[j] = swap;
        }
      }
      __syncthreads();
    }
    const int first_row = static_cast<int>(position * batch);
    const int rows_now = min(batch, problem.rows - first_row);
    for (int e = threadIdx.x; e < rows_now * n; e += blockDim.x) {
      const int r = e / n;
      v_data[e] = static_cast<float>(problem.data[static_cast<std::size_t>(order[first_row + r]) * n + (e % n)]);
    }

    // Mode step? The same decision and push as detail::ModeAssist.
    bool mode_step = false;
    float learning_rate = problem.learning_rate;
    if (problem.mode) {
      const double p = probability_of_mode(t);
      mode_step = p > 0.0 &&
                  philox_uniform_double(seed, random_stream(RandomPurpose::mode_choice, static_cast<std::uint64_t>(t)), 0) < p;
    }
    if (mode_step) {
      __syncthreads();
      double best_energy = INFINITY;
      long long best_code = 0;
      // min over the other layer: a unit is on exactly when its field is > 0.
      enumerate_smaller(weights, a, b, n, m, [&](long long code, double linear, const double* fields, int other) {
        double e = -linear;
        for (int l = 0; l < other; ++l) e -= fmax(fields[l], 0.0);
        if (e < best_energy || (e == best_energy && code < best_code)) {
          best_energy = e;
          best_code = code;
        }
      });
      double found_energy = 0.0;
      const long long code = block_argmin(best_energy, best_code, reduction, &found_energy);
      const bool hidden = m <= n;
      float* enumerated = hidden ? h_mode : v_mode;
      float* other_layer = hidden ? v_mode : h_mode;
      const int k = hidden ? m : n;
      const int other = hidden ? n : m;
      for (int e = threadIdx.x; e < k; e += blockDim.x) enumerated[e] = static_cast<float>((code >> e) & 1);
      __syncthreads();
      for (int l = threadIdx.x; l < other; l += blockDim.x) {
        double field = hidden ? a[l] : b[l];
        for (int e = 0; e < k; ++e)
          if (enumerated[e] != 0.0f) field += hidden ? weights[l * m + e] : weights[e * m + l];
        other_layer[l] = field > 0.0 ? 1.0f : 0.0f;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        double mean_energy = 0.0;  // E_bar = -sum(a)/2 - sum(b)/2 - sum(W)/4
        for (int i = 0; i < n; ++i) mean_energy -= 0.5 * a[i];
        for (int j = 0; j < m; ++j) mean_energy -= 0.5 * b[j];
        for (int w = 0; w < weight_count; ++w) mean_energy -= 0.25 * weights[w];
        const double energy = energy_of(weights, a, b, n, m, v_mode, h_mode);
        shared_scalar[0] = energy;
        shared_scalar[1] = (mean_energy - energy) / (4.0 * (n + 1.0) * (m + 1.0));
      }
      __syncthreads();
      last_energy = shared_scalar[0];
      last_push = shared_scalar[1];
      ++mode_steps;
      if (problem.push_scaled) learning_rate = static_cast<float>(problem.learning_rate * last_push);
    }
    __syncthreads();

    // Positive phase: p(h|v) (or samples, half-sweep 0); cd keeps h_0 samples.
    const bool need_samples = problem.sample_positive_hidden || (!problem.persistent && !mode_step);
    sample_block(weights, b, n, m, true, v_data, rows_now, need_samples ? h_samples : nullptr, h_data,
                 problem.sample_positive_hidden, seed, gibbs, 0);

    int negative_rows = 1;
    const float* v_neg = v_mode;
    const float* h_neg = h_mode;
    if (!mode_step) {
      const int offset = problem.persistent ? 1 : 0;
      negative_rows = problem.persistent ? chains : rows_now;
      if (problem.persistent) {
        sample_block(weights, b, n, m, true, v_negative, negative_rows, h_samples, nullptr, false, seed, gibbs, 1);
      }
      for (int s = 1; s <= problem.gibbs_steps; ++s) {
        sample_block(weights, a, n, m, false, h_samples, negative_rows, v_negative, nullptr, false, seed, gibbs,
                     2 * s - 1 + offset);
        const bool last = s == problem.gibbs_steps;
        sample_block(weights, b, n, m, true, v_negative, negative_rows, last ? nullptr : h_samples,
                     last ? h_negative : nullptr, false, seed, gibbs, 2 * s + offset);
      }
      v_neg = v_negative;
      h_neg = h_negative;
    }

    // Fused gradient and update: each thread owns some parameters.
    const float inverse_positive = 1.0f / static_cast<float>(rows_now);
    const float inverse_negative = 1.0f / static_cast<float>(negative_rows);
    for (int p = threadIdx.x; p < parameter_count; p += blockDim.x) {
      float positive = 0.0f, negative = 0.0f;
      if (p < weight_count) {
        const int i = p / m, j = p % m;
        for (int r = 0; r < rows_now; ++r) positive += v_data[r * n + i] * h_data[r * m + j];
        for (int r = 0; r < negative_rows; ++r) negative += v_neg[r * n + i] * h_neg[r * m + j];
      } else if (p < weight_count + n) {
        const int i = p - weight_count;
        for (int r = 0; r < rows_now; ++r) positive += v_data[r * n + i];
        for (int r = 0; r < negative_rows; ++r) negative += v_neg[r * n + i];
      } else {
        const int j = p - weight_count - n;
        for (int r = 0; r < rows_now; ++r) positive += h_data[r * m + j];
        for (int r = 0; r < negative_rows; ++r) negative += h_neg[r * m + j];
      }
      const float gradient = positive * inverse_positive - negative * inverse_negative;
      const float theta = weights[p];
      const float decay = p < weight_count ? problem.weight_decay * theta : 0.0f;
      const float step = problem.momentum * velocity[p] + learning_rate * (gradient - decay);
      velocity[p] = step;
      weights[p] = theta + step;
    }
    __syncthreads();
    if (due(t + 1)) evaluate(t + 1);
  }

  for (int p = threadIdx.x; p < parameter_count; p += blockDim.x)
    problem.final_parameters[static_cast<std::size_t>(member) * parameter_count + p] = weights[p];
}

// ---------------------------------------------------------------------------
// The warp kernel: one warp per member, several members per block (see
// detail/ensemble_launch.hpp for when it runs). The same steps as
// ensemble_kernel above, written again rather than shared so that the block
// kernel stays as it was and a device run can compare the two: every float32
// sum runs over the same terms in the same order and every draw reads the
// same Philox word, so the parameters are expected bit for bit equal to the
// block kernel's (CudaEnsemble.WarpKernelEqualsTheBlockKernel). Only the
// float64 metrics (log Z, KL) sum their states in another order. Barriers are
// __syncwarp (ordering shared and global memory among the lanes), reductions
// butterflies of full-mask shuffles, so a warp never waits on another and
// the warps of a partial last block simply return. One addition: a batch that
// covers the data set is loaded once, not at every update (same values). The
// enumeration keeps its float64 fields in the member's shared scratch
// (unit-major, lane-minor: no bank conflicts), not in a local array: no stack
// frame. Compiled, never run on a device.

constexpr unsigned kFullMask = 0xffffffffu;

// log(sum exp) of per-lane (max, sum) pairs; every lane gets the same bits.
__device__ double warp_log_sum_exp(double running_max, double running_sum) {
  double top = running_max;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) top = fmax(top, __shfl_xor_sync(kFullMask, top, offset));
  const double scaled = running_sum > 0.0 ? running_sum * exp(running_max - top) : 0.0;
  return top + log(warp_sum(scaled));
}

// The lowest (energy, code) over the warp, ties to the lower code; a total
// order, so the butterfly leaves the same pair on every lane.
__device__ long long warp_argmin(double energy, long long code, double* best_energy) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const double e2 = __shfl_xor_sync(kFullMask, energy, offset);
    const long long c2 = __shfl_xor_sync(kFullMask, code, offset);
    if (e2 < energy || (e2 == energy && c2 < code)) {
      energy = e2;
      code = c2;
    }
  }
  *best_energy = energy;
  return code;
}

// sample_block for one warp: the same (row, 4 units) groups and fields, the
// groups spread over the lanes.
__device__ void warp_sample(int lane, const float* weights, const float* bias, int n, int m, bool to_hidden,
                            const float* in, int rows, float* samples, float* probabilities,
                            bool probabilities_get_samples, std::uint64_t seed, std::uint64_t stream,
                            std::uint64_t half_sweep) {
  sample_groups(lane, kWarp, weights, bias, n, m, to_hidden, in, rows, samples, probabilities,
                probabilities_get_samples, seed, stream, half_sweep);
  __syncwarp();
}

// enumerate_smaller for one warp: 2^k states in Gray-code chunks, one chunk
// per lane (chunks of 2^(k-5) states from k = 5 on; below, lanes 2^k.. get
// none and return at once). fields: the member's scratch, field l of lane
// `lane` at fields[l * kWarp + lane]; visit(code, linear, fields + lane,
// other) indexes its fields with stride kWarp.
template <typename Visit>
__device__ void warp_enumerate_smaller(int lane, const float* weights, const float* a, const float* b, int n, int m,
                                       double* fields, Visit visit) {
  const bool hidden = m <= n;
  const int k = hidden ? m : n;
  const int other = hidden ? n : m;
  const float* enumerated_bias = hidden ? b : a;
  const float* other_bias = hidden ? a : b;
  const int chunk_log = k > 5 ? k - 5 : 0;
  const int lanes = 1 << (k - chunk_log);
  if (lane >= lanes) return;
  const long long first = static_cast<long long>(lane) << chunk_log;
  const long long count = 1LL << chunk_log;
  auto coupling = [&](int e, int l) -> double { return hidden ? weights[l * m + e] : weights[e * m + l]; };
  double* mine = fields + lane;
  long long gray = first ^ (first >> 1);
  double linear = 0.0;
  for (int l = 0; l < other; ++l) mine[l * kWarp] = other_bias[l];
  for (int e = 0; e < k; ++e) {
    if ((gray >> e) & 1) {
      linear += enumerated_bias[e];
      for (int l = 0; l < other; ++l) mine[l * kWarp] += coupling(e, l);
    }
  }
  for (long long step = 0;; ++step) {
    visit(gray, linear, static_cast<const double*>(mine), other);
    if (step + 1 == count) break;
    const int e = __ffsll(first + step + 1) - 1;
    gray ^= 1LL << e;
    const double sign = ((gray >> e) & 1) ? 1.0 : -1.0;
    linear += sign * enumerated_bias[e];
    for (int l = 0; l < other; ++l) mine[l * kWarp] += sign * coupling(e, l);
  }
}

// scratch_bytes: the enumeration scratch at the start of each member's slice
// (0 when nothing enumerates); member_bytes: the slice (a multiple of 16).
__global__ void __launch_bounds__(kWarp * kWarpKernelMembersPerBlock, 4)
    ensemble_warp_kernel(EnsembleProblem problem, int members, unsigned scratch_bytes, unsigned member_bytes) {
  extern __shared__ __align__(16) unsigned char warp_shared[];
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int slot = static_cast<int>(threadIdx.x) / kWarp;
  const int member = static_cast<int>(blockIdx.x) * (static_cast<int>(blockDim.x) / kWarp) + slot;
  if (member >= members) return;  // the whole warp: nothing below waits on other warps

  unsigned char* slice = warp_shared + static_cast<std::size_t>(slot) * member_bytes;
  double* scratch = reinterpret_cast<double*>(slice);
  float* shared = reinterpret_cast<float*>(slice + scratch_bytes);

  const int n = problem.n, m = problem.m;
  const int weight_count = n * m;
  const int parameter_count = weight_count + n + m;
  const int batch = problem.batch;
  const int chains = problem.persistent ? problem.chains : batch;
  const int widest_rows = batch > chains ? batch : chains;
  const std::uint64_t seed = problem.seeds[member];

  float* weights = shared;
  float* a = weights + weight_count;
  float* b = a + n;
  float* velocity = shared + parameter_count;
  float* v_data = velocity + parameter_count;          // batch x n
  float* h_data = v_data + batch * n;                  // batch x m: p(h|v) or samples
  float* h_samples = h_data + batch * m;               // widest x m
  float* v_negative = h_samples + widest_rows * m;     // chains x n (pcd: the persistent chains)
  float* h_negative = v_negative + chains * n;         // chains x m: p(h|v_k)
  float* v_mode = h_negative + chains * m;             // n
  float* h_mode = v_mode + n;                          // m
  int* order = problem.order + static_cast<std::size_t>(member) * problem.rows;

  for (int p = lane; p < parameter_count; p += kWarp) {
    weights[p] = problem.initial[static_cast<std::size_t>(member) * parameter_count + p];
    velocity[p] = 0.0f;
  }
  for (int r = lane; r < problem.rows; r += kWarp) order[r] = r;
  if (problem.persistent) {
    const int groups_per_row = (n + 3) / 4;
    const std::uint64_t stream = random_stream(RandomPurpose::persistent_chains, 0);
    for (int g = lane; g < chains * groups_per_row; g += kWarp) {
      const int r = g / groups_per_row;
      const int first = (g % groups_per_row) * 4;
      chain_start_group(seed, stream, r, n, first, [&](int u, float value) { v_negative[r * n + u] = value; });
    }
  }
  __syncwarp();

  long long mode_steps = 0;
  double last_push = nan(""), last_energy = nan("");
  int eval_index = 0;
  const long long per_epoch = (problem.rows + batch - 1) / batch;

  auto probability_of_mode = [&](long long t) {
    return problem.p_max / (1.0 + exp(-(problem.alpha * static_cast<double>(t) / static_cast<double>(problem.total) +
                                        problem.beta)));
  };

  auto evaluate = [&](long long t) {
    MemberMetrics metrics;
    metrics.iteration = t;
    metrics.kl = metrics.mean_log_likelihood = metrics.log_z = nan("");
    if (problem.exact_metrics) {
      double running_max = -INFINITY, running_sum = 0.0;
      warp_enumerate_smaller(lane, weights, a, b, n, m, scratch,
                             [&](long long, double linear, const double* fields, int other) {
                               double x = linear;
                               for (int l = 0; l < other; ++l) x += softplus_d(fields[l * kWarp]);
                               if (x > running_max) {
                                 running_sum = running_sum * exp(running_max - x) + 1.0;
                                 running_max = x;
                               } else {
                                 running_sum += exp(x - running_max);
                               }
                             });
      const double log_z = warp_log_sum_exp(running_max, running_sum);
      double log_likelihood = 0.0;
      for (int d = lane; d < problem.distinct; d += kWarp) {
        const float* v = problem.distinct_rows + static_cast<std::size_t>(d) * n;
        double minus_free_energy = 0.0;
        for (int i = 0; i < n; ++i) minus_free_energy += v[i] != 0.0f ? static_cast<double>(a[i]) : 0.0;
        for (int j = 0; j < m; ++j) {
          double field = b[j];
          for (int i = 0; i < n; ++i) field += v[i] != 0.0f ? static_cast<double>(weights[i * m + j]) : 0.0;
          minus_free_energy += softplus_d(field);
        }
        log_likelihood += problem.distinct_weight[d] * (minus_free_energy - log_z);
      }
      log_likelihood = warp_sum(log_likelihood);
      metrics.log_z = log_z;
      metrics.mean_log_likelihood = log_likelihood;
      metrics.kl = problem.data_neg_entropy - log_likelihood;
    }
    metrics.p_mode = problem.mode ? probability_of_mode(t) : 0.0;
    metrics.mode_push = last_push;
    metrics.mode_energy = last_energy;
    metrics.mode_steps = mode_steps;
    if (lane == 0 && eval_index < problem.evals)
      problem.history[static_cast<std::size_t>(member) * problem.evals + eval_index] = metrics;
    ++eval_index;
  };
  auto due = [&](long long t) {
    return t == 0 || t == problem.total || (problem.eval_every > 0 && t % problem.eval_every == 0);
  };

  evaluate(0);
  for (long long t = 0; t < problem.total; ++t) {
    const std::uint64_t gibbs = random_stream(RandomPurpose::gibbs, static_cast<std::uint64_t>(t));
    const long long epoch = t / per_epoch;
    const long long position = t % per_epoch;
    if (batch < problem.rows && position == 0) {
      if (lane == 0) {
        const std::uint64_t stream = random_stream(RandomPurpose::batch_order, static_cast<std::uint64_t>(epoch));
        for (int r = 0; r < problem.rows; ++r) order[r] = r;
        for (int i = problem.rows - 1; i > 0; --i) {
          int j = static_cast<int>(philox_uniform_double(seed, stream, static_cast<std::uint64_t>(i)) * (i + 1));
          j = j < i ? j : i;
          const int swap = order[i];
          order[i] = order[j];
          order[j] = swap;
        }
      }
      __syncwarp();
    }
    const int first_row = static_cast<int>(position * batch);
    const int rows_now = min(batch, problem.rows - first_row);
    // One batch covering the data set (per_epoch 1: never shuffled, nothing
    // else writes v_data) holds the same rows at every update: loaded once,
    // saving two dependent global loads per update.
    if (per_epoch > 1 || t == 0) {
      for (int e = lane; e < rows_now * n; e += kWarp) {
        const int r = e / n;
        v_data[e] = static_cast<float>(problem.data[static_cast<std::size_t>(order[first_row + r]) * n + (e % n)]);
      }
    }

    bool mode_step = false;
    float learning_rate = problem.learning_rate;
    if (problem.mode) {
      const double p = probability_of_mode(t);
      mode_step = p > 0.0 &&
                  philox_uniform_double(seed, random_stream(RandomPurpose::mode_choice, static_cast<std::uint64_t>(t)), 0) < p;
    }
    if (mode_step) {
      __syncwarp();
      double best_energy = INFINITY;
      long long best_code = 0;
      warp_enumerate_smaller(lane, weights, a, b, n, m, scratch,
                             [&](long long code, double linear, const double* fields, int other) {
                               double e = -linear;
                               for (int l = 0; l < other; ++l) e -= fmax(fields[l * kWarp], 0.0);
                               if (e < best_energy || (e == best_energy && code < best_code)) {
                                 best_energy = e;
                                 best_code = code;
                               }
                             });
      double found_energy = 0.0;
      const long long code = warp_argmin(best_energy, best_code, &found_energy);
      const bool hidden = m <= n;
      float* enumerated = hidden ? h_mode : v_mode;
      float* other_layer = hidden ? v_mode : h_mode;
      const int k = hidden ? m : n;
      const int other = hidden ? n : m;
      for (int e = lane; e < k; e += kWarp) enumerated[e] = static_cast<float>((code >> e) & 1);
      __syncwarp();
      for (int l = lane; l < other; l += kWarp) {
        double field = hidden ? a[l] : b[l];
        for (int e = 0; e < k; ++e)
          if (enumerated[e] != 0.0f) field += hidden ? weights[l * m + e] : weights[e * m + l];
        other_layer[l] = field > 0.0 ? 1.0f : 0.0f;
      }
      __syncwarp();
      double energy = 0.0, push = 0.0;
      if (lane == 0) {
        double mean_energy = 0.0;  // E_bar = -sum(a)/2 - sum(b)/2 - sum(W)/4
        for (int i = 0; i < n; ++i) mean_energy -= 0.5 * a[i];
        for (int j = 0; j < m; ++j) mean_energy -= 0.5 * b[j];
        for (int w = 0; w < weight_count; ++w) mean_energy -= 0.25 * weights[w];
        energy = energy_of(weights, a, b, n, m, v_mode, h_mode);
        push = (mean_energy - energy) / (4.0 * (n + 1.0) * (m + 1.0));
      }
      last_energy = __shfl_sync(kFullMask, energy, 0);
      last_push = __shfl_sync(kFullMask, push, 0);
      ++mode_steps;
      if (problem.push_scaled) learning_rate = static_cast<float>(problem.learning_rate * last_push);
    }
    __syncwarp();

    const bool need_samples = problem.sample_positive_hidden || (!problem.persistent && !mode_step);
    warp_sample(lane, weights, b, n, m, true, v_data, rows_now, need_samples ? h_samples : nullptr, h_data,
                problem.sample_positive_hidden, seed, gibbs, 0);

    int negative_rows = 1;
    const float* v_neg = v_mode;
    const float* h_neg = h_mode;
    if (!mode_step) {
      const int offset = problem.persistent ? 1 : 0;
      negative_rows = problem.persistent ? chains : rows_now;
      if (problem.persistent) {
        warp_sample(lane, weights, b, n, m, true, v_negative, negative_rows, h_samples, nullptr, false, seed, gibbs, 1);
      }
      for (int s = 1; s <= problem.gibbs_steps; ++s) {
        warp_sample(lane, weights, a, n, m, false, h_samples, negative_rows, v_negative, nullptr, false, seed, gibbs,
                    2 * s - 1 + offset);
        const bool last = s == problem.gibbs_steps;
        warp_sample(lane, weights, b, n, m, true, v_negative, negative_rows, last ? nullptr : h_samples,
                    last ? h_negative : nullptr, false, seed, gibbs, 2 * s + offset);
      }
      v_neg = v_negative;
      h_neg = h_negative;
    }

    const float inverse_positive = 1.0f / static_cast<float>(rows_now);
    const float inverse_negative = 1.0f / static_cast<float>(negative_rows);
    for (int p = lane; p < parameter_count; p += kWarp) {
      float positive = 0.0f, negative = 0.0f;
      if (p < weight_count) {
        const int i = p / m, j = p % m;
        for (int r = 0; r < rows_now; ++r) positive += v_data[r * n + i] * h_data[r * m + j];
        for (int r = 0; r < negative_rows; ++r) negative += v_neg[r * n + i] * h_neg[r * m + j];
      } else if (p < weight_count + n) {
        const int i = p - weight_count;
        for (int r = 0; r < rows_now; ++r) positive += v_data[r * n + i];
        for (int r = 0; r < negative_rows; ++r) negative += v_neg[r * n + i];
      } else {
        const int j = p - weight_count - n;
        for (int r = 0; r < rows_now; ++r) positive += h_data[r * m + j];
        for (int r = 0; r < negative_rows; ++r) negative += h_neg[r * m + j];
      }
      const float gradient = positive * inverse_positive - negative * inverse_negative;
      const float theta = weights[p];
      const float decay = p < weight_count ? problem.weight_decay * theta : 0.0f;
      const float step = problem.momentum * velocity[p] + learning_rate * (gradient - decay);
      velocity[p] = step;
      weights[p] = theta + step;
    }
    __syncwarp();
    if (due(t + 1)) evaluate(t + 1);
  }

  for (int p = lane; p < parameter_count; p += kWarp)
    problem.final_parameters[static_cast<std::size_t>(member) * parameter_count + p] = weights[p];
}

// Members neither the fused kernel nor the batched path covers (the exact
// method): marbm::train on cuda engines, one engine per host thread (reused
// member after member), so that their streams overlap on the device.
std::vector<TrainResult> train_one_by_one(const Dataset& data, const std::vector<Rbm>& initial,
                                          const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                          const EnsembleMetricsCallback& on_metrics) {
  const int members = static_cast<int>(initial.size());
  std::vector<TrainResult> results(initial.size());
  std::vector<std::exception_ptr> errors(initial.size());
  std::mutex callback_mutex;
  std::atomic<int> next{0};
  auto worker = [&] {
    std::unique_ptr<Engine> engine;
    for (int e = next++; e < members; e = next++) {
      try {
        if (!engine) engine = make_cuda_engine_impl(EngineOptions{.device = config.device});
        results[e] = train_ensemble_member(*engine, data, initial[e], seeds[e], config, e, on_metrics, callback_mutex);
      } catch (...) {
        errors[e] = std::current_exception();
      }
    }
  };
  const int workers = std::min(members, 4);
  std::vector<std::thread> threads;
  for (int w = 1; w < workers; ++w) threads.emplace_back(worker);
  worker();
  for (std::thread& thread : threads) thread.join();
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
  return results;
}

void check_config(const TrainConfig& config) {
  MARBM_EXPECTS(std::isfinite(config.learning_rate) && config.learning_rate > 0, UsageError,
                "train_ensemble: learning rate must be finite and > 0, got " + std::to_string(config.learning_rate));
  MARBM_EXPECTS(std::isfinite(config.momentum) && config.momentum >= 0 && config.momentum < 1, UsageError,
                "train_ensemble: momentum must be in [0, 1), got " + std::to_string(config.momentum));
  MARBM_EXPECTS(std::isfinite(config.weight_decay) && config.weight_decay >= 0, UsageError,
                "train_ensemble: weight decay must be finite and >= 0, got " + std::to_string(config.weight_decay));
  check_gibbs_steps(config.gibbs_steps, "train_ensemble");
  MARBM_EXPECTS(config.persistent_chains >= 0, UsageError,
                "train_ensemble: persistent chain count must be >= 0, got " + std::to_string(config.persistent_chains));
  MARBM_EXPECTS(config.eval_every >= 0, UsageError,
                "train_ensemble: eval_every must be >= 0, got " + std::to_string(config.eval_every));
  if (config.method == TrainMethod::mode) {
    MARBM_EXPECTS(std::isfinite(config.mode.p_max) && config.mode.p_max >= 0 && config.mode.p_max <= 1, UsageError,
                  "train_ensemble: mode p_max must be in [0, 1], got " + std::to_string(config.mode.p_max));
    MARBM_EXPECTS(std::isfinite(config.mode.alpha) && std::isfinite(config.mode.beta), UsageError,
                  "train_ensemble: mode alpha and beta must be finite");
  }
}

}  // namespace

std::vector<TrainResult> train_ensemble_cuda_impl(const Dataset& data, const std::vector<Rbm>& initial,
                                             const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                             const EnsembleMetricsCallback& on_metrics) {
  const int n = initial.front().n_visible(), m = initial.front().n_hidden();
  if (!ensemble_fused_supported(n, m, data.n_rows, config)) {
    if (ensemble_batched_supported(n, m, data.n_rows, config))
      return train_ensemble_batched(data, initial, seeds, config, on_metrics);
    return train_one_by_one(data, initial, seeds, config, on_metrics);
  }
  check_config(config);
  const FusedKernelChoice kernel_choice = parse_fused_kernel_choice(std::getenv("MARBM_ENSEMBLE_KERNEL"));
  MARBM_EXPECTS(data.values.size() == static_cast<std::size_t>(data.n_rows) * data.n_cols, DataError,
                "train_ensemble: the data set '" + data.description + "' holds the wrong number of values");
  for (const std::uint8_t x : data.values)
    MARBM_EXPECTS(x <= 1, DataError, "train_ensemble: the data set '" + data.description + "' holds a value other than 0 or 1");
  const long long total = total_iterations(config, data.n_rows);
  const int members = static_cast<int>(initial.size());

  Resources& resources = thread_resources(config.device);
  const cudaStream_t stream = resources.stream();
  EnsembleProblem problem;
  problem.n = n;
  problem.m = m;
  problem.rows = data.n_rows;
  problem.batch = std::min(config.batch_size, data.n_rows);
  problem.persistent = config.method == TrainMethod::pcd ||
                       (config.method == TrainMethod::mode && config.mode.base == NegativePhase::pcd);
  problem.chains = problem.persistent ? (config.persistent_chains > 0 ? config.persistent_chains : problem.batch) : 0;
  problem.gibbs_steps = config.gibbs_steps;
  problem.total = total;
  problem.eval_every = config.eval_every;
  problem.learning_rate = static_cast<float>(config.learning_rate);
  problem.momentum = static_cast<float>(config.momentum);
  problem.weight_decay = static_cast<float>(config.weight_decay);
  problem.sample_positive_hidden = config.sample_positive_hidden;
  problem.mode = config.method == TrainMethod::mode;
  problem.p_max = config.mode.p_max;
  problem.alpha = config.mode.alpha;
  problem.beta = config.mode.beta;
  problem.push_scaled = config.mode.push_scaled;
  problem.exact_metrics = config.exact_metrics && exact_enumerable(initial.front(), config.exact);

  // Evaluation points: 0, every eval_every, and T.
  std::vector<long long> eval_points;
  for (long long t = 0; t <= total; ++t)
    if (t == 0 || t == total || (config.eval_every > 0 && t % config.eval_every == 0)) eval_points.push_back(t);
  problem.evals = static_cast<int>(eval_points.size());

  // The empirical distribution's distinct rows and weights (for exact KL).
  const DistinctRows distinct = distinct_rows(data);
  std::vector<float> distinct_values;
  std::vector<double> distinct_weight;
  double neg_entropy = 0.0;
  for (std::size_t d = 0; d < distinct.rows.size(); ++d) {
    for (const std::uint8_t x : distinct.rows[d]) distinct_values.push_back(x ? 1.0f : 0.0f);
    const double w = static_cast<double>(distinct.counts[d]) / data.n_rows;
    distinct_weight.push_back(w);
    neg_entropy += w * std::log(w);
  }
  problem.distinct = static_cast<int>(distinct.rows.size());
  problem.data_neg_entropy = neg_entropy;

  const std::size_t parameters = static_cast<std::size_t>(n) * m + n + m;
  std::vector<float> initial_values;
  initial_values.reserve(parameters * members);
  for (const Rbm& rbm : initial) {
    initial_values.insert(initial_values.end(), rbm.weights().begin(), rbm.weights().end());
    initial_values.insert(initial_values.end(), rbm.visible_bias().begin(), rbm.visible_bias().end());
    initial_values.insert(initial_values.end(), rbm.hidden_bias().begin(), rbm.hidden_bias().end());
  }

  DeviceBuffer<std::uint8_t> data_device(data.values.size(), stream);
  data_device.copy_from_host(data.values);
  DeviceBuffer<float> distinct_device(distinct_values.size(), stream);
  distinct_device.copy_from_host(distinct_values);
  DeviceBuffer<double> weight_device(distinct_weight.size(), stream);
  weight_device.copy_from_host(distinct_weight);
  DeviceBuffer<float> initial_device(initial_values.size(), stream);
  initial_device.copy_from_host(initial_values);
  DeviceBuffer<std::uint64_t> seeds_device(seeds.size(), stream);
  seeds_device.copy_from_host(seeds);
  DeviceBuffer<float> final_device(initial_values.size(), stream);
  DeviceBuffer<int> order_device(static_cast<std::size_t>(members) * data.n_rows, stream);
  DeviceBuffer<MemberMetrics> history_device(static_cast<std::size_t>(members) * problem.evals, stream);
  problem.data = data_device.data();
  problem.distinct_rows = distinct_device.data();
  problem.distinct_weight = weight_device.data();
  problem.initial = initial_device.data();
  problem.seeds = seeds_device.data();
  problem.final_parameters = final_device.data();
  problem.order = order_device.data();
  problem.history = history_device.data();

  // Which kernel, how many members per block, how much shared memory: one
  // host decision (detail/ensemble_launch.hpp). A setting beyond the device's
  // shared memory goes through the engines instead.
  const FusedEnsembleShape shape{n, m, problem.batch, problem.persistent ? problem.chains : problem.batch,
                                 problem.exact_metrics || problem.mode};
  const FusedEnsembleLaunch launch =
      plan_fused_ensemble(shape, members, kernel_choice, static_shared_bytes(ensemble_kernel),
                          static_shared_bytes(ensemble_warp_kernel), shared_memory_limits(resources.device()));
  if (launch.kernel == FusedEnsembleKernel::none) return train_one_by_one(data, initial, seeds, config, on_metrics);
  const int dynamic = static_cast<int>(launch.dynamic_bytes);
  const auto start = std::chrono::steady_clock::now();
  if (launch.kernel == FusedEnsembleKernel::warp) {
    if (launch.opt_in)
      MARBM_CUDA_TRY(cudaFuncSetAttribute(ensemble_warp_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic));
    ensemble_warp_kernel<<<static_cast<unsigned>(launch.blocks), launch.threads, launch.dynamic_bytes, stream>>>(
        problem, members, static_cast<unsigned>(warp_scratch_bytes(shape)),
        static_cast<unsigned>(warp_member_bytes(shape)));
  } else {
    if (launch.opt_in)
      MARBM_CUDA_TRY(cudaFuncSetAttribute(ensemble_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic));
    ensemble_kernel<<<static_cast<unsigned>(launch.blocks), launch.threads, launch.dynamic_bytes, stream>>>(problem);
  }
  MARBM_CUDA_CHECK_LAST();
  const std::vector<float> final_values = final_device.to_host();
  const std::vector<MemberMetrics> history = history_device.to_host();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::vector<TrainResult> results(members);
  for (int e = 0; e < members; ++e) {
    TrainResult& result = results[e];
    result.model = Rbm(n, m);
    const float* values = final_values.data() + parameters * e;
    std::copy(values, values + static_cast<std::size_t>(n) * m, result.model.weights().begin());
    std::copy(values + static_cast<std::size_t>(n) * m, values + static_cast<std::size_t>(n) * m + n,
              result.model.visible_bias().begin());
    std::copy(values + static_cast<std::size_t>(n) * m + n, values + parameters, result.model.hidden_bias().begin());
    for (int k = 0; k < problem.evals; ++k) {
      const MemberMetrics& recorded = history[static_cast<std::size_t>(e) * problem.evals + k];
      TrainMetrics metrics;
      metrics.iteration = static_cast<long>(recorded.iteration);
      metrics.kl = recorded.kl;
      metrics.mean_log_likelihood = recorded.mean_log_likelihood;
      metrics.log_z = recorded.log_z;
      metrics.p_mode = recorded.p_mode;
      metrics.mode_push = recorded.mode_push;
      metrics.mode_energy = recorded.mode_energy;
      metrics.mode_steps = static_cast<long>(recorded.mode_steps);
      metrics.seconds = total > 0 ? seconds * static_cast<double>(recorded.iteration) / static_cast<double>(total) : 0.0;
      result.history.push_back(metrics);
    }
    result.mode_steps = result.history.empty() ? 0 : result.history.back().mode_steps;
    result.seconds = seconds;
    auto finite = [](std::span<const float> values) {
      return std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); });
    };
    MARBM_EXPECTS(finite(result.model.weights()) && finite(result.model.visible_bias()) &&
                      finite(result.model.hidden_bias()),
                  RuntimeFailure,
                  "train_ensemble: member " + std::to_string(e) + "'s parameters became non-finite after " +
                      std::to_string(total) + " updates (the run diverged; lower the learning rate)");
  }
  if (on_metrics) {
    for (int e = 0; e < members; ++e)
      for (const TrainMetrics& metrics : results[e].history) on_metrics(e, metrics);
  }
  return results;
}

}  // namespace marbm::detail
