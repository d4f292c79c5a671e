// Entry points into the CUDA engine (cuda/). The CUDA engine is a library of
// its own, libmarbm_cuda, which libmarbm loads with dlopen on the first call
// (host/cuda_loader.cpp), so that a process that never uses CUDA never maps
// the CUDA libraries. Without CUDA they are defined in
// host/cuda_unavailable.cpp and throw CudaError (or return nothing); so do
// they when the library cannot be loaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "detail/mode_search_config.hpp"
#include "marbm/communicator.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/exact.hpp"
#include "marbm/mode.hpp"
#include "marbm/rbm.hpp"

namespace marbm::detail {

/// The CUDA engine on options.device. Throws CudaError when no device is usable.
std::unique_ptr<Engine> make_cuda_engine(const EngineOptions& options);

/// Usable devices; empty when there is no driver or device. Never throws.
std::vector<DeviceInfo> list_cuda_devices();

/// cudaRuntimeGetVersion and cudaDriverGetVersion (0 where they fail). Never throws.
CudaVersions query_cuda_versions();

/// Ground-state search on config.device (config.backend is cuda).
ModeResult find_mode_cuda(const Rbm& rbm, const ModeSearchConfig& config);

/// The replicas of find_mode_cuda's sb or sa search after the dynamics,
/// before the polish (the tests hold them to mode_trajectory_cpu's).
ReplicaTrajectory mode_trajectory_cuda(const Rbm& rbm, const ModeSearchConfig& config);

/// Exact log Z by Gray-code enumeration on `device`.
double log_partition_exact_cuda(const Rbm& rbm, const ExactOptions& options, int device = 0);

/// train_ensemble on the device (inputs already validated).
std::vector<TrainResult> train_ensemble_cuda(const Dataset& data, const std::vector<Rbm>& initial,
                                             const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                             const EnsembleMetricsCallback& on_metrics);

/// What log_partition_ais (host/ais.cpp) hands the device: the checked
/// schedule and base model, and the run settings.
struct AisDeviceRequest {
  const Rbm* rbm = nullptr;
  std::vector<double> betas;            ///< beta_0 = 0 .. beta_K = 1
  std::vector<double> base_bias;        ///< a_A (n)
  std::vector<double> bias_difference;  ///< a - a_A (n)
  int runs = 0;
  std::uint64_t seed = 0;
  bool reverse = false;
  int reverse_burn_in = 0;
  const Dataset* data = nullptr;        ///< reverse starting rows (cycled); null: base-rate samples
  int device = 0;
  std::function<void(double)> progress;  ///< fraction of the work done, from the calling thread
};

/// The M log importance weights of each direction (reverse empty unless
/// asked), computed on the device with host/ais.cpp's algorithm, Philox
/// streams and word layout: the same draws as the CPU for the same seed, so
/// the weights agree with the CPU's up to the float rounding of the fields
/// (cuBLAS sums in another order; a rare draw near its threshold may then
/// differ and that run's trajectory with it).
struct AisDeviceWeights {
  std::vector<double> forward;
  std::vector<double> reverse;
};
AisDeviceWeights ais_log_weights_cuda(const AisDeviceRequest& request);

/// NCCL's version code in the CUDA engine library (e.g. 22703 for 2.27.3);
/// 0 when it has no NCCL or cannot be loaded. Never throws.
int nccl_version();

/// A fresh ncclUniqueId (NCCL_UNIQUE_ID_BYTES bytes), made on rank 0 and
/// broadcast. Throws CudaError without NCCL.
std::vector<std::byte> nccl_unique_id();

/// What one rank of data-parallel training on the device needs: the NCCL id
/// every rank shares, and the communicator of the ranks (host collectives:
/// chain checkpoints, the mode).
struct CudaDataParallelSetup {
  std::vector<std::byte> nccl_unique_id;
  std::shared_ptr<Communicator> comm;
};

/// One rank's CUDA engine on options.device whose gradient is summed over the
/// ranks with NCCL (collective: every rank must call it). Throws CudaError
/// when there is no device or no NCCL.
std::unique_ptr<Engine> make_cuda_data_parallel_engine(const EngineOptions& options, const CudaDataParallelSetup& setup);

/// The PCI bus id of `device` ("0000:3b:00.0"), which names the GPU whatever
/// CUDA_VISIBLE_DEVICES says; empty when unknown. Never throws.
std::string cuda_pci_bus_id(int device);

/// Why the CUDA engine library cannot be used (empty when it loaded, or was
/// never asked for). Loads it when not yet tried.
std::string cuda_library_problem();

/// What libmarbm_cuda exports (extern "C" marbm_cuda_entry_points()): its
/// version, which must equal libmarbm's, and one pointer per entry point.
struct CudaEntryPoints {
  const char* version;
  std::unique_ptr<Engine> (*make_cuda_engine)(const EngineOptions&);
  std::vector<DeviceInfo> (*list_cuda_devices)();
  CudaVersions (*query_cuda_versions)();
  ModeResult (*find_mode_cuda)(const Rbm&, const ModeSearchConfig&);
  ReplicaTrajectory (*mode_trajectory_cuda)(const Rbm&, const ModeSearchConfig&);
  double (*log_partition_exact_cuda)(const Rbm&, const ExactOptions&, int);
  std::vector<TrainResult> (*train_ensemble_cuda)(const Dataset&, const std::vector<Rbm>&,
                                                  const std::vector<std::uint64_t>&, const TrainConfig&,
                                                  const EnsembleMetricsCallback&);
  AisDeviceWeights (*ais_log_weights_cuda)(const AisDeviceRequest&);
  int (*nccl_version)();
  std::vector<std::byte> (*nccl_unique_id)();
  std::unique_ptr<Engine> (*make_cuda_data_parallel_engine)(const EngineOptions&, const CudaDataParallelSetup&);
  std::string (*cuda_pci_bus_id)(int);
};

}  // namespace marbm::detail
