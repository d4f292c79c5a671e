// The CPU engine's update for tiny models (see detail/tiny_engine.hpp). Every
// floating-point operation below is the one host/cpu_engine.cpp's loop path
// performs, in the same order and precision; only the way the Philox words
// and the exp of the sigmoid are computed differs (same values).
#include "detail/tiny_engine.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "detail/mode_states.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MARBM_TINY_X86 1
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own AVX-512 intrinsics (their undefined
// pass-through operands).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace marbm::detail {
namespace {

// Half-sweeps occupy the high bits of the Philox index (host/cpu_engine.cpp).
constexpr int half_sweep_shift = 40;

int round_up4(int x) { return (x + 3) & ~3; }

float scalar_sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

#ifdef MARBM_TINY_X86

// ------------------------------------------------------------ Philox x4

__attribute__((target("avx2"))) void philox_words_avx2(const PhiloxStream& stream, std::uint64_t first,
                                                       std::size_t count, std::uint32_t* out) {
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  const std::uint64_t seed = stream.seed(), id = stream.stream();
  __m256i k0[10], k1[10];
  for (int r = 0; r < 10; ++r) {
    k0[r] = _mm256_set1_epi64x(static_cast<std::uint32_t>(static_cast<std::uint32_t>(seed) + static_cast<std::uint32_t>(r) * w0));
    k1[r] = _mm256_set1_epi64x(
        static_cast<std::uint32_t>(static_cast<std::uint32_t>(seed >> 32) + static_cast<std::uint32_t>(r) * w1));
  }
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u), m1 = _mm256_set1_epi64x(0xCD9E8D57u);
  const __m256i low = _mm256_set1_epi64x(0xFFFFFFFFu);
  const __m256i c2_start = _mm256_set1_epi64x(static_cast<std::uint32_t>(id));
  const __m256i c3_start = _mm256_set1_epi64x(static_cast<std::uint32_t>(id >> 32));
  std::size_t b = 0;
  for (; b + 4 <= count; b += 4) {
    const std::uint64_t i0 = first + b;
    const __m256i index = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(i0)), _mm256_set_epi64x(3, 2, 1, 0));
    // Lanes hold 32-bit words in their low halves; the high halves may carry
    // garbage, which _mm256_mul_epu32 ignores and the final mask drops.
    __m256i c0 = index, c1 = _mm256_srli_epi64(index, 32), c2 = c2_start, c3 = c3_start;
    for (int r = 0; r < 10; ++r) {
      const __m256i p0 = _mm256_mul_epu32(c0, m0);
      const __m256i p1 = _mm256_mul_epu32(c2, m1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1), k0[r]);
      c1 = p1;
      c2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3), k1[r]);
      c3 = p0;
    }
    const __m256i t01 = _mm256_or_si256(_mm256_and_si256(c0, low), _mm256_slli_epi64(c1, 32));
    const __m256i t23 = _mm256_or_si256(_mm256_and_si256(c2, low), _mm256_slli_epi64(c3, 32));
    const __m256i even = _mm256_unpacklo_epi64(t01, t23);  // blocks 0 and 2
    const __m256i odd = _mm256_unpackhi_epi64(t01, t23);   // blocks 1 and 3
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * b), _mm256_permute2x128_si256(even, odd, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * b + 8), _mm256_permute2x128_si256(even, odd, 0x31));
  }
  for (; b < count; ++b) {
    const auto words = stream.block(first + b);
    std::memcpy(out + 4 * b, words.data(), sizeof words);
  }
}

