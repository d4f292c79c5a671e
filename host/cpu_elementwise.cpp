// The CPU engine's elementwise kernels (detail/cpu_elementwise.hpp): the
// baseline in plain C++ and an AVX2 + FMA version selected at run time.
#include "detail/cpu_elementwise.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "marbm/random.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MARBM_HAVE_AVX2_KERNELS 1
#include <immintrin.h>
#else
#define MARBM_HAVE_AVX2_KERNELS 0
#endif

namespace marbm::detail {
namespace {

// ------------------------------------------------------------------ baseline

// The logistic in float, one sequence of operations that the baseline runs
// element by element (std::fma for each fused multiply-add) and the AVX2
// kernel eight lanes at a time, so the two agree bit for bit:
//   a = min(|x|, 104)   (beyond, the result is 0 or 1 in float anyway)
//   e = exp(-a): -a = k ln 2 + r, |r| <= ln 2 / 2, exp(r) by Taylor to degree 7
//       (truncation below 3e-9 relative), times 2^(k + 64) times 2^-64 (two
//       exact steps, so that results below 2^-126 come out subnormal as expf's)
//   s = 1 / (1 + e) for x >= 0, e / (1 + e) below;  NaN stays NaN.
// Within a few ulp of the exact sigmoid (the tests measure it).
namespace logistic_constants {
constexpr float bound = 104.0f;
constexpr float log2e = 1.44269504088896341f;
constexpr float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
constexpr float ln2_hi = 0.693145751953125f;  // 12 bits: k * ln2_hi is exact
constexpr float ln2_lo = 1.428606765330187045e-06f;
constexpr float c7 = 1.0f / 5040.0f, c6 = 1.0f / 720.0f, c5 = 1.0f / 120.0f, c4 = 1.0f / 24.0f, c3 = 1.0f / 6.0f,
                c2 = 0.5f;
constexpr float two_minus_64 = 0x1.0p-64f;
}  // namespace logistic_constants

float logistic_scalar(float x) {
  namespace c = logistic_constants;
  if (std::isnan(x)) return x;
  const float t = -std::min(std::fabs(x), c::bound);
  float kd = std::fma(t, c::log2e, c::shifter);
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(kd);
  kd -= c::shifter;
  float r = std::fma(kd, -c::ln2_hi, t);
  r = std::fma(kd, -c::ln2_lo, r);
  float p = std::fma(c::c7, r, c::c6);
  p = std::fma(p, r, c::c5);
  p = std::fma(p, r, c::c4);
  p = std::fma(p, r, c::c3);
  p = std::fma(p, r, c::c2);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  // The low bits of `bits` hold k (two's complement, -150 <= k <= 0).
  const float scale = std::bit_cast<float>((bits << 23) + (std::uint32_t{127 + 64} << 23));
  const float e = p * scale * c::two_minus_64;
  const float inv = 1.0f / (1.0f + e);
  return x >= 0.0f ? inv : e * inv;
}

void baseline_philox_words(std::uint64_t seed, std::uint64_t stream, std::uint64_t first_block, std::size_t blocks,
                           std::uint32_t* out) {
  const PhiloxStream random(seed, stream);
  for (std::size_t b = 0; b < blocks; ++b) {
    const auto words = random.block(first_block + b);
    std::copy(words.begin(), words.end(), out + 4 * b);
  }
}

void baseline_logistic(const float* x, const float* bias, float* out, std::size_t count) {
  if (bias != nullptr) {
    for (std::size_t k = 0; k < count; ++k) out[k] = logistic_scalar(x[k] + bias[k]);
  } else {
    for (std::size_t k = 0; k < count; ++k) out[k] = logistic_scalar(x[k]);
  }
}

void baseline_logistic_sample(const float* x, const float* bias, float* p_out, float* state, std::size_t count,
                              std::uint64_t seed, std::uint64_t stream, std::uint64_t base_index) {
  const PhiloxStream random(seed, stream);
  for (std::size_t u = 0; u < count; u += 4) {
    const auto words = random.block((base_index + u) >> 2);
    const std::size_t n = std::min<std::size_t>(4, count - u);
    for (std::size_t q = 0; q < n; ++q) {
      const std::size_t k = u + q;
      const float p = logistic_scalar(bias != nullptr ? x[k] + bias[k] : x[k]);
      if (p_out != nullptr) p_out[k] = p;
      state[k] = PhiloxStream::to_uniform(words[q]) < p ? 1.0f : 0.0f;
    }
  }
}

void baseline_sample(const float* p, float* state, std::size_t count, std::uint64_t seed, std::uint64_t stream,
                     std::uint64_t base_index) {
  const PhiloxStream random(seed, stream);
  for (std::size_t u = 0; u < count; u += 4) {
    const auto words = random.block((base_index + u) >> 2);
    const std::size_t n = std::min<std::size_t>(4, count - u);
    for (std::size_t q = 0; q < n; ++q) state[u + q] = PhiloxStream::to_uniform(words[q]) < p[u + q] ? 1.0f : 0.0f;
  }
}

constexpr ElementwiseKernels baseline_kernels{"baseline", baseline_philox_words, baseline_logistic,
                                              baseline_logistic_sample, baseline_sample};

#if MARBM_HAVE_AVX2_KERNELS
// ---------------------------------------------------------------- AVX2 + FMA

#define MARBM_AVX2 __attribute__((target("avx2,fma")))

// The ten round keys of a Philox4x32-10 key (k0, k1), as in philox4x32_10.
struct RoundKeys {
  std::array<std::uint32_t, 10> k0, k1;
  explicit RoundKeys(std::uint64_t seed) {
    std::uint32_t a = static_cast<std::uint32_t>(seed), b = static_cast<std::uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      k0[r] = a;
      k1[r] = b;
      a += 0x9E3779B9u;
      b += 0xBB67AE85u;
    }
  }
};

// 32 x 32 -> 64-bit products of the eight lanes of a with the constant m
// (broadcast): the high halves returned, the low halves in *lo.
MARBM_AVX2 inline __m256i mul_hi_lo(__m256i a, __m256i m, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(a, m);                         // lanes 0, 2, 4, 6
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);  // lanes 1, 3, 5, 7
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// Eight Philox blocks first .. first + 7, returned in word order: w[0] holds
// the words of blocks 0 and 1 (units 0..7 of a row), w[1] blocks 2, 3, ...
MARBM_AVX2 inline void philox8(const RoundKeys& keys, std::uint64_t stream, std::uint64_t first, __m256i w[4]) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i lo_first = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first)));
  __m256i c0 = _mm256_add_epi32(lo_first, lane);
  // A lane carries into the high word when its low word wrapped (unsigned c0 < lo_first).
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(lo_first, sign), _mm256_xor_si256(c0, sign));
  __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first >> 32))), carry);
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(stream)));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(stream >> 32)));
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int r = 0; r < 10; ++r) {
    __m256i lo0, lo1;
    const __m256i hi0 = mul_hi_lo(c0, m0, &lo0);
    const __m256i hi1 = mul_hi_lo(c2, m1, &lo1);
    const __m256i k0 = _mm256_set1_epi32(static_cast<int>(keys.k0[r]));
    const __m256i k1 = _mm256_set1_epi32(static_cast<int>(keys.k1[r]));
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), k0);
    c1 = lo1;
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), k1);
    c3 = lo0;
  }
  // Transpose from one word per register (lane = block) to word order.
  const __m256i t0 = _mm256_unpacklo_epi32(c0, c1);  // b0q0 b0q1 b1q0 b1q1 | b4.. b5..
  const __m256i t1 = _mm256_unpackhi_epi32(c0, c1);  // b2q0 b2q1 b3q0 b3q1 | b6.. b7..
  const __m256i t2 = _mm256_unpacklo_epi32(c2, c3);
  const __m256i t3 = _mm256_unpackhi_epi32(c2, c3);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2);  // block 0 | block 4
  const __m256i u1 = _mm256_unpackhi_epi64(t0, t2);  // block 1 | block 5
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3);  // block 2 | block 6
  const __m256i u3 = _mm256_unpackhi_epi64(t1, t3);  // block 3 | block 7
  w[0] = _mm256_permute2x128_si256(u0, u1, 0x20);
  w[1] = _mm256_permute2x128_si256(u2, u3, 0x20);
  w[2] = _mm256_permute2x128_si256(u0, u1, 0x31);
  w[3] = _mm256_permute2x128_si256(u2, u3, 0x31);
}

