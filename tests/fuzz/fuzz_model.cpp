// libFuzzer harness: the safetensors model loader.
#include "fuzz_common.hpp"
#include "marbm/model_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = marbm::fuzz::input_file(data, size, "model.safetensors");
  marbm::fuzz::expect_only_marbm_errors([&] {
    marbm::Metadata metadata;
    marbm::load_rbm(path, &metadata);
  });
  return 0;
}
