// Measurements for the scale-out page (bench/mpi-scaling.sh); run under
// mpiexec. Prints one JSON object from rank 0.
//
//   mpi_scaling train BATCH UPDATES   CD-1 784 x 500 data-parallel updates on
//                                     synthetic rows: seconds per update
//   mpi_scaling reduce VALUES BLOCKS REPEAT
//                                     MPI_Allreduce of VALUES floats, and the
//                                     data-parallel engine's ordered sum of
//                                     BLOCKS blocks of VALUES doubles: seconds each
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <string>
#include <vector>

#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "marbm/train.hpp"
#include "measure.hpp"
#include "tool_main.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

using marbm::bench::median;
using marbm::bench::process_cpu_seconds;
int parse(const char* text, const char* what) { return marbm::bench::parse_positive(text, what); }

int train(marbm::Communicator& comm, int batch, int updates) {
  // Rows with MNIST's share of ink (about 13% of pixels on), drawn from Philox.
  marbm::Dataset data;
  data.n_rows = 4096;
  data.n_cols = 784;
  data.description = "synthetic";
  const marbm::PhiloxStream stream(7, 0);
  for (std::uint64_t k = 0; k < static_cast<std::uint64_t>(data.n_rows) * data.n_cols; ++k) {
    data.values.push_back(stream.uniform_double(k) < 0.13 ? 1 : 0);
  }
  marbm::EngineOptions options;
  options.threads = 1;
  options.quiet = true;
  auto engine = marbm::make_data_parallel_engine(marbm::make_engine(marbm::Backend::cpu, options),
                                                 marbm::world_communicator());
  marbm::TrainConfig config;
  config.method = marbm::TrainMethod::cd;
  config.batch_size = batch;
  config.learning_rate = 0.01;
  config.iterations = updates;
  config.exact_metrics = false;
  config.seed = 1;
  const marbm::Rbm initial = marbm::Rbm::random(784, 500, 0.01, 1);
  comm.barrier();
  const auto start = Clock::now();
  const double cpu_start = process_cpu_seconds();
  const marbm::TrainResult result = marbm::train(*engine, data, initial, config);
  std::vector<double> slowest{since(start), process_cpu_seconds() - cpu_start};
  comm.all_reduce_max(slowest);
  if (comm.rank() == 0) {
    std::printf("{\"ranks\": %d, \"batch\": %d, \"updates\": %d, \"seconds_per_update\": %.6g, "
                "\"cpu_seconds_per_update\": %.6g, \"rows_per_second\": %.6g}\n",
                comm.size(), batch, updates, slowest[0] / updates, slowest[1] / updates, batch * updates / slowest[0]);
  }
  return 0;
}

int reduce(marbm::Communicator& comm, int values, int blocks, int repeat) {
  std::vector<float> floats(static_cast<std::size_t>(values), 1.0f);
  std::vector<double> allreduce_times, ordered_times, ordered_cpu;
  for (int k = 0; k < repeat; ++k) {
    MPI_Barrier(MPI_COMM_WORLD);
    auto start = Clock::now();
    MPI_Allreduce(MPI_IN_PLACE, floats.data(), values, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    allreduce_times.push_back(since(start));
  }
  const marbm::ItemRange mine = marbm::contiguous_share(blocks, comm.size(), comm.rank());
  std::vector<double> local(static_cast<std::size_t>(mine.last - mine.first) * values, 0.5);
  for (int k = 0; k < repeat; ++k) {
    comm.barrier();
    auto start = Clock::now();
    const double cpu_start = process_cpu_seconds();
    const auto sum = marbm::ordered_block_sum(comm, local, mine.first, blocks, static_cast<std::size_t>(values));
    ordered_times.push_back(since(start));
    ordered_cpu.push_back(process_cpu_seconds() - cpu_start);
  }
  std::vector<double> result{median(allreduce_times), median(ordered_times), median(ordered_cpu)};
  comm.all_reduce_max(result);
  if (comm.rank() == 0) {
    std::printf("{\"ranks\": %d, \"values\": %d, \"blocks\": %d, \"allreduce_float_seconds\": %.6g, "
                "\"ordered_block_sum_seconds\": %.6g, \"ordered_block_sum_cpu_seconds\": %.6g}\n",
                comm.size(), values, blocks, result[0], result[1], result[2]);
  }
  return 0;
}

int run(int argc, char** argv) {
  auto world = marbm::world_communicator();
  MARBM_EXPECTS(argc >= 2, marbm::UsageError, "usage: mpi_scaling train BATCH UPDATES | reduce VALUES BLOCKS REPEAT");
  const std::string what = argv[1];
  if (what == "train" && argc == 4) return train(*world, parse(argv[2], "BATCH"), parse(argv[3], "UPDATES"));
  if (what == "reduce" && argc == 5) {
    MARBM_EXPECTS(marbm::launched_by_mpi(), marbm::UsageError, "reduce: run under mpiexec");
    return reduce(*world, parse(argv[2], "VALUES"), parse(argv[3], "BLOCKS"), parse(argv[4], "REPEAT"));
  }
  throw marbm::UsageError("usage: mpi_scaling train BATCH UPDATES | reduce VALUES BLOCKS REPEAT");
}

}  // namespace

int main(int argc, char** argv) { return marbm::bench::run_tool("mpi_scaling", run, argc, argv); }
