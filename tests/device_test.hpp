// Whether a test that needs a CUDA device runs, skips or fails.
//
// Without a usable device a GPU test skips, and ctest counts a skip as a pass:
// a machine whose driver cannot run this CUDA runtime would report every GPU
// test green. MARBM_REQUIRE_GPU=1 (the device check sets it) turns each such
// skip into a failure that names the reason the device is unusable. Every GPU
// test decides through MARBM_SKIP_WITHOUT_DEVICE(); the decision itself is a
// pure function, tested on the CPU.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "detail/env_flag.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"

namespace marbm::test_support {

enum class DeviceTestAction { run, skip, fail };

/// run with a usable device; otherwise fail when MARBM_REQUIRE_GPU is on
/// (require_gpu_value: its value, or null when unset), else skip.
inline DeviceTestAction device_test_action(bool device_usable, const char* require_gpu_value) {
  if (device_usable) return DeviceTestAction::run;
  return detail::env_flag_value(require_gpu_value) ? DeviceTestAction::fail : DeviceTestAction::skip;
}

/// Why no device is usable, in the CUDA engine's own words.
inline std::string unusable_device_reason() {
  try {
    (void)make_engine(Backend::cuda);
  } catch (const Error& error) {
    return error.what();
  }
  return "the device list is empty although an engine could be created";
}

inline DeviceTestAction device_test_action() {
  return device_test_action(!cuda_devices().empty(), std::getenv("MARBM_REQUIRE_GPU"));
}

}  // namespace marbm::test_support

/// First statement of every test (or SetUp) that needs a CUDA device.
#define MARBM_SKIP_WITHOUT_DEVICE()                                                                      \
  do {                                                                                                   \
    switch (::marbm::test_support::device_test_action()) {                                               \
      case ::marbm::test_support::DeviceTestAction::run:                                                 \
        break;                                                                                           \
      case ::marbm::test_support::DeviceTestAction::skip:                                                \
        GTEST_SKIP() << "no usable CUDA device (set MARBM_REQUIRE_GPU=1 to make this a failure)";        \
      case ::marbm::test_support::DeviceTestAction::fail:                                                \
        FAIL() << "MARBM_REQUIRE_GPU is set but no CUDA device is usable: "                              \
               << ::marbm::test_support::unusable_device_reason();                                       \
    }                                                                                                    \
  } while (false)
