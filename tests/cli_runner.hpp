// Runs the built `marbm` executable as a user would, with stdout and stderr
// captured into files of a scratch folder, and a time limit so that a hang
// fails the test instead of stalling the suite.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace marbm::test {

/// What a finished command left behind.
struct CliResult {
  int exit_code = -1;       ///< exit status; 128 + signal when killed by a signal
  bool timed_out = false;
  std::string out;          ///< everything written to stdout
  std::string err;          ///< everything written to stderr

  /// Lines of stderr (a trailing newline does not start another line).
  std::vector<std::string> error_lines() const {
    std::vector<std::string> lines;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
};

/// A scratch folder removed with everything in it on destruction.
class ScratchFolder {
 public:
  ScratchFolder() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("marbm-cli-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// path() / name as a string.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::string read_whole_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Runs `program` with `arguments` (no shell: arguments reach it verbatim),
/// stdin from /dev/null, stdout and stderr into files of `scratch` (stderr
/// into a pseudo-terminal instead when `stderr_terminal`, to see what a user
/// at a terminal sees). Kills it after `limit`.
inline CliResult run_program(const std::string& program, const std::vector<std::string>& arguments,
                             const ScratchFolder& scratch,
                             std::chrono::seconds limit = std::chrono::seconds(120), bool stderr_terminal = false) {
  static std::atomic<int> counter{0};
  const int id = counter++;
  const std::string out_path = scratch.file("stdout-" + std::to_string(id));
  const std::string err_path = scratch.file("stderr-" + std::to_string(id));

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int terminal = -1;
  std::string terminal_output;
  if (stderr_terminal) {
    terminal = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (terminal < 0 || ::grantpt(terminal) != 0 || ::unlockpt(terminal) != 0) {
      throw std::runtime_error("cannot open a pseudo-terminal");
    }
    ::fcntl(terminal, F_SETFL, ::fcntl(terminal, F_GETFL) | O_NONBLOCK);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, ::ptsname(terminal), O_WRONLY | O_NOCTTY, 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  // Drains the terminal as the child writes, so that it never blocks on a full buffer.
  auto drain = [&] {
    if (terminal < 0) return;
    char buffer[4096];
    for (ssize_t got; (got = ::read(terminal, buffer, sizeof buffer)) > 0;) terminal_output.append(buffer, got);
  };

  std::vector<std::string> storage;
  storage.push_back(program);
  storage.insert(storage.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& argument : storage) argv.push_back(argument.data());
  argv.push_back(nullptr);

  pid_t pid = 0;
  const int spawn_error = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawn_error != 0) throw std::runtime_error("cannot start " + program);

  CliResult result;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (true) {
    drain();
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0) throw std::runtime_error("waitpid failed for " + program);
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      result.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  result.out = read_whole_file(out_path);
  if (terminal >= 0) {
    drain();
    ::close(terminal);
    result.err = terminal_output;
  } else {
    result.err = read_whole_file(err_path);
  }
  return result;
}

/// The exit status and both streams, for failure messages.
inline std::string describe(const CliResult& result) {
  return "exit " + std::to_string(result.exit_code) + (result.timed_out ? " (timed out)" : "") + "\nstdout:\n" +
         result.out + "\nstderr:\n" + result.err;
}

/// A refusal: the expected status, nothing on stdout, and stderr exactly one
/// printable line "marbm: error: ..." that mentions `needle` (the offending
/// input).
inline void expect_refusal(const CliResult& result, int status, const std::string& needle) {
  SCOPED_TRACE(describe(result));
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.exit_code, status);
  EXPECT_TRUE(result.out.empty());
  const auto lines = result.error_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("marbm: error: ", 0), 0u);
  EXPECT_NE(lines[0].find(needle), std::string::npos) << "the error should name '" << needle << "'";
  EXPECT_FALSE(result.err.empty() || result.err.back() != '\n') << "the line should end with a newline";
  for (const char c : lines[0]) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "raw control byte in the message";
}

}  // namespace marbm::test
