// Switches read from the environment (MARBM_REQUIRE_GPU, MARBM_CUDA_SYNC).
#pragma once

#include <cstdlib>
#include <string_view>

namespace marbm::detail {

/// Whether an environment value turns a switch on: set, not empty and not "0".
inline bool env_flag_value(const char* value) {
  return value != nullptr && *value != '\0' && std::string_view(value) != "0";
}

/// env_flag_value of the variable `name`.
inline bool env_flag(const char* name) { return env_flag_value(std::getenv(name)); }

}  // namespace marbm::detail
