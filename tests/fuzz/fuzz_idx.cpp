// libFuzzer harness: the IDX3 image reader (plain or gzip: the seeds hold both).
#include "fuzz_common.hpp"
#include "marbm/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = marbm::fuzz::input_file(data, size, "images.idx");
  marbm::fuzz::expect_only_marbm_errors([&] { marbm::read_idx_images(path); });
  return 0;
}
