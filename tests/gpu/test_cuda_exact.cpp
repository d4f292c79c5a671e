// Exact log Z on the device by the current kernels (the register kernel with
// and without its subset table, the warp kernel for a wide other layer, the
// global-scratch kernel beyond 1024 units) against the CPU's exact log Z, the
// kernels' CPU twin (host/detail/exact_device_plan.hpp) and the previous
// kernels (MARBM_EXACT_KERNEL=legacy). Skips without a device.
//
// Tolerances. Device and CPU both sum in float64 from the same float32
// parameters; they differ in the order of additions, in exp/log and in the
// Gray-walk rounding (the CPU's chunks are smaller), so agreement is to
// one part in a billion, as CudaExactLogZ.MatchesTheCpuToOnePartInABillion
// states. Against the twin (same walk, same chunks, same per-block code,
// only exp/log and the order blocks are combined differ) to 1e-11.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "detail/cuda_entry.hpp"
#include "detail/exact_device_plan.hpp"
#include "device_test.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace marbm::detail {
namespace {

// Sets MARBM_EXACT_KERNEL for one scope.
class KernelSwitch {
 public:
  explicit KernelSwitch(const char* value) {
    if (const char* old = std::getenv("MARBM_EXACT_KERNEL")) saved_ = old;
    setenv("MARBM_EXACT_KERNEL", value, 1);
  }
  ~KernelSwitch() {
    if (saved_) {
      setenv("MARBM_EXACT_KERNEL", saved_->c_str(), 1);
    } else {
      unsetenv("MARBM_EXACT_KERNEL");
    }
  }
  KernelSwitch(const KernelSwitch&) = delete;
  KernelSwitch& operator=(const KernelSwitch&) = delete;

 private:
  std::optional<std::string> saved_;
};

int device_multiprocessors() {
  int count = 0;
  if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) return 0;
  return count;
}

struct Shape {
  int n, m;
  double sigma;
};

// Shapes: the table kernel on 64, 33 (padding) and 24 fields (k >= 22 gives
// chunks of >= 16 codes on any device with fewer than 256 SMs); the table refused
// (large weights); small models without the table; the warp kernel at its
// per-lane sizes 4, 8, 16, 32 (100, 200, 300, 784 and 1024 fields); the
// scratch kernel beyond 1024.
const std::vector<Shape>& shapes() {
  static const std::vector<Shape> list = {
      {64, 22, 0.5},  {64, 23, 1.0},  {33, 22, 1.0},  {22, 33, 0.3},  {17, 22, 1.0},  {24, 22, 1.0},  {40, 22, 8.0},
      {6, 6, 1.0},    {20, 7, 1.0},   {17, 33, 0.1},  {100, 12, 1.0}, {200, 11, 0.5}, {300, 12, 0.3},
      {784, 10, 0.1}, {784, 16, 1.0}, {3, 70, 1.0},   {1024, 8, 0.5}, {1100, 6, 0.3},
  };
  return list;
}

TEST(CudaExactDevice, CurrentKernelsMatchTheCpuAndTheirTwin) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const int sms = device_multiprocessors();
  ASSERT_GT(sms, 0);
  ASSERT_LT(sms, 256) << "k = 22 takes the table only while 2^18 threads fill the device";
  bool table = false, no_table = false, warp = false, scratch = false;
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(std::to_string(s.n) + "x" + std::to_string(s.m) + " sigma " + std::to_string(s.sigma));
    const Rbm rbm = Rbm::random(s.n, s.m, s.sigma, static_cast<std::uint64_t>(s.n * 1000 + s.m));
    const double cpu = log_partition_exact(rbm);
    const double gpu = log_partition_exact_cuda(rbm, {});
    EXPECT_NEAR(gpu, cpu, 1e-9 * std::abs(cpu) + 1e-12);
    const int k = std::min(s.n, s.m), fields = std::max(s.n, s.m);
    if (plan_exact_device(k, fields, sms, false).kernel == ExactDeviceKernel::scratch) {
      scratch = true;
      continue;  // no twin: the scratch kernel is the previous one, unchanged
    }
    ExactDevicePlan plan;
    const double twin = exact_device_twin_log_z(rbm.weights().data(), rbm.visible_bias().data(),
                                                rbm.hidden_bias().data(), s.n, s.m, sms, &plan);
    EXPECT_NEAR(gpu, twin, 1e-11 * std::abs(twin) + 1e-12) << "low_bits " << plan.low_bits;
    table |= plan.kernel == ExactDeviceKernel::registers && plan.low_bits == exact_table_low_bits;
    no_table |= plan.kernel == ExactDeviceKernel::registers && plan.low_bits == 0;
    warp |= plan.kernel == ExactDeviceKernel::warp;
    if (s.sigma == 8.0) EXPECT_EQ(plan.low_bits, 0) << "large weights must refuse the table";
    if (k >= 22 && fields <= 64 && s.sigma < 8.0) EXPECT_EQ(plan.low_bits, exact_table_low_bits);
  }
  EXPECT_TRUE(table && no_table && warp && scratch) << "every current kernel variant ran";
}

TEST(CudaExactDevice, PreviousKernelsAgreeWithTheCurrentOnes) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // Each against the CPU separately, then against each other: a first run
  // on a device tells which of the two is wrong.
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(std::to_string(s.n) + "x" + std::to_string(s.m) + " sigma " + std::to_string(s.sigma));
    const Rbm rbm = Rbm::random(s.n, s.m, s.sigma, static_cast<std::uint64_t>(s.n * 1000 + s.m));
    const double cpu = log_partition_exact(rbm);
    const double current = log_partition_exact_cuda(rbm, {});
    double previous = 0.0;
    {
      KernelSwitch legacy("legacy");
      previous = log_partition_exact_cuda(rbm, {});
    }
    EXPECT_NEAR(current, cpu, 1e-9 * std::abs(cpu) + 1e-12) << "current kernels";
    EXPECT_NEAR(previous, cpu, 1e-9 * std::abs(cpu) + 1e-12) << "previous kernels";
    EXPECT_NEAR(current, previous, 1e-9 * std::abs(cpu) + 1e-12);
  }
}

TEST(CudaExactDevice, UnknownKernelSwitchIsAUsageError) {
  MARBM_SKIP_WITHOUT_DEVICE();
  KernelSwitch bad("fast");
  try {
    (void)log_partition_exact_cuda(Rbm::random(8, 4, 0.1, 1), {});
    FAIL() << "MARBM_EXACT_KERNEL=fast should be refused";
  } catch (const UsageError& error) {
    EXPECT_NE(std::string(error.what()).find("MARBM_EXACT_KERNEL"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace marbm::detail
