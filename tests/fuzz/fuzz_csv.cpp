// libFuzzer harness: the CSV reader (plain or gzip).
#include "fuzz_common.hpp"
#include "marbm/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = marbm::fuzz::input_file(data, size, "data.csv");
  marbm::fuzz::expect_only_marbm_errors([&] { marbm::read_csv(path); });
  return 0;
}
