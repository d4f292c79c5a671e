// `marbm eval` with AIS: forced by --ais, chosen beyond the enumeration
// limit, and its JSON keys and bracket against the exact answer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "cli_checks.hpp"
#include "cli_runner.hpp"
#include "marbm/engine.hpp"
#include "marbm/model_io.hpp"
#include "marbm/rbm.hpp"

namespace {

using marbm::test::describe;
using marbm::test::expect_refusal;
using marbm::test::parse_json_output;
using marbm::test::run_cli;
using marbm::test::ScratchFolder;

// A 30x12 model and 30-column data (the 30 shifts of a run of 10 ones).
struct SavedModel {
  ScratchFolder scratch;
  std::string model = scratch.file("model.safetensors");
  std::string data = "shifting-bars:30:10";
  SavedModel() { marbm::save_rbm(model, marbm::Rbm::random(30, 12, 0.5, 4)); }
};

TEST(CliAis, ExactEvaluationSaysSoAndHasAPointInterval) {
  SavedModel setup;
  const auto out = parse_json_output(run_cli({"eval", setup.model, "--data", setup.data, "--json"}, setup.scratch));
  EXPECT_EQ(out["method"], "exact");
  EXPECT_EQ(out["log_z_stderr"].get<double>(), 0.0);
  EXPECT_EQ(out["log_z_low"].get<double>(), out["log_z"].get<double>());
  EXPECT_EQ(out["log_z_high"].get<double>(), out["log_z"].get<double>());
  EXPECT_FALSE(out.contains("log_z_reverse"));
}

TEST(CliAis, ForcedAisAgreesWithExactWithinItsError) {
  SavedModel setup;
  const auto exact = parse_json_output(run_cli({"eval", setup.model, "--data", setup.data, "--json"}, setup.scratch));
  const auto ais = parse_json_output(run_cli({"eval", setup.model, "--data", setup.data, "--ais", "--ais-intervals",
                                              "1000", "--ais-runs", "100", "--seed", "3", "--json"},
                                             setup.scratch));
  EXPECT_EQ(ais["method"], "ais");
  EXPECT_EQ(ais["ais_runs"], 100);
  EXPECT_EQ(ais["ais_intervals"], 1000);
  const double log_z = ais["log_z"].get<double>();
  const double se = ais["log_z_stderr"].get<double>();
  const double exact_log_z = exact["log_z"].get<double>();
  EXPECT_GT(se, 0.0);
  // The allowance of test_ais.cpp: 4 se, the se^2 bias of a log mean, float32 fields.
  EXPECT_LE(std::fabs(log_z - exact_log_z), 4 * se + se * se + 1e-3);
  EXPECT_LE(ais["log_z_low"].get<double>(), log_z);
  EXPECT_GE(ais["log_z_high"].get<double>(), log_z);
  ASSERT_TRUE(ais.contains("log_z_reverse"));
  EXPECT_TRUE(ais["log_z_reverse_stderr"].is_number());
  // log p(v) = -F(v) - log Z: the estimated mean moves by the log Z difference.
  const double mean_ll = ais["mean_log_likelihood"].get<double>();
  EXPECT_NEAR(mean_ll - exact["mean_log_likelihood"].get<double>(), exact_log_z - log_z, 1e-9);
  EXPECT_LE(ais["mean_log_likelihood_low"].get<double>(), mean_ll);
  EXPECT_GE(ais["mean_log_likelihood_high"].get<double>(), mean_ll);

  // The same seed gives the same estimate.
  const auto again = parse_json_output(run_cli({"eval", setup.model, "--data", setup.data, "--ais", "--ais-intervals",
                                                "1000", "--ais-runs", "100", "--seed", "3", "--json"},
                                               setup.scratch));
  EXPECT_EQ(again["log_z"].get<double>(), log_z);
}

TEST(CliAis, BeyondTheLimitAisIsChosenAndNamed) {
  SavedModel setup;
  const auto result = run_cli({"eval", setup.model, "--max-units", "8", "--ais-intervals", "300", "--no-reverse"},
                              setup.scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  const auto notes = result.error_lines();
  ASSERT_EQ(notes.size(), 1u) << result.err;
  EXPECT_EQ(notes[0].rfind("marbm: note: ", 0), 0u);
  EXPECT_NE(notes[0].find("AIS"), std::string::npos);
  EXPECT_NE(notes[0].find("2^8"), std::string::npos);
  EXPECT_NE(result.out.find("AIS estimate: 100 runs, 300 intervals"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("bracket ["), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find("reverse"), std::string::npos) << result.out;

  const auto json = parse_json_output(run_cli(
      {"eval", setup.model, "--max-units", "8", "--ais-intervals", "300", "--no-reverse", "--json"}, setup.scratch));
  EXPECT_EQ(json["method"], "ais");
  EXPECT_FALSE(json.contains("log_z_reverse"));
}

TEST(CliAis, KlSaysWhatItIsWhenRowsAreDistinct) {
  SavedModel setup;
  const auto distinct = parse_json_output(run_cli({"eval", setup.model, "--data", setup.data, "--json"}, setup.scratch));
  EXPECT_EQ(distinct["rows_distinct"], true);
  EXPECT_NEAR(distinct["kl"].get<double>(), -distinct["mean_log_likelihood"].get<double>() - std::log(30.0), 1e-9);
  const auto text = run_cli({"eval", setup.model, "--data", setup.data}, setup.scratch);
  EXPECT_NE(text.out.find("rows are distinct: kl = -mean log-likelihood - log 30"), std::string::npos) << text.out;

  // A repeated row: the empirical distribution is no longer uniform over distinct rows.
  const std::string csv = setup.scratch.file("repeated.csv");
  {
    std::ofstream out(csv);
    const std::string row = "1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0\n";
    out << row << row << std::string(row).replace(0, 1, "0");
  }
  const auto repeated = parse_json_output(run_cli({"eval", setup.model, "--data", "csv:" + csv, "--json"}, setup.scratch));
  EXPECT_EQ(repeated["rows_distinct"], false);
}

TEST(CliAis, BackendSaysWhereTheRunsWent) {
  SavedModel setup;
  const std::vector<std::string> common = {"eval", setup.model, "--data", setup.data, "--ais", "--ais-intervals",
                                           "100", "--ais-runs", "10", "--seed", "1", "--json"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> arguments = common;
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    return arguments;
  };
  const auto cpu = parse_json_output(run_cli(with({"--backend", "cpu"}), setup.scratch));
  EXPECT_EQ(cpu["ais_backend"], "cpu");
  const auto plain = parse_json_output(run_cli(common, setup.scratch));
  EXPECT_EQ(plain["ais_backend"], "cpu") << "the default is the cpu";
  EXPECT_EQ(plain["log_z"], cpu["log_z"]);
  const auto automatic = parse_json_output(run_cli(with({"--backend", "auto"}), setup.scratch));
  if (marbm::cuda_devices().empty()) {
    // Without a device: auto is the cpu (the same numbers), cuda is refused.
    EXPECT_EQ(automatic["ais_backend"], "cpu");
    EXPECT_EQ(automatic["log_z"], cpu["log_z"]);
    expect_refusal(run_cli(with({"--backend", "cuda"}), setup.scratch), 1, "cuda");
  } else {
    EXPECT_EQ(automatic["ais_backend"], "cuda");
  }
  expect_refusal(run_cli(with({"--backend", "gpu"}), setup.scratch), 2, "--backend");
}

}  // namespace
