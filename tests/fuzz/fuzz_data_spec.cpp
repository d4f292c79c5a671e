// libFuzzer harness: data specs (kind:arguments@FIRST:COUNT). Specs naming a
// path outside the empty scratch folder are skipped: reading /dev/zero or a
// large system file would test the machine, not the parser.
#include <string>

#include "fuzz_common.hpp"
#include "marbm/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  marbm::fuzz::scratch();
  const std::string spec(reinterpret_cast<const char*>(data), size);
  if (spec.find('/') != std::string::npos || spec.size() > 256) return 0;
  marbm::fuzz::expect_only_marbm_errors([&] { marbm::load_dataset(spec); });
  return 0;
}
