#include "marbm/random.hpp"

#include <cmath>
#include <numbers>

namespace marbm {

double standard_normal(const PhiloxStream& stream, std::uint64_t index) {
  // Box-Muller on the pair (2 index, 2 index + 1); 1 - u keeps log away from 0.
  const double u1 = 1.0 - stream.uniform_double(2 * index);
  const double u2 = stream.uniform_double(2 * index + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

}  // namespace marbm
