// One rule for CPU threads: every command that computes takes --threads, and
// 0 (the default) means OMP_NUM_THREADS when set, else every processor.
#include <gtest/gtest.h>

#include <omp.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "cli_runner.hpp"

namespace marbm {
namespace {

using test::ScratchFolder;

test::CliResult run_cli(const std::vector<std::string>& arguments, const ScratchFolder& scratch) {
  return test::run_program(MARBM_CLI_PATH, arguments, scratch);
}

// Sets an environment variable for the commands this test starts, and puts
// the old value back afterwards.
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnvironment() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

TEST(ThreadRule, EveryComputingCommandTakesThreadsWithTheSameMeaning) {
  ScratchFolder scratch;
  for (const char* command : {"train", "eval", "mode", "study", "sample", "show"}) {
    SCOPED_TRACE(command);
    const test::CliResult help = run_cli({command, "--help"}, scratch);
    ASSERT_EQ(help.exit_code, 0) << test::describe(help);
    const auto at = help.out.find("--threads");
    ASSERT_NE(at, std::string::npos);
    EXPECT_NE(help.out.find("OMP_NUM_THREADS when set", at), std::string::npos) << help.out;
  }
}

TEST(ThreadRule, StudyThreadsFollowOmpNumThreadsThenTheProcessors) {
  ScratchFolder scratch;
  auto threads_used = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> arguments = {"study", "--runs", "2", "--iters", "100", "--eval-every", "50",
                                          "--no-plot", "--out", scratch.file("s")};
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    const test::CliResult result = run_cli(arguments, scratch);
    EXPECT_EQ(result.exit_code, 0) << test::describe(result);
    const auto summary = nlohmann::json::parse(test::read_whole_file(scratch.file("s/summary.json")));
    return summary.at("settings").at("threads_used").get<int>();
  };
  {
    const ScopedEnvironment one("OMP_NUM_THREADS", "1");
    EXPECT_EQ(threads_used({}), 1);
    EXPECT_EQ(threads_used({"--threads", "2"}), std::min(2, omp_get_num_procs()));
  }
  {
    const ScopedEnvironment unset("OMP_NUM_THREADS", nullptr);
    EXPECT_EQ(threads_used({}), omp_get_num_procs());
  }
}

TEST(ThreadRule, ModeRefusesAbsurdThreadCounts) {
  ScratchFolder scratch;
  const std::string model = scratch.file("m.safetensors");
  const test::CliResult trained =
      run_cli({"train", "--data", "shifting-bars:6:3", "--hidden", "4", "--iters", "10", "--out", model}, scratch);
  ASSERT_EQ(trained.exit_code, 0) << test::describe(trained);
  test::expect_refusal(run_cli({"mode", model, "--threads", "5000"}, scratch), 2, "--threads 5000");
  const test::CliResult two = run_cli({"mode", model, "--threads", "2", "--json"}, scratch);
  EXPECT_EQ(two.exit_code, 0) << test::describe(two);
}

}  // namespace
}  // namespace marbm
