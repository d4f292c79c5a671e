// Small measuring and argument helpers shared by the bench tools.
#pragma once

#include <algorithm>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "marbm/error.hpp"

namespace marbm::bench {

// CPU seconds of this process (all its threads): on shared cores a fairer
// measure of the work than wall time.
inline double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// The middle value (the upper one of the two middles for an even count).
inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// A command-line count >= 1, else a UsageError naming `what`.
inline int parse_positive(const char* text, const char* what) {
  try {
    const int value = std::stoi(text);
    MARBM_EXPECTS(value >= 1, marbm::UsageError, std::string(what) + " must be >= 1");
    return value;
  } catch (const std::logic_error&) {
    throw marbm::UsageError(std::string(what) + ": '" + text + "' is not a number");
  }
}

}  // namespace marbm::bench
