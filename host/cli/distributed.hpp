// The CLI under an MPI launcher (mpiexec -n R marbm ...): which rank writes,
// and the data-parallel engine of `train`.
#pragma once

#include <iostream>
#include <memory>
#include <streambuf>
#include <string_view>

#include "marbm/engine.hpp"

namespace marbm::cli {

/// Rank 0 of an MPI run, or a process not started by an MPI launcher: the
/// one that writes files and prints results.
bool writes_outputs();

/// The engine of `train` (--backend, --threads; quiet: no notices). On the
/// cpu always the data-parallel engine (make_data_parallel_engine) over the
/// run's ranks, a single process included, so that `marbm train` and
/// `mpiexec -n R marbm train` write the same bits. On cuda under an MPI
/// launcher the NCCL engine (make_cuda_data_parallel_engine), each rank on
/// GPU local_rank % device count; `auto` under mpiexec takes cuda only when
/// every rank can. A lone process on cuda gets the plain CUDA engine.
std::unique_ptr<Engine> make_training_engine(std::string_view backend, int threads, bool quiet);

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
