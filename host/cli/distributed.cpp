#include "cli/distributed.hpp"

#include <string>
#include <vector>

#include "cli/common.hpp"
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

std::unique_ptr<Engine> make_training_engine(std::string_view backend_text, int threads, bool quiet) {
  const Backend backend = parse_backend_option(backend_text);
  if (!launched_by_mpi()) {
    std::unique_ptr<Engine> engine = make_engine_for(backend_text, threads, quiet);
    if (engine->backend() != Backend::cpu) return engine;
    return make_data_parallel_engine(std::move(engine), single_process_communicator());
  }
  const std::shared_ptr<Communicator> comm = world_communicator();
  bool on_gpus = backend == Backend::cuda;
  if (backend == Backend::automatic) {
    // Every rank must choose the same: cuda only when all of them can.
    std::vector<double> cannot{nccl_version() > 0 && !cuda_devices().empty() ? 0.0 : 1.0};
    comm->all_reduce_max(cannot);
    on_gpus = cannot[0] == 0.0;
  }
  if (!on_gpus) return make_data_parallel_engine(make_engine_for("cpu", threads, quiet), comm);
  if (!cuda_compiled() || !nccl_compiled()) {
    throw CudaError(std::string("under mpiexec, train --backend cuda sums the gradient between GPU ranks with NCCL, "
                                "and this build of marbm has no ") +
                    (cuda_compiled() ? "NCCL (MARBM_NCCL=OFF, or NCCL not found)" : "CUDA engine") +
                    ": use --backend cpu");
  }
  const std::size_t devices = cuda_devices().size();
  EngineOptions options;
  options.quiet = quiet;
  // A rank without a device is refused, on every rank, by the engine.
  const int local = local_rank(*comm);
  options.device = devices == 0 ? 0 : local % static_cast<int>(devices);
  return make_cuda_data_parallel_engine(comm, options);
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
