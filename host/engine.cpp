// Engine selection, build facts and the small parsers shared by every front end.
#include "marbm/engine.hpp"

#include <iostream>

#include "detail/cpu_engine.hpp"
#include "detail/cuda_entry.hpp"
#include "marbm/error.hpp"

namespace marbm {

Backend parse_backend(std::string_view text) {
  if (text == "cpu") return Backend::cpu;
  if (text == "cuda") return Backend::cuda;
  if (text == "auto") return Backend::automatic;
  throw UsageError("unknown backend '" + std::string(text) + "' (expected cpu, cuda or auto)");
}

std::string_view to_string(Backend backend) {
  switch (backend) {
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
    case Backend::automatic: return "auto";
  }
  return "?";
}

OptimizerState Engine::optimizer_state() const {
  throw UsageError("this engine (" + description() + ") cannot save its optimiser state for a checkpoint");
}

void Engine::set_optimizer_state(const OptimizerState&) {
  throw UsageError("this engine (" + description() + ") cannot restore an optimiser state from a checkpoint");
}

void Engine::set_persistent_chain_states(std::span<const std::uint8_t>, int) {
  throw UsageError("this engine (" + description() + ") cannot restore persistent chains from a checkpoint");
}

bool cuda_compiled() {
#ifdef MARBM_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<DeviceInfo> cuda_devices() { return detail::list_cuda_devices(); }

CudaVersions cuda_versions() { return detail::query_cuda_versions(); }

std::string version() { return MARBM_VERSION; }

std::unique_ptr<Engine> make_engine(Backend backend, const EngineOptions& options) {
  switch (backend) {
    case Backend::cpu:
      return detail::make_cpu_engine(options);
    case Backend::cuda:
      return detail::make_cuda_engine(options);
    case Backend::automatic:
      if (!cuda_devices().empty()) return detail::make_cuda_engine(options);
      if (!options.quiet) {
        std::cerr << "marbm: note: no usable CUDA device" << (cuda_compiled() ? "" : " (built without CUDA)")
                  << "; using the cpu engine\n";
      }
      return detail::make_cpu_engine(options);
  }
  throw UsageError("unknown backend");
}

}  // namespace marbm