// Eight blocks at a time on CPUs with AVX-512F; the rest as above.
__attribute__((target("avx512f"))) void philox_words_avx512(const PhiloxStream& stream, std::uint64_t first,
                                                            std::size_t count, std::uint32_t* out) {
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  const std::uint64_t seed = stream.seed(), id = stream.stream();
  __m512i k0[10], k1[10];
  for (int r = 0; r < 10; ++r) {
    k0[r] = _mm512_set1_epi64(static_cast<std::uint32_t>(static_cast<std::uint32_t>(seed) + static_cast<std::uint32_t>(r) * w0));
    k1[r] = _mm512_set1_epi64(
        static_cast<std::uint32_t>(static_cast<std::uint32_t>(seed >> 32) + static_cast<std::uint32_t>(r) * w1));
  }
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53u), m1 = _mm512_set1_epi64(0xCD9E8D57u);
  const __m512i low = _mm512_set1_epi64(0xFFFFFFFFu);
  const __m512i c2_start = _mm512_set1_epi64(static_cast<std::uint32_t>(id));
  const __m512i c3_start = _mm512_set1_epi64(static_cast<std::uint32_t>(id >> 32));
  const __m512i first_four = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
  const __m512i last_four = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
  for (std::size_t b = 0; b < count; b += 8) {
    const __m512i index = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(first + b)),
                                           _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
    __m512i c0 = index, c1 = _mm512_srli_epi64(index, 32), c2 = c2_start, c3 = c3_start;
    for (int r = 0; r < 10; ++r) {
      const __m512i p0 = _mm512_mul_epu32(c0, m0);
      const __m512i p1 = _mm512_mul_epu32(c2, m1);
      c0 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(p1, 32), c1), k0[r]);
      c1 = p1;
      c2 = _mm512_xor_si512(_mm512_xor_si512(_mm512_srli_epi64(p0, 32), c3), k1[r]);
      c3 = p0;
    }
    const __m512i t01 = _mm512_or_si512(_mm512_and_si512(c0, low), _mm512_slli_epi64(c1, 32));
    const __m512i t23 = _mm512_or_si512(_mm512_and_si512(c2, low), _mm512_slli_epi64(c3, 32));
    const __m512i even = _mm512_unpacklo_epi64(t01, t23);  // blocks 0, 2, 4, 6
    const __m512i odd = _mm512_unpackhi_epi64(t01, t23);   // blocks 1, 3, 5, 7
    const __m512i head = _mm512_permutex2var_epi64(even, first_four, odd);  // blocks 0..3
    const __m512i tail = _mm512_permutex2var_epi64(even, last_four, odd);   // blocks 4..7
    if (b + 8 <= count) {
      _mm512_storeu_si512(out + 4 * b, head);
      _mm512_storeu_si512(out + 4 * b + 16, tail);
    } else {
      // The last, partial group: two 64-bit lanes per block.
      const int left = static_cast<int>(count - b);
      _mm512_mask_storeu_epi64(out + 4 * b, static_cast<__mmask8>((1u << (2 * std::min(left, 4))) - 1), head);
      _mm512_mask_storeu_epi64(out + 4 * b + 16, static_cast<__mmask8>((1u << (2 * std::max(left - 4, 0))) - 1), tail);
    }
  }
}

// ------------------------------------------------------------ expf replica
//
// glibc's expf (2.27 and later; sysdeps/ieee754/flt-32/e_expf.c, the __expf_fma
// variant it selects on CPUs with FMA and AVX2), operation for operation: the
// same table, constants, fused multiply-adds and rounding, four lanes at a
// time. Inputs with |x| >= 88 or NaN take the scalar library call.

constexpr std::uint64_t exp2f_table[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};
constexpr std::uint64_t exp2f_invln2_scaled = 0x40471547652b82fe;  // 32 / ln 2
constexpr std::uint64_t exp2f_poly[3] = {0x3ebc6af84b912394, 0x3f2ebfce50fac4f3, 0x3f962e42ff0c52d6};
constexpr std::uint64_t exp2f_shift = 0x4338000000000000;  // 1.5 * 2^52

