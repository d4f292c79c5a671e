// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// Every random number marbm draws is a pure function of (seed, stream, index):
// results reproduce for a given seed on a given engine whatever the thread
// count. The CUDA engine uses cuRAND's Philox with the same keying.
#pragma once

#include <array>
#include <cstdint>

namespace marbm {

/// What a random stream is used for; combined with a step counter it names a
/// stream, so that uses never share numbers.
enum class RandomPurpose : std::uint32_t {
  initialisation = 1,
  gibbs = 2,
  batch_order = 3,
  mode_choice = 4,
  mode_search = 5,
  persistent_chains = 6,
  data_split = 7,
  synthetic_data = 8,
  ais_forward = 9,
  ais_reverse = 10,
  test = 99,
};

/// Stream identifier for `purpose` at step `step` (update number, run index...).
constexpr std::uint64_t random_stream(RandomPurpose purpose, std::uint64_t step) {
  return (static_cast<std::uint64_t>(purpose) << 48) ^ step;
}

/// One Philox4x32-10 block: four 32-bit words for counter (c0..c3) and key (k0, k1).
constexpr std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter,
                                                    std::array<std::uint32_t, 2> key) {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * counter[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * counter[2];
    counter = {static_cast<std::uint32_t>(p1 >> 32) ^ counter[1] ^ key[0], static_cast<std::uint32_t>(p1),
               static_cast<std::uint32_t>(p0 >> 32) ^ counter[3] ^ key[1], static_cast<std::uint32_t>(p0)};
    key[0] += w0;
    key[1] += w1;
  }
  return counter;
}

/// Random numbers of one stream, addressed by index: block `index / 4` of the
/// stream gives four words. Cheap to construct; copyable; no hidden state.
class PhiloxStream {
 public:
  constexpr PhiloxStream(std::uint64_t seed, std::uint64_t stream) : seed_(seed), stream_(stream) {}

  /// Four 32-bit words of block `block`.
  constexpr std::array<std::uint32_t, 4> block(std::uint64_t block) const {
    return philox4x32_10({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                          static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)},
                         {static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)});
  }

  /// The 32-bit word at `index`.
  constexpr std::uint32_t bits(std::uint64_t index) const { return block(index >> 2)[index & 3]; }

  /// Uniform float in [0, 1) with 24 random bits, at `index`.
  constexpr float uniform(std::uint64_t index) const { return to_uniform(bits(index)); }

  /// Uniform double in [0, 1) with 53 random bits, built from words 2i and 2i+1.
  constexpr double uniform_double(std::uint64_t index) const {
    const auto b = block(index >> 1);
    const std::uint64_t hi = (index & 1) ? b[2] : b[0];
    const std::uint64_t lo = (index & 1) ? b[3] : b[1];
    return static_cast<double>(((hi << 32) | lo) >> 11) * 0x1.0p-53;
  }

  /// Converts one random word to a uniform float in [0, 1).
  static constexpr float to_uniform(std::uint32_t word) { return static_cast<float>(word >> 8) * 0x1.0p-24f; }

  constexpr std::uint64_t seed() const { return seed_; }
  constexpr std::uint64_t stream() const { return stream_; }

 private:
  std::uint64_t seed_;
  std::uint64_t stream_;
};

/// Standard normal at `index` of `stream` (Box-Muller over a pair of doubles).
double standard_normal(const PhiloxStream& stream, std::uint64_t index);

}  // namespace marbm
