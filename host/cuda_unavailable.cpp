// Stand-ins for the CUDA entry points in a build without the CUDA engine.
#include "detail/cuda_entry.hpp"
#include "marbm/error.hpp"

namespace marbm::detail {

namespace {
[[noreturn]] void no_cuda() {
  throw CudaError("the cuda backend is not available: this build of marbm has no CUDA engine (MARBM_CUDA=OFF or no CUDA compiler)");
}
}  // namespace

std::unique_ptr<Engine> make_cuda_engine(const EngineOptions&) { no_cuda(); }
std::vector<DeviceInfo> list_cuda_devices() { return {}; }
CudaVersions query_cuda_versions() { return {}; }
ModeResult find_mode_cuda(const Rbm&, const ModeSearchConfig&) { no_cuda(); }
ReplicaTrajectory mode_trajectory_cuda(const Rbm&, const ModeSearchConfig&) { no_cuda(); }
double log_partition_exact_cuda(const Rbm&, const ExactOptions&, int) { no_cuda(); }
std::vector<TrainResult> train_ensemble_cuda(const Dataset&, const std::vector<Rbm>&, const std::vector<std::uint64_t>&,
                                             const TrainConfig&, const EnsembleMetricsCallback&) {
  no_cuda();
}
std::string cuda_library_problem() { return "this build of marbm has no CUDA engine"; }
AisDeviceWeights ais_log_weights_cuda(const AisDeviceRequest&) { no_cuda(); }
int nccl_version() { return 0; }
std::string cuda_pci_bus_id(int) { return {}; }
std::vector<std::byte> nccl_unique_id() { no_cuda(); }
std::unique_ptr<Engine> make_cuda_data_parallel_engine(const EngineOptions&, const CudaDataParallelSetup&) { no_cuda(); }

}  // namespace marbm::detail
