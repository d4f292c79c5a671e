// Device kernels of the CUDA engine: batched block-Gibbs sampling, batch
// gathering and the fused parameter update. Each launcher enqueues on
// `stream`, checks the launch and returns without synchronizing.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace marbm::detail {

/// The Philox word that decides unit `unit` of row `row` in sampling phase
/// `phase` of one random stream: index (phase << 40) + row * width + unit.
/// Phases are numbered in the order a chain samples its layers (0: h from the
/// start state, 1: the next v, 2: the next h, ...). Shared with the tests'
/// plain C++ reference so that both draw the same numbers.
__host__ __device__ constexpr std::uint64_t gibbs_random_index(std::uint64_t phase, std::uint64_t row,
                                                               std::uint64_t width, std::uint64_t unit) {
  return (phase << 40) + row * width + unit;
}

/// What a layer-sampling kernel writes.
struct LayerOutputs {
  float* samples = nullptr;        ///< rows x width Bernoulli samples (0/1), or null
  float* probabilities = nullptr;  ///< rows x width values of scale * p (or scale * sample), or null
  float scale = 1.0f;              ///< factor on what `probabilities` receives
  bool store_samples_as_probabilities = false;  ///< `probabilities` gets scale * sample instead of scale * p
};

/// For every row r and unit u: p = sigmoid(pre_activation[r, u] + bias[u]),
/// sample = [uniform(seed, stream, gibbs_random_index(phase, r, width, u)) < p]
/// with marbm::PhiloxStream's uniform (24-bit) on the same counter layout.
/// pre_activation may alias outputs.probabilities.
void sample_layer(const float* pre_activation, const float* bias, int rows, int width, std::uint64_t seed,
                  std::uint64_t stream, std::uint64_t phase, const LayerOutputs& outputs, cudaStream_t cuda_stream);

/// destination[r, :] = source[rows[r], :] as floats (width columns).
void gather_rows(const std::uint8_t* source, const int* rows, int count, int width, float* destination,
                 cudaStream_t stream);

/// destination = source as floats (count values).
void bytes_to_floats(const std::uint8_t* source, std::size_t count, float* destination, cudaStream_t stream);
/// destination = source as bytes (count values, each 0 or 1).
void floats_to_bytes(const float* source, std::size_t count, std::uint8_t* destination, cudaStream_t stream);

/// Uniform random binary states: value[i] = [uniform(seed, stream, i) < 1/2].
void uniform_binary(float* values, std::size_t count, std::uint64_t seed, std::uint64_t stream,
                    cudaStream_t cuda_stream);

/// values[i] = value for i < count.
void fill(float* values, std::size_t count, float value, cudaStream_t stream);

/// The fused step over all parameters laid out as one array (W, then a, then
/// b): velocity = momentum * velocity + learning_rate * (gradient - decay *
/// parameter) with decay applied to the first `decayed` entries only;
/// parameter += velocity.
void apply_update(float* parameters, float* velocity, const float* gradient, std::size_t count,
                  std::size_t decayed, float learning_rate, float momentum, float weight_decay,
                  cudaStream_t stream);

}  // namespace marbm::detail
