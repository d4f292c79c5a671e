// libFuzzer harness: data specs (kind:arguments@FIRST:COUNT). Specs with a
// '/' are skipped: reading /dev/zero or a large system file would test the
// machine, not the parser (file names in the current folder stay in).
#include <string>

#include "fuzz_common.hpp"
#include "marbm/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  if (spec.find('/') != std::string::npos || spec.size() > 256) return 0;
  marbm::fuzz::expect_only_marbm_errors([&] { marbm::load_dataset(spec); });
  return 0;
}
