// One exact log Z, timed: the driver of bench/exact-cpu.sh. It uses only the
// public API that every version of marbm has had, so the script can build it
// against an earlier library to measure "before" and "after" the same way.
//
// usage: exact_time N_VISIBLE N_HIDDEN THREADS REPEATS
// Model: Rbm::random(N_VISIBLE, N_HIDDEN, 0.5, 1). Prints, for the fastest of
// REPEATS runs: log_z (17 digits) wall_seconds cpu_seconds (the process's
// user + system time over the run, all threads).
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace {

double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: exact_time N_VISIBLE N_HIDDEN THREADS REPEATS\n");
    return 2;
  }
  const int n = std::atoi(argv[1]), m = std::atoi(argv[2]), threads = std::atoi(argv[3]), repeats = std::atoi(argv[4]);
  if (n < 1 || m < 1 || threads < 1 || repeats < 1) {
    std::fprintf(stderr, "exact_time: arguments must be positive integers\n");
    return 2;
  }
  omp_set_num_threads(threads);
  const marbm::Rbm rbm = marbm::Rbm::random(n, m, 0.5, 1);
  marbm::ExactOptions options;
  options.max_enumerated_units = 40;
  double best_wall = 0.0, best_cpu = 0.0, log_z = 0.0;
  for (int r = 0; r < repeats; ++r) {
    const double cpu = process_cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    log_z = marbm::log_partition_exact(rbm, options);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double used = process_cpu_seconds() - cpu;
    if (r == 0 || wall < best_wall) best_wall = wall, best_cpu = used;
  }
  std::printf("%.17g %.4f %.4f\n", log_z, best_wall, best_cpu);
  return 0;
}
