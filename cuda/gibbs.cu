// Block-Gibbs sampling, gathering and update kernels (see gibbs.cuh).
#include <climits>
#include <string>

#include "error.cuh"
#include "marbm/error.hpp"
#include "gibbs.cuh"
#include "device_common.cuh"
#include "detail/cuda_update_layout.hpp"

namespace marbm::detail {

namespace {

constexpr int kThreads = kGridStrideThreads;

// The former sampler (sample_layer_reference): one thread per (row, group of
// four units) in a grid-stride loop, row and group by 64-bit division.
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

// sample_layer: thread x of block (bx, by) takes group g = bx * blockDim.x + x
// (units 4g .. 4g + 3) of rows by, by + gridDim.y, ... (sampler_launch). The
// Philox block of (row, g) is gibbs_random_index(half_sweep, row, width, 4g) / 4
// = half_sweep * 2^38 + row * groups_per_row + g exactly (the stride and 4g
// are multiples of 4, half_sweep * 2^40 < 2^62): the reference kernel's block.
// In-row indices are int (4g + 3 <= width + 2, and the host refuses widths
// above INT_MAX - 3); row offsets are 64-bit products, one per row. No __syncthreads, no shuffles: threads past the row's groups
// return at once.
template <bool kVectorLoads>
__global__ void __launch_bounds__(kSamplerThreads)
    sample_rows_kernel(const float* pre_activation, const float* __restrict__ bias, int rows, int width,
                       int groups_per_row, std::uint64_t seed, std::uint64_t stream,
                       const UpdateValues* __restrict__ keys, std::uint64_t half_sweep, LayerOutputs outputs,
                       bool vector_samples, bool vector_probabilities, std::uint64_t first_row) {
  const int group = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (group >= groups_per_row) return;
  if (keys != nullptr) {
    seed = keys->seed;
    stream = keys->stream;
  }
  const int first = 4 * group;
  const bool full = first + 4 <= width;
  const std::uint64_t sweep_block = half_sweep << 38;
  // Unsigned row: rows < 2^31 plus a grid step < 2^16 cannot wrap.
  for (unsigned row = blockIdx.y; row < static_cast<unsigned>(rows); row += gridDim.y) {
    const uint4 words = philox_block(seed, stream,
                                     sweep_block + (first_row + static_cast<std::uint64_t>(row)) *
                                                       static_cast<std::uint64_t>(groups_per_row) +
                                                       static_cast<std::uint64_t>(group));
    const float* pre = pre_activation + static_cast<std::size_t>(row) * static_cast<std::size_t>(width) + first;
    float field[4];
    if (kVectorLoads && full) {
      const float4 x = *reinterpret_cast<const float4*>(pre);
      const float4 b = __ldg(reinterpret_cast<const float4*>(bias + first));
      field[0] = x.x + b.x;
      field[1] = x.y + b.y;
      field[2] = x.z + b.z;
      field[3] = x.w + b.w;
    } else {
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) field[lane] = first + lane < width ? pre[lane] + bias[first + lane] : 0.0f;
    }
    float p[4], sample[4];
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      p[lane] = sigmoid_f(field[lane]);
      sample[lane] = word_to_uniform(word_at(words, lane)) < p[lane] ? 1.0f : 0.0f;
    }
    if (outputs.samples != nullptr) {
      float* out = outputs.samples + static_cast<std::size_t>(row) * outputs.samples_stride + first;
      if (vector_samples && full) {
        *reinterpret_cast<float4*>(out) = make_float4(sample[0], sample[1], sample[2], sample[3]);
      } else {
#pragma unroll
        for (int lane = 0; lane < 4; ++lane)
          if (first + lane < width) out[lane] = sample[lane];
      }
    }
    if (outputs.probabilities != nullptr) {
      float value[4];
#pragma unroll
      for (int lane = 0; lane < 4; ++lane)
        value[lane] = outputs.scale * (outputs.store_samples_as_probabilities ? sample[lane] : p[lane]);
      float* out = outputs.probabilities + static_cast<std::size_t>(row) * outputs.probabilities_stride + first;
      if (vector_probabilities && full) {
        *reinterpret_cast<float4*>(out) = make_float4(value[0], value[1], value[2], value[3]);
      } else {
#pragma unroll
        for (int lane = 0; lane < 4; ++lane)
          if (first + lane < width) out[lane] = value[lane];
      }
    }
  }
}

