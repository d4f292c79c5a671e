// The CUDA engine, loaded on first use. libmarbm_cuda (cuda/) holds the
// kernels and links cudart, cuBLAS and cuRAND; libmarbm loads it with dlopen
// the first time a CUDA entry point is called, from the folder libmarbm
// itself was loaded from (then by the usual library search), so that a
// process that never uses CUDA pays nothing for it.
#include <dlfcn.h>

#include <filesystem>
#include <mutex>
#include <string>

#include "detail/cuda_entry.hpp"
#include "marbm/error.hpp"

namespace marbm::detail {

namespace {

struct CudaLibrary {
  const CudaEntryPoints* entry = nullptr;
  std::string problem;  ///< why entry is null
};

// Where this code was loaded from: libmarbm's folder (or the program's, when
// linked statically).
std::string own_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&own_folder), &info) == 0 || info.dli_fname == nullptr) return {};
  return std::filesystem::path(info.dli_fname).parent_path().string();
}

CudaLibrary load() {
  CudaLibrary library;
  const std::string name = MARBM_CUDA_LIBRARY;
  void* handle = nullptr;
  std::string first_error;
  if (const std::string folder = own_folder(); !folder.empty()) {
    handle = ::dlopen((std::filesystem::path(folder) / name).c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* error = ::dlerror();
      first_error = error ? error : "";
    }
  }
  if (handle == nullptr) handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = ::dlerror();
    // The error for the file beside libmarbm says more when it exists (a
    // missing libcudart, say) than "not found" from the search path.
    library.problem = "the CUDA engine library " + name + " cannot be loaded (" +
                      (first_error.find("No such file") == std::string::npos && !first_error.empty()
                           ? first_error
                           : std::string(error ? error : "unknown error")) +
                      ")";
    return library;
  }
  using EntryFunction = const CudaEntryPoints* (*)();
  const auto entry = reinterpret_cast<EntryFunction>(::dlsym(handle, "marbm_cuda_entry_points"));
  if (entry == nullptr) {
    library.problem = "the CUDA engine library " + name + " has no entry points (not a marbm library?)";
    return library;
  }
  const CudaEntryPoints* table = entry();
  if (table == nullptr || table->version == nullptr || std::string(table->version) != MARBM_VERSION) {
    library.problem = "the CUDA engine library " + name + " is version " +
                      (table && table->version ? table->version : "?") + ", this marbm is " + MARBM_VERSION;
    return library;
  }
  library.entry = table;
  return library;
}

const CudaLibrary& library() {
  static const CudaLibrary loaded = load();
  return loaded;
}

const CudaEntryPoints& required() {
  const CudaLibrary& loaded = library();
  if (loaded.entry == nullptr) throw CudaError("the cuda backend is not available: " + loaded.problem);
  return *loaded.entry;
}

}  // namespace

std::string cuda_library_problem() { return library().problem; }

std::unique_ptr<Engine> make_cuda_engine(const EngineOptions& options) { return required().make_cuda_engine(options); }

std::vector<DeviceInfo> list_cuda_devices() {
  const CudaLibrary& loaded = library();
  return loaded.entry ? loaded.entry->list_cuda_devices() : std::vector<DeviceInfo>{};
}

CudaVersions query_cuda_versions() {
  const CudaLibrary& loaded = library();
  return loaded.entry ? loaded.entry->query_cuda_versions() : CudaVersions{};
}

ModeResult find_mode_cuda(const Rbm& rbm, const ModeSearchConfig& config) {
  return required().find_mode_cuda(rbm, config);
}

ReplicaTrajectory mode_trajectory_cuda(const Rbm& rbm, const ModeSearchConfig& config) {
  return required().mode_trajectory_cuda(rbm, config);
}

double log_partition_exact_cuda(const Rbm& rbm, const ExactOptions& options, int device) {
  return required().log_partition_exact_cuda(rbm, options, device);
}

std::vector<TrainResult> train_ensemble_cuda(const Dataset& data, const std::vector<Rbm>& initial,
                                             const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                             const EnsembleMetricsCallback& on_metrics) {
  return required().train_ensemble_cuda(data, initial, seeds, config, on_metrics);
}

AisDeviceWeights ais_log_weights_cuda(const AisDeviceRequest& request) {
  return required().ais_log_weights_cuda(request);
}

int nccl_version() {
  const CudaLibrary& loaded = library();
  return loaded.entry ? loaded.entry->nccl_version() : 0;
}

std::string cuda_pci_bus_id(int device) {
  const CudaLibrary& loaded = library();
  return loaded.entry ? loaded.entry->cuda_pci_bus_id(device) : std::string();
}

std::vector<std::byte> nccl_unique_id() { return required().nccl_unique_id(); }

std::unique_ptr<Engine> make_cuda_data_parallel_engine(const EngineOptions& options, const CudaDataParallelSetup& setup) {
  return required().make_cuda_data_parallel_engine(options, setup);
}

}  // namespace marbm::detail
