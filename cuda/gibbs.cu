// Block-Gibbs sampling, gathering and update kernels (see gibbs.cuh).
#include "error.cuh"
#include "gibbs.cuh"
#include "device_common.cuh"

namespace marbm::detail {

namespace {

constexpr int kThreads = kGridStrideThreads;

// One thread per (row, group of four units): one Philox block serves four units.
__global__ void sample_layer_kernel(const float* pre_activation, const float* __restrict__ bias, int rows,
                                    int width, std::uint64_t seed, std::uint64_t stream, std::uint64_t half_sweep,
                                    LayerOutputs outputs, std::uint64_t first_row) {
  const std::uint64_t groups_per_row = gibbs_random_stride(width) / 4;
  const std::uint64_t groups = groups_per_row * rows;
  for (std::uint64_t group = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; group < groups;
       group += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t row = group / groups_per_row;
    const int first = static_cast<int>(group % groups_per_row) * 4;
    const float* pre = pre_activation + row * width;
    sample_unit_group(
        seed, stream, half_sweep, first_row + row, width, first, [&](int unit) { return pre[unit] + bias[unit]; },
        [&](int unit, float p, float sample) {
          const std::uint64_t element = row * width + unit;
          if (outputs.samples != nullptr) outputs.samples[element] = sample;
          if (outputs.probabilities != nullptr)
            outputs.probabilities[element] = outputs.scale * (outputs.store_samples_as_probabilities ? sample : p);
        });
  }
}

__global__ void gather_rows_kernel(const std::uint8_t* __restrict__ source, const int* __restrict__ rows, int count,
                                   int width, float* __restrict__ destination) {
  const std::uint64_t total = static_cast<std::uint64_t>(count) * width;
  for (std::uint64_t e = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t r = e / width;
    const std::uint64_t c = e % width;
    destination[e] = static_cast<float>(source[static_cast<std::uint64_t>(rows[r]) * width + c]);
  }
}

__global__ void bytes_to_floats_kernel(const std::uint8_t* __restrict__ source, std::size_t count,
                                       float* __restrict__ destination) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    destination[i] = static_cast<float>(source[i]);
}

__global__ void floats_to_bytes_kernel(const float* __restrict__ source, std::size_t count,
                                       std::uint8_t* __restrict__ destination) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    destination[i] = source[i] > 0.5f ? 1 : 0;
}

__global__ void uniform_binary_kernel(float* __restrict__ values, int rows, int width, std::uint64_t seed,
                                      std::uint64_t stream, std::uint64_t first_row) {
  const std::uint64_t groups_per_row = gibbs_random_stride(width) / 4;
  const std::uint64_t groups = groups_per_row * rows;
  for (std::uint64_t group = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; group < groups;
       group += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t row = group / groups_per_row;
    const int first = static_cast<int>(group % groups_per_row) * 4;
    chain_start_group(seed, stream, first_row + row, width, first,
                      [&](int unit, float value) { values[row * width + unit] = value; });
  }
}

__global__ void fill_kernel(float* __restrict__ values, std::size_t count, float value) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    values[i] = value;
}

__global__ void apply_update_kernel(float* __restrict__ parameters, float* __restrict__ velocity,
                                    const float* __restrict__ gradient, std::size_t count, std::size_t decayed,
                                    float learning_rate, float momentum, float weight_decay) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float theta = parameters[i];
    const float decay = i < decayed ? weight_decay * theta : 0.0f;
    const float step = momentum * velocity[i] + learning_rate * (gradient[i] - decay);
    velocity[i] = step;
    parameters[i] = theta + step;
  }
}

}  // namespace

void sample_layer(const float* pre_activation, const float* bias, int rows, int width, std::uint64_t seed,
                  std::uint64_t stream, std::uint64_t half_sweep, const LayerOutputs& outputs,
                  cudaStream_t cuda_stream, std::uint64_t first_row) {
  const std::size_t total = static_cast<std::size_t>(rows) * gibbs_random_stride(width);
  if (total == 0) return;
  sample_layer_kernel<<<grid_for(total, 4), kThreads, 0, cuda_stream>>>(pre_activation, bias, rows, width, seed,
                                                                          stream, half_sweep, outputs, first_row);
  MARBM_CUDA_CHECK_LAST();
}

void gather_rows(const std::uint8_t* source, const int* rows, int count, int width, float* destination,
                 cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(count) * width;
  if (total == 0) return;
  gather_rows_kernel<<<grid_for(total), kThreads, 0, stream>>>(source, rows, count, width, destination);
  MARBM_CUDA_CHECK_LAST();
}

void bytes_to_floats(const std::uint8_t* source, std::size_t count, float* destination, cudaStream_t stream) {
  if (count == 0) return;
  bytes_to_floats_kernel<<<grid_for(count), kThreads, 0, stream>>>(source, count, destination);
  MARBM_CUDA_CHECK_LAST();
}

void floats_to_bytes(const float* source, std::size_t count, std::uint8_t* destination, cudaStream_t stream) {
  if (count == 0) return;
  floats_to_bytes_kernel<<<grid_for(count), kThreads, 0, stream>>>(source, count, destination);
  MARBM_CUDA_CHECK_LAST();
}

void uniform_binary(float* values, int rows, int width, std::uint64_t seed, std::uint64_t stream,
                    cudaStream_t cuda_stream, std::uint64_t first_row) {
  const std::size_t total = static_cast<std::size_t>(rows) * gibbs_random_stride(width);
  if (total == 0) return;
  uniform_binary_kernel<<<grid_for(total, 4), kThreads, 0, cuda_stream>>>(values, rows, width, seed, stream, first_row);
  MARBM_CUDA_CHECK_LAST();
}

void fill(float* values, std::size_t count, float value, cudaStream_t stream) {
  if (count == 0) return;
  fill_kernel<<<grid_for(count), kThreads, 0, stream>>>(values, count, value);
  MARBM_CUDA_CHECK_LAST();
}

void apply_update(float* parameters, float* velocity, const float* gradient, std::size_t count,
                  std::size_t decayed, float learning_rate, float momentum, float weight_decay,
                  cudaStream_t stream) {
  if (count == 0) return;
  apply_update_kernel<<<grid_for(count), kThreads, 0, stream>>>(parameters, velocity, gradient, count, decayed,
                                                                learning_rate, momentum, weight_decay);
  MARBM_CUDA_CHECK_LAST();
}

}  // namespace marbm::detail