// Columns on x, rows on y (row_launch): no division per element.
__global__ void __launch_bounds__(kRowKernelThreads)
    gather_rows_kernel(const std::uint8_t* __restrict__ source, const int* __restrict__ rows, int count, int width,
                       float* __restrict__ destination, std::size_t destination_stride) {
  const int column = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (column >= width) return;
  for (unsigned r = blockIdx.y; r < static_cast<unsigned>(count); r += gridDim.y) {
    const std::uint8_t* from = source + static_cast<std::size_t>(rows[r]) * static_cast<std::size_t>(width);
    destination[static_cast<std::size_t>(r) * destination_stride + column] = static_cast<float>(from[column]);
  }
}

__global__ void fill_column_kernel(float* __restrict__ values, int rows, std::size_t stride, float value) {
  for (unsigned r = blockIdx.x * blockDim.x + threadIdx.x; r < static_cast<unsigned>(rows); r += gridDim.x * blockDim.x)
    values[static_cast<std::size_t>(r) * stride] = value;
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

// The step of one parameter; both update kernels inline this one function,
// so that they compute the same bits from the same inputs.
__device__ __forceinline__ void momentum_step(float* parameter, float* velocity, float gradient, bool decayed,
                                              float learning_rate, float momentum, float weight_decay) {
  const float theta = *parameter;
  const float decay = decayed ? weight_decay * theta : 0.0f;
  const float step = momentum * *velocity + learning_rate * (gradient - decay);
  *velocity = step;
  *parameter = theta + step;
}

__global__ void apply_update_kernel(float* __restrict__ parameters, float* __restrict__ velocity,
                                    const float* __restrict__ gradient, std::size_t count, std::size_t decayed,
                                    float learning_rate, float momentum, float weight_decay) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    momentum_step(parameters + i, velocity + i, gradient[i], i < decayed, learning_rate, momentum, weight_decay);
}

// Thread x of block (bx, by) takes column j = bx * blockDim.x + x (0..m) of
// rows by, by + gridDim.y, ... (0..n) of the augmented gradient G: column m is
// the visible bias, row n the hidden bias, (n, m) nothing. Parameter offsets
// as augmented_gradient_offset, one 64-bit product per row.
__global__ void __launch_bounds__(kRowKernelThreads)
    apply_update_augmented_kernel(float* __restrict__ parameters, float* __restrict__ velocity,
                                  const float* __restrict__ gradient, int n, int m, std::size_t stride,
                                  const UpdateValues* __restrict__ values) {
  const int column = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (column > m) return;
  const float learning_rate = values->learning_rate;
  const float momentum = values->momentum;
  const float weight_decay = values->weight_decay;
  const std::size_t weights = static_cast<std::size_t>(n) * static_cast<std::size_t>(m);
  for (unsigned r = blockIdx.y; r <= static_cast<unsigned>(n); r += gridDim.y) {
    const int row = static_cast<int>(r);
    std::size_t k = 0;
    if (column < m) {
      k = row < n ? static_cast<std::size_t>(row) * static_cast<std::size_t>(m) + column
                  : weights + static_cast<std::size_t>(n) + column;
    } else {
      if (row == n) continue;
      k = weights + static_cast<std::size_t>(row);
    }
    momentum_step(parameters + k, velocity + k, gradient[static_cast<std::size_t>(row) * stride + column],
                  row < n && column < m, learning_rate, momentum, weight_decay);
  }
}

}  // namespace

