// Exact evaluation: log Z by Gray code, direct enumeration of either layer and
// brute force over both; probabilities, KL, model expectations, limits.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "marbm/data.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

using test_support::bits_of;
using test_support::close_relative;

TEST(Exact, GrayCodeEqualsDirectEqualsBruteForce) {
  // Exact quantities in float64 over at most 2^20 terms: the only error is
  // rounding, a few hundred ulp at most, so 1e-10 relative has a wide margin.
  int cases = 0;
  for (int n = 1; n <= 10; n += 3) {
    for (int m = 1; m <= 10; m += 2) {
      for (double sigma : {0.01, 0.3, 1.0, 5.0}) {
        for (std::uint64_t seed : {1u, 7u, 12u}) {
          const Rbm rbm = Rbm::random(n, m, sigma, seed * 1000 + n * 10 + m);
          const double brute = log_partition_brute_force(rbm);
          EXPECT_TRUE(close_relative(log_partition_exact(rbm), brute, 1e-10)) << n << "x" << m << " sigma " << sigma;
          EXPECT_TRUE(close_relative(log_partition_direct(rbm, 0), brute, 1e-10)) << n << "x" << m;
          EXPECT_TRUE(close_relative(log_partition_direct(rbm, 1), brute, 1e-10)) << n << "x" << m;
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 4 * 5 * 4 * 3);
}

TEST(Exact, ZeroModelHasKnownPartitionFunction) {
  // All parameters zero: Z = 2^(n + m).
  const Rbm rbm(7, 5);
  EXPECT_NEAR(log_partition_exact(rbm), 12 * std::log(2.0), 1e-12);
}

TEST(Exact, LargeWeightsGrayCodeMatchesDirect) {
  // |W| ~ 20 with hundreds of visible units: fields reach ~10^4, log Z ~10^5;
  // nothing may overflow and the Gray-code walk must not drift.
  for (std::uint64_t seed : {3u, 4u}) {
    for (int n : {800, 120}) {
      const int m = seed == 3 ? 8 : 11;
      const Rbm rbm = Rbm::random(n, m, 20.0, seed);
      const double gray = log_partition_exact(rbm);
      const double direct = log_partition_direct(rbm, 1);
      ASSERT_TRUE(std::isfinite(gray));
      EXPECT_TRUE(close_relative(gray, direct, 1e-10)) << n << "x" << m;
    }
  }
  // The enumerated layer being the visible one (n < m).
  const Rbm wide = Rbm::random(9, 700, 20.0, 11);
  EXPECT_TRUE(close_relative(log_partition_exact(wide), log_partition_direct(wide, 0), 1e-10));
}

TEST(Exact, ManyChunksMatchDirect) {
  // k = 18 runs 16 chunks of 2^14 Gray-code states each; the restarts at chunk
  // boundaries and the cross-chunk log-sum-exp must agree with direct sums.
  const Rbm rbm = Rbm::random(30, 18, 1.5, 21);
  EXPECT_TRUE(close_relative(log_partition_exact(rbm), log_partition_direct(rbm, 1), 1e-10));
}

TEST(Exact, ProbabilitiesSumToOne) {
  for (double sigma : {0.1, 2.0}) {
    const Rbm rbm = Rbm::random(9, 6, sigma, 5);
    const double log_z = log_partition_exact(rbm);
    double total = 0.0;
    for (std::uint64_t v = 0; v < (1u << 9); ++v) total += std::exp(log_probability(rbm, bits_of(v, 9), log_z));
    // 512 terms each accurate to ~1e-15 relative.
    EXPECT_NEAR(total, 1.0, 1e-12);
  }
}

TEST(Exact, ModelExpectationsMatchBruteForce) {
  for (auto [n, m] : {std::pair{5, 7}, std::pair{8, 4}, std::pair{6, 6}}) {
    const Rbm rbm = Rbm::random(n, m, 1.2, static_cast<std::uint64_t>(n * 31 + m));
    const double log_z = log_partition_brute_force(rbm);
    std::vector<double> vh(static_cast<std::size_t>(n) * m, 0.0), v_mean(n, 0.0), h_mean(m, 0.0);
    for (std::uint64_t v = 0; v < (1u << n); ++v) {
      const auto vb = bits_of(v, n);
      for (std::uint64_t h = 0; h < (1u << m); ++h) {
        const auto hb = bits_of(h, m);
        const double p = std::exp(-rbm.energy(vb, hb) - log_z);
        for (int i = 0; i < n; ++i) {
          v_mean[i] += p * vb[i];
          for (int j = 0; j < m; ++j) vh[static_cast<std::size_t>(i) * m + j] += p * vb[i] * hb[j];
        }
        for (int j = 0; j < m; ++j) h_mean[j] += p * hb[j];
      }
    }
    const ModelExpectations ex = model_expectations_exact(rbm);
    ASSERT_EQ(ex.visible_hidden.size(), vh.size());
    ASSERT_EQ(ex.visible.size(), static_cast<std::size_t>(n));
    ASSERT_EQ(ex.hidden.size(), static_cast<std::size_t>(m));
    // Probabilities in [0, 1] summed over <= 2^14 states in float64.
    for (std::size_t q = 0; q < vh.size(); ++q) EXPECT_NEAR(ex.visible_hidden[q], vh[q], 1e-12) << q;
    for (int i = 0; i < n; ++i) EXPECT_NEAR(ex.visible[i], v_mean[i], 1e-12) << i;
    for (int j = 0; j < m; ++j) EXPECT_NEAR(ex.hidden[j], h_mean[j], 1e-12) << j;
  }
}

TEST(Exact, ModelExpectationsAcrossChunksMatchDirectSums) {
  // k = 17 spans several blocks of chunks; compare <h> and <v h^T> against a
  // from-scratch sum over hidden states with p(h) and sigmoid conditionals.
  const int n = 20, m = 17;
  const Rbm rbm = Rbm::random(n, m, 0.4, 99);
  const ModelExpectations ex = model_expectations_exact(rbm);
  const double log_z = log_partition_direct(rbm, 1);
  std::vector<double> h_mean(m, 0.0), v_mean(n, 0.0), v0h(m, 0.0);
  std::vector<double> field(n);
  for (std::uint64_t h = 0; h < (1u << m); ++h) {
    double value = 0.0;
    for (int i = 0; i < n; ++i) field[i] = rbm.visible_bias()[i];
    for (int j = 0; j < m; ++j) {
      if (!((h >> j) & 1u)) continue;
      value += rbm.hidden_bias()[j];
      for (int i = 0; i < n; ++i) field[i] += rbm.weight(i, j);
    }
    for (double x : field) value += softplus(x);
    const double p = std::exp(value - log_z);
    for (int i = 0; i < n; ++i) v_mean[i] += p * sigmoid(field[i]);
    for (int j = 0; j < m; ++j)
      if ((h >> j) & 1u) {
        h_mean[j] += p;
        v0h[j] += p * sigmoid(field[0]);
      }
  }
  for (int j = 0; j < m; ++j) {
    EXPECT_NEAR(ex.hidden[j], h_mean[j], 1e-11);
    EXPECT_NEAR(ex.visible_hidden[j], v0h[j], 1e-11);
  }
  for (int i = 0; i < n; ++i) EXPECT_NEAR(ex.visible[i], v_mean[i], 1e-11);
}

TEST(Exact, KlDivergenceMatchesHandComputation) {
  const Rbm rbm = Rbm::random(6, 5, 0.8, 17);
  Dataset data = shifting_bars(6, 3);
  // Duplicate two rows so p_data is not uniform over its support.
  data.values.insert(data.values.end(), data.values.begin(), data.values.begin() + 12);
  data.n_rows = 8;
  data.description = "bars with duplicates";
  const double log_z = log_partition_brute_force(rbm);
  // KL = -H(data) - sum_v p_data(v) log p(v) with H over the distinct rows.
  double entropy = 0.0, cross = 0.0;
  const double p_dup = 2.0 / 8.0, p_single = 1.0 / 8.0;
  entropy = -(2 * p_dup * std::log(p_dup) + 4 * p_single * std::log(p_single));
  for (int r = 0; r < 8; ++r) cross -= (1.0 / 8.0) * (-rbm.free_energy(data.row(r)) - log_z);
  const double expected = cross - entropy;
  EXPECT_NEAR(kl_divergence_exact(rbm, data), expected, 1e-12);
  EXPECT_NEAR(kl_divergence(rbm, data, log_z), expected, 1e-12);
  EXPECT_GT(expected, 0.0);
  // Mean log-likelihood over rows, and the identity KL = -H - mean log p.
  const double mean_ll = mean_log_likelihood_exact(rbm, data);
  EXPECT_NEAR(mean_ll, -cross, 1e-12);
  EXPECT_NEAR(kl_divergence(rbm, data, log_z), -entropy - mean_ll, 1e-12);
}

TEST(Exact, KlOfModelNearDataIsSmallAndNonNegative) {
  // A model whose visible biases make p(v) nearly a point mass on one row
  // gives KL close to 0 for a data set of that row alone.
  Rbm rbm(4, 2);
  const std::vector<std::uint8_t> row = {1, 0, 1, 1};
  for (int i = 0; i < 4; ++i) rbm.visible_bias()[i] = row[i] ? 15.0f : -15.0f;
  Dataset data;
  data.n_rows = 1;
  data.n_cols = 4;
  data.values = row;
  const double kl = kl_divergence_exact(rbm, data);
  EXPECT_GE(kl, 0.0);
  EXPECT_LT(kl, 4 * std::exp(-14.0));
}

TEST(Exact, RefusesBeyondTheLimit) {
  const Rbm rbm(40, 33);
  EXPECT_FALSE(exact_enumerable(rbm));
  try {
    log_partition_exact(rbm);
    ADD_FAILURE() << "no exception";
  } catch (const RuntimeFailure& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("40 x 33"), std::string::npos) << what;
    EXPECT_NE(what.find("2^32"), std::string::npos) << what;
  }
  ExactOptions small;
  small.max_enumerated_units = 4;
  const Rbm five(5, 9);
  EXPECT_FALSE(exact_enumerable(five, small));
  EXPECT_TRUE(exact_enumerable(five));
  EXPECT_THROW(log_partition_exact(five, small), RuntimeFailure);
  EXPECT_THROW(model_expectations_exact(five, small), RuntimeFailure);
  EXPECT_THROW(kl_divergence_exact(five, shifting_bars(5, 2), small), RuntimeFailure);
  EXPECT_THROW(log_partition_brute_force(Rbm(13, 12)), RuntimeFailure);
  ExactOptions bad;
  bad.max_enumerated_units = 99;
  EXPECT_THROW(log_partition_exact(five, bad), UsageError);
  EXPECT_THROW(log_partition_direct(five, 2), UsageError);
  // Data with the wrong width.
  EXPECT_THROW(kl_divergence(five, shifting_bars(6, 3), 0.0), DataError);
}

TEST(Exact, RefusesNonBinaryData) {
  // A byte of 2 would count as a distinct row of KL's empirical distribution
  // while its free energy reads it as 1: refused instead of a wrong number.
  const Rbm rbm = Rbm::random(5, 3, 0.5, 9);
  Dataset data = shifting_bars(5, 2);
  data.values[7] = 2;  // row 1, column 2
  const double log_z = log_partition_exact(rbm);
  try {
    kl_divergence(rbm, data, log_z);
    ADD_FAILURE() << "no exception";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("row 1, column 2"), std::string::npos) << what;
  }
  EXPECT_THROW(mean_log_likelihood(rbm, data, log_z), DataError);
  EXPECT_THROW(kl_divergence_exact(rbm, data), DataError);
  EXPECT_THROW(mean_log_likelihood_exact(rbm, data), DataError);
}

TEST(Exact, ResultsAreIdenticalAtAnyThreadCount) {
  const Rbm rbm = Rbm::random(25, 17, 0.7, 8);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = log_partition_exact(rbm);
  const ModelExpectations ex_one = model_expectations_exact(Rbm::random(12, 13, 0.7, 8));
  omp_set_num_threads(3);
  const double three = log_partition_exact(rbm);
  const ModelExpectations ex_three = model_expectations_exact(Rbm::random(12, 13, 0.7, 8));
  omp_set_num_threads(saved);
  EXPECT_EQ(one, three);  // bit-identical, not merely close
  EXPECT_EQ(ex_one.visible_hidden, ex_three.visible_hidden);
  EXPECT_EQ(ex_one.hidden, ex_three.hidden);
}

TEST(Exact, MeanLogLikelihoodIsIdenticalAtAnyThreadCount) {
  // More rows than the serial cut-off, with duplicates, so the parallel path runs.
  Dataset data = bars_and_stripes(3);
  const Dataset base = data;
  for (int copy = 0; copy < 30; ++copy) data.values.insert(data.values.end(), base.values.begin(), base.values.end());
  data.n_rows = static_cast<int>(data.values.size() / data.n_cols);
  const Rbm rbm = Rbm::random(9, 7, 1.0, 3);
  const double log_z = log_partition_exact(rbm);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = mean_log_likelihood(rbm, data, log_z);
  omp_set_num_threads(3);
  const double three = mean_log_likelihood(rbm, data, log_z);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, three);
  // Every pattern appears equally often, so the mean equals the mean over the 14 patterns.
  double reference = 0.0;
  for (int r = 0; r < base.n_rows; ++r) reference += log_probability(rbm, base.row(r), log_z);
  EXPECT_NEAR(one, reference / base.n_rows, 1e-12);
}

}  // namespace
}  // namespace marbm
