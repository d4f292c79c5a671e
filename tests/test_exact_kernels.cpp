// The vectorised kernels of exact enumeration against long double references
// (accuracy in ulp), and log Z through them against brute force in long
// double and against direct enumeration on many shapes, on huge weights
// (where the per-state softplus path takes over) and across chunk boundaries.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "detail/exact_kernels.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"
#include "test_support.hpp"

namespace marbm {
namespace {

using test_support::close_relative;

// |computed - reference| in units of the last place of the reference rounded to double.
double ulp_error(double computed, long double reference) {
  const double rounded = static_cast<double>(reference);
  const double ulp = std::nextafter(std::fabs(rounded), std::numeric_limits<double>::infinity()) - std::fabs(rounded);
  return static_cast<double>(std::fabs(static_cast<long double>(computed) - reference) / ulp);
}

long double softplus_reference(long double x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

// A dense sweep: every 1/4096 over [-40, 40] (where softplus is neither 0 nor
// linear), every 1/64 out to +-800 (where it is), and the extremes.
std::vector<double> softplus_sweep() {
  std::vector<double> x;
  for (int i = -40 * 4096; i <= 40 * 4096; ++i) x.push_back(i / 4096.0);
  for (int i = -800 * 64; i <= 800 * 64; ++i) x.push_back(i / 64.0 + 1.0 / 1024.0);
  for (double v : {1e-300, -1e-300, 1e-17, -1e-17, 707.9, 708.0, 708.1, -707.9, -708.0, -708.1, 745.0, -745.0, 1e6,
                   -1e6, 1e300, -1e300})
    x.push_back(v);
  return x;
}

TEST(ExactKernels, VectorSoftplusIsWithinTwoUlp) {
  const std::vector<double> x = softplus_sweep();
  std::vector<double> out(x.size());
  detail::softplus_array(x.data(), out.data(), static_cast<int>(x.size()));
  double worst = 0.0, at = 0.0;
  for (std::size_t q = 0; q < x.size(); ++q) {
    const long double reference = softplus_reference(x[q]);
    if (reference < std::numeric_limits<double>::min()) {
      // Below the normal range the kernel clamps to 0 (far below any sum's ulp).
      EXPECT_LE(out[q], std::numeric_limits<double>::min()) << x[q];
      continue;
    }
    const double e = ulp_error(out[q], reference);
    if (e > worst) worst = e, at = x[q];
  }
  std::printf("vector softplus: max error %.3f ulp at x = %.17g over %zu points\n", worst, at, x.size());
  EXPECT_LE(worst, 2.0) << "at x = " << at;
}

TEST(ExactKernels, VectorExpIsWithinTwoUlpOverItsRange) {
  std::vector<double> x;
  for (int i = -708 * 1024; i <= 708 * 1024; ++i) x.push_back(i / 1024.0 + 1.0 / 3000.0 * (i % 7));
  x.push_back(708.0);
  x.push_back(-708.0);
  std::vector<double> out(x.size());
  detail::exp_array(x.data(), out.data(), static_cast<int>(x.size()));
  double worst = 0.0, at = 0.0;
  for (std::size_t q = 0; q < x.size(); ++q) {
    const double e = ulp_error(out[q], std::exp(static_cast<long double>(x[q])));
    if (e > worst) worst = e, at = x[q];
  }
  std::printf("vector exp: max error %.3f ulp at x = %.17g over %zu points\n", worst, at, x.size());
  EXPECT_LE(worst, 2.0) << "at x = " << at;
}

// sum_i log(1 + B_i T_si) by the product kernel against long double, for
// every other-layer size 1..70 (padding to the lanes included), fields up to
// the kernel's window, and renormalisation after every vector or rarely.
TEST(ExactKernels, ProductsOfOnePlusMatchLongDoubleSums) {
  std::mt19937_64 random(11);
  double worst_ulps = 0.0;
  for (int other = 1; other <= 70; ++other) {
    const int stride = (other + detail::product_lanes - 1) / detail::product_lanes * detail::product_lanes;
    for (const double scale : {0.5, 8.0, 300.0}) {
      std::uniform_real_distribution<double> field(-scale, scale);
      const int states = 16;
      std::vector<double> base(stride, 0.0), table(static_cast<std::size_t>(states) * stride, 0.0);
      for (int i = 0; i < other; ++i) base[i] = std::exp(field(random));
      for (int s = 0; s < states; ++s)
        for (int i = 0; i < other; ++i) table[static_cast<std::size_t>(s) * stride + i] = std::exp(field(random) / 2);
      // The largest factor decides how many may be multiplied between renormalisations.
      double top = 0.0;
      for (int s = 0; s < states; ++s)
        for (int i = 0; i < other; ++i) top = std::max(top, std::log2(1 + base[i] * table[s * stride + i]));
      const int safe_group = std::max(1, static_cast<int>(1022.0 / (top + 1.0)));
      for (const int group : {1, safe_group}) {
        std::vector<double> mantissa(states), values(states), addend(states);
        std::vector<std::int64_t> exponent(states);
        for (int s = 0; s < states; ++s) addend[s] = 0.25 * s;
        detail::one_plus_products(base.data(), table.data(), stride, states, group, mantissa.data(), exponent.data());
        detail::log_products(mantissa.data(), exponent.data(), 1.5, addend.data(), values.data(), states);
        for (int s = 0; s < states; ++s) {
          long double reference = 1.5L + addend[s];
          for (int i = 0; i < other; ++i)
            reference += std::log1p(static_cast<long double>(base[i]) * table[static_cast<std::size_t>(s) * stride + i]);
          // Each factor is rounded a few times (relative 2^-52 at most), its
          // log then carries at most that absolute error; the final sums a few ulp.
          const double bound = (other + 4) * std::ldexp(1.0, -52) + 4 * std::ldexp(std::fabs(static_cast<double>(reference)), -52);
          EXPECT_LE(std::fabs(static_cast<long double>(values[s]) - reference), bound)
              << "other " << other << " scale " << scale << " group " << group << " state " << s;
          worst_ulps = std::max(worst_ulps, ulp_error(values[s], reference));
        }
      }
    }
  }
  std::printf("product kernel: largest error of a state's sum %.2f ulp of the sum\n", worst_ulps);
}

// log Z in long double over both layers' enumeration of the smaller one, the
// fields summed from the float32 parameters exactly (long double has 64 bits).
long double log_partition_long_double(const Rbm& rbm) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  const bool hidden = m <= n;
  const int k = hidden ? m : n, other = hidden ? n : m;
  long double max = -std::numeric_limits<long double>::infinity();
  std::vector<long double> values;
  values.reserve(std::size_t{1} << k);
  for (std::uint64_t state = 0; state < (std::uint64_t{1} << k); ++state) {
    long double value = 0.0L;
    for (int j = 0; j < k; ++j)
      if ((state >> j) & 1u) value += hidden ? rbm.hidden_bias()[j] : rbm.visible_bias()[j];
    for (int i = 0; i < other; ++i) {
      long double x = hidden ? rbm.visible_bias()[i] : rbm.hidden_bias()[i];
      for (int j = 0; j < k; ++j)
        if ((state >> j) & 1u) x += hidden ? rbm.weight(i, j) : rbm.weight(j, i);
      value += softplus_reference(x);
    }
    values.push_back(value);
    max = std::max(max, value);
  }
  long double sum = 0.0L;
  for (long double v : values) sum += std::exp(v - max);
  return max + std::log(sum);
}

TEST(ExactKernels, LogPartitionMatchesLongDoubleBruteForce) {
  // Other layers of odd and padded sizes, enumerated layers below, at and
  // beyond one block (64 states) and one chunk (2^10).
  double worst = 0.0;
  for (const int other : {1, 3, 7, 8, 9, 17, 33, 64, 70}) {
    for (const int k : {1, 2, 5, 6, 7, 11}) {
      for (const double sigma : {0.3, 2.0}) {
        const Rbm rbm = Rbm::random(other, k, sigma, 100 + other * 31 + k);
        const long double reference = log_partition_long_double(rbm);
        const double exact = log_partition_exact(rbm);
        const double difference = static_cast<double>(std::fabs(exact - reference) / std::max(1.0L, std::fabs(reference)));
        worst = std::max(worst, difference);
        // A few ulp per state's value and per summation: 1e-14 relative is
        // hundreds of times the measured error and far below 1e-12.
        EXPECT_LE(difference, 1e-14) << other << "x" << k << " sigma " << sigma << ": " << exact << " vs "
                                      << static_cast<double>(reference);
      }
    }
  }
  std::printf("log Z against long double: largest relative difference %.3g\n", worst);
}

TEST(ExactKernels, LogPartitionAgreesWithDirectEnumerationOnManyShapes) {
  for (int other = 1; other <= 70; other += (other < 12 ? 1 : 7)) {
    for (const int k : {1, 4, 9, 13}) {
      const Rbm rbm = Rbm::random(other, k, 0.8, 7 * other + k);
      EXPECT_TRUE(close_relative(log_partition_exact(rbm), log_partition_direct(rbm, 1), 1e-12)) << other << "x" << k;
    }
  }
}

// Weights large enough that every chunk, some chunks or no chunk leaves the
// product kernel's window: the two paths agree with direct enumeration.
TEST(ExactKernels, HugeWeightsAndMixedChunksAgreeWithDirect) {
  for (const double sigma : {30.0, 120.0, 400.0}) {
    for (const int k : {8, 12, 15}) {
      const Rbm rbm = Rbm::random(21, k, sigma, 5 + k);
      EXPECT_TRUE(close_relative(log_partition_exact(rbm), log_partition_direct(rbm, 1), 1e-12))
          << "sigma " << sigma << " k " << k;
    }
  }
  // One hidden unit with huge weights, the rest small: only the chunks where
  // it is on may leave the window.
  Rbm rbm = Rbm::random(30, 14, 0.5, 9);
  for (int i = 0; i < 30; ++i) rbm.weight(i, 13) = (i % 2 ? 1.0f : -1.0f) * 700.0f;
  EXPECT_TRUE(close_relative(log_partition_exact(rbm), log_partition_direct(rbm, 1), 1e-12));
  for (int i = 0; i < 30; ++i) rbm.weight(i, 0) = 650.0f;
  EXPECT_TRUE(close_relative(log_partition_exact(rbm), log_partition_direct(rbm, 1), 1e-12));
}

// Enumerated layers around the chunk sizes (2^10 states a chunk up to k = 16,
// 2^11 at k = 17) and
// visible enumeration, at 1 and 2 threads, bit-identical.
TEST(ExactKernels, ChunkBoundariesAgreeWithDirectAtAnyThreadCount) {
  const int saved = omp_get_max_threads();
  for (const int k : {10, 11, 16, 17}) {
    const Rbm rbm = Rbm::random(20, k, 0.6, 3 * k);
    omp_set_num_threads(1);
    const double one = log_partition_exact(rbm);
    omp_set_num_threads(2);
    const double two = log_partition_exact(rbm);
    EXPECT_EQ(one, two) << k;
    EXPECT_TRUE(close_relative(one, log_partition_direct(rbm, 1), 1e-12)) << k;
  }
  omp_set_num_threads(saved);
  const Rbm wide = Rbm::random(13, 45, 0.6, 4);  // the visible layer is the enumerated one
  EXPECT_TRUE(close_relative(log_partition_exact(wide), log_partition_direct(wide, 0), 1e-12));
}

// Model expectations from a from-scratch sum over the enumerated layer in
// long double, for odd widths, several blocks and chunks, visible
// enumeration, and a huge-weight unit that sends some chunks to the per-state path.
void expect_expectations_match(const Rbm& rbm) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  const bool hidden = m <= n;
  const int k = hidden ? m : n, other = hidden ? n : m;
  const long double log_z = log_partition_long_double(rbm);
  std::vector<long double> enumerated(k, 0.0L), other_mean(other, 0.0L), cross(static_cast<std::size_t>(k) * other, 0.0L);
  std::vector<long double> field(other);
  for (std::uint64_t state = 0; state < (std::uint64_t{1} << k); ++state) {
    long double value = 0.0L;
    for (int i = 0; i < other; ++i) field[i] = hidden ? rbm.visible_bias()[i] : rbm.hidden_bias()[i];
    for (int j = 0; j < k; ++j) {
      if (!((state >> j) & 1u)) continue;
      value += hidden ? rbm.hidden_bias()[j] : rbm.visible_bias()[j];
      for (int i = 0; i < other; ++i) field[i] += hidden ? rbm.weight(i, j) : rbm.weight(j, i);
    }
    for (int i = 0; i < other; ++i) value += softplus_reference(field[i]);
    const long double p = std::exp(value - log_z);
    for (int i = 0; i < other; ++i) {
      const long double conditional = 1.0L / (1.0L + std::exp(-field[i]));
      other_mean[i] += p * conditional;
      for (int j = 0; j < k; ++j)
        if ((state >> j) & 1u) cross[static_cast<std::size_t>(j) * other + i] += p * conditional;
    }
    for (int j = 0; j < k; ++j)
      if ((state >> j) & 1u) enumerated[j] += p;
  }
  const ModelExpectations ex = model_expectations_exact(rbm);
  const auto& enumerated_out = hidden ? ex.hidden : ex.visible;
  const auto& other_out = hidden ? ex.visible : ex.hidden;
  for (int j = 0; j < k; ++j) EXPECT_NEAR(enumerated_out[j], static_cast<double>(enumerated[j]), 1e-13) << n << "x" << m << " unit " << j;
  for (int i = 0; i < other; ++i) EXPECT_NEAR(other_out[i], static_cast<double>(other_mean[i]), 1e-13) << n << "x" << m << " other " << i;
  for (int j = 0; j < k; ++j)
    for (int i = 0; i < other; ++i) {
      const std::size_t q = hidden ? static_cast<std::size_t>(i) * m + j : static_cast<std::size_t>(j) * m + i;
      EXPECT_NEAR(ex.visible_hidden[q], static_cast<double>(cross[static_cast<std::size_t>(j) * other + i]), 1e-13)
          << n << "x" << m << " pair " << j << ", " << i;
    }
}

TEST(ExactKernels, ModelExpectationsMatchLongDoubleSums) {
  expect_expectations_match(Rbm::random(13, 7, 0.9, 1));   // one block, padded width
  expect_expectations_match(Rbm::random(21, 12, 0.6, 2));  // several blocks, 4 chunks of 2^10
  expect_expectations_match(Rbm::random(5, 11, 0.8, 3));   // the visible layer enumerated
  Rbm huge = Rbm::random(9, 12, 0.5, 4);
  for (int i = 0; i < 9; ++i) huge.weight(i, 11) = (i % 2 ? 1.0f : -1.0f) * 700.0f;  // half the chunks leave the window
  expect_expectations_match(huge);
}

}  // namespace
}  // namespace marbm
