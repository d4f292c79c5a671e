// Philox4x32-10 on the device with marbm::PhiloxStream's counter and key
// layout (random.hpp), through cuRAND's stateless curand_Philox4x32_10, so
// device and host draw the same bits for the same (seed, stream, index).
#pragma once

#include <curand_philox4x32_x.h>

#include <cstdint>

namespace marbm::detail {

/// Four words of block `block` of (seed, stream).
__device__ inline uint4 philox_block(std::uint64_t seed, std::uint64_t stream, std::uint64_t block) {
  const uint4 counter = make_uint4(static_cast<unsigned>(block), static_cast<unsigned>(block >> 32),
                                   static_cast<unsigned>(stream), static_cast<unsigned>(stream >> 32));
  const uint2 key = make_uint2(static_cast<unsigned>(seed), static_cast<unsigned>(seed >> 32));
  return curand_Philox4x32_10(counter, key);
}

/// PhiloxStream::to_uniform: 24 random bits as a float in [0, 1).
__device__ inline float word_to_uniform(unsigned word) { return static_cast<float>(word >> 8) * 0x1.0p-24f; }

/// Word `lane` (0..3) of a block.
__device__ inline unsigned word_at(const uint4& words, int lane) {
  return lane == 0 ? words.x : lane == 1 ? words.y : lane == 2 ? words.z : words.w;
}

/// PhiloxStream::uniform_double(index): 53 bits from words 2i and 2i + 1.
__device__ inline double philox_uniform_double(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  const uint4 b = philox_block(seed, stream, index >> 1);
  const std::uint64_t hi = (index & 1) ? b.z : b.x;
  const std::uint64_t lo = (index & 1) ? b.w : b.y;
  return static_cast<double>(((hi << 32) | lo) >> 11) * 0x1.0p-53;
}

}  // namespace marbm::detail
