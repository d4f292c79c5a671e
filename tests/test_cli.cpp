// The `marbm` command line as users meet it: the built executable is run with
// its output captured; exit codes, one-line errors that name the input, JSON
// that parses, and numbers that agree with the library.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "cli_checks.hpp"
#include "cli_runner.hpp"
#include "marbm/communicator.hpp"
#include "marbm/data.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/exact.hpp"
#include "marbm/model_io.hpp"
#include "marbm/rbm.hpp"
#include "marbm/train.hpp"

namespace {

using marbm::test::CliResult;
using marbm::test::ScratchFolder;

using marbm::test::describe;
using marbm::test::expect_refusal;
using marbm::test::parse_json_output;
using marbm::test::run_cli;

// The reference experiment's setting (SPEC.md section 8), shortened.
std::vector<std::string> train_arguments(const std::string& out, long iterations = 2000) {
  return {"train", "--data",  "shifting-bars:6:3", "--hidden", "6",   "--method",
          "cd",    "--k",     "1",                 "--lr",     "0.2", "--batch",
          "6",     "--iters", std::to_string(iterations),      "--seed",   "5",   "--backend",
          "cpu",   "--out",   out,                 "--json"};
}

// Copies `arguments` with the value of `option` replaced (or the option
// removed when `value` is empty), or the pair appended when absent.
std::vector<std::string> with_option(std::vector<std::string> arguments, const std::string& option,
                                     const std::string& value) {
  for (std::size_t i = 0; i + 1 < arguments.size(); ++i) {
    if (arguments[i] == option) {
      if (value.empty()) {
        arguments.erase(arguments.begin() + static_cast<long>(i), arguments.begin() + static_cast<long>(i) + 2);
      } else {
        arguments[i + 1] = value;
      }
      return arguments;
    }
  }
  if (!value.empty()) {
    arguments.push_back(option);
    arguments.push_back(value);
  }
  return arguments;
}

// Relative agreement of two values computed from the same float32 parameters
// in float64: they differ only by summation order, far below 1e-9.
void expect_same_quantity(double a, double b, double relative) {
  EXPECT_TRUE(std::isfinite(a) && std::isfinite(b)) << a << " vs " << b;
  EXPECT_LE(std::fabs(a - b), relative * std::max(1.0, std::fabs(b))) << a << " vs " << b;
}

TEST(CliTrain, JsonKlMatchesEvalOfTheSavedModel) {
  ScratchFolder scratch;
  const std::string model = scratch.file("cd.safetensors");
  const auto trained = run_cli(train_arguments(model), scratch);
  const auto train_json = parse_json_output(trained);
  ASSERT_TRUE(std::filesystem::exists(model)) << describe(trained);
  EXPECT_EQ(train_json.value("out", ""), model);
  EXPECT_EQ(train_json.value("iterations", 0L), 2000);
  EXPECT_EQ(train_json.value("n_visible", 0), 6);
  EXPECT_EQ(train_json.value("n_hidden", 0), 6);
  ASSERT_TRUE(train_json.contains("seconds") && train_json["seconds"].is_number());
  ASSERT_TRUE(train_json["kl"].is_number()) << train_json.dump();
  ASSERT_TRUE(train_json["log_z"].is_number()) << train_json.dump();
  ASSERT_TRUE(train_json["mean_log_likelihood"].is_number()) << train_json.dump();
  const double kl = train_json["kl"].get<double>();
  // KL >= 0 always; below the uniform model's log(64/6) = 2.37 once trained.
  EXPECT_GE(kl, 0.0);
  EXPECT_LT(kl, std::log(64.0 / 6.0));
  // For the 6 equiprobable patterns, KL = -log 6 - mean log-likelihood.
  expect_same_quantity(kl, -std::log(6.0) - train_json["mean_log_likelihood"].get<double>(), 1e-9);

  const auto evaluated = run_cli({"eval", model, "--data", "shifting-bars:6:3", "--json"}, scratch);
  const auto eval_json = parse_json_output(evaluated);
  ASSERT_TRUE(eval_json["kl"].is_number()) << eval_json.dump();
  expect_same_quantity(eval_json["kl"].get<double>(), kl, 1e-9);
  expect_same_quantity(eval_json["log_z"].get<double>(), train_json["log_z"].get<double>(), 1e-9);
  EXPECT_EQ(eval_json.value("rows", 0), 6);

  // The file says how it was made.
  marbm::Metadata metadata;
  const marbm::Rbm rbm = marbm::load_rbm(model, &metadata);
  EXPECT_EQ(rbm.n_visible(), 6);
  EXPECT_EQ(metadata["method"], "cd");
  EXPECT_EQ(metadata["iterations"], "2000");
  EXPECT_EQ(metadata["seed"], "5");
  EXPECT_EQ(metadata["k"], "1");
  EXPECT_EQ(metadata["data"], "shifting-bars:6:3");
  ASSERT_EQ(metadata.count("final_kl"), 1u);
  expect_same_quantity(std::stod(metadata["final_kl"]), kl, 1e-12);
}

TEST(CliTrain, SameSeedSameModel) {
  ScratchFolder scratch;
  const std::string first = scratch.file("first.safetensors");
  const std::string second = scratch.file("second.safetensors");
  ASSERT_EQ(run_cli(train_arguments(first, 300), scratch).exit_code, 0);
  ASSERT_EQ(run_cli(train_arguments(second, 300), scratch).exit_code, 0);
  EXPECT_TRUE(marbm::load_rbm(first) == marbm::load_rbm(second));
  const std::string other = scratch.file("other.safetensors");
  ASSERT_EQ(run_cli(with_option(train_arguments(other, 300), "--seed", "6"), scratch).exit_code, 0);
  EXPECT_FALSE(marbm::load_rbm(first) == marbm::load_rbm(other));
}

// The start of `marbm train`: W, b and (with --init-visible-bias random) a
// from N(0, sigma^2) with the seed; by default a at the data's base rates.
// A rate of 1e-30 moves no float32 parameter, so the saved model is the start.
TEST(CliTrain, VisibleBiasesStartAtTheDataBaseRatesByDefault) {
  ScratchFolder scratch;
  const std::string data_path = scratch.file("skewed.csv");
  std::ofstream(data_path) << "1,0,0,1\n1,1,0,1\n1,0,0,0\n";
  const marbm::Dataset data = marbm::read_csv(data_path);
  auto arguments = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> all = {"train", "--data", "csv:" + data_path, "--hidden", "3", "--iters", "1", "--lr",
                                    "1e-30", "--batch", "3", "--seed", "4", "--backend", "cpu", "--out", out};
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };
  const std::string by_default = scratch.file("default.safetensors");
  ASSERT_EQ(run_cli(arguments(by_default, {}), scratch).exit_code, 0);
  marbm::Rbm expected = marbm::Rbm::random(4, 3, 0.01, 4);
  const marbm::Rbm random_start = expected;
  marbm::set_base_rate_visible_bias(expected, data);
  EXPECT_TRUE(marbm::load_rbm(by_default) == expected);
  const std::string random = scratch.file("random.safetensors");
  ASSERT_EQ(run_cli(arguments(random, {"--init-visible-bias", "random"}), scratch).exit_code, 0);
  EXPECT_TRUE(marbm::load_rbm(random) == random_start);
  EXPECT_EQ(run_cli(arguments(random, {"--init-visible-bias", "zero"}), scratch).exit_code, 2);
}

