// The CPU engine: the reference implementation of Engine (BLAS + OpenMP).
#pragma once

#include <memory>

#include "marbm/engine.hpp"

namespace marbm::detail {

std::unique_ptr<Engine> make_cpu_engine(const EngineOptions& options);

}  // namespace marbm::detail
