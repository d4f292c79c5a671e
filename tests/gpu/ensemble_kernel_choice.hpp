// Runs a block of a GPU test with the fused ensemble's kernel forced through
// MARBM_ENSEMBLE_KERNEL (detail/ensemble_launch.hpp), the old value put back
// afterwards.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace marbm::test_support {

class ScopedEnsembleKernel {
 public:
  /// value: "block", "warp", "auto", or null to unset the variable.
  explicit ScopedEnsembleKernel(const char* value) {
    if (const char* old = std::getenv(kName)) old_ = old;
    if (value) {
      ::setenv(kName, value, 1);
    } else {
      ::unsetenv(kName);
    }
  }
  ~ScopedEnsembleKernel() {
    if (old_) {
      ::setenv(kName, old_->c_str(), 1);
    } else {
      ::unsetenv(kName);
    }
  }
  ScopedEnsembleKernel(const ScopedEnsembleKernel&) = delete;
  ScopedEnsembleKernel& operator=(const ScopedEnsembleKernel&) = delete;

 private:
  static constexpr const char* kName = "MARBM_ENSEMBLE_KERNEL";
  std::optional<std::string> old_;
};

}  // namespace marbm::test_support
