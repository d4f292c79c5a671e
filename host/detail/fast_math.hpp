// Vectorisable exp, log1p, softplus and sigmoid in float64 for the hot loops
// of exact enumeration and AIS, and the attribute that compiles a loop for
// AVX2 and AVX-512 beside the baseline. Internal; not part of the public API.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace marbm::detail {

// ---------------------------------------------------------------- fast softplus
//
// softplus over the other layer's fields dominates enumeration (2^k * L calls).
// libm's exp/log1p are scalar calls the compiler cannot vectorise without
// -ffast-math, so this file carries its own branch-free versions, accurate to a
// few ulp, whose plain loops the compiler vectorises.

// exp(t) for t in [-708, 0]: t = k ln 2 + r with |r| <= ln2 / 2, exp(r) by its
// Taylor series to degree 13 (truncation below 5e-18 relative), 2^k built
// from the bits of the rounded k (normal range, since k >= -1022).
inline double exp_nonpositive(double t) {
  constexpr double log2e = 1.4426950408889634074;
  constexpr double ln2_hi = 6.93147180369123816490e-01;  // trailing zero bits: k * ln2_hi is exact
  constexpr double ln2_lo = 1.90821492927058770002e-10;
  constexpr double shifter = 6755399441055744.0;          // 1.5 * 2^52: adding it rounds to an integer
  double kd = t * log2e + shifter;
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(kd);
  kd -= shifter;
  const double r = (t - kd * ln2_hi) - kd * ln2_lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // The low bits of `bits` hold k in two's complement; shifting them into the
  // exponent field and adding the bias gives 2^k.
  const double scale = std::bit_cast<double>((bits << 52) + (std::uint64_t{1023} << 52));
  return p * scale;
}

// log1p(y) for y in [0, 1] as 2 atanh(z), z = y / (2 + y) <= 1/3: the series
// in w = z^2 <= 1/9 converges to below 2e-17 relative in 16 terms and has no
// cancellation for tiny y.
inline double log1p_unit(double y) {
  const double z = y / (2.0 + y);
  const double w = z * z;
  double p = 1.0 / 31.0;
  p = p * w + 1.0 / 29.0;
  p = p * w + 1.0 / 27.0;
  p = p * w + 1.0 / 25.0;
  p = p * w + 1.0 / 23.0;
  p = p * w + 1.0 / 21.0;
  p = p * w + 1.0 / 19.0;
  p = p * w + 1.0 / 17.0;
  p = p * w + 1.0 / 15.0;
  p = p * w + 1.0 / 13.0;
  p = p * w + 1.0 / 11.0;
  p = p * w + 1.0 / 9.0;
  p = p * w + 1.0 / 7.0;
  p = p * w + 1.0 / 5.0;
  p = p * w + 1.0 / 3.0;
  p = p * w + 1.0;
  return 2.0 * z * p;
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)). Below exp(-708) the correction
// is far under one ulp of any sum it joins, so clamping there loses nothing.
// The clamp and max(x, 0) are written as arithmetic on exact 0/1 factors:
// GCC sinks the exp work into a conditional select and then, since floating
// point may trap, refuses to vectorise. Both forms are exact.
inline double fast_softplus(double x) {
  const double ax = std::fabs(x);
  const double inside = ax < 708.0 ? 1.0 : 0.0;
  const double t = -ax * inside - 708.0 * (1.0 - inside);
  const double positive = 0.5 * (x + ax);
  return positive + log1p_unit(exp_nonpositive(t));
}

// sigmoid(x) = 1 / (1 + exp(-x)) written with e = exp(-|x|) so it never overflows.
inline double fast_sigmoid(double x) {
  const double ax = std::fabs(x);
  const double inside = ax < 708.0 ? 1.0 : 0.0;
  const double e = exp_nonpositive(-ax * inside - 708.0 * (1.0 - inside));
  const double inv = 1.0 / (1.0 + e);
  const double non_negative = x >= 0.0 ? 1.0 : 0.0;
  return inv * (non_negative + (1.0 - non_negative) * e);
}

// Array kernels; the loops are plain so that they vectorise as maps. On
// x86-64 each is also compiled for AVX2 and AVX-512, and the widest the CPU
// has is picked at load time (2x and 4x the baseline vector width). The wider
// versions may fuse multiply-adds, so results can differ in the last bits
// between CPU types; on one machine they never depend on the thread count.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(MARBM_NO_VECTOR_CLONES)
#define MARBM_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MARBM_VECTOR_CLONES
#endif

}  // namespace marbm::detail
