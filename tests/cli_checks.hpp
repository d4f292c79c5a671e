// Checks shared by the CLI tests: run the built tool, expect a one-line
// refusal, parse the one JSON object of a --json run.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.hpp"

namespace marbm::test {

inline CliResult run_cli(const std::vector<std::string>& arguments, const ScratchFolder& scratch) {
  return marbm::test::run_program(MARBM_CLI_PATH, arguments, scratch);
}

// describe() and expect_refusal() live in cli_runner.hpp.

// The one JSON object a --json run prints on stdout.
inline nlohmann::json parse_json_output(const CliResult& result) {
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  const auto newline = result.out.find('\n');
  EXPECT_EQ(newline, result.out.size() - 1) << "stdout should be exactly one line: " << result.out;
  try {
    return nlohmann::json::parse(result.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "stdout is not JSON (" << e.what() << "): " << result.out;
    return nlohmann::json::object();
  }
}

// The JSON objects of a run that prints one per line (JSON Lines), in order.
inline std::vector<nlohmann::json> parse_json_lines(const CliResult& result) {
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  std::vector<nlohmann::json> objects;
  std::istringstream in(result.out);
  for (std::string line; std::getline(in, line);) {
    try {
      objects.push_back(nlohmann::json::parse(line));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "stdout line is not JSON (" << e.what() << "): " << line;
    }
  }
  return objects;
}

}  // namespace marbm::test
