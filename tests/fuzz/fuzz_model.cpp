// libFuzzer harness: the safetensors model loader, with its extra tensors,
// and the checkpoint reader on top of it.
#include "fuzz_common.hpp"
#include "marbm/checkpoint.hpp"
#include "marbm/model_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = marbm::fuzz::input_file(data, size, "model.safetensors");
  marbm::fuzz::expect_only_marbm_errors([&] {
    marbm::Metadata metadata;
    marbm::ExtraTensors extra;
    marbm::load_rbm(path, &metadata, &extra);
  });
  marbm::fuzz::expect_only_marbm_errors([&] { marbm::load_checkpoint(path); });
  return 0;
}