MARBM_AVX2 void avx2_philox_words(std::uint64_t seed, std::uint64_t stream, std::uint64_t first_block,
                                  std::size_t blocks, std::uint32_t* out) {
  const RoundKeys keys(seed);
  std::size_t b = 0;
  for (; b + 8 <= blocks; b += 8) {
    __m256i w[4];
    philox8(keys, stream, first_block + b, w);
    for (int g = 0; g < 4; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * b + 8 * g), w[g]);
  }
  if (b < blocks) {
    alignas(32) std::uint32_t tail[32];
    __m256i w[4];
    philox8(keys, stream, first_block + b, w);
    for (int g = 0; g < 4; ++g) _mm256_store_si256(reinterpret_cast<__m256i*>(tail + 8 * g), w[g]);
    std::memcpy(out + 4 * b, tail, 4 * (blocks - b) * sizeof(std::uint32_t));
  }
}

// logistic_scalar of eight floats, the same operations lane by lane.
MARBM_AVX2 inline __m256 logistic8(__m256 x) {
  namespace c = logistic_constants;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 t = _mm256_or_ps(_mm256_min_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(c::bound)), sign);
  __m256 kd = _mm256_fmadd_ps(t, _mm256_set1_ps(c::log2e), _mm256_set1_ps(c::shifter));
  const __m256i bits = _mm256_castps_si256(kd);
  kd = _mm256_sub_ps(kd, _mm256_set1_ps(c::shifter));
  __m256 r = _mm256_fmadd_ps(kd, _mm256_set1_ps(-c::ln2_hi), t);
  r = _mm256_fmadd_ps(kd, _mm256_set1_ps(-c::ln2_lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(c::c7), r, _mm256_set1_ps(c::c6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c::c5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c::c4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c::c3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c::c2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i scale = _mm256_add_epi32(_mm256_slli_epi32(bits, 23), _mm256_set1_epi32((127 + 64) << 23));
  const __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(scale)), _mm256_set1_ps(c::two_minus_64));
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 s = _mm256_blendv_ps(inv, _mm256_mul_ps(e, inv), negative);
  return _mm256_blendv_ps(s, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// Lanes [0, count) of eight, count < 8 (masked loads never touch the others,
// and unlike a copy through a buffer they cause no store-forwarding stall).
MARBM_AVX2 inline __m256i lane_mask(std::size_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Loads `count` (< 8) floats, the rest zero.
MARBM_AVX2 inline __m256 load_partial(const float* x, std::size_t count) {
  return _mm256_maskload_ps(x, lane_mask(count));
}

MARBM_AVX2 inline void store_partial(float* out, __m256 value, std::size_t count) {
  _mm256_maskstore_ps(out, lane_mask(count), value);
}

MARBM_AVX2 inline __m256 load_field(const float* x, const float* bias, std::size_t k, std::size_t n) {
  if (n == 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    return bias != nullptr ? _mm256_add_ps(v, _mm256_loadu_ps(bias + k)) : v;
  }
  const __m256 v = load_partial(x + k, n);
  return bias != nullptr ? _mm256_add_ps(v, load_partial(bias + k, n)) : v;
}

MARBM_AVX2 inline void store(float* out, __m256 value, std::size_t k, std::size_t n) {
  if (n == 8) {
    _mm256_storeu_ps(out + k, value);
  } else {
    store_partial(out + k, value, n);
  }
}

// [to_uniform(word) < p] as 0.0f or 1.0f.
MARBM_AVX2 inline __m256 draw(__m256i words, __m256 p) {
  const __m256 u =
      _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(words, 8)), _mm256_set1_ps(0x1.0p-24f));
  return _mm256_and_ps(_mm256_cmp_ps(u, p, _CMP_LT_OQ), _mm256_set1_ps(1.0f));
}

MARBM_AVX2 void avx2_logistic(const float* x, const float* bias, float* out, std::size_t count) {
  for (std::size_t k = 0; k < count; k += 8) {
    const std::size_t n = std::min<std::size_t>(8, count - k);
    store(out, logistic8(load_field(x, bias, k, n)), k, n);
  }
}

MARBM_AVX2 void avx2_logistic_sample(const float* x, const float* bias, float* p_out, float* state,
                                     std::size_t count, std::uint64_t seed, std::uint64_t stream,
                                     std::uint64_t base_index) {
  const RoundKeys keys(seed);
  for (std::size_t u = 0; u < count; u += 32) {
    __m256i w[4];
    philox8(keys, stream, (base_index + u) >> 2, w);
    for (int g = 0; g < 4; ++g) {
      const std::size_t k = u + 8 * static_cast<std::size_t>(g);
      if (k >= count) break;
      const std::size_t n = std::min<std::size_t>(8, count - k);
      const __m256 p = logistic8(load_field(x, bias, k, n));
      if (p_out != nullptr) store(p_out, p, k, n);
      store(state, draw(w[g], p), k, n);
    }
  }
}

MARBM_AVX2 void avx2_sample(const float* p, float* state, std::size_t count, std::uint64_t seed,
                            std::uint64_t stream, std::uint64_t base_index) {
  const RoundKeys keys(seed);
  for (std::size_t u = 0; u < count; u += 32) {
    __m256i w[4];
    philox8(keys, stream, (base_index + u) >> 2, w);
    for (int g = 0; g < 4; ++g) {
      const std::size_t k = u + 8 * static_cast<std::size_t>(g);
      if (k >= count) break;
      const std::size_t n = std::min<std::size_t>(8, count - k);
      store(state, draw(w[g], load_field(p, nullptr, k, n)), k, n);
    }
  }
}

constexpr ElementwiseKernels avx2_kernels{"avx2", avx2_philox_words, avx2_logistic, avx2_logistic_sample,
                                          avx2_sample};

bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif  // MARBM_HAVE_AVX2_KERNELS

bool avx2_disabled_by_environment() {
  const char* value = std::getenv("MARBM_NO_AVX2");
  return value != nullptr && value[0] != '\0' && std::strcmp(value, "0") != 0;
}

}  // namespace

const ElementwiseKernels& baseline_elementwise_kernels() { return baseline_kernels; }

const ElementwiseKernels* avx2_elementwise_kernels() {
#if MARBM_HAVE_AVX2_KERNELS
  static const bool supported = cpu_has_avx2_fma();
  return supported ? &avx2_kernels : nullptr;
#else
  return nullptr;
#endif
}

const ElementwiseKernels& elementwise_kernels() {
  static const ElementwiseKernels* chosen = [] {
    const ElementwiseKernels* avx2 = avx2_elementwise_kernels();
    return avx2 != nullptr && !avx2_disabled_by_environment() ? avx2 : &baseline_kernels;
  }();
  return *chosen;
}

}  // namespace marbm::detail
