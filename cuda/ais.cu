// AIS for log Z on the device (SPEC.md section 6): host/ais.cpp's algorithm
// with all M runs of a direction advancing together. Per inverse temperature:
// one cuBLAS product for the hidden fields of every run, one kernel (a block
// per run) that adds the run's log-weight increment and draws its hidden
// units, one product for the visible fields and one kernel that draws the
// visible units. Nothing is read back until the end, except the progress
// points, where the stream is synchronised so that reports are true.
//
// Random numbers are the CPU's (host/ais.cpp): run r of a direction reads the
// Philox stream (seed, random_stream(ais_forward or ais_reverse, r)) at words
// step * (round4(m) + round4(n)) + [0, m) for its hidden draws and
// + round4(m) + [0, n) for its visible draws (ais_sample_group in
// device_common.cuh). Probabilities and weights are computed in double from
// float fields, as on the CPU.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_impl.hpp"
#include "device_buffer.cuh"
#include "device_common.cuh"
#include "error.cuh"
#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "resources.cuh"

namespace marbm::detail {

namespace {

constexpr int kThreads = 128;  // per run (block); a multiple of the warp size

__device__ inline double softplus_d(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }
__device__ inline double sigmoid_d(double x) {
  const double e = exp(-fabs(x));
  return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

struct DeviceProblem {
  const float* hidden_bias = nullptr;    // b (m)
  const float* visible_bias = nullptr;   // a (n)
  const double* base_bias = nullptr;     // a_A (n)
  const double* bias_difference = nullptr;  // a - a_A (n)
  int n = 0;
  int m = 0;
  std::uint64_t words_per_step = 0;
  std::uint64_t seed = 0;
  std::uint64_t purpose = 0;  // RandomPurpose of the direction
};

__device__ inline std::uint64_t run_stream(const DeviceProblem& p, int run) {
  return (p.purpose << 48) ^ static_cast<std::uint64_t>(run);
}

// Block `run`: with `weigh`, log_weight[run] += sum_j [softplus(beta x_j) -
// softplus(beta_prev x_j)] + (beta - beta_prev) v.(a - a_A), x = field + b;
// with `transition`, hidden[run, j] = [u < sigmoid(beta x_j)].
__global__ void ais_hidden_kernel(DeviceProblem p, const float* __restrict__ field,
                                  const float* __restrict__ visible, float* __restrict__ hidden,
                                  double* __restrict__ log_weight, double beta_prev, double beta, bool weigh,
                                  bool transition, std::uint64_t step) {
  const int run = blockIdx.x;
  const float* x_row = field + static_cast<std::size_t>(run) * p.m;
  float* h_row = hidden + static_cast<std::size_t>(run) * p.m;
  const std::uint64_t stream = run_stream(p, run);
  double change = 0.0;
  for (int first = 4 * threadIdx.x; first < p.m; first += 4 * blockDim.x) {
    ais_sample_group(p.seed, stream, step * p.words_per_step, first, p.m, [&](int j) {
      const double x = static_cast<double>(x_row[j]) + static_cast<double>(p.hidden_bias[j]);
      if (weigh) change += softplus_d(beta * x) - softplus_d(beta_prev * x);
      return sigmoid_d(beta * x);
    }, [&](int j, float sample) {
      if (transition) h_row[j] = sample;
    }, transition);
  }
  if (!weigh) return;  // uniform across the block: no thread waits in block_sum alone
  double visible_term = 0.0;
  const float* v_row = visible + static_cast<std::size_t>(run) * p.n;
  for (int i = threadIdx.x; i < p.n; i += blockDim.x) visible_term += v_row[i] * p.bias_difference[i];
  const double total = block_sum(change + (beta - beta_prev) * visible_term);
  if (threadIdx.x == 0) log_weight[run] += total;
}

// Block `run`: visible[run, i] = [u < sigmoid((1 - beta) a_A,i + beta (a_i +
// field_i))]; with `base_only` the base-rate model's draw sigmoid(a_A,i).
__global__ void ais_visible_kernel(DeviceProblem p, const float* __restrict__ field, float* __restrict__ visible,
                                   double beta, bool base_only, std::uint64_t step) {
  const int run = blockIdx.x;
  const float* x_row = field == nullptr ? nullptr : field + static_cast<std::size_t>(run) * p.n;
  float* v_row = visible + static_cast<std::size_t>(run) * p.n;
  const std::uint64_t stream = run_stream(p, run);
  const std::uint64_t first_word = step * p.words_per_step + gibbs_random_stride(p.m);
  for (int first = 4 * threadIdx.x; first < p.n; first += 4 * blockDim.x) {
    ais_sample_group(p.seed, stream, first_word, first, p.n, [&](int i) {
      if (base_only) return sigmoid_d(p.base_bias[i]);
      const double x = (1.0 - beta) * p.base_bias[i] +
                       beta * (static_cast<double>(p.visible_bias[i]) + static_cast<double>(x_row[i]));
      return sigmoid_d(x);
    }, [&](int i, float sample) { v_row[i] = sample; }, true);
  }
}

// The runs of one direction on the device.
class DeviceRuns {
 public:
  DeviceRuns(Resources& resources, int runs, const float* weights, DeviceProblem problem)
      : resources_(resources), weights_(weights), p_(problem), runs_(runs),
        visible_(static_cast<std::size_t>(runs_) * p_.n, resources.stream()),
        hidden_(static_cast<std::size_t>(runs_) * p_.m, resources.stream()),
        hidden_field_(hidden_.size(), resources.stream()), visible_field_(visible_.size(), resources.stream()),
        log_weight_(static_cast<std::size_t>(runs_), resources.stream()) {
    log_weight_.fill_zero();
  }

  void sample_base(std::uint64_t step) {
    ais_visible_kernel<<<runs_, kThreads, 0, stream()>>>(p_, nullptr, visible_.data(), 0.0, true, step);
    MARBM_CUDA_CHECK_LAST();
  }

  // Run r starts from data row r (cycled).
  void copy_rows(const Dataset& data) {
    std::vector<float> rows(visible_.size());
    for (int r = 0; r < runs_; ++r) {
      const auto row = data.row(r % data.n_rows);
      for (int i = 0; i < p_.n; ++i) rows[static_cast<std::size_t>(r) * p_.n + i] = row[i];
    }
    visible_.copy_from_host(rows);
  }

  // host/ais.cpp Block::anneal on every run at once.
  void anneal(double beta_prev, double beta, bool weigh, bool transition, std::uint64_t step) {
    const float one = 1.0f, zero = 0.0f;
    // X (runs x m) = V (runs x n) W, in cuBLAS's column-major view.
    MARBM_CUBLAS_TRY(cublasSgemm(resources_.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, p_.m, runs_, p_.n, &one, weights_,
                                 p_.m, visible_.data(), p_.n, &zero, hidden_field_.data(), p_.m));
    ais_hidden_kernel<<<runs_, kThreads, 0, stream()>>>(p_, hidden_field_.data(), visible_.data(), hidden_.data(),
                                                        log_weight_.data(), beta_prev, beta, weigh, transition, step);
    MARBM_CUDA_CHECK_LAST();
    if (!transition) return;
    // Y (runs x n) = H (runs x m) W^T.
    MARBM_CUBLAS_TRY(cublasSgemm(resources_.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, p_.n, runs_, p_.m, &one, weights_,
                                 p_.m, hidden_.data(), p_.m, &zero, visible_field_.data(), p_.n));
    ais_visible_kernel<<<runs_, kThreads, 0, stream()>>>(p_, visible_field_.data(), visible_.data(), beta, false,
                                                         step);
    MARBM_CUDA_CHECK_LAST();
  }

  std::vector<double> log_weights() const { return log_weight_.to_host(); }

 private:
  cudaStream_t stream() const { return resources_.stream(); }

  Resources& resources_;
  const float* weights_;
  DeviceProblem p_;
  int runs_;
  DeviceBuffer<float> visible_, hidden_, hidden_field_, visible_field_;
  DeviceBuffer<double> log_weight_;
};

}  // namespace

AisDeviceWeights ais_log_weights_cuda_impl(const AisDeviceRequest& request) {
  const Rbm& rbm = *request.rbm;
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  Resources& resources = thread_resources(request.device);
  const cudaStream_t stream = resources.stream();

  DeviceBuffer<float> weights(rbm.weights().size(), stream);
  weights.copy_from_host(rbm.weights());
  DeviceBuffer<float> visible_bias(static_cast<std::size_t>(n), stream), hidden_bias(static_cast<std::size_t>(m), stream);
  visible_bias.copy_from_host(rbm.visible_bias());
  hidden_bias.copy_from_host(rbm.hidden_bias());
  DeviceBuffer<double> base_bias(static_cast<std::size_t>(n), stream), difference(static_cast<std::size_t>(n), stream);
  base_bias.copy_from_host(request.base_bias);
  difference.copy_from_host(request.bias_difference);

  DeviceProblem problem;
  problem.hidden_bias = hidden_bias.data();
  problem.visible_bias = visible_bias.data();
  problem.base_bias = base_bias.data();
  problem.bias_difference = difference.data();
  problem.n = n;
  problem.m = m;
  problem.words_per_step = gibbs_random_stride(m) + gibbs_random_stride(n);
  problem.seed = request.seed;

  const std::vector<double>& betas = request.betas;
  const int intervals = static_cast<int>(betas.size()) - 1;
  const int phases = request.reverse ? 2 : 1;
  const int report_every = std::max(1, intervals / 200);
  auto report = [&](int t, int phase) {
    if (request.progress && (t % report_every == 0 || t == intervals)) {
      resources.synchronize();
      request.progress((phase + static_cast<double>(t) / intervals) / phases);
    }
  };

  AisDeviceWeights result;
  {
    problem.purpose = static_cast<std::uint64_t>(RandomPurpose::ais_forward);
    DeviceRuns runs(resources, request.runs, weights.data(), problem);
    runs.sample_base(0);
    for (int t = 1; t <= intervals; ++t) {
      runs.anneal(betas[t - 1], betas[t], true, t < intervals, static_cast<std::uint64_t>(t));
      report(t, 0);
    }
    result.forward = runs.log_weights();
  }
  if (request.reverse) {
    problem.purpose = static_cast<std::uint64_t>(RandomPurpose::ais_reverse);
    DeviceRuns runs(resources, request.runs, weights.data(), problem);
    if (request.data != nullptr) {
      runs.copy_rows(*request.data);
    } else {
      runs.sample_base(0);
    }
    const auto burn_in = static_cast<std::uint64_t>(request.reverse_burn_in);
    for (std::uint64_t s = 1; s <= burn_in; ++s) runs.anneal(1.0, 1.0, false, true, s);
    for (int t = 1; t <= intervals; ++t) {
      runs.anneal(betas[intervals - t + 1], betas[intervals - t], true, t < intervals,
                  burn_in + static_cast<std::uint64_t>(t));
      report(t, 1);
    }
    result.reverse = runs.log_weights();
  }
  return result;
}

}  // namespace marbm::detail
