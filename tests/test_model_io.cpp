// Model files: safetensors round trip, float64 input, and every refusal.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "marbm/error.hpp"
#include "marbm/model_io.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class ModelFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("marbm-test-model-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes a safetensors file from a header object and raw data bytes, with
  // an optional override of the length field.
  std::string write(const std::string& name, const json& header, const std::string& data,
                    std::uint64_t length_override = 0) const {
    const std::string text = header.dump();
    const std::uint64_t length = length_override ? length_override : text.size();
    std::string bytes;
    for (int k = 0; k < 8; ++k) bytes.push_back(static_cast<char>((length >> (8 * k)) & 0xff));
    bytes += text + data;
    return raw(name, bytes);
  }
  std::string raw(const std::string& name, const std::string& bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }

  fs::path dir_;
};

template <typename T>
std::string little_endian(const std::vector<T>& values) {
  using Bits = std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>;
  std::string out;
  for (T v : values) {
    const Bits bits = std::bit_cast<Bits>(v);
    for (std::size_t k = 0; k < sizeof(T); ++k) out.push_back(static_cast<char>((bits >> (8 * k)) & 0xff));
  }
  return out;
}

// A valid 2 x 3 float32 model's header and data, to be broken one way at a time.
json good_header() {
  return {{"weights", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
          {"visible_bias", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {24, 32}}}},
          {"hidden_bias", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {32, 44}}}}};
}
std::string good_data() { return little_endian(std::vector<float>{1, 2, 3, 4, 5, 6, 0.5f, -0.5f, 7, 8, 9}); }

template <typename Call>
void expect_data_error(Call call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "no exception; expected one mentioning " << needle;
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

TEST_F(ModelFiles, RoundTripIsBitExactWithMetadata) {
  Rbm rbm = Rbm::random(13, 7, 0.9, 42);
  rbm.weight(0, 0) = std::numeric_limits<float>::denorm_min();
  rbm.weight(1, 1) = -0.0f;
  rbm.hidden_bias()[2] = std::numeric_limits<float>::max();
  const std::string p = path("model.safetensors");
  save_rbm(p, rbm, {{"method", "cd"}, {"format", "caller value is replaced"}});
  Metadata meta;
  const Rbm loaded = load_rbm(p, &meta);
  EXPECT_EQ(loaded, rbm);
  EXPECT_TRUE(std::signbit(loaded.weight(1, 1)));
  EXPECT_EQ(meta.at("method"), "cd");
  EXPECT_EQ(meta.at("format"), "marbm-rbm");
  EXPECT_EQ(meta.at("n_visible"), "13");
  EXPECT_EQ(meta.at("n_hidden"), "7");
  // Nothing but the model is left in the folder (the temporary was renamed).
  int files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 1);
  // Overwriting an existing file works and replaces it.
  const Rbm other = Rbm::random(2, 2, 1.0, 1);
  save_rbm(p, other);
  EXPECT_EQ(load_rbm(p), other);
}