namespace {

void launch_sampler(const float* pre_activation, const float* bias, int rows, int width, std::uint64_t seed,
                    std::uint64_t stream, const UpdateValues* keys, std::uint64_t half_sweep, LayerOutputs outputs,
                    cudaStream_t cuda_stream, std::uint64_t first_row) {
  if (rows <= 0 || width <= 0) return;
  // In-row indices are int: first + lane <= width + 2 must not overflow.
  MARBM_EXPECTS(width <= INT_MAX - 3, UsageError, "sample_layer: a layer of " + std::to_string(width) + " units");
  const auto address = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
  if (outputs.samples_stride == 0) outputs.samples_stride = static_cast<std::size_t>(width);
  if (outputs.probabilities_stride == 0) outputs.probabilities_stride = static_cast<std::size_t>(width);
  const bool vector_loads = float4_rows(address(pre_activation), static_cast<std::size_t>(width)) &&
                            float4_rows(address(bias), 4);
  const bool vector_samples = float4_rows(address(outputs.samples), outputs.samples_stride);
  const bool vector_probabilities = float4_rows(address(outputs.probabilities), outputs.probabilities_stride);
  const RowLaunch launch = sampler_launch(rows, width);
  const int groups_per_row = static_cast<int>((static_cast<std::int64_t>(width) + 3) / 4);
  const dim3 grid(launch.grid_x, launch.grid_y);
  if (vector_loads) {
    sample_rows_kernel<true><<<grid, launch.threads, 0, cuda_stream>>>(pre_activation, bias, rows, width,
                                                                       groups_per_row, seed, stream, keys, half_sweep,
                                                                       outputs, vector_samples, vector_probabilities,
                                                                       first_row);
  } else {
    sample_rows_kernel<false><<<grid, launch.threads, 0, cuda_stream>>>(pre_activation, bias, rows, width,
                                                                        groups_per_row, seed, stream, keys, half_sweep,
                                                                        outputs, vector_samples, vector_probabilities,
                                                                        first_row);
  }
  MARBM_CUDA_CHECK_LAST();
}

}  // namespace

void sample_layer(const float* pre_activation, const float* bias, int rows, int width, std::uint64_t seed,
                  std::uint64_t stream, std::uint64_t half_sweep, const LayerOutputs& outputs,
                  cudaStream_t cuda_stream, std::uint64_t first_row) {
  launch_sampler(pre_activation, bias, rows, width, seed, stream, nullptr, half_sweep, outputs, cuda_stream, first_row);
}

void sample_layer(const float* pre_activation, const float* bias, int rows, int width, const UpdateValues* keys,
                  std::uint64_t half_sweep, const LayerOutputs& outputs, cudaStream_t cuda_stream,
                  std::uint64_t first_row) {
  launch_sampler(pre_activation, bias, rows, width, 0, 0, keys, half_sweep, outputs, cuda_stream, first_row);
}

void sample_layer_reference(const float* pre_activation, const float* bias, int rows, int width, std::uint64_t seed,
                            std::uint64_t stream, std::uint64_t half_sweep, const LayerOutputs& outputs,
                            cudaStream_t cuda_stream, std::uint64_t first_row) {
  const auto contiguous = [width](std::size_t stride) { return stride == 0 || stride == static_cast<std::size_t>(width); };
  MARBM_EXPECTS(contiguous(outputs.samples_stride) && contiguous(outputs.probabilities_stride), UsageError,
                "sample_layer_reference: contiguous outputs only");
  const std::size_t total = static_cast<std::size_t>(rows) * gibbs_random_stride(width);
  if (total == 0) return;
  sample_layer_kernel<<<grid_for(total, 4), kThreads, 0, cuda_stream>>>(pre_activation, bias, rows, width, seed,
                                                                          stream, half_sweep, outputs, first_row);
  MARBM_CUDA_CHECK_LAST();
}

void gather_rows(const std::uint8_t* source, const int* rows, int count, int width, float* destination,
                 cudaStream_t stream, std::size_t destination_stride) {
  if (count <= 0 || width <= 0) return;
  if (destination_stride == 0) destination_stride = static_cast<std::size_t>(width);
  const RowLaunch launch = row_launch(count, width, kRowKernelThreads);
  gather_rows_kernel<<<dim3(launch.grid_x, launch.grid_y), launch.threads, 0, stream>>>(source, rows, count, width,
                                                                                       destination, destination_stride);
  MARBM_CUDA_CHECK_LAST();
}

void fill_column(float* values, int rows, std::size_t stride, float value, cudaStream_t stream) {
  if (rows <= 0) return;
  fill_column_kernel<<<grid_for(static_cast<std::size_t>(rows)), kThreads, 0, stream>>>(values, rows, stride, value);
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

void apply_update_augmented(float* parameters, float* velocity, const float* gradient, int n, int m,
                            const UpdateValues* values, cudaStream_t stream) {
  if (n <= 0 || m <= 0) return;
  const RowLaunch launch = row_launch(static_cast<std::int64_t>(n) + 1, static_cast<std::int64_t>(m) + 1,
                                      kRowKernelThreads);
  apply_update_augmented_kernel<<<dim3(launch.grid_x, launch.grid_y), launch.threads, 0, stream>>>(
      parameters, velocity, gradient, n, m, augmented_stride(m), values);
  MARBM_CUDA_CHECK_LAST();
}

}  // namespace marbm::detail