__attribute__((target("avx2,fma"))) inline __m128 exp4_replica(__m128 x) {
  const __m256d invln2 = _mm256_set1_pd(std::bit_cast<double>(exp2f_invln2_scaled));
  const __m256d shift = _mm256_set1_pd(std::bit_cast<double>(exp2f_shift));
  const __m256d xd = _mm256_cvtps_pd(x);
  __m256d kd = _mm256_fmadd_pd(invln2, xd, shift);
  const __m256i ki = _mm256_castpd_si256(kd);
  kd = _mm256_sub_pd(kd, shift);
  const __m256d r = _mm256_fmsub_pd(invln2, xd, kd);
  const __m256i slot = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
  __m256i t = _mm256_i64gather_epi64(reinterpret_cast<const long long*>(exp2f_table), slot, 8);
  t = _mm256_add_epi64(t, _mm256_slli_epi64(ki, 47));
  const __m256d s = _mm256_castsi256_pd(t);
  const __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(std::bit_cast<double>(exp2f_poly[0])),
                                    _mm256_set1_pd(std::bit_cast<double>(exp2f_poly[1])));
  const __m256d r2 = _mm256_mul_pd(r, r);
  __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(std::bit_cast<double>(exp2f_poly[2])), _mm256_set1_pd(1.0));
  y = _mm256_fmadd_pd(z, r2, y);
  y = _mm256_mul_pd(y, s);
  return _mm256_cvtpd_ps(y);
}

// Lanes whose |x| >= 88 (or NaN): glibc's special cases.
__attribute__((target("avx2,fma"))) inline int special_lanes(__m256 x) {
  const __m256i magnitude = _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7fffffff));
  return _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x42afffff))));
}

__attribute__((target("avx2,fma"))) void exp_replica_avx2(const float* x, float* out, std::size_t count) {
  std::size_t k = 0;
  for (; k + 8 <= count; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    const __m256 e = _mm256_set_m128(exp4_replica(_mm256_extractf128_ps(v, 1)), exp4_replica(_mm256_castps256_ps128(v)));
    _mm256_storeu_ps(out + k, e);
    if (special_lanes(v) != 0) {
      for (int q = 0; q < 8; ++q) {
        if (!(std::fabs(x[k + q]) < 88.0f)) out[k + q] = std::exp(x[k + q]);
      }
    }
  }
  for (; k < count; ++k) out[k] = std::exp(x[k]);
}

__attribute__((target("avx2,fma"))) void sigmoid_avx2(float* x, std::size_t count) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  std::size_t k = 0;
  for (; k + 8 <= count; k += 8) {
    const __m256 v = _mm256_xor_ps(_mm256_loadu_ps(x + k), sign);  // -x
    __m256 e = _mm256_set_m128(exp4_replica(_mm256_extractf128_ps(v, 1)), exp4_replica(_mm256_castps256_ps128(v)));
    if (special_lanes(v) != 0) {
      alignas(32) float lanes[8], values[8];
      _mm256_store_ps(lanes, v);
      _mm256_store_ps(values, e);
      for (int q = 0; q < 8; ++q) {
        if (!(std::fabs(lanes[q]) < 88.0f)) values[q] = std::exp(lanes[q]);
      }
      e = _mm256_load_ps(values);
    }
    _mm256_storeu_ps(x + k, _mm256_div_ps(one, _mm256_add_ps(one, e)));
  }
  for (; k < count; ++k) x[k] = scalar_sigmoid(x[k]);
}

