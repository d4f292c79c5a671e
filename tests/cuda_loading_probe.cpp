// Checks that CPU work costs nothing of CUDA: after training, exact
// evaluation and a ground-state search on the CPU, the process maps no CUDA
// library (/proc/self/maps). Then, in a build with the CUDA engine, asking
// for the devices loads the engine's library, and `cuda_compiled()` says it
// is there. Exit status 0 when all holds; one line per failure otherwise.
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/exact.hpp"
#include "marbm/mode.hpp"
#include "marbm/train.hpp"

namespace {

// The mapped files whose names contain any of `needles`.
std::vector<std::string> mapped(const std::vector<std::string>& needles) {
  std::ifstream maps("/proc/self/maps");
  std::vector<std::string> found;
  for (std::string line; std::getline(maps, line);) {
    for (const std::string& needle : needles) {
      if (line.find(needle) != std::string::npos) {
        found.push_back(line.substr(line.find('/') == std::string::npos ? 0 : line.find('/')));
        break;
      }
    }
  }
  return found;
}

}  // namespace

int main() {
  const std::vector<std::string> cuda_libraries = {"libcudart", "libcublas", "libcurand", "libcuda.", "libmarbm_cuda"};
  int failures = 0;

  auto engine = marbm::make_engine(marbm::Backend::cpu, {.threads = 1});
  const marbm::Dataset data = marbm::shifting_bars(6, 3);
  marbm::TrainConfig config;
  config.method = marbm::TrainMethod::mode;
  config.iterations = 200;
  config.batch_size = 6;
  const marbm::TrainResult result = marbm::train(*engine, data, marbm::Rbm::random(6, 6, 0.1, 1), config);
  (void)marbm::log_partition_exact(result.model);
  marbm::ModeSearchConfig search;
  search.backend = marbm::Backend::cpu;
  search.solver = marbm::ModeSolver::sa;
  (void)marbm::find_mode(result.model, search);

  for (const std::string& file : mapped(cuda_libraries)) {
    std::cout << "cpu work mapped a CUDA library: " << file << '\n';
    ++failures;
  }

#ifdef MARBM_HAVE_CUDA
  if (!marbm::cuda_compiled()) {
    std::cout << "cuda_compiled() is false in a build with the CUDA engine\n";
    ++failures;
  }
  (void)marbm::cuda_devices();  // loads the engine library (no device needed)
  if (mapped({"libmarbm_cuda"}).empty()) {
    std::cout << "asking for CUDA devices did not load libmarbm_cuda\n";
    ++failures;
  }
#endif
  if (failures == 0) std::cout << "no CUDA library mapped by cpu work\n";
  return failures == 0 ? 0 : 1;
}
