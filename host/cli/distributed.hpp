// The CLI under an MPI launcher (mpiexec -n R marbm ...): which rank writes,
// and the data-parallel engine of `train`.
#pragma once

#include <iostream>
#include <memory>
#include <streambuf>

#include "marbm/engine.hpp"

namespace marbm::cli {

/// Rank 0 of an MPI run, or a process not started by an MPI launcher: the
/// one that writes files and prints results.
bool writes_outputs();

/// Under an MPI launcher: `engine` wrapped for data-parallel training across
/// the ranks (make_data_parallel_engine); else `engine` itself. UsageError
/// when it is not a cpu engine (data-parallel training runs on the cpu).
std::unique_ptr<Engine> distribute_training_engine(std::unique_ptr<Engine> engine);

/// While alive, ranks other than 0 print nothing on stdout or stderr (every
/// rank computes the same reports); errors reach stderr after it is gone.
class OtherRanksQuiet {
 public:
  OtherRanksQuiet();
  ~OtherRanksQuiet();
  OtherRanksQuiet(const OtherRanksQuiet&) = delete;
  OtherRanksQuiet& operator=(const OtherRanksQuiet&) = delete;

 private:
  std::streambuf* out_ = nullptr;
  std::streambuf* err_ = nullptr;
};

}  // namespace marbm::cli
