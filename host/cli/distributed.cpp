#include "cli/distributed.hpp"

#include <string>

#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/error.hpp"

namespace marbm::cli {

namespace {

class NullBuffer final : public std::streambuf {
 protected:
  int overflow(int c) override { return traits_type::not_eof(c); }
  std::streamsize xsputn(const char*, std::streamsize count) override { return count; }
};

NullBuffer null_buffer;

}  // namespace

bool writes_outputs() { return !launched_by_mpi() || world_communicator()->rank() == 0; }

std::unique_ptr<Engine> distribute_training_engine(std::unique_ptr<Engine> engine) {
  if (!launched_by_mpi()) return engine;
  MARBM_EXPECTS(engine->backend() == Backend::cpu, UsageError,
                "under mpiexec, train runs data-parallel on the cpu engine (--backend cpu); this build has no "
                "GPU-to-GPU gradient reduction");
  return make_data_parallel_engine(std::move(engine), world_communicator());
}

OtherRanksQuiet::OtherRanksQuiet() {
  if (writes_outputs()) return;
  std::cout.flush();
  std::cerr.flush();
  out_ = std::cout.rdbuf(&null_buffer);
  err_ = std::cerr.rdbuf(&null_buffer);
}

OtherRanksQuiet::~OtherRanksQuiet() {
  if (out_ != nullptr) std::cout.rdbuf(out_);
  if (err_ != nullptr) std::cerr.rdbuf(err_);
}

}  // namespace marbm::cli
