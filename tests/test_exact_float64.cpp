// float64 model files evaluated exactly in float64: the library's entry points
// and `marbm eval` give the float64 answer (against brute force in long
// double), not that of the model rounded to float32.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cli_checks.hpp"
#include "cli_runner.hpp"
#include "marbm/data.hpp"
#include "marbm/exact.hpp"
#include "marbm/model_io.hpp"

namespace marbm {
namespace {

using nlohmann::json;
using test::ScratchFolder;

// An n x m model whose parameters need all of float64's bits: N(0, 1) values
// whose float32 roundings move log Z by about 1e-7.
RbmFloat64 random_float64_model(int n, int m, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  RbmFloat64 model;
  model.n_visible = n;
  model.n_hidden = m;
  for (int q = 0; q < n * m; ++q) model.weights.push_back(0.7 * normal(random));
  for (int i = 0; i < n; ++i) model.visible_bias.push_back(0.5 * normal(random));
  for (int j = 0; j < m; ++j) model.hidden_bias.push_back(0.5 * normal(random));
  return model;
}

void write_float64_file(const std::string& path, const RbmFloat64& model) {
  const std::uint64_t n = model.n_visible, m = model.n_hidden;
  const json header = {
      {"weights", {{"dtype", "F64"}, {"shape", {n, m}}, {"data_offsets", {0, 8 * n * m}}}},
      {"visible_bias", {{"dtype", "F64"}, {"shape", {n}}, {"data_offsets", {8 * n * m, 8 * n * m + 8 * n}}}},
      {"hidden_bias", {{"dtype", "F64"}, {"shape", {m}}, {"data_offsets", {8 * n * m + 8 * n, 8 * (n * m + n + m)}}}}};
  const std::string text = header.dump();
  std::string bytes(8, '\0');
  const std::uint64_t length = text.size();
  for (int k = 0; k < 8; ++k) bytes[k] = static_cast<char>((length >> (8 * k)) & 0xff);
  bytes += text;
  for (const auto* values : {&model.weights, &model.visible_bias, &model.hidden_bias}) {
    std::string raw(values->size() * 8, '\0');
    std::memcpy(raw.data(), values->data(), raw.size());  // test machines are little-endian
    bytes += raw;
  }
  std::ofstream(path, std::ios::binary) << bytes;
}

// log Z over both layers in long double, from float64 parameters.
long double brute_force_long_double(const RbmFloat64& model) {
  const int n = model.n_visible, m = model.n_hidden;
  std::vector<long double> values;
  long double max = -std::numeric_limits<long double>::infinity();
  for (std::uint64_t v = 0; v < (std::uint64_t{1} << n); ++v)
    for (std::uint64_t h = 0; h < (std::uint64_t{1} << m); ++h) {
      long double minus_energy = 0.0L;
      for (int i = 0; i < n; ++i)
        if ((v >> i) & 1u) minus_energy += model.visible_bias[i];
      for (int j = 0; j < m; ++j)
        if ((h >> j) & 1u) minus_energy += model.hidden_bias[j];
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j)
          if (((v >> i) & 1u) && ((h >> j) & 1u)) minus_energy += model.weights[static_cast<std::size_t>(i) * m + j];
      values.push_back(minus_energy);
      max = std::max(max, minus_energy);
    }
  long double sum = 0.0L;
  for (long double x : values) sum += std::exp(x - max);
  return max + std::log(sum);
}

TEST(ExactFloat64, Float64FileGivesTheFloat64LogPartition) {
  ScratchFolder scratch;
  const RbmFloat64 model = random_float64_model(9, 7, 21);
  const std::string path = scratch.file("wide.safetensors");
  write_float64_file(path, model);

  bool any_float64 = false;
  const RbmFloat64 loaded = load_rbm_float64(path, &any_float64);
  EXPECT_TRUE(any_float64);
  EXPECT_EQ(loaded.weights, model.weights);
  EXPECT_EQ(loaded.hidden_bias, model.hidden_bias);

  const long double reference = brute_force_long_double(model);
  const double wide = log_partition_exact(loaded);
  const double rounded = log_partition_exact(load_rbm(path));
  // The float32 model's log Z is measurably elsewhere; the float64 one is
  // the reference to rounding.
  EXPECT_GT(std::fabs(rounded - static_cast<double>(reference)), 1e-9);
  EXPECT_LE(std::fabs(wide - reference), 1e-14 * std::fabs(reference)) << wide << " vs " << static_cast<double>(reference);

  // A float32 model widened gives the float32 overload's bits.
  const Rbm narrow = Rbm::random(9, 7, 0.7, 2);
  EXPECT_EQ(log_partition_exact(RbmFloat64::from(narrow)), log_partition_exact(narrow));
  bool narrow_float64 = true;
  save_rbm(scratch.file("narrow.safetensors"), narrow);
  load_rbm_float64(scratch.file("narrow.safetensors"), &narrow_float64);
  EXPECT_FALSE(narrow_float64);
}

TEST(ExactFloat64, LikelihoodAndKlUseTheFloat64Parameters) {
  const RbmFloat64 model = random_float64_model(6, 5, 4);
  const Dataset data = shifting_bars(6, 3);
  const double log_z = log_partition_exact(model);
  long double mean = 0.0L;
  for (int r = 0; r < data.n_rows; ++r) {
    // -F(v) in long double from the float64 parameters.
    long double minus_free = 0.0L;
    for (int i = 0; i < 6; ++i)
      if (data.row(r)[i]) minus_free += model.visible_bias[i];
    for (int j = 0; j < 5; ++j) {
      long double x = model.hidden_bias[j];
      for (int i = 0; i < 6; ++i)
        if (data.row(r)[i]) x += model.weights[static_cast<std::size_t>(i) * 5 + j];
      minus_free += std::log1p(std::exp(x));
    }
    mean += minus_free - log_z;
  }
  mean /= data.n_rows;
  EXPECT_NEAR(mean_log_likelihood(model, data, log_z), static_cast<double>(mean), 1e-13);
  // The rows are distinct: KL = -mean log-likelihood - log N.
  EXPECT_NEAR(kl_divergence(model, data, log_z), -static_cast<double>(mean) - std::log(6.0), 1e-13);
}

TEST(ExactFloat64, EvalReportsTheFloat64Answer) {
  ScratchFolder scratch;
  const RbmFloat64 model = random_float64_model(8, 6, 5);
  const std::string path = scratch.file("wide.safetensors");
  write_float64_file(path, model);
  const long double reference = brute_force_long_double(model);
  const json out = test::parse_json_output(test::run_cli({"eval", path, "--json"}, scratch));
  const double log_z = out.at("log_z").get<double>();
  EXPECT_LE(std::fabs(log_z - reference), 1e-14 * std::fabs(reference));
  EXPECT_GT(std::fabs(log_partition_exact(load_rbm(path)) - log_z), 1e-9);

  // AIS runs on the float32 model and says so in one line.
  const auto ais = test::run_cli({"eval", path, "--ais", "--ais-runs", "4", "--ais-intervals", "50", "--json"}, scratch);
  EXPECT_EQ(ais.exit_code, 0) << ais.err;
  EXPECT_NE(ais.err.find("float64 parameters rounded to float32 for AIS"), std::string::npos) << ais.err;
}

}  // namespace
}  // namespace marbm
