// E_bar of a mode step on the device (SPEC.md section 3): the mean energy over
// all states, -sum(a)/2 - sum(b)/2 - sum(W)/4, in float64 where the
// parameters live, so that a mode step copies one double to the host instead
// of the model. Compiled, not yet run on a device.
#include <cstddef>

#include "device_buffer.cuh"
#include "device_common.cuh"
#include "error.cuh"
#include "mode_search.cuh"

namespace marbm::detail {

namespace {

constexpr int kMeanThreads = 1024;

// One block: each thread sums its strided share of each tensor in float64,
// block_sum combines the shares in a fixed order (the same value run to run
// and on every rank holding the same parameters), and the three sums are
// combined as Rbm::uniform_mean_energy combines them. One block reads a
// 784 x 500 model in a few microseconds at the device's bandwidth; it is not
// meant for models of hundreds of millions of weights.
__global__ void __launch_bounds__(kMeanThreads)
    uniform_mean_energy_kernel(const float* __restrict__ weights, const float* __restrict__ visible_bias,
                               const float* __restrict__ hidden_bias, std::size_t weight_count, int n, int m,
                               double* __restrict__ result) {
  double sum_w = 0.0, sum_a = 0.0, sum_b = 0.0;
  for (std::size_t k = threadIdx.x; k < weight_count; k += blockDim.x) sum_w += weights[k];
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum_a += visible_bias[i];
  for (int j = threadIdx.x; j < m; j += blockDim.x) sum_b += hidden_bias[j];
  // Every thread calls block_sum (no divergence around its barriers).
  sum_w = block_sum(sum_w);
  sum_a = block_sum(sum_a);
  sum_b = block_sum(sum_b);
  if (threadIdx.x == 0) *result = -sum_a / 2.0 - sum_b / 2.0 - sum_w / 4.0;
}

}  // namespace

double uniform_mean_energy_device(cudaStream_t stream, const float* weights, const float* visible_bias,
                                  const float* hidden_bias, int n_visible, int n_hidden) {
  DeviceBuffer<double> result(1, stream);
  uniform_mean_energy_kernel<<<1, kMeanThreads, 0, stream>>>(
      weights, visible_bias, hidden_bias, static_cast<std::size_t>(n_visible) * static_cast<std::size_t>(n_hidden),
      n_visible, n_hidden, result.data());
  MARBM_CUDA_CHECK_LAST();
  return result.to_host()[0];
}

}  // namespace marbm::detail
