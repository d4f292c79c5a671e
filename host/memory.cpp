// How much memory a training run needs and how much the process may still
// use, so that a run too large for the machine is refused before it
// allocates (train.hpp).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "marbm/error.hpp"
#include "marbm/train.hpp"

namespace marbm {

namespace {

double gibibytes(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

// Bytes of the process's current virtual address space, or 0 when unknown.
double virtual_size_bytes() {
  std::ifstream statm("/proc/self/statm");
  double pages = 0;
  if (!(statm >> pages)) return 0;
  return pages * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

double training_memory_bytes(const TrainConfig& config, int n_visible, int n_hidden, int rows) {
  const double n = n_visible, m = n_hidden, r = std::max(rows, 1);
  const double batch = std::max(std::min(config.batch_size, rows), 1);
  // Weight-sized float32 tensors alive at once: the initial model, the
  // engine's parameters, momentum and gradient, a float64 gradient sum (two
  // floats' worth), the copy each evaluation or finite-check takes, the last
  // finite model, the result and the bytes of the saved file.
  const double weight_copies = 10;
  double bytes = weight_copies * 4.0 * n * m;
  bytes += 12.0 * (n + m);                 // biases, their momenta and gradients
  bytes += r * n * (1.0 + 4.0);            // the data set and its float32 copy
  bytes += 8.0 * 4.0 * batch * (n + m);    // batch and chain buffers
  const bool pcd = config.method == TrainMethod::pcd ||
                   (config.method == TrainMethod::mode && config.mode.base == NegativePhase::pcd);
  if (pcd) {
    const double chains = config.persistent_chains > 0 ? config.persistent_chains : batch;
    bytes += 4.0 * 4.0 * chains * (n + m);
  }
  if (config.method == TrainMethod::mode) {
    const double replicas = config.mode.search.replicas > 0 ? config.mode.search.replicas : 1024;
    bytes += 4.0 * 4.0 * replicas * (n + m);  // the solver's population
  }
  return bytes;
}

double available_memory_bytes() {
  double available = 0;
  {
    std::ifstream meminfo("/proc/meminfo");
    std::string line;
    while (std::getline(meminfo, line)) {
      if (line.rfind("MemAvailable:", 0) == 0) {
        std::istringstream fields(line.substr(13));
        double kib = 0;
        if (fields >> kib) available = kib * 1024.0;
        break;
      }
    }
  }
  if (available <= 0) {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) available = static_cast<double>(pages) * static_cast<double>(page);
  }
  if (available <= 0) available = std::numeric_limits<double>::infinity();
  // A limit on the address space (ulimit -v) or data segment binds first.
  for (const int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    rlimit limit{};
    if (::getrlimit(resource, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
      const double left = static_cast<double>(limit.rlim_cur) - virtual_size_bytes();
      available = std::min(available, std::max(left, 0.0));
    }
  }
  return available;
}

void check_training_memory(const TrainConfig& config, int n_visible, int n_hidden, int rows) {
  const double needed = training_memory_bytes(config, n_visible, n_hidden, rows);
  const double available = available_memory_bytes();
  if (needed <= available) return;
  char text[200];
  std::snprintf(text, sizeof text, "needs about %.1f GiB of memory; %.1f GiB are available", gibibytes(needed),
                gibibytes(available));
  throw RuntimeFailure("train: a " + std::to_string(n_visible) + " x " + std::to_string(n_hidden) + " model " +
                       text + " (fewer hidden units, a smaller --batch or fewer --chains)");
}

}  // namespace marbm
