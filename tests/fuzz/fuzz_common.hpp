// What every libFuzzer harness shares: the input goes into a file of a
// private scratch folder (the loaders read paths), and any exception that is
// not a marbm::Error is a finding: the harness aborts so the fuzzer keeps it.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "marbm/error.hpp"

namespace marbm::fuzz {

/// A scratch folder of this process, made once. (The current directory is
/// left alone: libFuzzer reads its corpus through relative names.)
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path path = [] {
    auto p = std::filesystem::temp_directory_path() / ("marbm-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    return p;
  }();
  return path;
}

/// Writes the input to `name` in the scratch folder and returns its path.
inline std::string input_file(const std::uint8_t* data, std::size_t size, const char* name) {
  const std::string path = (scratch() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

/// Runs `call`; a marbm::Error is an expected refusal, anything else aborts.
template <typename Call>
void expect_only_marbm_errors(Call call) {
  try {
    call();
  } catch (const marbm::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exception that is not a marbm::Error: %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "exception of unknown type\n");
    std::abort();
  }
}

}  // namespace marbm::fuzz
