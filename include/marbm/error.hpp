// Error types and precondition checks shared by every part of marbm.
#pragma once

#include <stdexcept>
#include <string>

namespace marbm {

/// Base of every exception marbm throws. what() is one line that names the
/// input and the problem; it is safe to print as is.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad option, argument or configuration value (the caller's mistake).
/// The CLI maps it to exit status 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

/// Bad input data: missing or malformed files, wrong sizes, non-binary values,
/// non-finite parameters. The CLI maps it to exit status 1.
class DataError : public Error {
 public:
  using Error::Error;
};

/// A CUDA runtime, cuBLAS or cuRAND failure, or no usable device when one was
/// required. what() carries file:line and the CUDA error name. Exit status 1.
class CudaError : public Error {
 public:
  using Error::Error;
};

/// A run that cannot go on (for example a size beyond a configured limit).
/// Exit status 1.
class RuntimeFailure : public Error {
 public:
  using Error::Error;
};

}  // namespace marbm

/// Precondition check: throws `error_type(message)` when `condition` is false.
/// `message` may be any expression convertible to std::string.
#define MARBM_EXPECTS(condition, error_type, message) \
  do {                                                \
    if (!(condition)) {                               \
      throw error_type(std::string(message));         \
    }                                                 \
  } while (false)
