#include "detail/exact_kernels.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "detail/fast_math.hpp"

namespace marbm::detail {

namespace {

// Four doubles, as GCC and Clang's vector extensions: one AVX2 register, or
// two SSE2 registers in the baseline clone. The AVX2 and AVX-512 versions may
// fuse multiply-adds, so the last bits can differ between CPU types (as for
// every clone in detail/fast_math.hpp); on one machine they never depend on
// the thread count.
typedef double Quad __attribute__((vector_size(32)));
typedef std::uint64_t QuadWords __attribute__((vector_size(32)));
typedef std::int64_t QuadIntegers __attribute__((vector_size(32)));
static_assert(product_lanes % 4 == 0);

// By reference: a function returning a 32-byte vector would have a
// different ABI in the baseline clone. Eight-lane rows (product_lanes) are
// two of these.
inline void load(Quad& v, const double* p) { std::memcpy(&v, p, sizeof v); }

// Moves the exponent of every lane (all >= 1, finite) into `exponent` and
// leaves the mantissa in [1, 2).
inline void renormalise(Quad& p, QuadIntegers& exponent) {
  QuadWords bits;
  std::memcpy(&bits, &p, sizeof bits);
  exponent += (QuadIntegers)(bits >> 52);
  exponent -= 1023;
  bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
  std::memcpy(&p, &bits, sizeof p);
}

// The product kernel is compiled for AVX2 and the baseline as four-lane
// vectors, and separately for AVX-512 as eight-lane ones (target_clones
// cannot give one clone a different body), picked once from the CPU's flags.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(MARBM_NO_VECTOR_CLONES)
#define MARBM_QUAD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define MARBM_OCT_KERNEL 1
#else
#define MARBM_QUAD_CLONES
#define MARBM_OCT_KERNEL 0
#endif

#if MARBM_OCT_KERNEL
typedef double Oct __attribute__((vector_size(64)));
typedef std::uint64_t OctWords __attribute__((vector_size(64)));
typedef std::int64_t OctIntegers __attribute__((vector_size(64)));

__attribute__((target("arch=x86-64-v4"))) inline void load(Oct& v, const double* p) { std::memcpy(&v, p, sizeof v); }

__attribute__((target("arch=x86-64-v4"))) inline void renormalise(Oct& p, OctIntegers& exponent) {
  OctWords bits;
  std::memcpy(&bits, &p, sizeof bits);
  exponent += (OctIntegers)(bits >> 52);
  exponent -= 1023;
  bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
  std::memcpy(&p, &bits, sizeof p);
}
#endif

// log1p(y) for y in [0, 1] as 2 atanh(z), z = y / (2 + y), with the two
// roundings that dominate detail::log1p_unit taken out: 2 + y is rounded,
// so its lost low part (exact by Fast2Sum) corrects z, and the leading term
// 2z is kept apart from the series so that nothing is added to 1 first.
inline double log1p_accurate(double y) {
  const double d = 2.0 + y;
  const double d_low = (2.0 - d) + y;  // d + d_low = 2 + y exactly
  const double z = y / d;
  const double w = z * z;
  double q = 1.0 / 31.0;
  q = q * w + 1.0 / 29.0;
  q = q * w + 1.0 / 27.0;
  q = q * w + 1.0 / 25.0;
  q = q * w + 1.0 / 23.0;
  q = q * w + 1.0 / 21.0;
  q = q * w + 1.0 / 19.0;
  q = q * w + 1.0 / 17.0;
  q = q * w + 1.0 / 15.0;
  q = q * w + 1.0 / 13.0;
  q = q * w + 1.0 / 11.0;
  q = q * w + 1.0 / 9.0;
  q = q * w + 1.0 / 7.0;
  q = q * w + 1.0 / 5.0;
  q = q * w + 1.0 / 3.0;
  const double two_z = 2.0 * z;
  return two_z + (two_z * (w * q) - two_z * (d_low / d));
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)) within 2 ulp (measured in
// tests/test_exact_kernels.cpp). Where exp(-|x|) falls below the smallest
// normal double (|x| > 708.396...) the correction is 0: exp_nonpositive
// builds no subnormals, and it is far under one ulp of any sum it joins.
// Branch-free on exact 0/1 factors so that the loops vectorise.
inline double softplus_accurate(double x) {
  constexpr double smallest_normal_log = 708.3964185322641;  // -log(DBL_MIN)
  const double ax = std::fabs(x);
  const double inside = ax < smallest_normal_log ? 1.0 : 0.0;
  const double t = -ax * inside - 708.0 * (1.0 - inside);
  const double positive = 0.5 * (x + ax);
  return positive + inside * log1p_accurate(exp_nonpositive(t));
}

}  // namespace

MARBM_VECTOR_CLONES
void exp_array(const double* __restrict x, double* __restrict out, int count) {
  // exp_nonpositive's reduction and 2^k construction hold for k in
  // [-1022, 1023], that is |t| <= 708 on either side of zero.
  for (int i = 0; i < count; ++i) out[i] = exp_nonpositive(x[i]);
}

MARBM_VECTOR_CLONES
void softplus_array(const double* __restrict x, double* __restrict out, int count) {
  for (int i = 0; i < count; ++i) out[i] = softplus_accurate(x[i]);
}

namespace {

MARBM_QUAD_CLONES
void one_plus_products_quad(const double* __restrict base, const double* __restrict table, int stride, int states,
                       int group_vectors, double* __restrict mantissa, std::int64_t* __restrict exponent) {
  const int vectors = stride / product_lanes;
  for (int s = 0; s < states; ++s) {
    const double* row = table + static_cast<std::size_t>(s) * stride;
    // Four accumulators of four lanes (one AVX2 register each), so
    // consecutive multiplies do not wait on each other: the halves of even
    // lane groups go to p0 and p1, those of odd ones to p2 and p3.
    Quad p0 = {1, 1, 1, 1}, p1 = p0, p2 = p0, p3 = p0;
    QuadIntegers e = {0, 0, 0, 0};
    int v = 0;
    while (v < vectors) {
      const int end = v + group_vectors < vectors ? v + group_vectors : vectors;
      Quad b0, t0, b1, t1, b2, t2, b3, t3;
      for (; v + 2 <= end; v += 2) {
        const double* bp = base + v * product_lanes;
        const double* tp = row + v * product_lanes;
        load(b0, bp), load(t0, tp), load(b1, bp + 4), load(t1, tp + 4);
        load(b2, bp + 8), load(t2, tp + 8), load(b3, bp + 12), load(t3, tp + 12);
        const Quad e0 = b0 * t0, e1 = b1 * t1, e2 = b2 * t2, e3 = b3 * t3;
        p0 = p0 + p0 * e0;
        p1 = p1 + p1 * e1;
        p2 = p2 + p2 * e2;
        p3 = p3 + p3 * e3;
      }
      if (v < end) {
        const double* bp = base + v * product_lanes;
        const double* tp = row + v * product_lanes;
        load(b0, bp), load(t0, tp), load(b1, bp + 4), load(t1, tp + 4);
        const Quad e0 = b0 * t0, e1 = b1 * t1;
        p0 = p0 + p0 * e0;
        p1 = p1 + p1 * e1;
        ++v;
      }
      renormalise(p0, e);
      renormalise(p1, e);
      renormalise(p2, e);
      renormalise(p3, e);
    }
    // Sixteen mantissas in [1, 2): their product stays below 2^16.
    const Quad p = (p0 * p1) * (p2 * p3);
    mantissa[s] = (p[0] * p[1]) * (p[2] * p[3]);
    exponent[s] = (e[0] + e[1]) + (e[2] + e[3]);
  }
}

#if MARBM_OCT_KERNEL
// The same with eight lanes (one AVX-512 register) and two accumulators;
// lanes l and l + 4 of p0 (p1) hold what lane l of the quad version's p0 and
// p1 (p2 and p3) hold, combined in the same order.
__attribute__((target("arch=x86-64-v4")))
void one_plus_products_oct(const double* __restrict base, const double* __restrict table, int stride, int states,
                           int group_vectors, double* __restrict mantissa, std::int64_t* __restrict exponent) {
  const int vectors = stride / product_lanes;
  for (int s = 0; s < states; ++s) {
    const double* row = table + static_cast<std::size_t>(s) * stride;
    Oct p0 = {1, 1, 1, 1, 1, 1, 1, 1}, p1 = p0;
    OctIntegers e = {0, 0, 0, 0, 0, 0, 0, 0};
    int v = 0;
    while (v < vectors) {
      const int end = v + group_vectors < vectors ? v + group_vectors : vectors;
      Oct b0, t0, b1, t1;
      for (; v + 2 <= end; v += 2) {
        load(b0, base + v * product_lanes), load(t0, row + v * product_lanes);
        load(b1, base + (v + 1) * product_lanes), load(t1, row + (v + 1) * product_lanes);
        const Oct e0 = b0 * t0, e1 = b1 * t1;
        p0 = p0 + p0 * e0;
        p1 = p1 + p1 * e1;
      }
      if (v < end) {
        load(b0, base + v * product_lanes), load(t0, row + v * product_lanes);
        const Oct e0 = b0 * t0;
        p0 = p0 + p0 * e0;
        ++v;
      }
      renormalise(p0, e);
      renormalise(p1, e);
    }
    double q[4];
    for (int l = 0; l < 4; ++l) q[l] = (p0[l] * p0[l + 4]) * (p1[l] * p1[l + 4]);
    mantissa[s] = (q[0] * q[1]) * (q[2] * q[3]);
    std::int64_t total = 0;
    for (int l = 0; l < 8; ++l) total += e[l];
    exponent[s] = total;
  }
}
#endif

}  // namespace

void one_plus_products(const double* base, const double* table, int stride, int states, int group_vectors,
                       double* mantissa, std::int64_t* exponent) {
#if MARBM_OCT_KERNEL
  static const bool oct = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  if (oct) return one_plus_products_oct(base, table, stride, states, group_vectors, mantissa, exponent);
#endif
  one_plus_products_quad(base, table, stride, states, group_vectors, mantissa, exponent);
}

MARBM_VECTOR_CLONES
void log_products(const double* __restrict mantissa, const std::int64_t* __restrict exponent, double offset,
                  const double* __restrict addend, double* __restrict out, int count) {
  constexpr double ln2_hi = 6.93147180369123816490e-01;  // 32 significant bits: q * ln2_hi is exact
  constexpr double ln2_lo = 1.90821492927058770002e-10;
  constexpr double sqrt2 = 1.4142135623730951;
  for (int s = 0; s < count; ++s) {
    // m = 2^q f with f in [sqrt(1/2), sqrt(2)), so that log(f) = log1p(f - 1)
    // with f - 1 exact and small.
    std::uint64_t bits;
    const double m = mantissa[s];
    std::memcpy(&bits, &m, sizeof bits);
    const std::int64_t q = static_cast<std::int64_t>(bits >> 52) - 1023;
    bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double f;
    std::memcpy(&f, &bits, sizeof f);
    const double high = f >= sqrt2 ? 1.0 : 0.0;
    f *= 1.0 - 0.5 * high;
    const double k = static_cast<double>(q + exponent[s]) + high;
    const double log_m = (k * ln2_hi + log1p_unit(f - 1.0)) + k * ln2_lo;
    out[s] = (offset + addend[s]) + log_m;
  }
}

MARBM_VECTOR_CLONES
void add_weighted_conditionals(const double* __restrict base, const double* __restrict table, int stride, int states,
                               const double* __restrict probability, double* __restrict weighted,
                               double* __restrict block_weighted) {
  for (int s = 0; s < states; ++s) {
    const double* row = table + static_cast<std::size_t>(s) * stride;
    double* out = weighted + static_cast<std::size_t>(s) * stride;
    const double p = probability[s];
    for (int i = 0; i < stride; ++i) {
      const double e = base[i] * row[i];
      const double term = p * (e / (1.0 + e));
      out[i] += term;
      block_weighted[i] += term;
    }
  }
}

MARBM_VECTOR_CLONES
void add_signed(double* __restrict field, const double* __restrict column, double sign, int count) {
  for (int i = 0; i < count; ++i) field[i] += sign * column[i];
}

MARBM_VECTOR_CLONES
void step_softplus_array(double* __restrict field, const double* __restrict column, double sign,
                         double* __restrict out, int count) {
  for (int i = 0; i < count; ++i) {
    const double x = field[i] + sign * column[i];
    field[i] = x;
    out[i] = softplus_accurate(x);
  }
}

}  // namespace marbm::detail
