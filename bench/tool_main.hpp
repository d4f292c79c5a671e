// The entry point of the bench tools that are plain programs (not Google
// Benchmark): one error line "NAME: error: ..." and exit status 2 for bad
// usage, 1 for anything else, as the marbm command does.
#pragma once

#include <cstdio>
#include <exception>

#include "marbm/error.hpp"

namespace marbm::bench {

template <typename Run>
int run_tool(const char* name, Run run, int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const marbm::UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace marbm::bench
