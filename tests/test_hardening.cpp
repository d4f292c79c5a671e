// Nothing lost, nothing silent: hostile and clumsy inputs. Every exception
// leaving the library is a marbm::Error; memory, run counts and model files
// are bounded before anything is allocated; divergence stops a run at once;
// user strings never reach gnuplot's parser; temporaries are recognisable and
// cleaned up; one writer per study folder; messages are printable; and each
// leniency of the command line is a decision tested here.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "cli_runner.hpp"
#include "detail/files.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/model_io.hpp"
#include "marbm/rbm.hpp"
#include "marbm/study.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

namespace fs = std::filesystem;
using test::CliResult;
using test::describe;
using test::expect_refusal;
using test::ScratchFolder;

CliResult run_cli(const std::vector<std::string>& arguments, const ScratchFolder& scratch,
                  std::chrono::seconds limit = std::chrono::seconds(120)) {
  return test::run_program(MARBM_CLI_PATH, arguments, scratch, limit);
}

// AddressSanitizer reserves terabytes of address space at start, so a
// sanitized marbm cannot run under `ulimit -v` at all.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool address_sanitizer = true;
#else
constexpr bool address_sanitizer = false;
#endif
#else
constexpr bool address_sanitizer = false;
#endif

// The CLI under `ulimit -v kib` (a shell sets the limit, then execs marbm);
// without the limit in a sanitizer build.
CliResult run_cli_limited(long kib, const std::vector<std::string>& arguments, const ScratchFolder& scratch,
                          std::chrono::seconds limit = std::chrono::seconds(120)) {
  if (address_sanitizer) return run_cli(arguments, scratch, limit);
  std::vector<std::string> shell = {"-c", "ulimit -v " + std::to_string(kib) + " && exec \"$0\" \"$@\"",
                                    MARBM_CLI_PATH};
  shell.insert(shell.end(), arguments.begin(), arguments.end());
  return test::run_program("/bin/sh", shell, scratch, limit);
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string read_bytes(const fs::path& path) { return test::read_whole_file(path); }

// A safetensors file: length field, header text, data.
std::string safetensors(const std::string& header, const std::string& data = {}) {
  std::string bytes;
  const std::uint64_t length = header.size();
  for (int k = 0; k < 8; ++k) bytes.push_back(static_cast<char>((length >> (8 * k)) & 0xff));
  return bytes + header + data;
}

// Loads through the library: only a marbm::Error may come out.
void expect_marbm_error_only(const std::string& path, const std::string& what) {
  try {
    load_rbm(path);
    ADD_FAILURE() << what << ": loaded without error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_FALSE(message.empty()) << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": an exception that is not a marbm::Error: " << e.what();
  }
}

// ------------------------------------------------------------------ model files (items 3, 10, 11)

TEST(HardenedModelFiles, HeaderNumberBeyondDoubleIsADataError) {
  ScratchFolder scratch;
  const std::string path = scratch.file("big.safetensors");
  write_bytes(path, safetensors("{\"x\":1e999}"));
  try {
    load_rbm(path);
    ADD_FAILURE() << "loaded";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a marbm::DataError: " << e.what();
  }
}

TEST(HardenedModelFiles, EveryMalformedFileAndFuzzSeedGivesOnlyMarbmErrors) {
  ScratchFolder scratch;
  const std::string good = "{\"weights\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]},"
                           "\"visible_bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                           "\"hidden_bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
  const std::vector<std::string> headers = {
      "{\"x\":1e999}", "{\"x\":-1e999}", "[1e999]", "{\"weights\":{\"dtype\":\"F32\",\"shape\":[1e999],"
      "\"data_offsets\":[0,4]}}",
      "{\"weights\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}}",
      "{\"weights\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,18446744073709551615]}}",
      "{\"weights\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[-1,4]}}",
      "{\"weights\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
      "{\"__metadata__\":{\"a\":\"\\ud800\"}}", "{\"a\":\"\xff\xfe\"}", "{\"__metadata__\":[1]}",
      "{\"weights\":null}", "{\"weights\":{\"dtype\":7,\"shape\":[1,1],\"data_offsets\":[0,4]}}", good.substr(0, 40),
      "{\"weights\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,34359738372]},"
      "\"visible_bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[34359738372,34359738376]},"
      "\"hidden_bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[34359738376,34359738380]}}"};
  int k = 0;
  for (const std::string& header : headers) {
    const std::string path = scratch.file("bad-" + std::to_string(k++));
    write_bytes(path, safetensors(header, std::string(12, '\0')));
    expect_marbm_error_only(path, header);
  }
  // Length fields that lie either way.
  write_bytes(scratch.file("short-length"), safetensors(good, std::string(12, '\0')).replace(0, 1, "\x05"));
  expect_marbm_error_only(scratch.file("short-length"), "header length too short");
  // The fuzzer's seed corpus for the model loader, loaded through the library.
  const fs::path corpus = fs::path(MARBM_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "model";
  ASSERT_TRUE(fs::is_directory(corpus)) << corpus;
  int seeds = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    ++seeds;
    try {
      load_rbm(entry.path().string());
    } catch (const Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << entry.path() << ": an exception that is not a marbm::Error: " << e.what();
    }
  }
  EXPECT_GE(seeds, 3);
}

TEST(HardenedModelFiles, DevZeroAndHugeTensorClaimsAreRefusedBeforeReading) {
  const auto start = std::chrono::steady_clock::now();
  try {
    load_rbm("/dev/zero");
    ADD_FAILURE() << "loaded /dev/zero";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("implausible safetensors header length 0"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));

  // A header promising 32 GiB of tensors: refused by the size cap, not read.
  ScratchFolder scratch;
  const std::string path = scratch.file("huge.safetensors");
  const std::uint64_t w = (std::uint64_t{1} << 35) + 4;
  const std::string header = "{\"weights\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0," +
                             std::to_string(w) + "]}}";
  write_bytes(path, safetensors(header, std::string(16, '\0')));
  try {
    load_rbm(path);
    ADD_FAILURE() << "loaded";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("a model file may hold"), std::string::npos) << e.what();
  }
}