TEST(CliTrain, ModeAssistedRunTakesModeSteps) {
  ScratchFolder scratch;
  const std::string model = scratch.file("mode.safetensors");
  auto arguments = with_option(train_arguments(model), "--method", "mode");
  arguments = with_option(arguments, "--mode-solver", "exhaustive");
  arguments = with_option(arguments, "--eval-every", "1000");
  // One JSON line per evaluation as it happens, then the summary.
  const auto lines = marbm::test::parse_json_lines(run_cli(arguments, scratch));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[1]["event"], "evaluation");
  EXPECT_EQ(lines[1]["iteration"], 1000);
  const auto& json = lines.back();
  EXPECT_EQ(json["event"], "summary");
  // Evaluations at 0, 1000 and 2000, the last one the final result.
  ASSERT_TRUE(json["history"].is_array()) << json.dump();
  ASSERT_EQ(json["history"].size(), 3u) << json.dump();
  EXPECT_EQ(json["history"][1].value("iteration", 0L), 1000);
  EXPECT_EQ(json["history"][2]["kl"], json["kl"]);
  EXPECT_LE(json["history"][1].value("mode_steps", 0L), json.value("mode_steps", 0L));
  // P_mode averages about 0.07 over the schedule with the defaults, so ~140
  // of 2000 updates are mode steps; zero would have probability ~e^-140.
  EXPECT_GT(json.value("mode_steps", 0L), 0);
  ASSERT_TRUE(json["kl"].is_number()) << json.dump();
  const auto evaluated = parse_json_output(run_cli({"eval", model, "--data", "shifting-bars:6:3", "--json"}, scratch));
  expect_same_quantity(evaluated["kl"].get<double>(), json["kl"].get<double>(), 1e-9);
  marbm::Metadata metadata;
  marbm::load_rbm(model, &metadata);
  EXPECT_EQ(metadata["method"], "mode");
  EXPECT_EQ(metadata["mode_solver"], "exhaustive");
}