TEST_F(ModelFiles, FileIsStandardSafetensors) {
  // Parse the written file independently of load_rbm: length, header, offsets.
  const Rbm rbm = Rbm::random(4, 3, 1.0, 5);
  const std::string p = path("m.safetensors");
  save_rbm(p, rbm);
  std::ifstream in(p, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::uint64_t length = 0;
  for (int k = 0; k < 8; ++k) length |= std::uint64_t{static_cast<unsigned char>(bytes[k])} << (8 * k);
  EXPECT_EQ((8 + length) % 8, 0u);
  const json header = json::parse(bytes.substr(8, length));
  EXPECT_EQ(header["weights"]["dtype"], "F32");
  EXPECT_EQ(header["weights"]["shape"], json({4, 3}));
  EXPECT_EQ(header["hidden_bias"]["shape"], json({3}));
  EXPECT_EQ(header["__metadata__"]["format"], "marbm-rbm");
  const std::uint64_t begin = header["visible_bias"]["data_offsets"][0];
  float a1 = 0;
  std::memcpy(&a1, bytes.data() + 8 + length + begin + 4, 4);  // test machines are little-endian
  EXPECT_EQ(a1, rbm.visible_bias()[1]);
  EXPECT_EQ(bytes.size(), 8 + length + 4 * (12 + 4 + 3));
}

TEST_F(ModelFiles, Float64FileIsAccepted) {
  json header = {{"weights", {{"dtype", "F64"}, {"shape", {2, 3}}, {"data_offsets", {0, 48}}}},
                 {"visible_bias", {{"dtype", "F64"}, {"shape", {2}}, {"data_offsets", {48, 64}}}},
                 {"hidden_bias", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {64, 76}}}},
                 {"__metadata__", {{"origin", "numpy"}}}};
  const std::string data = little_endian(std::vector<double>{0.1, -2, 3, 4, 5, 6.25, 1e-3, -1e3}) +
                           little_endian(std::vector<float>{7, 8, 9});
  Metadata meta;
  const Rbm rbm = load_rbm(write("f64.safetensors", header, data), &meta);
  ASSERT_EQ(rbm.n_visible(), 2);
  ASSERT_EQ(rbm.n_hidden(), 3);
  EXPECT_EQ(rbm.weight(0, 0), static_cast<float>(0.1));
  EXPECT_EQ(rbm.weight(1, 2), 6.25f);
  EXPECT_EQ(rbm.visible_bias()[1], -1000.0f);
  EXPECT_EQ(rbm.hidden_bias()[2], 9.0f);
  EXPECT_EQ(meta.at("origin"), "numpy");
  // The hand-built float32 file of the refusal tests loads as written.
  const Rbm plain = load_rbm(write("good.safetensors", good_header(), good_data()));
  EXPECT_EQ(plain.weight(1, 0), 4.0f);
  EXPECT_EQ(plain.visible_bias()[1], -0.5f);
}

TEST_F(ModelFiles, RefusesMalformedFiles) {
  expect_data_error([&] { load_rbm(path("absent.safetensors")); }, "absent.safetensors: no such file");
  expect_data_error([&] { load_rbm(raw("short", "abc")); }, "short: too short");
  expect_data_error([&] { load_rbm(write("huge", good_header(), good_data(), 1ull << 40)); },
                    "implausible safetensors header length");
  expect_data_error([&] { load_rbm(write("beyond", good_header(), "", 5000)); }, "beyond: truncated");
  expect_data_error([&] { load_rbm(raw("notjson", std::string("\x05\0\0\0\0\0\0\0{oops", 13))); }, "not valid JSON");
  expect_data_error([&] { load_rbm(write("array", json::array({1, 2}), "")); }, "not a JSON object");

  json missing = good_header();
  missing.erase("hidden_bias");
  expect_data_error([&] { load_rbm(write("missing", missing, good_data().substr(0, 32))); },
                    "missing tensor 'hidden_bias'");

  json dtype = good_header();
  dtype["weights"]["dtype"] = "I32";
  expect_data_error([&] { load_rbm(write("dtype", dtype, good_data())); }, "'weights' has dtype I32");

  json shapes = good_header();
  shapes["visible_bias"]["shape"] = {3};
  shapes["visible_bias"]["data_offsets"] = {24, 36};
  shapes["hidden_bias"]["data_offsets"] = {36, 48};
  expect_data_error([&] { load_rbm(write("shapes", shapes, good_data() + std::string(4, '\0'))); },
                    "'visible_bias' has shape [3]");

  json rank = good_header();
  rank["weights"]["shape"] = {6};
  expect_data_error([&] { load_rbm(write("rank", rank, good_data())); }, "'weights' has shape [6]");

  json size = good_header();
  size["weights"]["shape"] = {2, 2};
  size["hidden_bias"]["shape"] = {2};
  expect_data_error([&] { load_rbm(write("size", size, good_data())); }, "'weights' spans 24 bytes");

  json gap = good_header();
  gap["visible_bias"]["data_offsets"] = {28, 36};
  gap["hidden_bias"]["data_offsets"] = {36, 48};
  expect_data_error([&] { load_rbm(write("gap", gap, good_data() + std::string(4, '\0'))); }, "contiguous");

  json order = good_header();
  order["weights"]["data_offsets"] = {24, 0};
  expect_data_error([&] { load_rbm(write("order", order, good_data())); }, "wrong order");

  expect_data_error([&] { load_rbm(write("trunc", good_header(), good_data().substr(0, 40))); }, "trunc: truncated");
  expect_data_error([&] { load_rbm(write("extra", good_header(), good_data() + "zz")); }, "unexpected bytes");

  json offsets = good_header();
  offsets["weights"].erase("data_offsets");
  expect_data_error([&] { load_rbm(write("offsets", offsets, good_data())); }, "no data_offsets");

  json meta = good_header();
  meta["__metadata__"] = {{"n_visible", 2}};
  expect_data_error([&] { load_rbm(write("meta", meta, good_data())); }, "metadata entry 'n_visible' is not a string");

  std::string nan_data = good_data();
  const std::string nan_bytes = little_endian(std::vector<float>{std::numeric_limits<float>::quiet_NaN()});
  nan_data.replace(36, 4, nan_bytes);
  expect_data_error([&] { load_rbm(write("nan", good_header(), nan_data)); }, "hidden_bias[1] is not finite");

  // A float64 value beyond float32 range would become infinite: refused.
  json wide = good_header();
  wide["visible_bias"]["dtype"] = "F64";
  wide["visible_bias"]["data_offsets"] = {24, 40};
  wide["hidden_bias"]["data_offsets"] = {40, 52};
  const std::string wide_data = good_data().substr(0, 24) + little_endian(std::vector<double>{1e300, 0}) +
                                good_data().substr(32);
  expect_data_error([&] { load_rbm(write("wide", wide, wide_data)); }, "visible_bias[0] = 1e+300 does not fit in float32");

  expect_data_error([&] { load_rbm(dir_.string()); }, "is a directory");
}

