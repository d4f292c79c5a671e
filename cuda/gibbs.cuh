// Device kernels of the CUDA engine: batched block-Gibbs sampling, batch
// gathering and the fused parameter update. Each launcher enqueues on
// `stream`, checks the launch and returns without synchronizing.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace marbm::detail {

/// Row stride of the random-number layout: the layer width rounded up to 4,
/// so that every row starts on a fresh Philox block.
__host__ __device__ constexpr std::uint64_t gibbs_random_stride(int width) {
  return (static_cast<std::uint64_t>(width) + 3) / 4 * 4;
}

/// The Philox word that decides unit `unit` of row `row` in half-sweep
/// `half_sweep` of one random stream: index half_sweep * 2^40 + row *
/// gibbs_random_stride(width) + unit. This is the CPU engine's layout, so
/// both engines draw the same numbers for the same (seed, step). Every path
/// refuses k > max_gibbs_steps (detail/gibbs_steps.hpp), which keeps
/// half_sweep * 2^40 inside 64 bits, so no two draws share a word. Half-sweeps:
/// cd: h_s in 2s, v_(s+1) in 2s + 1; pcd: positive h in 0, chain h_s in
/// 2s + 1, v_(s+1) in 2s + 2; gibbs_chain: as cd.
__host__ __device__ constexpr std::uint64_t gibbs_random_index(std::uint64_t half_sweep, std::uint64_t row, int width,
                                                               std::uint64_t unit) {
  return (half_sweep << 40) + row * gibbs_random_stride(width) + unit;
}

/// What a layer-sampling kernel writes.
struct LayerOutputs {
  float* samples = nullptr;        ///< rows x width Bernoulli samples (0/1), or null
  float* probabilities = nullptr;  ///< rows x width values of scale * p (or scale * sample), or null
  float scale = 1.0f;              ///< factor on what `probabilities` receives
  bool store_samples_as_probabilities = false;  ///< `probabilities` gets scale * sample instead of scale * p
  std::size_t samples_stride = 0;        ///< row stride of `samples` in floats (0: width)
  std::size_t probabilities_stride = 0;  ///< row stride of `probabilities` in floats (0: width)
};

/// The values of one update that its kernels read from device memory (the
/// update's parameter block), so that a captured CUDA Graph replays with new
/// values after one copy of the block: the Philox key and stream of the
/// update's draws, and the step's factors. The batch's row indices follow the
/// block in the same device buffer (kUpdateBlockInts ints after its start).
struct alignas(16) UpdateValues {
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
  float learning_rate = 0.0f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  std::uint32_t unused = 0;
};
static_assert(sizeof(UpdateValues) == 32, "the batch rows follow the block at 32 bytes");
inline constexpr int kUpdateBlockInts = static_cast<int>(sizeof(UpdateValues) / sizeof(int));

/// For every row r and unit u: p = sigmoid(pre_activation[r, u] + bias[u]),
/// sample = [uniform(seed, stream, gibbs_random_index(half_sweep, r, width, u)) < p]
/// with marbm::PhiloxStream's uniform (24-bit) on the same counter layout.
/// pre_activation may alias outputs.probabilities. The rows draw as rows
/// first_row.. of a larger batch (a data-parallel rank's share), so a share
/// gets the draws the whole batch's rows would.
///
/// One thread per group of four units of a row (one Philox block), the rows
/// on the grid's y axis: no division per element and 32-bit in-row indices
/// (row offsets in 64 bits, once per row). float4 loads of pre_activation and
/// bias when width is a multiple of 4 and both are on 16 bytes, float4 stores
/// to an output whose rows are (detail/cuda_update_layout.hpp float4_rows);
/// a scalar path otherwise and for the last, partial group. The draws are
/// those of sample_layer_reference bit for bit.
void sample_layer(const float* pre_activation, const float* bias, int rows, int width, std::uint64_t seed,
                  std::uint64_t stream, std::uint64_t half_sweep, const LayerOutputs& outputs, cudaStream_t cuda_stream,
                  std::uint64_t first_row = 0);

/// sample_layer with the seed and stream read on the device from keys->seed
/// and keys->stream when the kernel runs (a captured update's parameter block).
void sample_layer(const float* pre_activation, const float* bias, int rows, int width, const UpdateValues* keys,
                  std::uint64_t half_sweep, const LayerOutputs& outputs, cudaStream_t cuda_stream,
                  std::uint64_t first_row = 0);

/// The former sampler, kept as the reference the GPU tests compare
/// sample_layer with: a grid-stride loop over all groups with a 64-bit
/// division and remainder per group, scalar loads. Contiguous outputs only
/// (the strides in `outputs` must be 0 or width).
void sample_layer_reference(const float* pre_activation, const float* bias, int rows, int width, std::uint64_t seed,
                            std::uint64_t stream, std::uint64_t half_sweep, const LayerOutputs& outputs,
                            cudaStream_t cuda_stream, std::uint64_t first_row = 0);

/// destination[r * destination_stride + c] = source[rows[r] * width + c] as
/// floats (width columns; destination_stride 0 means width). Rows on the grid's
/// y axis, columns on x: no division per element.
void gather_rows(const std::uint8_t* source, const int* rows, int count, int width, float* destination,
                 cudaStream_t stream, std::size_t destination_stride = 0);

/// values[r * stride] = value for r < rows (one column of a row-major matrix).
void fill_column(float* values, int rows, std::size_t stride, float value, cudaStream_t stream);

/// destination = source as floats (count values).
void bytes_to_floats(const std::uint8_t* source, std::size_t count, float* destination, cudaStream_t stream);
/// destination = source as bytes (count values, each 0 or 1).
void floats_to_bytes(const float* source, std::size_t count, std::uint8_t* destination, cudaStream_t stream);

/// Uniform random binary states (rows x width): value[r, u] = bit 31 of the
/// Philox word at r * gibbs_random_stride(width) + u (the CPU engine's
/// persistent-chain start), the rows drawn as rows first_row.. of all chains.
void uniform_binary(float* values, int rows, int width, std::uint64_t seed, std::uint64_t stream,
                    cudaStream_t cuda_stream, std::uint64_t first_row = 0);

/// values[i] = value for i < count.
void fill(float* values, std::size_t count, float value, cudaStream_t stream);

/// The fused step over all parameters laid out as one array (W, then a, then
/// b): velocity = momentum * velocity + learning_rate * (gradient - decay *
/// parameter) with decay applied to the first `decayed` entries only;
/// parameter += velocity.
void apply_update(float* parameters, float* velocity, const float* gradient, std::size_t count,
                  std::size_t decayed, float learning_rate, float momentum, float weight_decay,
                  cudaStream_t stream);

/// apply_update's step with the gradient in the augmented layout of
/// detail/cuda_update_layout.hpp (G, (n + 1) rows of augmented_stride(m)
/// floats) and the factors read on the device from `values` when the kernel
/// runs: parameter entry k takes G[augmented_gradient_offset(n, m, k)], decay
/// on W only; the same arithmetic as apply_update, entry by entry. Rows of G on
/// the grid's y axis, columns on x.
void apply_update_augmented(float* parameters, float* velocity, const float* gradient, int n, int m,
                            const UpdateValues* values, cudaStream_t stream);

}  // namespace marbm::detail