// The same replica eight lanes at a time (AVX-512F: the same operations
// on wider registers, so the same bits).
__attribute__((target("avx512f,avx2,fma"))) inline __m256 exp8_replica(__m256 x) {
  const __m512d invln2 = _mm512_set1_pd(std::bit_cast<double>(exp2f_invln2_scaled));
  const __m512d shift = _mm512_set1_pd(std::bit_cast<double>(exp2f_shift));
  const __m512d xd = _mm512_cvtps_pd(x);
  __m512d kd = _mm512_fmadd_pd(invln2, xd, shift);
  const __m512i ki = _mm512_castpd_si512(kd);
  kd = _mm512_sub_pd(kd, shift);
  const __m512d r = _mm512_fmsub_pd(invln2, xd, kd);
  // T[ki mod 32] from the table held in four registers: entries 0..15 and
  // 16..31 by permutes on the low four bits, bit 4 picks between them.
  const __m512i t0 = _mm512_loadu_si512(exp2f_table), t1 = _mm512_loadu_si512(exp2f_table + 8);
  const __m512i t2 = _mm512_loadu_si512(exp2f_table + 16), t3 = _mm512_loadu_si512(exp2f_table + 24);
  const __m512i low_half = _mm512_permutex2var_epi64(t0, ki, t1);
  const __m512i high_half = _mm512_permutex2var_epi64(t2, ki, t3);
  const __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
  __m512i t = _mm512_mask_blend_epi64(upper, low_half, high_half);
  t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 47));
  const __m512d s = _mm512_castsi512_pd(t);
  const __m512d z = _mm512_fmadd_pd(r, _mm512_set1_pd(std::bit_cast<double>(exp2f_poly[0])),
                                    _mm512_set1_pd(std::bit_cast<double>(exp2f_poly[1])));
  const __m512d r2 = _mm512_mul_pd(r, r);
  __m512d y = _mm512_fmadd_pd(r, _mm512_set1_pd(std::bit_cast<double>(exp2f_poly[2])), _mm512_set1_pd(1.0));
  y = _mm512_fmadd_pd(z, r2, y);
  y = _mm512_mul_pd(y, s);
  return _mm512_cvtpd_ps(y);
}

__attribute__((target("avx512f,avx2,fma"))) void exp_replica_avx512(const float* x, float* out, std::size_t count) {
  std::size_t k = 0;
  for (; k + 8 <= count; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    _mm256_storeu_ps(out + k, exp8_replica(v));
    if (special_lanes(v) != 0) {
      for (int q = 0; q < 8; ++q) {
        if (!(std::fabs(x[k + q]) < 88.0f)) out[k + q] = std::exp(x[k + q]);
      }
    }
  }
  for (; k < count; ++k) out[k] = std::exp(x[k]);
}

__attribute__((target("avx512f,avx2,fma"))) void sigmoid_avx512(float* x, std::size_t count) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  std::size_t k = 0;
  for (; k + 8 <= count; k += 8) {
    const __m256 v = _mm256_xor_ps(_mm256_loadu_ps(x + k), sign);  // -x
    __m256 e = exp8_replica(v);
    if (special_lanes(v) != 0) {
      alignas(32) float lanes[8], values[8];
      _mm256_store_ps(lanes, v);
      _mm256_store_ps(values, e);
      for (int q = 0; q < 8; ++q) {
        if (!(std::fabs(lanes[q]) < 88.0f)) values[q] = std::exp(lanes[q]);
      }
      e = _mm256_load_ps(values);
    }
    _mm256_storeu_ps(x + k, _mm256_div_ps(one, _mm256_add_ps(one, e)));
  }
  for (; k < count; ++k) x[k] = scalar_sigmoid(x[k]);
}

// The replica is used only where it reproduces this process's std::exp: on
// a grid over (-88, 88), around 0 and on pseudo-random inputs. (glibc picks
// its variant by the same CPU features, so on glibc these agree everywhere;
// the check keeps another libm from changing results.)
bool replica_agrees(void (*replica)(const float*, float*, std::size_t)) {
  std::vector<float> x;
  for (int k = -8800; k <= 8800; ++k) x.push_back(static_cast<float>(k) * 0.01f);
  for (int k = -2000; k <= 2000; ++k) x.push_back(static_cast<float>(k) * 1e-6f);
  std::uint32_t state = 12345u;
  for (int k = 0; k < 20000; ++k) {
    state = state * 1664525u + 1013904223u;
    const float value = std::bit_cast<float>(state);
    if (std::fabs(value) < 88.0f) x.push_back(value);
  }
  std::vector<float> got(x.size());
  replica(x.data(), got.data(), x.size());
  for (std::size_t k = 0; k < x.size(); ++k) {
    if (std::bit_cast<std::uint32_t>(got[k]) != std::bit_cast<std::uint32_t>(std::exp(x[k]))) return false;
  }
  return true;
}

