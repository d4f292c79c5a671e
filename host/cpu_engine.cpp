// Placeholder until the CPU engine lands.
#include "detail/cpu_engine.hpp"
#include "marbm/error.hpp"

namespace marbm::detail {
std::unique_ptr<Engine> make_cpu_engine(const EngineOptions&) { throw RuntimeFailure("cpu engine not built yet"); }
}  // namespace marbm::detail
