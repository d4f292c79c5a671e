// Little-endian bytes of 1-, 4- and 8-byte values, as safetensors stores
// them: the model files (host/model_io.cpp) and checkpoints
// (host/checkpoint.cpp).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace marbm::detail {

template <typename T>
using LittleEndianBits =
    std::conditional_t<sizeof(T) == 8, std::uint64_t, std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint8_t>>;

/// Appends the sizeof(T) bytes of `value`, least significant first.
template <typename T>
void append_little_endian(std::string& out, T value) {
  static_assert(sizeof(T) == 1 || sizeof(T) == 4 || sizeof(T) == 8);
  const auto bits = std::bit_cast<LittleEndianBits<T>>(value);
  for (std::size_t k = 0; k < sizeof(T); ++k) out.push_back(static_cast<char>((bits >> (8 * k)) & 0xffu));
}

/// The value whose sizeof(T) bytes start at `bytes`, least significant first.
template <typename T>
T read_little_endian(const unsigned char* bytes) {
  static_assert(sizeof(T) == 1 || sizeof(T) == 4 || sizeof(T) == 8);
  using Bits = LittleEndianBits<T>;
  Bits bits = 0;
  for (std::size_t k = 0; k < sizeof(T); ++k) bits = static_cast<Bits>(bits | (static_cast<Bits>(bytes[k]) << (8 * k)));
  return std::bit_cast<T>(bits);
}

}  // namespace marbm::detail
