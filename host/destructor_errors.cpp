// Errors caught in destructors (detail/destructor_errors.hpp).
#include "detail/destructor_errors.hpp"

#include <atomic>
#include <cstdio>

namespace marbm::detail {

namespace {
std::atomic<long> recorded{0};
}  // namespace

void report_destructor_error(const std::string& message) noexcept {
  // Only the first is printed: a failed device usually fails every later
  // cleanup too, and one line names the cause.
  if (recorded.fetch_add(1) == 0) {
    std::fprintf(stderr, "marbm: error in cleanup (not thrown): %s (later cleanup errors are counted, not printed)\n",
                 message.c_str());
  }
}

long destructor_error_count() noexcept { return recorded.load(); }

}  // namespace marbm::detail
