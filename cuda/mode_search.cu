// Ground-state search on the device (SPEC.md section 4).
#include "detail/cuda_entry.hpp"
#include "mode_search.cuh"

#include "marbm/error.hpp"

namespace marbm::detail {

ModeResult find_mode_device(Resources&, const float*, const float*, const float*, int, int, const ModeSearchConfig&) {
  throw RuntimeFailure("find_mode_device: the device ground-state search is not implemented yet");
}

ModeResult find_mode_cuda(const Rbm&, const ModeSearchConfig&) {
  throw RuntimeFailure("find_mode_cuda: the device ground-state search is not implemented yet");
}

}  // namespace marbm::detail
