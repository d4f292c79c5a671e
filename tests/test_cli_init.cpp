// `marbm train --init MODEL`: continuing a saved model, and the refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cli_checks.hpp"
#include "cli_runner.hpp"
#include "marbm/model_io.hpp"
#include "marbm/rbm.hpp"

namespace {

using marbm::test::describe;
using marbm::test::expect_refusal;
using marbm::test::run_cli;
using marbm::test::ScratchFolder;

std::vector<std::string> train(const std::string& out, std::vector<std::string> extra) {
  std::vector<std::string> arguments = {"train", "--data", "shifting-bars:6:3", "--iters", "300", "--batch", "6",
                                        "--backend", "cpu", "--out", out};
  arguments.insert(arguments.end(), extra.begin(), extra.end());
  return arguments;
}

TEST(CliTrainInit, ContinuesTheSavedModel) {
  ScratchFolder scratch;
  const std::string first = scratch.file("first.safetensors");
  const auto trained = run_cli(train(first, {"--hidden", "5", "--lr", "0.2", "--seed", "1"}), scratch);
  ASSERT_EQ(trained.exit_code, 0) << describe(trained);
  // A learning rate of 1e-12 moves no float32 parameter of size ~0.1..10 by
  // more than an ulp per update: the result is the starting model.
  const std::string still = scratch.file("still.safetensors");
  const auto continued = run_cli(train(still, {"--init", first, "--lr", "1e-12", "--seed", "2"}), scratch);
  ASSERT_EQ(continued.exit_code, 0) << describe(continued);
  marbm::Metadata metadata;
  const marbm::Rbm start = marbm::load_rbm(first);
  const marbm::Rbm end = marbm::load_rbm(still, &metadata);
  ASSERT_EQ(end.n_hidden(), 5);
  EXPECT_EQ(metadata["init"], first);
  EXPECT_EQ(metadata.count("init_sigma"), 0u);
  for (std::size_t k = 0; k < start.weights().size(); ++k) {
    EXPECT_NEAR(end.weights()[k], start.weights()[k], 1e-5 * (1 + std::fabs(start.weights()[k]))) << k;
  }
  // A fresh model of the same shape is nowhere near it.
  EXPECT_GT(std::fabs(start.weights()[0]), 0.05);
}

TEST(CliTrainInit, Refusals) {
  ScratchFolder scratch;
  const std::string model = scratch.file("m.safetensors");
  marbm::save_rbm(model, marbm::Rbm::random(6, 4, 0.1, 1));
  const std::string out = scratch.file("out.safetensors");
  expect_refusal(run_cli(train(out, {}), scratch), 2, "--hidden");
  expect_refusal(run_cli(train(out, {"--init", model, "--hidden", "5"}), scratch), 2, "--hidden 5");
  expect_refusal(run_cli(train(out, {"--init", model, "--init-sigma", "0.1"}), scratch), 2, "--init");
  auto wide = train(out, {"--init", model});
  wide[2] = "shifting-bars:7:3";
  expect_refusal(run_cli(wide, scratch), 1, "--init " + model);
  expect_refusal(run_cli(train(out, {"--init", scratch.file("missing.safetensors")}), scratch), 1, "missing.safetensors");
}

}  // namespace
