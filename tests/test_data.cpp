// Data sets: generators, file loaders, the spec parser and their refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <unistd.h>

#include "marbm/data.hpp"
#include "marbm/error.hpp"

namespace marbm {
namespace {

namespace fs = std::filesystem;

std::string row_string(const Dataset& data, int r) {
  std::string s;
  for (auto v : data.row(r)) s.push_back(v ? '1' : '0');
  return s;
}

// A gzip stream written by hand with stored (uncompressed) deflate blocks, so
// the tests need no compression library of their own.
std::string gzip_stored(const std::string& data) {
  std::uint32_t crc = 0xffffffffu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xffffffffu;
  std::string out = {'\x1f', '\x8b', '\x08', '\0', '\0', '\0', '\0', '\0', '\0', '\xff'};
  std::size_t pos = 0;
  do {
    const std::size_t len = std::min<std::size_t>(65535, data.size() - pos);
    const bool last = pos + len == data.size();
    out.push_back(last ? '\x01' : '\0');
    for (unsigned v : {static_cast<unsigned>(len), static_cast<unsigned>(~len & 0xffffu)}) {
      out.push_back(static_cast<char>(v & 0xff));
      out.push_back(static_cast<char>((v >> 8) & 0xff));
    }
    out.append(data, pos, len);
    pos += len;
  } while (pos < data.size());
  for (std::uint32_t v : {crc, static_cast<std::uint32_t>(data.size())})
    for (int k = 0; k < 4; ++k) out.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  return out;
}

// A fresh folder per test for the files the tests write themselves.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("marbm-test-data-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name, const std::string& contents) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << contents;
    return p;
  }
  std::string gz_file(const std::string& name, const std::string& contents) const {
    return file(name, gzip_stored(contents));
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Expects `call` to throw exactly `Expected` with a message containing `needle`.
template <typename Expected, typename Call>
void expect_refusal(Call call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "no exception; expected one mentioning " << needle;
  } catch (const Expected& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message is not one line: " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

std::string idx_header(std::uint32_t magic, std::uint32_t count, std::uint32_t rows, std::uint32_t cols) {
  std::string h;
  for (std::uint32_t v : {magic, count, rows, cols})
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>((v >> s) & 0xff));
  return h;
}

TEST(Data, ShiftingBarsSixThreeMatchesSpec) {
  const Dataset d = shifting_bars(6, 3);
  ASSERT_EQ(d.n_rows, 6);
  ASSERT_EQ(d.n_cols, 6);
  const char* expected[] = {"000111", "001110", "011100", "111000", "110001", "100011"};
  for (int r = 0; r < 6; ++r) EXPECT_EQ(row_string(d, r), expected[r]) << "row " << r;
}

TEST(Data, ShiftingBarsRowsAreDistinctCyclicRuns) {
  for (int n : {2, 5, 9, 17}) {
    for (int length = 1; length < n; length += 3) {
      const Dataset d = shifting_bars(n, length);
      std::set<std::string> seen;
      for (int r = 0; r < d.n_rows; ++r) {
        const std::string s = row_string(d, r);
        seen.insert(s);
        // Exactly one cyclic run: count 0->1 transitions around the ring.
        int ones = 0, starts = 0;
        for (int i = 0; i < n; ++i) {
          ones += s[i] == '1';
          starts += s[i] == '1' && s[(i + n - 1) % n] == '0';
        }
        EXPECT_EQ(ones, length);
        EXPECT_EQ(starts, 1);
      }
      EXPECT_EQ(static_cast<int>(seen.size()), n);
    }
  }
  expect_refusal<UsageError>([] { shifting_bars(6, 6); }, "shifting bars");
  expect_refusal<UsageError>([] { shifting_bars(6, 0); }, "shifting bars");
}

TEST(Data, BarsAndStripesHaveTheDefiningProperty) {
  for (int n : {2, 3, 4, 5}) {
    const Dataset d = bars_and_stripes(n);
    EXPECT_EQ(d.n_rows, (1 << (n + 1)) - 2) << "N = " << n;
    EXPECT_EQ(d.n_cols, n * n);
    std::set<std::string> seen;
    for (int r = 0; r < d.n_rows; ++r) {
      const auto img = d.row(r);
      bool rows_constant = true, cols_constant = true;
      for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
          rows_constant = rows_constant && img[y * n + x] == img[y * n];
          cols_constant = cols_constant && img[y * n + x] == img[x];
        }
      EXPECT_TRUE(rows_constant || cols_constant) << "row " << r << " of N = " << n;
      seen.insert(row_string(d, r));
    }
    EXPECT_EQ(static_cast<int>(seen.size()), d.n_rows) << "duplicate patterns for N = " << n;
  }
  EXPECT_EQ(bars_and_stripes(3).n_rows, 14);
  EXPECT_EQ(bars_and_stripes(4).n_rows, 30);
  expect_refusal<UsageError>([] { bars_and_stripes(1); }, "bars and stripes");
}

TEST(Data, DistinctRowsCountsDuplicatesInFirstSeenOrder) {
  Dataset d;
  d.n_cols = 2;
  d.n_rows = 5;
  d.values = {1, 0, 0, 0, 1, 0, 1, 1, 0, 0};
  const DistinctRows distinct = distinct_rows(d);
  ASSERT_EQ(distinct.rows.size(), 3u);
  EXPECT_EQ(distinct.rows[0], (std::vector<std::uint8_t>{1, 0}));
  EXPECT_EQ(distinct.rows[1], (std::vector<std::uint8_t>{0, 0}));
  EXPECT_EQ(distinct.rows[2], (std::vector<std::uint8_t>{1, 1}));
  EXPECT_EQ(distinct.counts, (std::vector<int>{2, 2, 1}));
}

TEST(Data, LoadDatasetParsesGeneratorSpecsAndRanges) {
  const Dataset bars = load_dataset("shifting-bars:6:3");
  EXPECT_EQ(bars.values, shifting_bars(6, 3).values);
  EXPECT_EQ(bars.description, "shifting-bars:6:3");
  const Dataset bas = load_dataset("bars-and-stripes:4");
  EXPECT_EQ(bas.values, bars_and_stripes(4).values);
  const Dataset part = load_dataset("shifting-bars:6:3@2:3");
  ASSERT_EQ(part.n_rows, 3);
  EXPECT_EQ(row_string(part, 0), "011100");
  EXPECT_EQ(row_string(part, 2), "110001");

  expect_refusal<UsageError>([] { load_dataset("nonsense"); }, "nonsense");
  expect_refusal<UsageError>([] { load_dataset("gaussian:5"); }, "unknown kind 'gaussian'");
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:6"); }, "shifting-bars:6");
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:six:3"); }, "six");
  expect_refusal<UsageError>([] { load_dataset("bars-and-stripes:"); }, "bars-and-stripes:");
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:6:3@4:3"); }, "out of range");
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:6:3@0:0"); }, "@0:0");
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:6:3@1"); }, "@1");
  // @FIRST: runs to the end.
  const Dataset tail = load_dataset("shifting-bars:6:3@4:");
  ASSERT_EQ(tail.n_rows, 2);
  EXPECT_EQ(row_string(tail, 0), "110001");
  EXPECT_EQ(row_string(tail, 1), "100011");
  EXPECT_EQ(load_dataset("shifting-bars:6:3@0:").n_rows, 6);
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:6:3@6:"); }, "row 6 is out of range");
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:6:3@:"); }, "@:");
  // Row numbers near the long long limit: first + count overflows, which
  // must not turn an out-of-range selection into an out-of-bounds read.
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:6:3@9223372036854775807:1"); }, "out of range");
  expect_refusal<UsageError>([] { load_dataset("shifting-bars:6:3@1:9223372036854775807"); }, "out of range");
  expect_refusal<UsageError>(
      [] { load_dataset("shifting-bars:6:3@4611686018427387904:4611686018427387904"); }, "out of range");
}

TEST(Data, CsvReadsCommasWhitespaceCommentsAndGzip) {
  TempDir dir;
  const std::string text = "# a comment\n0,1,1\n\n1 0 0\r\n  1, 1 ,0\n";
  for (const std::string& path : {dir.file("a.csv", text), dir.gz_file("a.csv.gz", text)}) {
    const Dataset d = read_csv(path);
    ASSERT_EQ(d.n_rows, 3);
    ASSERT_EQ(d.n_cols, 3);
    EXPECT_EQ(row_string(d, 0), "011");
    EXPECT_EQ(row_string(d, 1), "100");
    EXPECT_EQ(row_string(d, 2), "110");
  }
  const std::string path = dir.file("b.csv", "0,1\n1,1\n0,0\n1,0\n");
  const Dataset part = load_dataset("csv:" + path + "@1:2");
  ASSERT_EQ(part.n_rows, 2);
  EXPECT_EQ(row_string(part, 0), "11");
  EXPECT_EQ(row_string(part, 1), "00");
  expect_refusal<UsageError>([&] { load_dataset("csv:" + path + "@3:2"); }, "out of range");
}

TEST(Data, CsvRefusalsNameFileAndLine) {
  TempDir dir;
  const std::string non_binary = dir.file("nb.csv", "0,1\n1,2\n");
  expect_refusal<DataError>([&] { read_csv(non_binary); }, non_binary + ":2");
  const std::string ragged = dir.file("rag.csv", "0,1,1\n1,0\n");
  expect_refusal<DataError>([&] { read_csv(ragged); }, ragged + ":2");
  const std::string empty_field = dir.file("ef.csv", "0,,1\n");
  expect_refusal<DataError>([&] { read_csv(empty_field); }, empty_field + ":1");
  // An empty field in a later row is one value, not two: the row has the
  // right length and the error is about the empty value.
  const std::string later_empty = dir.file("le.csv", "0,1,1\n0,,1\n1, ,0\n");
  expect_refusal<DataError>([&] { read_csv(later_empty); }, later_empty + ":2: value '' is not 0 or 1");
  const std::string trailing = dir.file("tc.csv", "0,1,1\n0,1,\n");
  expect_refusal<DataError>([&] { read_csv(trailing); }, trailing + ":2: value '' is not 0 or 1");
  const std::string empty = dir.file("empty.csv", "# nothing\n\n");
  expect_refusal<DataError>([&] { read_csv(empty); }, empty);
  const std::string missing = dir.path("missing.csv");
  expect_refusal<DataError>([&] { read_csv(missing); }, missing);
  expect_refusal<DataError>([&] { load_dataset("csv:" + missing); }, "no such file");
}

TEST(Data, IdxReadsAndBinarizes) {
  TempDir dir;
  std::string bytes = idx_header(2051, 2, 2, 3);
  for (int v : {0, 127, 128, 255, 10, 200, 128, 0, 1, 2, 3, 129}) bytes.push_back(static_cast<char>(v));
  for (const std::string& path : {dir.file("x.idx", bytes), dir.gz_file("x.idx.gz", bytes)}) {
    const Dataset d = read_idx_images(path);
    ASSERT_EQ(d.n_rows, 2);
    ASSERT_EQ(d.n_cols, 6);
    EXPECT_EQ(row_string(d, 0), "001101");
    EXPECT_EQ(row_string(d, 1), "100001");
  }
  EXPECT_EQ(row_string(read_idx_images(dir.path("x.idx"), 2), 1), "100111");
}

TEST(Data, IdxRefusals) {
  TempDir dir;
  std::string good = idx_header(2051, 2, 2, 2) + std::string(8, '\x01');
  const std::string wrong_magic = dir.file("magic.idx", idx_header(2049, 2, 2, 2) + std::string(8, '\x01'));
  expect_refusal<DataError>([&] { read_idx_images(wrong_magic); }, wrong_magic + ": wrong magic number 2049");
  const std::string truncated = dir.file("trunc.idx", good.substr(0, good.size() - 1));
  expect_refusal<DataError>([&] { read_idx_images(truncated); }, truncated + ": truncated");
  const std::string short_header = dir.file("short.idx", good.substr(0, 10));
  expect_refusal<DataError>([&] { read_idx_images(short_header); }, short_header);
  const std::string absurd = dir.file("absurd.idx", idx_header(2051, 0xffffffffu, 0xffffu, 0xffffu));
  expect_refusal<DataError>([&] { read_idx_images(absurd); }, "implausible dimensions");
  const std::string trailing = dir.file("trail.idx", good + "xx");
  expect_refusal<DataError>([&] { read_idx_images(trailing); }, trailing);
  // A gzip stream cut short: the decompressor must report it, not return a prefix.
  const std::string gz = dir.gz_file("full.idx.gz", good + std::string(4000, '\x07'));
  std::string gz_bytes;
  {
    std::ifstream in(gz, std::ios::binary);
    gz_bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string cut = dir.file("cut.idx.gz", gz_bytes.substr(0, gz_bytes.size() / 2));
  expect_refusal<DataError>([&] { read_idx_images(cut); }, cut);
  expect_refusal<DataError>([&] { read_idx_images(dir.path("none.idx")); }, "none.idx: no such file");
}

TEST(Data, DigitsReadsAndRefusesBadLines) {
  TempDir dir;
  std::string line;
  for (int k = 0; k < 64; ++k) line += std::to_string(k % 17) + ",";
  const std::string good = dir.gz_file("d.csv.gz", line + "3\n" + line + "9\n");
  const Dataset d = read_digits(good);
  ASSERT_EQ(d.n_rows, 2);
  ASSERT_EQ(d.n_cols, 64);
  for (int k = 0; k < 64; ++k) EXPECT_EQ(d.row(0)[k], (k % 17) >= 8 ? 1 : 0) << k;

  const std::string short_line = dir.file("s.csv", line + "3\n" + "1,2,3\n");
  expect_refusal<DataError>([&] { read_digits(short_line); }, short_line + ":2: expected 65 values");
  const std::string big_value = dir.file("b.csv", "17," + line.substr(line.find(',') + 1) + "3\n");
  expect_refusal<DataError>([&] { read_digits(big_value); }, big_value + ":1");
  const std::string bad_label = dir.file("l.csv", line + "10\n");
  expect_refusal<DataError>([&] { read_digits(bad_label); }, bad_label + ":1");
  const std::string text_value = dir.file("t.csv", line + "x\n");
  expect_refusal<DataError>([&] { read_digits(text_value); }, "'x'");
}

// The real data sets, when the shared data folder is present.
TEST(Data, RealMnistTestSet) {
  const std::string path = std::string(MARBM_SHARED_DATA_DIR) + "/mnist/t10k-images-idx3-ubyte.gz";
  if (!fs::exists(path)) GTEST_SKIP() << "no " << path;
  const Dataset d = load_dataset("idx:" + path);
  ASSERT_EQ(d.n_rows, 10000);
  ASSERT_EQ(d.n_cols, 784);
  double ones = 0;
  for (auto v : d.values) ones += v;
  // Binarized MNIST at >= 128 is about 13% ink; a wrong byte order or offset
  // would give a very different fraction.
  const double fraction = ones / static_cast<double>(d.values.size());
  EXPECT_GT(fraction, 0.08);
  EXPECT_LT(fraction, 0.2);
  // Every digit has ink, and the image border is blank.
  for (int r = 0; r < d.n_rows; ++r) {
    int row_ones = 0;
    for (auto v : d.row(r)) row_ones += v;
    ASSERT_GT(row_ones, 0) << "image " << r;
    ASSERT_EQ(d.row(r)[0], 0) << "image " << r;
  }
  const Dataset split = load_dataset("idx:" + path + "@9000:1000");
  ASSERT_EQ(split.n_rows, 1000);
  EXPECT_TRUE(std::equal(split.values.begin(), split.values.end(), d.values.begin() + 9000 * 784));
}

TEST(Data, RealDigits) {
  const std::string path = std::string(MARBM_SHARED_DATA_DIR) + "/digits/digits.csv.gz";
  if (!fs::exists(path)) GTEST_SKIP() << "no " << path;
  const Dataset d = load_dataset("digits:" + path);
  ASSERT_EQ(d.n_rows, 1797);
  ASSERT_EQ(d.n_cols, 64);
  double ones = 0;
  for (auto v : d.values) ones += v;
  const double fraction = ones / static_cast<double>(d.values.size());
  // About a third of the 8x8 cells have value >= 8.
  EXPECT_GT(fraction, 0.2);
  EXPECT_LT(fraction, 0.5);
  EXPECT_GT(distinct_rows(d).rows.size(), 1500u);
}

}  // namespace
}  // namespace marbm

namespace marbm {
namespace {

TEST(RandomBinaryDataset, FrequencyOfOnesAndReproducibility) {
  const Dataset data = random_binary_dataset(400, 50, 0.3, 9);
  ASSERT_EQ(data.values.size(), 400u * 50u);
  double ones = 0.0;
  for (std::uint8_t x : data.values) {
    ASSERT_LE(x, 1);
    ones += x;
  }
  // 20,000 Bernoulli(0.3) draws: sd of the frequency sqrt(0.21 / 20000) ~ 0.0032; 5 sd.
  EXPECT_NEAR(ones / data.values.size(), 0.3, 5 * std::sqrt(0.21 / 20000));
  EXPECT_EQ(random_binary_dataset(400, 50, 0.3, 9).values, data.values);
  EXPECT_NE(random_binary_dataset(400, 50, 0.3, 10).values, data.values);
  EXPECT_THROW(random_binary_dataset(0, 5, 0.5, 1), UsageError);
  EXPECT_THROW(random_binary_dataset(5, 5, 1.5, 1), UsageError);
  EXPECT_THROW(random_binary_dataset(5, 5, std::nan(""), 1), UsageError);
}

}  // namespace
}  // namespace marbm
