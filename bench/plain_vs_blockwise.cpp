// What `marbm train` pays on the cpu for writing the bits of the
// data-parallel runs (bench/plain-vs-blockwise.sh): CD-1 updates of the plain
// cpu engine (one pass over the batch) against the data-parallel engine with
// one rank (64-row blocks, float64 statistics summed in block order), both on
// THREADS threads (default 1), alternated. Prints one JSON object.
//
//   plain_vs_blockwise N M BATCH UPDATES REPEATS [THREADS]
#include <algorithm>
#include <cstdio>
#include <ctime>
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

using marbm::bench::median;
using marbm::bench::process_cpu_seconds;
int parse(const char* text, const char* what) { return marbm::bench::parse_positive(text, what); }

int run(int argc, char** argv) {
  MARBM_EXPECTS(argc == 6 || argc == 7, marbm::UsageError,
                "usage: plain_vs_blockwise N M BATCH UPDATES REPEATS [THREADS]");
  const int n = parse(argv[1], "N"), m = parse(argv[2], "M"), batch = parse(argv[3], "BATCH");
  const int updates = parse(argv[4], "UPDATES"), repeats = parse(argv[5], "REPEATS");
  const int threads = argc == 7 ? parse(argv[6], "THREADS") : 1;
  // Rows with MNIST's share of ink (about 13% of units on), drawn from Philox.
  marbm::Dataset data;
  data.n_rows = std::max(batch, 1024);
  data.n_cols = n;
  data.description = "synthetic";
  const marbm::PhiloxStream stream(7, 0);
  for (std::uint64_t k = 0; k < static_cast<std::uint64_t>(data.n_rows) * n; ++k) {
    data.values.push_back(stream.uniform_double(k) < 0.13 ? 1 : 0);
  }
  marbm::EngineOptions options;
  options.threads = threads;
  options.quiet = true;
  marbm::TrainConfig config;
  config.method = marbm::TrainMethod::cd;
  config.batch_size = batch;
  config.learning_rate = 0.01;
  config.iterations = updates;
  config.exact_metrics = false;
  config.seed = 1;
  const marbm::Rbm initial = marbm::Rbm::random(n, m, 0.01, 1);
  std::vector<double> plain, blockwise;
  for (int r = 0; r < repeats; ++r) {
    for (const bool blocks : {false, true}) {
      auto engine = marbm::make_engine(marbm::Backend::cpu, options);
      if (blocks) engine = marbm::make_data_parallel_engine(std::move(engine), marbm::single_process_communicator());
      const double start = process_cpu_seconds();
      (void)marbm::train(*engine, data, initial, config);
      (blocks ? blockwise : plain).push_back((process_cpu_seconds() - start) / updates);
    }
  }
  const double p = median(plain), b = median(blockwise);
  std::printf("{\"n\": %d, \"m\": %d, \"batch\": %d, \"threads\": %d, \"updates\": %d, \"repeats\": %d, "
              "\"plain_cpu_seconds_per_update\": %.6g, \"blockwise_cpu_seconds_per_update\": %.6g, "
              "\"ratio\": %.4f}\n",
              n, m, batch, threads, updates, repeats, p, b, b / p);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return marbm::bench::run_tool("plain_vs_blockwise", run, argc, argv); }
