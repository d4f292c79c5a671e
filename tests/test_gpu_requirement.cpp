// The decision every GPU test makes before it needs a device (device_test.hpp):
// run with a device; without one skip, or fail under MARBM_REQUIRE_GPU=1.
#include <gtest/gtest.h>

#include "detail/env_flag.hpp"
#include "device_test.hpp"

namespace marbm::test_support {
namespace {

TEST(EnvFlag, OnlySetNonEmptyNonZeroValuesTurnASwitchOn) {
  EXPECT_FALSE(detail::env_flag_value(nullptr));
  EXPECT_FALSE(detail::env_flag_value(""));
  EXPECT_FALSE(detail::env_flag_value("0"));
  EXPECT_TRUE(detail::env_flag_value("1"));
  EXPECT_TRUE(detail::env_flag_value("yes"));
  EXPECT_TRUE(detail::env_flag_value("00"));  // only the exact "0" means off
}

TEST(GpuRequirement, UsableDeviceAlwaysRuns) {
  EXPECT_EQ(device_test_action(true, nullptr), DeviceTestAction::run);
  EXPECT_EQ(device_test_action(true, "1"), DeviceTestAction::run);
  EXPECT_EQ(device_test_action(true, "0"), DeviceTestAction::run);
}

TEST(GpuRequirement, WithoutDeviceSkipsUnlessRequired) {
  EXPECT_EQ(device_test_action(false, nullptr), DeviceTestAction::skip);
  EXPECT_EQ(device_test_action(false, ""), DeviceTestAction::skip);
  EXPECT_EQ(device_test_action(false, "0"), DeviceTestAction::skip);
  EXPECT_EQ(device_test_action(false, "1"), DeviceTestAction::fail);
}

TEST(GpuRequirement, ReasonForAMissingDeviceIsOneLine) {
  if (!cuda_devices().empty()) {
    // The reason is only asked for when no device is usable.
    EXPECT_EQ(device_test_action(), DeviceTestAction::run);
    return;
  }
  const std::string reason = unusable_device_reason();
  EXPECT_FALSE(reason.empty());
  EXPECT_EQ(reason.find('\n'), std::string::npos) << reason;
}

}  // namespace
}  // namespace marbm::test_support
