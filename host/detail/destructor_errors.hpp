// Errors caught where nothing may throw (destructors, cleanup after another
// error): reported, not dropped. The first goes to stderr as one line; all
// are counted.
#pragma once

#include <string>

namespace marbm::detail {

/// Records an error caught in a destructor: prints the first of the process
/// to stderr ("marbm: error in cleanup (not thrown): <message>"), counts every
/// one. Thread-safe, never throws.
void report_destructor_error(const std::string& message) noexcept;

/// How many errors report_destructor_error has recorded in this process.
long destructor_error_count() noexcept;

}  // namespace marbm::detail
