// Held-out monitoring: each metric against its definition, exact and by AIS,
// and `marbm train --test-data` printing them as JSON lines.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "cli_checks.hpp"
#include "cli_runner.hpp"
#include "marbm/data.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/held_out.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

double mean_free_energy(const Rbm& rbm, const Dataset& data) {
  double sum = 0.0;
  for (int r = 0; r < data.n_rows; ++r) sum += rbm.free_energy(data.row(r));
  return sum / data.n_rows;
}

TEST(HeldOut, ExactMetricsFollowTheirDefinitions) {
  const Rbm rbm = Rbm::random(12, 6, 0.7, 3);
  const Dataset train = shifting_bars(12, 4);
  const Dataset test = shifting_bars(12, 3);
  const HeldOutMetrics h = evaluate_held_out(rbm, train, test);
  EXPECT_TRUE(h.exact);
  EXPECT_NEAR(h.log_z, log_partition_exact(rbm), 1e-12);
  EXPECT_EQ(h.log_z_low, h.log_z);
  EXPECT_EQ(h.log_z_high, h.log_z);
  EXPECT_NEAR(h.mean_log_likelihood, mean_log_likelihood_exact(rbm, test), 1e-9);
  EXPECT_NEAR(h.free_energy_gap, mean_free_energy(rbm, test) - mean_free_energy(rbm, train), 1e-9);
  // One deterministic reconstruction: p(v | h = p(h | v)) with the model's own methods.
  double squared = 0.0;
  for (int r = 0; r < test.n_rows; ++r) {
    const std::vector<double> hidden = rbm.hidden_probabilities(test.row(r));
    for (int i = 0; i < 12; ++i) {
      double x = rbm.visible_bias()[i];
      for (int j = 0; j < 6; ++j) x += rbm.weight(i, j) * hidden[j];
      squared += std::pow(test.row(r)[i] - sigmoid(x), 2);
    }
  }
  EXPECT_NEAR(h.reconstruction_error, squared / (test.n_rows * 12.0), 1e-12);

  HeldOutOptions few;
  few.max_rows = 2;
  const HeldOutMetrics h2 = evaluate_held_out(rbm, train, test, few);
  Dataset train2 = train, test2 = test;
  train2.n_rows = test2.n_rows = 2;
  EXPECT_NEAR(h2.free_energy_gap, mean_free_energy(rbm, test2) - mean_free_energy(rbm, train2), 1e-9);
  EXPECT_NEAR(h2.mean_log_likelihood, h.mean_log_likelihood, 1e-12);  // always over all held-out rows
}

TEST(HeldOut, BeyondTheLimitTheLogLikelihoodIsAnAisEstimate) {
  const Rbm rbm = Rbm::random(30, 16, 0.4, 8);
  const Dataset train = random_binary_dataset(200, 30, 0.3, 1);
  const Dataset test = random_binary_dataset(100, 30, 0.3, 2);
  HeldOutOptions options;
  options.exact.max_enumerated_units = 10;
  const HeldOutMetrics h = evaluate_held_out(rbm, train, test, options);
  EXPECT_FALSE(h.exact);
  const double exact = mean_log_likelihood_exact(rbm, test);
  const double se = h.log_z_standard_error;
  EXPECT_GT(se, 0.0);
  // The allowance of test_ais.cpp: 4 se, the se^2 bias of a log mean, float32 fields.
  EXPECT_LE(std::fabs(h.mean_log_likelihood - exact), 4 * se + se * se + 1e-3);
  EXPECT_LE(h.mean_log_likelihood_low, h.mean_log_likelihood);
  EXPECT_GE(h.mean_log_likelihood_high, h.mean_log_likelihood);
  EXPECT_NEAR(h.mean_log_likelihood_high - h.mean_log_likelihood, h.log_z - h.log_z_low, 1e-9);
}

TEST(HeldOut, RefusesMismatchedData) {
  const Rbm rbm = Rbm::random(6, 3, 0.1, 1);
  EXPECT_THROW(evaluate_held_out(rbm, shifting_bars(6, 3), shifting_bars(7, 3)), UsageError);
  EXPECT_THROW(evaluate_held_out(rbm, shifting_bars(7, 3), shifting_bars(6, 3)), UsageError);
}

TEST(HeldOut, TrainPrintsEachEvaluationAsAJsonLine) {
  test::ScratchFolder scratch;
  const std::string model = scratch.file("m.safetensors");
  const auto lines = test::parse_json_lines(test::run_cli(
      {"train", "--data", "shifting-bars:12:4", "--test-data", "shifting-bars:12:3", "--hidden", "6", "--lr", "0.1",
       "--batch", "12", "--iters", "400", "--eval-every", "200", "--seed", "2", "--backend", "cpu", "--out", model,
       "--json"},
      scratch));
  ASSERT_EQ(lines.size(), 4u);  // iterations 0, 200, 400, then the summary
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(lines[k]["event"], "evaluation");
    EXPECT_EQ(lines[k]["iteration"], 200 * k);
    EXPECT_EQ(lines[k]["test_log_z_method"], "exact");
    EXPECT_TRUE(lines[k]["test_mean_log_likelihood"].is_number());
    EXPECT_TRUE(lines[k]["test_reconstruction_error"].is_number());
    EXPECT_TRUE(lines[k]["free_energy_gap"].is_number());
  }
  const auto& summary = lines[3];
  EXPECT_EQ(summary["event"], "summary");
  EXPECT_EQ(summary["test_mean_log_likelihood"], lines[2]["test_mean_log_likelihood"]);
  const auto evaluated = test::parse_json_output(
      test::run_cli({"eval", model, "--data", "shifting-bars:12:3", "--json"}, scratch));
  EXPECT_NEAR(summary["test_mean_log_likelihood"].get<double>(), evaluated["mean_log_likelihood"].get<double>(), 1e-9);

  // Beyond the exact limit the held-out log-likelihood is marked as an AIS estimate.
  const auto ais = test::parse_json_output(test::run_cli(
      {"train", "--data", "shifting-bars:12:4", "--test-data", "shifting-bars:12:3", "--hidden", "6", "--iters", "50",
       "--exact-max-units", "4", "--backend", "cpu", "--out", model, "--json"},
      scratch));
  EXPECT_EQ(ais["test_log_z_method"], "ais");
  EXPECT_LE(ais["test_mean_log_likelihood_low"].get<double>(), ais["test_mean_log_likelihood"].get<double>());

  test::expect_refusal(test::run_cli({"train", "--data", "shifting-bars:12:4", "--test-data", "shifting-bars:7:3",
                                      "--hidden", "6", "--iters", "10", "--backend", "cpu", "--out", model},
                                     scratch),
                       1, "--test-data shifting-bars:7:3");
}

}  // namespace
}  // namespace marbm