TEST(HardenedModelFiles, EvalOfDevZeroIsOneLineAtOnce) {
  ScratchFolder scratch;
  const CliResult result = run_cli({"eval", "/dev/zero"}, scratch, std::chrono::seconds(20));
  expect_refusal(result, 1, "/dev/zero: implausible safetensors header length 0");
}

TEST(HardenedModelFiles, BinaryBytesInAModelAreQuotedPrintably) {
  ScratchFolder scratch;
  const std::string path = scratch.file("binary.safetensors");
  const std::string header = "{\"weights\":{\"dtype\":\"\x1b[31mX\",\"shape\":[1,1],\"data_offsets\":[0,4]},"
                             "\"visible_bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                             "\"hidden_bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
  // JSON forbids a raw ESC in a string: write it escaped, as JSON allows.
  std::string escaped = header;
  escaped.replace(escaped.find('\x1b'), 1, "\\u001b");
  write_bytes(path, safetensors(escaped, std::string(12, '\0')));
  const CliResult result = run_cli({"eval", path}, scratch);
  expect_refusal(result, 1, "has dtype \\x1b[31mX");
}

// ------------------------------------------------------------------ data messages (item 11)

TEST(HardenedMessages, NulAndControlBytesInACsvAreQuotedInFull) {
  ScratchFolder scratch;
  const std::string path = scratch.file("nul.csv");
  write_bytes(path, std::string("0,1\n1,\0x\n", 9));
  try {
    read_csv(path);
    ADD_FAILURE() << "read";
  } catch (const DataError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path + ":2: value '\\x00x' is not 0 or 1"), std::string::npos) << message;
  }
  const std::string escape = scratch.file("escape.csv");
  write_bytes(escape, "0,1\n1,\x1b]0;title\x07\n");
  const CliResult result = run_cli({"train", "--data", "csv:" + escape, "--hidden", "2", "--iters", "1", "--out",
                                    scratch.file("m.safetensors")},
                                   scratch);
  expect_refusal(result, 1, "value '\\x1b]0;title\\x07' is not 0 or 1");
}

TEST(HardenedMessages, Float64BeyondFloat32IsNamed) {
  ScratchFolder scratch;
  const std::string path = scratch.file("wide.safetensors");
  std::string data;
  auto put = [&](auto value) {
    const auto bits = std::bit_cast<std::conditional_t<sizeof(value) == 8, std::uint64_t, std::uint32_t>>(value);
    for (std::size_t k = 0; k < sizeof(value); ++k) data.push_back(static_cast<char>((bits >> (8 * k)) & 0xff));
  };
  put(1e300);
  put(0.0f);
  put(0.0f);
  write_bytes(path, safetensors("{\"weights\":{\"dtype\":\"F64\",\"shape\":[1,1],\"data_offsets\":[0,8]},"
                                "\"visible_bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                                "\"hidden_bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
                                data));
  const CliResult result = run_cli({"eval", path}, scratch);
  expect_refusal(result, 1, "weights[0] = 1e+300 does not fit in float32");
}

