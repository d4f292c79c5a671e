// `marbm info`: what this build of marbm can use on this machine.
#include <dlfcn.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"

namespace marbm::cli {
namespace {

struct InfoOptions {
  bool json = false;
};

// The OpenMP runtime's thread count, or -1. The library links the runtime
// privately, so the tool looks the function up in the loaded process rather
// than linking OpenMP itself.
int openmp_max_threads() {
  using Query = int (*)();
  void* symbol = ::dlsym(RTLD_DEFAULT, "omp_get_max_threads");
  if (symbol == nullptr) return -1;
  return reinterpret_cast<Query>(symbol)();
}

// "13.0" from CUDA's 13000; null/"unknown" for 0.
std::string cuda_version_text(int version) {
  if (version <= 0) return "unknown";
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// Why no device is usable, in the engine's words (one line).
std::string unusable_reason() {
  try {
    (void)make_engine(Backend::cuda, EngineOptions{});
  } catch (const std::exception& error) {
    return error.what();
  }
  return "unknown";
}

// NCCL's version code (major * 10000 + minor * 100 + patch since 2.9) as text.
std::string nccl_version_text(int code) {
  return std::to_string(code / 10000) + "." + std::to_string(code / 100 % 100) + "." + std::to_string(code % 100);
}

int run_info(const InfoOptions& options) {
  const auto devices = cuda_devices();
  const CudaVersions versions = cuda_versions();
  // The CPU engine's own description reports the threads OpenMP will use and
  // the BLAS it links, which is what a user tuning --threads needs.
  const std::string cpu = make_engine(Backend::cpu)->description();
  const unsigned hardware_threads = std::thread::hardware_concurrency();
  const char* omp_env = std::getenv("OMP_NUM_THREADS");
  const int openmp_threads = openmp_max_threads();
  const int nccl = nccl_version();

  if (options.json) {
    nlohmann::json out;
    out["version"] = version();
    out["cuda_compiled"] = cuda_compiled();
    out["cpu_engine"] = cpu;
    out["hardware_threads"] = hardware_threads;
    out["openmp_threads"] = openmp_threads > 0 ? nlohmann::json(openmp_threads) : nlohmann::json(nullptr);
    out["omp_num_threads"] = omp_env ? nlohmann::json(omp_env) : nlohmann::json(nullptr);
    auto version_json = [](int version) {
      return version > 0 ? nlohmann::json(cuda_version_text(version)) : nlohmann::json(nullptr);
    };
    out["cuda_runtime_version"] = version_json(versions.runtime);
    out["cuda_driver_version"] = version_json(versions.driver);
    out["mpi_compiled"] = mpi_compiled();
    out["nccl_compiled"] = nccl_compiled();
    out["nccl_version"] = nccl > 0 ? nlohmann::json(nccl_version_text(nccl)) : nlohmann::json(nullptr);
    out["devices"] = nlohmann::json::array();
    for (const auto& device : devices) {
      out["devices"].push_back({{"ordinal", device.ordinal},
                                {"name", device.name},
                                {"memory_bytes", device.memory_bytes},
                                {"compute_capability", std::to_string(device.compute_capability_major) + "." +
                                                           std::to_string(device.compute_capability_minor)}});
    }
    print_json(out);
    return 0;
  }
  std::cout << "marbm " << version() << '\n';
  std::cout << "cpu engine: " << cpu << " (" << hardware_threads << " hardware threads";
  if (openmp_threads > 0) std::cout << ", OpenMP " << openmp_threads;
  if (omp_env) std::cout << ", OMP_NUM_THREADS=" << omp_env;
  std::cout << ")\n";
  std::cout << "cuda engine: " << (cuda_compiled() ? "compiled" : "not compiled");
  if (cuda_compiled()) {
    std::cout << " (runtime " << cuda_version_text(versions.runtime) << ", driver supports "
              << cuda_version_text(versions.driver) << ")";
  }
  std::cout << '\n';
  std::cout << "scale-out: MPI " << (mpi_compiled() ? "compiled" : "not compiled") << ", NCCL ";
  if (nccl > 0) {
    std::cout << nccl_version_text(nccl) << " (GPU ranks)";
  } else {
    std::cout << (nccl_compiled() ? "compiled but not loadable" : "not compiled");
  }
  std::cout << '\n';
  if (devices.empty()) {
    std::cout << "cuda devices: none usable";
    if (cuda_compiled()) std::cout << " (" << unusable_reason() << ")";
    std::cout << '\n';
  }
  for (const auto& device : devices) {
    std::cout << "cuda device " << device.ordinal << ": " << device.name << ", "
              << format_number(static_cast<double>(device.memory_bytes) / (1024.0 * 1024.0 * 1024.0), 3)
              << " GiB, compute capability " << device.compute_capability_major << '.'
              << device.compute_capability_minor << '\n';
  }
  return 0;
}

Runner setup_info(CLI::App& app) {
  auto options = std::make_shared<InfoOptions>();
  app.add_flag("--json", options->json, "print one JSON object on stdout");
  return [options] { return run_info(*options); };
}

const bool registered =
    register_command({"info", "version, compiled engines, CUDA devices and CPU threads", 90, setup_info});

}  // namespace
}  // namespace marbm::cli