TEST_F(ModelFiles, MetadataWithSpecialCharactersRoundTrips) {
  const Metadata meta = {{"quote\"key", "line\nbreak\ttab \\ backslash"}, {"unicode", "\xc3\xa9t\xc3\xa9"}, {"empty", ""}};
  const std::string p = path("meta.safetensors");
  save_rbm(p, Rbm::random(3, 2, 1.0, 9), meta);
  Metadata loaded;
  load_rbm(p, &loaded);
  for (const auto& [key, value] : meta) EXPECT_EQ(loaded.at(key), value) << key;
}

TEST_F(ModelFiles, MetadataThatIsNotUtf8IsSavedWithReplacementCharacters) {
  // A file name in Latin-1 quoted in the metadata: the save must not fail
  // (JSON is UTF-8), the byte becomes U+FFFD and the rest is kept.
  const std::string p = path("latin1.safetensors");
  const Rbm rbm = Rbm::random(3, 2, 1.0, 9);
  ASSERT_NO_THROW(save_rbm(p, rbm, {{"data", "csv:caf\xe9.csv"}}));
  Metadata loaded;
  EXPECT_EQ(load_rbm(p, &loaded), rbm);
  EXPECT_EQ(loaded.at("data"), "csv:caf\xef\xbf\xbd.csv");
}

TEST_F(ModelFiles, FailedSaveLeavesNoTemporaryFile) {
  // The target is a folder, so the final rename fails after the data was written.
  fs::create_directories(dir_ / "taken" / "inner");
  expect_data_error([&] { save_rbm(path("taken"), Rbm(2, 2)); }, "taken");
  int files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 1);  // only the folder itself
}

TEST_F(ModelFiles, SaveRefusals) {
  expect_data_error([&] { save_rbm(path("no/such/folder/m.safetensors"), Rbm(2, 2)); }, "no/such/folder/m.safetensors");
  Rbm bad(2, 2);
  bad.weight(1, 0) = std::numeric_limits<float>::infinity();
  expect_data_error([&] { save_rbm(path("bad.safetensors"), bad); }, "weights[2] is not finite");
  EXPECT_FALSE(fs::exists(path("bad.safetensors")));
  EXPECT_THROW(save_rbm(path("empty.safetensors"), Rbm()), UsageError);
}

}  // namespace
}  // namespace marbm