TEST(HardenedMessages, PrintableKeepsUtf8AndEscapesTheRest) {
  EXPECT_EQ(detail::printable("caf\xc3\xa9 ok"), "caf\xc3\xa9 ok");
  EXPECT_EQ(detail::printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(detail::printable("\xff\x1b\x7f"), "\\xff\\x1b\\x7f");
  EXPECT_EQ(detail::printable("\xc3"), "\\xc3");          // truncated sequence
  EXPECT_EQ(detail::printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
}

// ------------------------------------------------------------------ memory and threads (items 1, 8)

TEST(HardenedLimits, TrainingTooLargeForMemoryIsRefusedBeforeAllocating) {
  TrainConfig config;
  if (address_sanitizer && training_memory_bytes(config, 6, 1000000000, 6) <= available_memory_bytes()) {
    GTEST_SKIP() << "a sanitizer build cannot run under ulimit -v, and this machine has the memory";
  }
  ScratchFolder scratch;
  // 6 x 10^9 weights: 24 GB each copy. Under a 4 GiB address-space limit an
  // allocation would fail with "out of memory"; the guard refuses first.
  const CliResult result =
      run_cli_limited(4L << 20,
                      {"train", "--data", "shifting-bars:6:3", "--hidden", "1000000000", "--iters", "10", "--backend",
                       "cpu", "--out", scratch.file("m.safetensors")},
                      scratch, std::chrono::seconds(60));
  expect_refusal(result, 1, "train: a 6 x 1000000000 model needs about");
  EXPECT_FALSE(fs::exists(scratch.file("m.safetensors")));
}

TEST(HardenedLimits, MemoryEstimateCountsEveryCopyChainsAndData) {
  TrainConfig config;
  config.method = TrainMethod::cd;
  config.batch_size = 10;
  const double cd = training_memory_bytes(config, 100, 50, 1000);
  EXPECT_GE(cd, 10.0 * 4 * 100 * 50 + 1000.0 * 100 * 5);
  config.method = TrainMethod::pcd;
  config.persistent_chains = 1000;
  EXPECT_GE(training_memory_bytes(config, 100, 50, 1000), cd + 4.0 * 1000 * 150);
  EXPECT_GT(available_memory_bytes(), 0.0);
  config.method = TrainMethod::cd;
  EXPECT_THROW(check_training_memory(config, 1 << 30, 1 << 30, 1), RuntimeFailure);
  EXPECT_NO_THROW(check_training_memory(config, 6, 6, 6));
}

TEST(HardenedLimits, ThreadsBeyondTheProcessorsAreClampedAndRunUnderAMemoryLimit) {
  ScratchFolder scratch;
  const CliResult result = run_cli_limited(
      8L << 20,
      {"train", "--data", "shifting-bars:6:3", "--hidden", "6", "--iters", "200", "--backend", "cpu", "--threads",
       "64", "--out", scratch.file("m.safetensors")},
      scratch, std::chrono::seconds(60));
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  // "trained cd 6x6 on ...: 200 updates in ... s on cpu (N threads, OpenBLAS)"
  const std::size_t at = result.out.find("on cpu (");
  ASSERT_NE(at, std::string::npos) << result.out;
  const long processors = ::sysconf(_SC_NPROCESSORS_ONLN);
  int threads = 0;
  ASSERT_EQ(std::sscanf(result.out.c_str() + at, "on cpu (%d thread", &threads), 1) << result.out;
  EXPECT_LE(threads, std::min<long>(64, processors)) << result.out;
  if (processors < 64) EXPECT_NE(result.err.find("--threads 64"), std::string::npos) << result.err;
  expect_refusal(run_cli({"train", "--data", "shifting-bars:6:3", "--hidden", "6", "--iters", "1", "--threads",
                          "100000", "--backend", "cpu", "--out", scratch.file("m.safetensors")},
                         scratch),
                 2, "--threads 100000");
}

// ------------------------------------------------------------------ divergence (item 4)

TrainConfig diverging_mode_config() {
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.learning_rate = 1e30;
  config.batch_size = 6;
  config.iterations = 20000;
  config.eval_every = 1000;
  config.seed = 0;
  return config;
}

TEST(HardenedDivergence, TrainStopsAtOnceKeepingTheLastFiniteModel) {
  const Dataset data = shifting_bars(6, 3);
  auto engine = make_engine(Backend::cpu, {});
  const Rbm initial = Rbm::random(6, 6, 0.01, 0);
  try {
    train(*engine, data, initial, diverging_mode_config());
    ADD_FAILURE() << "the run did not diverge";
  } catch (const TrainingDiverged& diverged) {
    EXPECT_LT(diverged.noticed_at, 20000);
    EXPECT_GT(diverged.noticed_at, diverged.last_finite_iteration);
    EXPECT_LE(diverged.noticed_at - diverged.last_finite_iteration, finite_check_every);
    EXPECT_NO_THROW(diverged.last_finite_model.check_finite("last finite model"));
    EXPECT_EQ(diverged.last_finite_model.n_hidden(), 6);
    for (const TrainMetrics& metrics : diverged.history) EXPECT_LE(metrics.iteration, diverged.last_finite_iteration);
    EXPECT_NE(std::string(diverged.what()).find("between updates " + std::to_string(diverged.last_finite_iteration) +
                                                " and " + std::to_string(diverged.noticed_at)),
              std::string::npos)
        << diverged.what();
  }
}

TEST(HardenedDivergence, CliStopsWithTheUpdateAndWritesTheLastFiniteModel) {
  ScratchFolder scratch;
  const std::string out = scratch.file("m.safetensors");
  const auto start = std::chrono::steady_clock::now();
  const CliResult result = run_cli({"train", "--data", "shifting-bars:6:3", "--hidden", "6", "--method", "mode", "--lr",
                                    "1e30", "--iters", "20000", "--eval-every", "1000", "--backend", "cpu", "--out",
                                    out},
                                   scratch);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(result.exit_code, 1) << describe(result);
  const auto lines = result.error_lines();
  ASSERT_FALSE(lines.empty());
  const std::string& last = lines.back();
  EXPECT_NE(last.find("marbm: error: train: the parameters became non-finite between updates"), std::string::npos)
      << last;
  EXPECT_NE(last.find("wrote the last finite model"), std::string::npos) << last;
  // No progress line after the divergence: at most the evaluations before it
  // (and the collapse warning such a run earns on the way).
  for (std::size_t k = 0; k + 1 < lines.size(); ++k) {
    EXPECT_TRUE(lines[k].find("kl ") != std::string::npos || lines[k].rfind("marbm: warning: ", 0) == 0) << lines[k];
  }
  Metadata metadata;
  const Rbm model = load_rbm(out, &metadata);
  EXPECT_NO_THROW(model.check_finite("saved"));
  ASSERT_TRUE(metadata.count("diverged_at"));
  EXPECT_LT(std::stol(metadata.at("diverged_at")), 20000);
  EXPECT_LT(std::stol(metadata.at("iterations")), std::stol(metadata.at("diverged_at")));
  (void)seconds;
}

TEST(HardenedDivergence, CdAtAHugeRateSaysTheKlIsWorseThanUniform) {
  ScratchFolder scratch;
  const CliResult result =
      run_cli({"train", "--data", "shifting-bars:6:3", "--hidden", "6", "--method", "cd", "--lr", "1e6", "--iters",
               "2000", "--backend", "cpu", "--out", scratch.file("m.safetensors")},
              scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_NE(result.err.find("marbm: note: the final KL"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("more than twice the uniform model's"), std::string::npos) << result.err;
  // A sane run says nothing of the kind, nor does a very short one that ends
  // a little above the uniform model's KL.
  const CliResult short_run = run_cli({"train", "--data", "shifting-bars:6:3", "--hidden", "3", "--iters", "10",
                                       "--backend", "cpu", "--out", scratch.file("s.safetensors")},
                                      scratch);
  ASSERT_EQ(short_run.exit_code, 0) << describe(short_run);
  EXPECT_EQ(short_run.err.find("uniform"), std::string::npos) << short_run.err;
  const CliResult sane = run_cli({"train", "--data", "shifting-bars:6:3", "--hidden", "6", "--lr", "0.2", "--iters",
                                  "500", "--backend", "cpu", "--out", scratch.file("n.safetensors")},
                                 scratch);
  ASSERT_EQ(sane.exit_code, 0) << describe(sane);
  EXPECT_EQ(sane.err.find("uniform"), std::string::npos) << sane.err;
}

TEST(HardenedDivergence, StudyRecordsADivergedRunAndKeepsTheOthers) {
  StudyConfig config;
  config.methods = {TrainMethod::cd, TrainMethod::mode};
  config.runs = 2;
  config.iterations = 4000;
  config.eval_every = 1000;
  config.learning_rate = 1e30;
  config.threads = 2;
  const StudyResult result = run_study(config);
  const MethodSummary& mode = result.summary.at(TrainMethod::mode);
  ASSERT_EQ(mode.diverged.size(), 2u);
  for (const auto& [run, at] : mode.diverged) {
    EXPECT_GT(at, 0);
    EXPECT_LT(at, 4000);
  }
  EXPECT_TRUE(std::isnan(mode.median_final_kl));
  const MethodSummary& cd = result.summary.at(TrainMethod::cd);
  EXPECT_TRUE(cd.diverged.empty());
  EXPECT_TRUE(std::isfinite(cd.median_final_kl));

  ScratchFolder scratch;
  write_study_csv(result, scratch.file("kl.csv"));
  write_study_summary(result, scratch.file("summary.json"));
  const std::string csv = read_bytes(scratch.file("kl.csv"));
  EXPECT_EQ(csv.rfind("method,run,iteration,kl,p_mode,status\n", 0), 0u);
  const std::string row = "mode,0," + std::to_string(mode.diverged[0].second) + ",nan,nan,diverged\n";
  EXPECT_NE(csv.find(row), std::string::npos) << csv;
  EXPECT_NE(csv.find("cd,1,4000,"), std::string::npos) << csv;
  const auto summary = nlohmann::json::parse(read_bytes(scratch.file("summary.json")));
  EXPECT_EQ(summary["mode"]["diverged"].size(), 2u);
  EXPECT_EQ(summary["mode"]["diverged"][0]["diverged_at"], mode.diverged[0].second);
  EXPECT_TRUE(summary["mode"]["median_final_kl"].is_null());
  EXPECT_TRUE(summary["cd"]["median_final_kl"].is_number());
  EXPECT_TRUE(summary["cd"]["diverged"].empty());
}

// ------------------------------------------------------------------ study outputs (items 2, 6, 7, 9)

std::vector<std::string> short_study_arguments(const std::string& out) {
  return {"study", "--runs", "1", "--iters", "200", "--eval-every", "100", "--methods", "cd", "--threads", "1",
          "--out", out};
}

bool gnuplot_installed() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

TEST(HardenedStudy, RunsTimesMethodsAreBoundedInOneLine) {
  ScratchFolder scratch;
  expect_refusal(run_cli({"study", "--runs", "536870912", "--methods", "cd,pcd,mode,exact", "--out",
                          scratch.file("s")},
                         scratch),
                 2, "--runs 536870912 x 4 methods is 2147483648 runs");
  StudyConfig config;
  config.runs = 1'000'000;
  config.iterations = 20000;
  config.eval_every = 1;
  EXPECT_THROW(run_study(config), UsageError);
}

TEST(HardenedStudy, OutputFolderWithANewlineNeverReachesGnuplot) {
  ScratchFolder scratch;
  fs::create_directories(scratch.path() / "o2");
  const fs::path unrelated = scratch.path() / "o2" / "new";
  write_bytes(unrelated, "keep me\n");
  const std::string out = (scratch.path() / "o2" / "new\nline").string();
  const CliResult result = run_cli(short_study_arguments(out), scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ(read_bytes(unrelated), "keep me\n");
  EXPECT_TRUE(fs::is_regular_file(fs::path(out) / "kl.csv"));
  if (gnuplot_installed()) {
    EXPECT_TRUE(fs::is_regular_file(fs::path(out) / "kl.png")) << describe(result);
    EXPECT_EQ(result.err.find("gnuplot failed"), std::string::npos) << result.err;
  }
  // Nothing but the outputs is left in the folder.
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "kl.csv" || name == "summary.json" || name == "kl.png" || name == ".marbm.lock") << name;
  }
}

TEST(HardenedStudy, DataNamesCannotInjectGnuplotCommands) {
  // A data file whose name carries a quote, a newline and a backquote command:
  // the plot title must stay text.
  ScratchFolder scratch;
  const std::string name = scratch.file("x'\"\nset output 'evil.png'\n`touch injected`.csv");
  write_bytes(name, "0,1,1\n1,0,1\n1,1,0\n");
  StudyConfig config;
  config.data = "csv:" + name;
  config.hidden = 2;
  config.methods = {TrainMethod::cd};
  config.runs = 1;
  config.iterations = 20;
  config.eval_every = 10;
  config.threads = 1;
  const StudyResult result = run_study(config);
  std::string message;
  const std::string png = scratch.file("kl.png");
  const bool plotted = plot_study(result, scratch.file("kl.csv"), png, &message);
  if (gnuplot_installed()) EXPECT_TRUE(plotted) << message;
  EXPECT_FALSE(fs::exists(scratch.path() / "evil.png"));
  EXPECT_FALSE(fs::exists(scratch.path() / "injected"));
  EXPECT_FALSE(fs::exists("injected"));
}

// The pid of a process that has exited (and been reaped).
long dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

TEST(HardenedStudy, StaleTemporariesOfDeadProcessesAreRemovedLiveOnesKept) {
  ScratchFolder scratch;
  const fs::path out = scratch.path() / "s";
  fs::create_directories(out);
  const std::string dead = std::to_string(dead_pid());
  const std::string live = std::to_string(::getpid());
  const std::vector<std::string> stale = {"kl.csv.marbm-tmp-" + dead + "-0", "plot.marbm-tmp-" + dead + "-3.gp",
                                          "plot.marbm-tmp-" + dead + "-4.png", "summary.json.marbm-tmp-" + dead + "-1"};
  for (const std::string& name : stale) write_bytes(out / name, "half");
  const std::string kept = "kl.csv.marbm-tmp-" + live + "-0";
  write_bytes(out / kept, "in use");
  write_bytes(out / "notes.marbm-tmp-x", "not ours");
  const CliResult result = run_cli(short_study_arguments(out.string()), scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  for (const std::string& name : stale) EXPECT_FALSE(fs::exists(out / name)) << name;
  EXPECT_TRUE(fs::exists(out / kept));
  EXPECT_TRUE(fs::exists(out / "notes.marbm-tmp-x"));

  // A killed save's temporary beside a model goes with the next save there.
  const std::string model = scratch.file("m.safetensors");
  write_bytes(model + ".marbm-tmp-" + dead + "-0", "half a model");
  save_rbm(model, Rbm::random(2, 2, 0.1, 1));
  EXPECT_FALSE(fs::exists(model + ".marbm-tmp-" + dead + "-0"));
}

TEST(HardenedStudy, OutputsAreFromOneStudyOrMarkedIncomplete) {
  ScratchFolder scratch;
  const fs::path out = scratch.path() / "s";
  fs::create_directories(out);
  // What an interrupted earlier study could leave: its marker and an old plot.
  write_bytes(out / "INCOMPLETE", "old");
  write_bytes(out / "kl.png", "an old plot");
  const CliResult result = run_cli([&] {
    auto arguments = short_study_arguments(out.string());
    arguments.push_back("--no-plot");
    return arguments;
  }(), scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_FALSE(fs::exists(out / "INCOMPLETE"));
  EXPECT_FALSE(fs::exists(out / "kl.png")) << "a plot of another study beside the new kl.csv";
  EXPECT_TRUE(fs::exists(out / "kl.csv"));
}

TEST(HardenedStudy, SecondWriterOfAFolderIsRefusedInOneLine) {
  ScratchFolder scratch;
  const fs::path out = scratch.path() / "s";
  fs::create_directories(out);
  const int fd = ::open((out / ".marbm.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const CliResult refused = run_cli(short_study_arguments(out.string()), scratch);
  ::close(fd);
  expect_refusal(refused, 1, "another marbm study is writing to this folder");
  EXPECT_FALSE(fs::exists(out / "kl.csv"));
  // Released: the next one runs.
  EXPECT_EQ(run_cli(short_study_arguments(out.string()), scratch).exit_code, 0);
}

TEST(HardenedStudy, TemporaryNamesAreUniqueAndRecognisable) {
  const std::string a = detail::temporary_name("dir/kl.csv"), b = detail::temporary_name("dir/kl.csv");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("dir/kl.csv.marbm-tmp-" + std::to_string(::getpid()) + "-", 0), 0u) << a;
}

// ------------------------------------------------------------------ leniency, decided (item 12)

std::vector<std::string> train_with(const std::string& option, const std::string& value, const std::string& out) {
  std::vector<std::string> arguments = {"train", "--data", "shifting-bars:6:3", "--hidden", "6", "--iters", "20",
                                        "--backend", "cpu", "--out", out};
  for (std::size_t k = 0; k + 1 < arguments.size(); ++k) {
    if (arguments[k] == option) {
      arguments[k + 1] = value;
      return arguments;
    }
  }
  arguments.push_back(option);
  arguments.push_back(value);
  return arguments;
}

TEST(HardenedLeniency, NumbersAreDecimalWithoutSpacesAPlusSignIsFine) {
  ScratchFolder scratch;
  const std::string out = scratch.file("m.safetensors");
  expect_refusal(run_cli(train_with("--hidden", " 6", out), scratch), 2, "' 6' is not an integer");
  expect_refusal(run_cli(train_with("--hidden", "6 ", out), scratch), 2, "'6 ' is not an integer");
  expect_refusal(run_cli(train_with("--lr", "0x1p3", out), scratch), 2, "'0x1p3' is not a finite decimal number");
  expect_refusal(run_cli(train_with("--lr", " 0.1", out), scratch), 2, "' 0.1' is not a finite decimal number");
  // Decided: "+6" is an unambiguous integer (data specs take it too).
  const CliResult plus = run_cli(train_with("--hidden", "+6", out), scratch);
  EXPECT_EQ(plus.exit_code, 0) << describe(plus);
  EXPECT_EQ(load_rbm(out).n_hidden(), 6);
}

TEST(HardenedLeniency, MethodListsRefuseEmptyNamesAtEitherEnd) {
  ScratchFolder scratch;
  for (const std::string methods : {"cd,", ",cd", "cd,,mode"}) {
    expect_refusal(run_cli({"study", "--methods", methods, "--out", scratch.file("s")}, scratch), 2,
                   "--methods: empty method name in '" + methods + "'");
  }
}

TEST(HardenedLeniency, VariantOnlyWithSimulatedBifurcation) {
  ScratchFolder scratch;
  const std::string model = scratch.file("m.safetensors");
  save_rbm(model, Rbm::random(4, 3, 0.5, 2));
  expect_refusal(run_cli({"mode", model, "--solver", "sa", "--variant", "ballistic", "--backend", "cpu"}, scratch), 2,
                 "--variant applies only to --solver sb");
  EXPECT_EQ(run_cli({"mode", model, "--solver", "sb", "--variant", "ballistic", "--backend", "cpu"}, scratch).exit_code,
            0);
}

TEST(HardenedLeniency, SymlinkedOutputKeepsItsLinkReadOnlyOutputIsNotReplaced) {
  ScratchFolder scratch;
  fs::create_directories(scratch.path() / "models");
  const fs::path target = scratch.path() / "models" / "real.safetensors";
  const fs::path link = scratch.path() / "link.safetensors";
  write_bytes(target, "old");
  fs::create_symlink("models/real.safetensors", link);
  const CliResult linked = run_cli(train_with("--out", link.string(), link.string()), scratch);
  ASSERT_EQ(linked.exit_code, 0) << describe(linked);
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(load_rbm(target.string()).n_hidden(), 6);

  const fs::path locked = scratch.path() / "locked.safetensors";
  write_bytes(locked, "precious");
  fs::permissions(locked, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  expect_refusal(run_cli(train_with("--out", locked.string(), locked.string()), scratch), 2, "is read-only");
  EXPECT_EQ(read_bytes(locked), "precious");
  try {
    save_rbm(locked.string(), Rbm(2, 2));
    ADD_FAILURE() << "replaced a read-only file";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("the existing file is read-only"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(locked), "precious");
}

// ------------------------------------------------------------------ determinism as the README states it

TEST(ThreadCounts, SmallModelsAreBitIdenticalAtOneAndTwoThreads) {
  // Plain loops and OpenMP loops only (a 6 x 6 model): --threads changes the
  // work split, not the bits. (cd, pcd and mode; BLAS-sized models are not
  // promised this.)
  ScratchFolder scratch;
  for (const std::string method : {"cd", "pcd", "mode"}) {
    std::vector<Rbm> models;
    for (const std::string threads : {"1", "2"}) {
      const std::string out = scratch.file(method + "-" + threads + ".safetensors");
      const CliResult result = run_cli({"train", "--data", "shifting-bars:6:3", "--hidden", "6", "--method", method,
                                        "--iters", "500", "--seed", "4", "--threads", threads, "--backend", "cpu",
                                        "--out", out},
                                       scratch);
      ASSERT_EQ(result.exit_code, 0) << describe(result);
      models.push_back(load_rbm(out));
    }
    EXPECT_EQ(models[0], models[1]) << method;
  }
}

// Bit equality of BLAS-sized runs at 1, 2 and 3 threads (issue 9, item 5).
TrainResult train_blas_sized(TrainMethod method, int n, int m, int threads) {
  EngineOptions options;
  options.threads = threads;
  auto engine = make_engine(Backend::cpu, options);
  const Dataset data = random_binary_dataset(1000, n, 0.3, 11);
  TrainConfig config;
  config.method = method;
  // 784 x 200 x 500: products large enough to run their blocks in parallel.
  config.batch_size = method == TrainMethod::mode ? 200 : 500;
  config.iterations = 20;
  config.learning_rate = 0.05;
  config.momentum = 0.5;
  config.seed = 3;
  config.exact_metrics = false;
  if (method == TrainMethod::mode) {
    config.mode.p_max = 0.5;  // mode steps from the start
    config.mode.beta = 10.0;
    config.mode.solver = ModeSolver::sb;
    config.mode.search.replicas = 72;  // more rows than one block of the product
    config.mode.search.steps = 30;
  }
  return train(*engine, data, Rbm::random(n, m, 0.1, 5), config);
}

TEST(ThreadCounts, BlasSizedModelsAreBitIdenticalAtOneTwoAndThreeThreads) {
  for (const auto& [method, n, m] : {std::tuple{TrainMethod::cd, 784, 200}, std::tuple{TrainMethod::pcd, 784, 200},
                                     std::tuple{TrainMethod::mode, 784, 64}}) {
    const TrainResult one = train_blas_sized(method, n, m, 1);
    EXPECT_NE(one.model, Rbm::random(n, m, 0.1, 5)) << "the updates ran";
    if (method == TrainMethod::mode) EXPECT_GT(one.mode_steps, 0);
    for (const int threads : {2, 3}) {
      const TrainResult other = train_blas_sized(method, n, m, threads);
      EXPECT_EQ(one.model, other.model) << to_string(method) << " at " << threads << " threads";
    }
  }
}

// ------------------------------------------------------------------ --init MODEL

TEST(TrainInit, StartsFromASavedModelsParameters) {
  ScratchFolder scratch;
  const std::string first = scratch.file("first.safetensors");
  ASSERT_EQ(run_cli({"train", "--data", "shifting-bars:6:3", "--hidden", "4", "--iters", "300", "--lr", "0.2",
                     "--backend", "cpu", "--out", first},
                    scratch)
                .exit_code,
            0);
  const Rbm saved = load_rbm(first);
  // One update at a learning rate too small to move a float32: the output is
  // exactly the starting point, so the start was the saved model.
  const std::string second = scratch.file("second.safetensors");
  const CliResult result = run_cli({"train", "--data", "shifting-bars:6:3", "--init", first, "--iters", "1", "--lr",
                                    "1e-30", "--backend", "cpu", "--out", second},
                                   scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  Metadata metadata;
  EXPECT_EQ(load_rbm(second, &metadata), saved);
  EXPECT_EQ(metadata.at("init"), first);
  EXPECT_EQ(metadata.count("init_sigma"), 0u);
  // And a real continuation moves on from there.
  ASSERT_EQ(run_cli({"train", "--data", "shifting-bars:6:3", "--init", first, "--hidden", "4", "--iters", "50",
                     "--backend", "cpu", "--out", second},
                    scratch)
                .exit_code,
            0);
  EXPECT_NE(load_rbm(second), saved);

  expect_refusal(run_cli({"train", "--data", "bars-and-stripes:3", "--init", first, "--iters", "1", "--out", second},
                         scratch),
                 1, "the model has 6 visible units");
  expect_refusal(run_cli({"train", "--data", "shifting-bars:6:3", "--init", first, "--hidden", "5", "--iters", "1",
                          "--out", second},
                         scratch),
                 2, "--hidden 5 differs from the 4 hidden units");
  expect_refusal(run_cli({"train", "--data", "shifting-bars:6:3", "--init", first, "--init-sigma", "0.1", "--iters",
                          "1", "--out", second},
                         scratch),
                 2, "--init excludes --init-sigma");
  expect_refusal(run_cli({"train", "--data", "shifting-bars:6:3", "--iters", "1", "--out", second}, scratch), 2,
                 "give the number of hidden units with --hidden M");
  expect_refusal(run_cli({"train", "--data", "shifting-bars:6:3", "--init", scratch.file("absent"), "--iters", "1",
                          "--out", second},
                         scratch),
                 1, "absent: no such file");
}

}  // namespace
}  // namespace marbm