bool cpu_has_avx2() { return __builtin_cpu_supports("avx2") != 0; }
bool cpu_has_avx512() { return __builtin_cpu_supports("avx512f") != 0; }

bool fast_exp_usable() {
  static const bool usable =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && replica_agrees(exp_replica_avx2);
  return usable;
}

bool wide_exp_usable() {
  static const bool usable = fast_exp_usable() && cpu_has_avx512() && replica_agrees(exp_replica_avx512);
  return usable;
}

#else

bool cpu_has_avx2() { return false; }
bool fast_exp_usable() { return false; }
bool wide_exp_usable() { return false; }

#endif

}  // namespace

bool tiny_fast_exp() { return fast_exp_usable(); }

void tiny_exp_replica(const float* x, float* out, std::size_t count) {
#ifdef MARBM_TINY_X86
  if (wide_exp_usable()) {
    exp_replica_avx512(x, out, count);
    return;
  }
  if (fast_exp_usable()) {
    exp_replica_avx2(x, out, count);
    return;
  }
#endif
  for (std::size_t k = 0; k < count; ++k) out[k] = std::exp(x[k]);
}

void tiny_sigmoid(float* x, std::size_t count) {
#ifdef MARBM_TINY_X86
  if (wide_exp_usable()) {
    sigmoid_avx512(x, count);
    return;
  }
  if (fast_exp_usable()) {
    sigmoid_avx2(x, count);
    return;
  }
#endif
  for (std::size_t k = 0; k < count; ++k) x[k] = scalar_sigmoid(x[k]);
}

void philox_words(const PhiloxStream& stream, std::uint64_t first, std::size_t count, std::uint32_t* out) {
#ifdef MARBM_TINY_X86
  static const bool avx512 = cpu_has_avx512(), avx2 = cpu_has_avx2();
  if (avx512) {
    philox_words_avx512(stream, first, count, out);
    return;
  }
  if (avx2) {
    philox_words_avx2(stream, first, count, out);
    return;
  }
#endif
  for (std::size_t b = 0; b < count; ++b) {
    const auto words = stream.block(first + b);
    std::memcpy(out + 4 * b, words.data(), sizeof words);
  }
}

// ---------------------------------------------------------------- the update
//
// Rows are padded to NP (visible) and MP (hidden) units, 8 or 16, so that the
// loops have fixed lengths. Padded weights and biases are 0 and padded
// states are 0: a padded lane never feeds a real one, and the lanes that
// are not real are never copied out.

namespace {

namespace baseline {
#include "detail/tiny_update.inc"
}  // namespace baseline

#if defined(MARBM_TINY_X86) && defined(__GNUC__) && !defined(__clang__)
#define MARBM_TINY_AVX2_KERNEL 1
#pragma GCC push_options
#pragma GCC target("avx2")
namespace avx2 {
#include "detail/tiny_update.inc"
}  // namespace avx2
#pragma GCC pop_options
#endif

template <int NP, int MP>
void update_fixed(const TinyModelView& model, TinyWorkspace& work, const UpdateStep& step) {
#ifdef MARBM_TINY_AVX2_KERNEL
  static const bool avx2_kernel = cpu_has_avx2();
  if (avx2_kernel) {
    avx2::FixedUpdate<NP, MP>(model, work).run(step);
    return;
  }
#endif
  baseline::FixedUpdate<NP, MP>(model, work).run(step);
}

}  // namespace

void TinyTrainer::update(const TinyModelView& model, const UpdateStep& step) {
  const bool narrow_visible = model.n <= 8, narrow_hidden = model.m <= 8;
  if (narrow_visible && narrow_hidden) {
    update_fixed<8, 8>(model, work_, step);
  } else if (narrow_visible) {
    update_fixed<8, 16>(model, work_, step);
  } else if (narrow_hidden) {
    update_fixed<16, 8>(model, work_, step);
  } else {
    update_fixed<16, 16>(model, work_, step);
  }
}

}  // namespace marbm::detail