TEST(CliTrain, HumanOutputPrintsMetricsLinesWithoutProgressOffTerminal) {
  ScratchFolder scratch;
  const std::string model = scratch.file("human.safetensors");
  auto arguments = train_arguments(model, 1000);
  arguments.pop_back();  // drop --json
  arguments = with_option(arguments, "--eval-every", "250");
  const auto result = run_cli(arguments, scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  // stderr is a file here: metric lines only, no carriage-return progress.
  EXPECT_EQ(result.err.find('\r'), std::string::npos);
  EXPECT_NE(result.err.find("iteration 250/1000"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("iteration 1000/1000"), std::string::npos) << result.err;
  EXPECT_NE(result.out.find("wrote " + model), std::string::npos) << result.out;
}

TEST(CliTrain, EpochsOnCsvDataAndEvalOnTheSameFile) {
  ScratchFolder scratch;
  // Bars and stripes 3x3 written as CSV: 14 rows of 9 values.
  const marbm::Dataset bars = marbm::bars_and_stripes(3);
  const std::string csv = scratch.file("bars.csv");
  {
    std::ofstream out(csv);
    out << "# bars and stripes 3x3\n";
    for (int r = 0; r < bars.n_rows; ++r) {
      for (int c = 0; c < bars.n_cols; ++c) out << (c ? "," : "") << int(bars.row(r)[c]);
      out << '\n';
    }
  }
  const std::string model = scratch.file("bars.safetensors");
  auto arguments = with_option(train_arguments(model), "--iters", "");
  arguments = with_option(arguments, "--data", "csv:" + csv);
  arguments = with_option(arguments, "--batch", "5");
  arguments = with_option(arguments, "--epochs", "40");
  const auto json = parse_json_output(run_cli(arguments, scratch));
  marbm::TrainConfig config;
  config.batch_size = 5;
  config.epochs = 40;
  EXPECT_EQ(json.value("iterations", 0L), marbm::total_iterations(config, bars.n_rows));
  EXPECT_EQ(json.value("n_visible", 0), 9);
  ASSERT_TRUE(json["kl"].is_number()) << json.dump();
  const auto evaluated = parse_json_output(run_cli({"eval", model, "--data", "csv:" + csv, "--json"}, scratch));
  expect_same_quantity(evaluated["kl"].get<double>(), json["kl"].get<double>(), 1e-9);
  EXPECT_EQ(evaluated.value("rows", 0), 14);
}

TEST(CliTrain, DataFileNameThatIsNotUtf8) {
  // The name is quoted in the model's metadata and in the JSON output, both
  // UTF-8: the run must still save its model and print valid JSON.
  ScratchFolder scratch;
  const std::string csv = scratch.file("caf\xe9.csv");
  std::ofstream(csv) << "0,1,1\n1,0,0\n";
  const std::string model = scratch.file("latin1.safetensors");
  const std::vector<std::string> arguments = {"train", "--data", "csv:" + csv, "--hidden", "2", "--iters", "10",
                                              "--backend", "cpu", "--out", model, "--json"};
  const auto json = parse_json_output(run_cli(arguments, scratch));
  EXPECT_EQ(json.value("iterations", 0L), 10);
  EXPECT_TRUE(std::filesystem::exists(model));
  const auto evaluated = parse_json_output(run_cli({"eval", model, "--data", "csv:" + csv, "--json"}, scratch));
  EXPECT_EQ(evaluated.value("rows", 0), 2);
}

TEST(CliTrain, ProgressLineOnlyOnATerminal) {
  ScratchFolder scratch;
  const std::string model = scratch.file("progress.safetensors");
  auto arguments = train_arguments(model, 20000);
  arguments.pop_back();  // drop --json
  const auto result =
      marbm::test::run_program(MARBM_CLI_PATH, arguments, scratch, std::chrono::seconds(120), /*stderr_terminal=*/true);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  // The line is redrawn in place (carriage return) and erased at the end
  // (erase-line escape), so the summary on stdout is not interleaved with it.
  EXPECT_NE(result.err.find("\rtraining "), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("20000/20000"), std::string::npos) << result.err;
  EXPECT_NE(result.err.rfind("\r\033[K"), std::string::npos) << result.err;
  EXPECT_EQ(result.err.find("error"), std::string::npos) << result.err;
}

TEST(CliRefusal, ModeOptionsRefusedByTheSearchGiveOneLine) {
  // Refused inside the search, after the backend was chosen: with the default
  // --backend auto and no device, no note may come before the error line.
  ScratchFolder scratch;
  const std::string model = scratch.file("model.safetensors");
  marbm::save_rbm(model, marbm::Rbm::random(6, 5, 0.5, 1));
  expect_refusal(run_cli({"mode", model, "--solver", "sa", "--beta-hot", "5", "--beta-cold", "1"}, scratch), 2,
                 "beta_cold");
  expect_refusal(run_cli({"mode", model, "--solver", "exhaustive", "--max-enumerated-units", "3"}, scratch), 1,
                 "beyond the limit of");
}

TEST(CliStudy, OutputFolderWithATrailingSlashIsCreated) {
  ScratchFolder scratch;
  const std::string folder = scratch.file("study");
  const CliResult result = run_cli({"study", "--out", folder + "/", "--runs", "1", "--iters", "10", "--eval-every",
                                    "5", "--no-plot"},
                                   scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(std::filesystem::is_regular_file(folder + "/kl.csv"));
  EXPECT_TRUE(std::filesystem::is_regular_file(folder + "/summary.json"));
}

TEST(CliEval, LogZMatchesTheLibrary) {
  ScratchFolder scratch;
  struct Case {
    int n, m;
    double sigma;
    std::uint64_t seed;
  };
  // Small models against brute force over both layers; larger, strongly
  // coupled ones against the library's own exact enumeration.
  for (const Case c : {Case{9, 7, 1.0, 11}, Case{5, 12, 3.0, 12}, Case{40, 14, 2.0, 13}, Case{18, 60, 4.0, 14}}) {
    SCOPED_TRACE(std::to_string(c.n) + "x" + std::to_string(c.m));
    const marbm::Rbm rbm = marbm::Rbm::random(c.n, c.m, c.sigma, c.seed);
    const std::string path = scratch.file("random-" + std::to_string(c.seed) + ".safetensors");
    marbm::save_rbm(path, rbm);
    const double expected =
        c.n + c.m <= 18 ? marbm::log_partition_brute_force(rbm) : marbm::log_partition_exact(rbm);
    const auto json = parse_json_output(run_cli({"eval", path, "--json"}, scratch));
    ASSERT_TRUE(json["log_z"].is_number()) << json.dump();
    // The acceptance criterion: 1e-6 relative.
    EXPECT_LE(std::fabs(json["log_z"].get<double>() - expected), 1e-6 * std::fabs(expected));
    EXPECT_EQ(json.value("n_visible", 0), c.n);
    EXPECT_FALSE(json.contains("kl"));
  }
}

TEST(CliInfo, JsonDescribesTheBuild) {
  ScratchFolder scratch;
  const auto json = parse_json_output(run_cli({"info", "--json"}, scratch));
  EXPECT_EQ(json.value("version", ""), marbm::version());
  ASSERT_TRUE(json["cuda_compiled"].is_boolean());
  EXPECT_EQ(json["cuda_compiled"].get<bool>(), marbm::cuda_compiled());
  ASSERT_TRUE(json["devices"].is_array());
  EXPECT_EQ(json["devices"].size(), marbm::cuda_devices().size());
  EXPECT_FALSE(json.value("cpu_engine", "").empty());
  // The CUDA runtime version is known exactly when the CUDA engine is built.
  ASSERT_TRUE(json.contains("cuda_runtime_version") && json.contains("cuda_driver_version")) << json.dump();
  EXPECT_EQ(json["cuda_runtime_version"].is_string(), marbm::cuda_compiled()) << json.dump();
  EXPECT_EQ(marbm::cuda_versions().runtime > 0, marbm::cuda_compiled());
  // The library always links an OpenMP runtime, so the tool finds it.
  ASSERT_TRUE(json["openmp_threads"].is_number_integer()) << json.dump();
  EXPECT_GE(json["openmp_threads"].get<int>(), 1);
  // Scale-out: MPI and NCCL as built; NCCL's version only where it loads.
  ASSERT_TRUE(json["mpi_compiled"].is_boolean() && json["nccl_compiled"].is_boolean()) << json.dump();
  EXPECT_EQ(json["mpi_compiled"].get<bool>(), marbm::mpi_compiled());
  EXPECT_EQ(json["nccl_compiled"].get<bool>(), marbm::nccl_compiled());
  if (!marbm::cuda_compiled()) EXPECT_FALSE(marbm::nccl_compiled());
  EXPECT_EQ(json["nccl_version"].is_string(), marbm::nccl_version() > 0) << json.dump();
  if (marbm::nccl_version() > 0) EXPECT_TRUE(std::regex_match(json["nccl_version"].get<std::string>(), std::regex("2\\.[0-9]+\\.[0-9]+")));
  if (!marbm::nccl_compiled()) EXPECT_EQ(marbm::nccl_version(), 0);
}

TEST(CliInfo, TextNamesMpiAndNccl) {
  ScratchFolder scratch;
  const CliResult run = run_cli({"info"}, scratch);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string expected = std::string("scale-out: MPI ") + (marbm::mpi_compiled() ? "compiled" : "not compiled") +
                               ", NCCL " + (marbm::nccl_compiled() ? "" : "not compiled");
  EXPECT_NE(run.out.find(expected), std::string::npos) << run.out;
}

// ------------------------------------------------------------------ refusals

struct Refusal {
  const char* name;
  std::vector<std::string> arguments;
  int status;
  std::string needle;
};

TEST(CliRefusal, TrainOptions) {
  ScratchFolder scratch;
  const std::string model = scratch.file("m.safetensors");
  const auto base = train_arguments(model);
  const std::string missing_csv = scratch.file("missing.csv");
  const std::string bad_csv = scratch.file("bad.csv");
  std::ofstream(bad_csv) << "0,1,1\n1,2,0\n";
  const std::vector<Refusal> refusals = {
      {"unknown option", with_option(base, "--bogus", "3"), 2, "--bogus"},
      {"bad number", with_option(base, "--lr", "fast"), 2, "--lr"},
      {"NaN learning rate", with_option(base, "--lr", "nan"), 2, "--lr"},
      {"infinite learning rate", with_option(base, "--lr", "inf"), 2, "--lr"},
      {"negative learning rate", with_option(base, "--lr", "-0.1"), 2, "--lr"},
      {"negative k", with_option(base, "--k", "-1"), 2, "--k"},
      {"fractional k", with_option(base, "--k", "1.5"), 2, "--k"},
      {"zero hidden", with_option(base, "--hidden", "0"), 2, "--hidden"},
      {"unknown method", with_option(base, "--method", "gradient"), 2, "--method"},
      {"unknown backend", with_option(base, "--backend", "tpu"), 2, "--backend"},
      {"momentum of one", with_option(base, "--momentum", "1"), 2, "--momentum"},
      {"iters and epochs", with_option(base, "--epochs", "3"), 2, "--epochs"},
      {"no length", with_option(base, "--iters", ""), 2, "--iters"},
      {"no data", with_option(base, "--data", ""), 2, "--data"},
      {"mode option without mode", with_option(base, "--p-max", "0.5"), 2, "--p-max"},
      {"chains without pcd", with_option(base, "--chains", "10"), 2, "--chains"},
      // With --backend auto, as a user would run it: no fallback note before the error.
      {"exact beyond the limit",
       with_option(with_option(with_option(base, "--method", "exact"), "--exact-max-units", "3"), "--backend", "auto"),
       2, "--exact-max-units 3"},
      {"p-max above one", with_option(with_option(base, "--method", "mode"), "--p-max", "1.5"), 2, "--p-max"},
      {"unknown mode step", with_option(with_option(base, "--method", "mode"), "--mode-step", "both"), 2,
       "--mode-step"},
      {"zero mode lr factor", with_option(with_option(base, "--method", "mode"), "--mode-lr-factor", "0"), 2,
       "--mode-lr-factor"},
      {"mode step without mode", with_option(base, "--mode-step", "add"), 2, "--mode-step"},
      {"bad initial biases", with_option(base, "--init-visible-bias", "zero"), 2, "--init-visible-bias"},
      {"out folder missing", with_option(base, "--out", scratch.file("no-such-folder/m.safetensors")), 2,
       "no-such-folder"},
      {"out is a folder", with_option(base, "--out", scratch.path().string()), 2, scratch.path().string()},
      {"bad data spec", with_option(base, "--data", "nonsense:3"), 2, "nonsense"},
      {"bad generator size", with_option(base, "--data", "shifting-bars:6:9"), 2, "shifting"},
      {"missing data file", with_option(base, "--data", "csv:" + missing_csv), 1, missing_csv},
      {"non-binary data", with_option(base, "--data", "csv:" + bad_csv), 1, bad_csv},
  };
  for (const auto& refusal : refusals) {
    SCOPED_TRACE(refusal.name);
    expect_refusal(run_cli(refusal.arguments, scratch), refusal.status, refusal.needle);
  }
  EXPECT_FALSE(std::filesystem::exists(model)) << "a refused run must not write a model";
}

TEST(CliRefusal, CudaBackendWithoutDevice) {
  if (!marbm::cuda_devices().empty()) GTEST_SKIP() << "a CUDA device is usable here";
  ScratchFolder scratch;
  const std::string model = scratch.file("m.safetensors");
  expect_refusal(run_cli(with_option(train_arguments(model), "--backend", "cuda"), scratch), 1, "cuda");
  EXPECT_FALSE(std::filesystem::exists(model));
}

TEST(CliRefusal, EvalInputs) {
  ScratchFolder scratch;
  const std::string good = scratch.file("good.safetensors");
  marbm::save_rbm(good, marbm::Rbm::random(6, 5, 0.5, 1));

  const std::string truncated = scratch.file("truncated.safetensors");
  {
    const std::string bytes = marbm::test::read_whole_file(good);
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() - 20);
  }
  const std::string text = scratch.file("text.safetensors");
  std::ofstream(text) << "this is not a model\n";
  const std::string empty = scratch.file("empty.safetensors");
  std::ofstream{empty};
  const std::string missing = scratch.file("missing.safetensors");

  const std::vector<Refusal> refusals = {
      {"missing model", {"eval", missing}, 1, missing},
      {"truncated model", {"eval", truncated}, 1, truncated},
      {"not a model", {"eval", text}, 1, text},
      {"empty file", {"eval", empty}, 1, empty},
      // Beyond the enumeration limit eval estimates log Z by AIS (test_cli_ais.cpp).
      {"one AIS run", {"eval", good, "--ais", "--ais-runs", "1"}, 2, "--ais-runs"},
      {"AIS schedule too short", {"eval", good, "--ais", "--ais-intervals", "2"}, 2, "--ais-intervals"},
      {"data width mismatch", {"eval", good, "--data", "shifting-bars:7:3"}, 1, "shifting-bars:7:3"},
      {"bad data spec", {"eval", good, "--data", "bars:3"}, 2, "bars:3"},
      // A name with a line break still gives one line (the break becomes a space).
      {"file name with a line break", {"eval", scratch.file("two\nlines.safetensors")}, 1, "two lines.safetensors"},
      {"data spec with a line break", {"eval", good, "--data", "bars:\n3"}, 2, "bars: 3"},
      {"no model", {"eval"}, 2, "model"},
      {"no command", {}, 2, "marbm --help"},
      // CLI11 reports the missing subcommand before the stray word.
      {"unknown command", {"fly"}, 2, "'fly'"},
  };
  for (const auto& refusal : refusals) {
    SCOPED_TRACE(refusal.name);
    expect_refusal(run_cli(refusal.arguments, scratch), refusal.status, refusal.needle);
  }
}

}  // namespace

namespace {

TEST(CliRefusal, MissingCommand) {
  ScratchFolder scratch;
  expect_refusal(run_cli({}, scratch), 2, "subcommand");
}

}  // namespace
