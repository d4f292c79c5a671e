// `marbm train --lr-schedule`: the CLI trains what the library trains with
// the same schedule, records it in the metadata, and refuses bad combinations.
// Also what train's output says about KL when the rows are distinct.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "cli_checks.hpp"
#include "cli_runner.hpp"
#include "marbm/communicator.hpp"
#include "marbm/data.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/model_io.hpp"
#include "marbm/rbm.hpp"
#include "marbm/train.hpp"

namespace {

using marbm::test::describe;
using marbm::test::expect_refusal;
using marbm::test::parse_json_output;
using marbm::test::run_cli;
using marbm::test::ScratchFolder;

std::vector<std::string> train(const std::string& out, std::vector<std::string> extra) {
  std::vector<std::string> arguments = {"train",   "--data", "shifting-bars:6:3", "--hidden", "5",   "--iters",
                                        "400",     "--batch", "6",                 "--lr",     "0.2", "--seed",
                                        "3",       "--threads", "1",               "--backend", "cpu", "--out",
                                        out};
  arguments.insert(arguments.end(), extra.begin(), extra.end());
  return arguments;
}

// The library run the CLI should reproduce: the CLI's start (N(0, 0.01^2),
// visible biases at the base rates) and the given schedule.
marbm::Rbm library_run(marbm::LearningRateSchedule schedule, double final_rate) {
  const marbm::Dataset data = marbm::load_dataset("shifting-bars:6:3");
  marbm::Rbm initial = marbm::Rbm::random(6, 5, 0.01, 3);
  marbm::set_base_rate_visible_bias(initial, data);
  marbm::TrainConfig config;
  config.learning_rate = 0.2;
  config.learning_rate_schedule = schedule;
  config.final_learning_rate = final_rate;
  config.batch_size = 6;
  config.iterations = 400;
  config.seed = 3;
  marbm::EngineOptions options;
  options.threads = 1;
  options.quiet = true;
  // `marbm train` on the cpu sums each batch as the data-parallel engine of
  // one rank does (so that mpiexec runs write the same bits).
  auto engine = marbm::make_data_parallel_engine(marbm::make_engine(marbm::Backend::cpu, options),
                                                 marbm::single_process_communicator());
  return marbm::train(*engine, data, initial, config).model;
}

TEST(CliLearningRateSchedule, TrainsWhatTheLibraryTrainsAndRecordsIt) {
  ScratchFolder scratch;
  for (const auto& [word, schedule] :
       std::vector<std::pair<std::string, marbm::LearningRateSchedule>>{
           {"linear", marbm::LearningRateSchedule::linear}, {"exponential", marbm::LearningRateSchedule::exponential}}) {
    const std::string out = scratch.file(word + ".safetensors");
    const auto result = run_cli(train(out, {"--lr-schedule", word, "--lr-final", "0.02"}), scratch);
    ASSERT_EQ(result.exit_code, 0) << describe(result);
    marbm::Metadata metadata;
    const marbm::Rbm cli = marbm::load_rbm(out, &metadata);
    EXPECT_EQ(metadata["learning_rate_schedule"], word);
    EXPECT_EQ(std::stod(metadata["final_learning_rate"]), 0.02);
    const marbm::Rbm expected = library_run(schedule, 0.02);
    const marbm::Rbm constant = library_run(marbm::LearningRateSchedule::constant, 0.0);
    ASSERT_EQ(cli.weights().size(), expected.weights().size());
    bool differs_from_constant = false;
    for (std::size_t k = 0; k < cli.weights().size(); ++k) {
      EXPECT_EQ(cli.weights()[k], expected.weights()[k]) << word << " weight " << k;
      differs_from_constant = differs_from_constant || cli.weights()[k] != constant.weights()[k];
    }
    EXPECT_TRUE(differs_from_constant) << word;
  }
  // The constant schedule writes no schedule metadata.
  const std::string plain = scratch.file("plain.safetensors");
  ASSERT_EQ(run_cli(train(plain, {}), scratch).exit_code, 0);
  marbm::Metadata metadata;
  marbm::load_rbm(plain, &metadata);
  EXPECT_EQ(metadata.count("learning_rate_schedule"), 0u);
}

TEST(CliLearningRateSchedule, Refusals) {
  ScratchFolder scratch;
  const std::string out = scratch.file("out.safetensors");
  expect_refusal(run_cli(train(out, {"--lr-schedule", "linear"}), scratch), 2, "--lr-final");
  expect_refusal(run_cli(train(out, {"--lr-final", "0.1"}), scratch), 2, "--lr-final");
  expect_refusal(run_cli(train(out, {"--lr-schedule", "cosine", "--lr-final", "0.1"}), scratch), 2, "--lr-schedule");
  expect_refusal(run_cli(train(out, {"--lr-schedule", "exponential", "--lr-final", "0"}), scratch), 2, "--lr-final");
  expect_refusal(run_cli(train(out, {"--lr-schedule", "linear", "--lr-final", "-1"}), scratch), 2, "--lr-final");
  expect_refusal(run_cli(train(out, {"--lr-schedule", "linear", "--lr-final", "nan"}), scratch), 2, "--lr-final");
}

TEST(CliTrainOutput, LogLikelihoodFirstAndKlExplainedWhenRowsAreDistinct) {
  ScratchFolder scratch;
  const std::string out = scratch.file("m.safetensors");
  const auto text = run_cli(train(out, {}), scratch);
  ASSERT_EQ(text.exit_code, 0) << describe(text);
  const auto ll = text.out.find("mean log-likelihood ");
  const auto kl = text.out.find("  kl ");
  ASSERT_NE(ll, std::string::npos) << text.out;
  ASSERT_NE(kl, std::string::npos) << text.out;
  EXPECT_LT(ll, kl) << "the log-likelihood comes first: " << text.out;
  EXPECT_NE(text.out.find("(the 6 rows are distinct: kl = -mean log-likelihood - log 6)"), std::string::npos)
      << text.out;
  const auto json = parse_json_output(run_cli(train(out, {"--json"}), scratch));
  EXPECT_EQ(json["rows_distinct"], true);
  EXPECT_NEAR(json["kl"].get<double>(), -json["mean_log_likelihood"].get<double>() - std::log(6.0), 1e-9);

  // A repeated row: KL is no longer the log-likelihood shifted by log N.
  const std::string csv = scratch.file("repeated.csv");
  {
    std::ofstream rows(csv);
    rows << "1,1,1,0,0,0\n1,1,1,0,0,0\n0,1,1,1,0,0\n";
  }
  auto repeated = train(out, {"--json"});
  repeated[2] = "csv:" + csv;
  const auto other = parse_json_output(run_cli(repeated, scratch));
  EXPECT_EQ(other["rows_distinct"], false);
  auto repeated_text = train(out, {});
  repeated_text[2] = "csv:" + csv;
  const auto plain = run_cli(repeated_text, scratch);
  EXPECT_EQ(plain.out.find("rows are distinct"), std::string::npos) << plain.out;
}

}  // namespace
