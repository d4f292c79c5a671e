#include "marbm/data.hpp"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <unordered_map>

#include "detail/files.hpp"
#include "marbm/error.hpp"
#include "marbm/random.hpp"

namespace marbm {

namespace {

// IDX files larger than this are refused as absurd before any allocation: the
// largest public IDX image sets are well under a gigabyte.
constexpr std::uint64_t max_idx_bytes = std::uint64_t{1} << 32;
// No input file (after decompression) may exceed this, so a corrupt or
// hostile .gz cannot exhaust memory.
constexpr std::size_t max_file_bytes = (std::size_t{1} << 32) + 16;

// Reads a whole file, plain or gzip-compressed (gzread passes plain files
// through), so every loader accepts both forms.
std::string read_file_bytes(const std::string& path) {
  std::error_code ec;
  MARBM_EXPECTS(std::filesystem::exists(path, ec), DataError, path + ": no such file");
  MARBM_EXPECTS(!std::filesystem::is_directory(path, ec), DataError, path + ": is a directory, not a file");
  gzFile file = gzopen(path.c_str(), "rb");
  MARBM_EXPECTS(file != nullptr, DataError, path + ": cannot open for reading");
  std::string bytes;
  char buffer[1 << 16];
  while (true) {
    const int got = gzread(file, buffer, sizeof buffer);
    if (got < 0) {
      int code = 0;
      const std::string message = gzerror(file, &code);
      gzclose(file);
      throw DataError(path + ": read failed (" + message + ")");
    }
    if (got == 0) break;
    if (bytes.size() + static_cast<std::size_t>(got) > max_file_bytes) {
      gzclose(file);
      throw DataError(path + ": larger than " + std::to_string(max_file_bytes) + " bytes, refused");
    }
    bytes.append(buffer, static_cast<std::size_t>(got));
  }
  int code = 0;
  const std::string message = gzerror(file, &code);
  gzclose(file);
  // A truncated .gz stream ends without error from gzread but leaves Z_BUF_ERROR.
  MARBM_EXPECTS(code == Z_OK || code == Z_STREAM_END, DataError,
                path + ": compressed data is truncated or corrupt (" + message + ")");
  return bytes;
}

// Splits text into lines, calling visit(line_number, line) for each; handles
// \n and \r\n endings.
template <typename Visit>
void for_each_line(const std::string& text, Visit visit) {
  std::size_t start = 0;
  int line_number = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    visit(++line_number, line);
    start = end + 1;
  }
}

bool is_separator(char c) { return c == ',' || c == ' ' || c == '\t'; }

// Splits a line into fields separated by commas and/or whitespace.
std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t k = 0;
  while (k < line.size()) {
    while (k < line.size() && (line[k] == ' ' || line[k] == '\t')) ++k;
    if (k >= line.size()) break;
    std::size_t end = k;
    while (end < line.size() && !is_separator(line[end])) ++end;
    fields.push_back(line.substr(k, end - k));
    k = end;
    while (k < line.size() && (line[k] == ' ' || line[k] == '\t')) ++k;
    if (k < line.size() && line[k] == ',') {
      ++k;
      // A trailing comma leaves an empty last field, which is malformed. (An
      // empty field between two commas is added by the next pass of the loop,
      // so it must not be added here too, or the row would count it twice.)
      std::size_t probe = k;
      while (probe < line.size() && (line[probe] == ' ' || line[probe] == '\t')) ++probe;
      if (probe >= line.size()) fields.emplace_back();
    }
  }
  return fields;
}

bool parse_int(std::string_view text, long long& value) {
  if (text.empty()) return false;
  const char* first = text.data();
  if (*first == '+') ++first;
  const auto [end, ec] = std::from_chars(first, text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

// A field of a data file as a message quotes it: printable (a NUL byte would
// cut the message short, raw bytes would reach the terminal) and short.
std::string quoted(std::string_view field) {
  constexpr std::size_t longest = 40;
  if (field.size() <= longest) return detail::printable(field);
  return detail::printable(field.substr(0, longest)) + "...";
}

std::string where(const std::string& path, int line_number) { return path + ":" + std::to_string(line_number); }

std::uint32_t big_endian_u32(const std::string& bytes, std::size_t offset) {
  return (std::uint32_t{static_cast<unsigned char>(bytes[offset])} << 24) |
         (std::uint32_t{static_cast<unsigned char>(bytes[offset + 1])} << 16) |
         (std::uint32_t{static_cast<unsigned char>(bytes[offset + 2])} << 8) |
         std::uint32_t{static_cast<unsigned char>(bytes[offset + 3])};
}

Dataset take_rows(Dataset data, long long first, long long count, std::string_view spec) {
  MARBM_EXPECTS(count >= 1, UsageError, "data spec '" + std::string(spec) + "': row count must be at least 1");
  // Compared without forming first + count, which overflows for values near
  // the long long limit and would let an out-of-range selection through.
  MARBM_EXPECTS(first >= 0 && first < data.n_rows && count <= data.n_rows - first, UsageError,
                "data spec '" + std::string(spec) + "': " + std::to_string(count) + " rows from row " +
                    std::to_string(first) + " are out of range (the data has " + std::to_string(data.n_rows) +
                    " rows)");
  Dataset out;
  out.n_rows = static_cast<int>(count);
  out.n_cols = data.n_cols;
  const auto begin = data.values.begin() + static_cast<std::ptrdiff_t>(first * data.n_cols);
  out.values.assign(begin, begin + static_cast<std::ptrdiff_t>(count * data.n_cols));
  return out;
}

int parse_size_argument(std::string_view text, std::string_view spec, const char* what) {
  long long value = 0;
  MARBM_EXPECTS(parse_int(text, value) && value >= 0 && value <= std::numeric_limits<int>::max(), UsageError,
                "data spec '" + std::string(spec) + "': " + what + " '" + std::string(text) +
                    "' is not a non-negative integer");
  return static_cast<int>(value);
}

}  // namespace

Dataset shifting_bars(int n, int length) {
  MARBM_EXPECTS(n >= 2 && n <= 64 && length >= 1 && length < n, UsageError,
                "shifting bars need 1 <= L < N <= 64 (got N = " + std::to_string(n) + ", L = " +
                    std::to_string(length) + ")");
  Dataset data;
  data.n_rows = n;
  data.n_cols = n;
  data.values.assign(static_cast<std::size_t>(n) * n, 0);
  for (int shift = 0; shift < n; ++shift) {
    for (int k = 0; k < length; ++k) {
      // Bit position counted from the right, so shift 0 is 0...0111.
      const int from_right = (shift + k) % n;
      data.values[static_cast<std::size_t>(shift) * n + (n - 1 - from_right)] = 1;
    }
  }
  data.description = "shifting-bars:" + std::to_string(n) + ":" + std::to_string(length);
  return data;
}

Dataset bars_and_stripes(int n) {
  MARBM_EXPECTS(n >= 2 && n <= 8, UsageError,
                "bars and stripes need 2 <= N <= 8 (got N = " + std::to_string(n) + ")");
  const int cols = n * n;
  const int patterns = 1 << n;
  Dataset data;
  data.n_cols = cols;
  // Every row-constant image (including all-zero and all-one), then the
  // column-constant ones except those two, which are already present.
  for (int mask = 0; mask < patterns; ++mask) {
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < n; ++c) data.values.push_back(static_cast<std::uint8_t>((mask >> r) & 1));
  }
  for (int mask = 1; mask < patterns - 1; ++mask) {
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < n; ++c) data.values.push_back(static_cast<std::uint8_t>((mask >> c) & 1));
  }
  data.n_rows = static_cast<int>(data.values.size() / cols);
  data.description = "bars-and-stripes:" + std::to_string(n);
  return data;
}

Dataset read_csv(const std::string& path) {
  const std::string text = read_file_bytes(path);
  Dataset data;
  data.n_cols = -1;
  int first_line = 0;
  for_each_line(text, [&](int line_number, std::string_view line) {
    std::size_t start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos || line[start] == '#') return;
    const auto fields = split_fields(line);
    if (data.n_cols < 0) {
      data.n_cols = static_cast<int>(fields.size());
      first_line = line_number;
    }
    MARBM_EXPECTS(static_cast<int>(fields.size()) == data.n_cols, DataError,
                  where(path, line_number) + ": row has " + std::to_string(fields.size()) + " values, line " +
                      std::to_string(first_line) + " has " + std::to_string(data.n_cols));
    for (std::string_view field : fields) {
      MARBM_EXPECTS(field == "0" || field == "1", DataError,
                    where(path, line_number) + ": value '" + quoted(field) + "' is not 0 or 1");
      data.values.push_back(field == "1" ? 1 : 0);
    }
    ++data.n_rows;
  });
  MARBM_EXPECTS(data.n_rows > 0, DataError, path + ": no data rows");
  data.description = "csv:" + path;
  return data;
}

Dataset read_idx_images(const std::string& path, int threshold) {
  MARBM_EXPECTS(threshold >= 0 && threshold <= 256, UsageError,
                "binarization threshold must be in 0..256 (got " + std::to_string(threshold) + ")");
  const std::string bytes = read_file_bytes(path);
  MARBM_EXPECTS(bytes.size() >= 16, DataError,
                path + ": too short for an IDX3 header (" + std::to_string(bytes.size()) + " bytes)");
  const std::uint32_t magic = big_endian_u32(bytes, 0);
  MARBM_EXPECTS(magic == 2051, DataError,
                path + ": wrong magic number " + std::to_string(magic) + " (IDX3 ubyte images have 2051)");
  const std::uint64_t count = big_endian_u32(bytes, 4);
  const std::uint64_t rows = big_endian_u32(bytes, 8);
  const std::uint64_t cols = big_endian_u32(bytes, 12);
  const std::uint64_t pixels = rows * cols;
  MARBM_EXPECTS(count >= 1 && rows >= 1 && cols >= 1 && pixels <= (1u << 24) && count <= (1u << 30) &&
                    count * pixels <= max_idx_bytes,
                DataError,
                path + ": implausible dimensions " + std::to_string(count) + " x " + std::to_string(rows) + " x " +
                    std::to_string(cols));
  const std::uint64_t expected = 16 + count * pixels;
  MARBM_EXPECTS(bytes.size() >= expected, DataError,
                path + ": truncated: " + std::to_string(bytes.size()) + " bytes, the header promises " +
                    std::to_string(expected));
  MARBM_EXPECTS(bytes.size() == expected, DataError,
                path + ": " + std::to_string(bytes.size() - expected) + " unexpected bytes after the images");
  Dataset data;
  data.n_rows = static_cast<int>(count);
  data.n_cols = static_cast<int>(pixels);
  data.values.resize(count * pixels);
  for (std::size_t k = 0; k < data.values.size(); ++k)
    data.values[k] = static_cast<unsigned char>(bytes[16 + k]) >= threshold ? 1 : 0;
  data.description = "idx:" + path;
  return data;
}

Dataset read_digits(const std::string& path, int threshold) {
  MARBM_EXPECTS(threshold >= 0 && threshold <= 17, UsageError,
                "binarization threshold must be in 0..17 (got " + std::to_string(threshold) + ")");
  const std::string text = read_file_bytes(path);
  Dataset data;
  data.n_cols = 64;
  for_each_line(text, [&](int line_number, std::string_view line) {
    if (line.find_first_not_of(" \t") == std::string_view::npos) return;
    const auto fields = split_fields(line);
    MARBM_EXPECTS(fields.size() == 65, DataError,
                  where(path, line_number) + ": expected 65 values (64 pixels and a label), found " +
                      std::to_string(fields.size()));
    for (std::size_t k = 0; k < 65; ++k) {
      long long value = 0;
      const long long limit = k < 64 ? 16 : 9;
      MARBM_EXPECTS(parse_int(fields[k], value) && value >= 0 && value <= limit, DataError,
                    where(path, line_number) + ": value " + std::to_string(k + 1) + " '" + quoted(fields[k]) +
                        "' is not an integer in 0.." + std::to_string(limit));
      if (k < 64) data.values.push_back(value >= threshold ? 1 : 0);
    }
    ++data.n_rows;
  });
  MARBM_EXPECTS(data.n_rows > 0, DataError, path + ": no data rows");
  data.description = "digits:" + path;
  return data;
}

Dataset load_dataset(std::string_view spec) {
  const std::size_t colon = spec.find(':');
  MARBM_EXPECTS(colon != std::string_view::npos && colon + 1 < spec.size(), UsageError,
                "data spec '" + std::string(spec) +
                    "' is malformed (expected shifting-bars:N:L, bars-and-stripes:N, csv:PATH, idx:PATH or "
                    "digits:PATH)");
  const std::string_view kind = spec.substr(0, colon);
  std::string_view rest = spec.substr(colon + 1);

  // An optional @FIRST:COUNT suffix. Only a suffix made of digits and one
  // colon counts as a range, so a path containing '@' still works.
  bool has_range = false;
  long long first = 0, count = 0;
  const std::size_t at = rest.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view range = rest.substr(at + 1);
    if (!range.empty() && range.find_first_not_of("0123456789:+-") == std::string_view::npos) {
      const std::size_t sep = range.find(':');
      // @FIRST: (no count) runs to the end; count -1 stands for that until the rows are known.
      const bool to_end = sep != std::string_view::npos && sep + 1 == range.size();
      if (to_end) count = -1;
      MARBM_EXPECTS(sep != std::string_view::npos && parse_int(range.substr(0, sep), first) &&
                        (to_end || parse_int(range.substr(sep + 1), count)) && first >= 0 && (to_end || count >= 1),
                    UsageError,
                    "data spec '" + std::string(spec) + "': row range '@" + std::string(range) +
                        "' is malformed (expected @FIRST:COUNT with FIRST >= 0 and COUNT >= 1, or @FIRST: for "
                        "the rest)");
      has_range = true;
      rest = rest.substr(0, at);
      MARBM_EXPECTS(!rest.empty(), UsageError, "data spec '" + std::string(spec) + "' names no source");
    }
  }

  Dataset data;
  if (kind == "shifting-bars") {
    const std::size_t sep = rest.find(':');
    MARBM_EXPECTS(sep != std::string_view::npos, UsageError,
                  "data spec '" + std::string(spec) + "' is malformed (expected shifting-bars:N:L)");
    data = shifting_bars(parse_size_argument(rest.substr(0, sep), spec, "N"),
                         parse_size_argument(rest.substr(sep + 1), spec, "L"));
  } else if (kind == "bars-and-stripes") {
    data = bars_and_stripes(parse_size_argument(rest, spec, "N"));
  } else if (kind == "csv") {
    data = read_csv(std::string(rest));
  } else if (kind == "idx") {
    data = read_idx_images(std::string(rest));
  } else if (kind == "digits") {
    data = read_digits(std::string(rest));
  } else {
    throw UsageError("data spec '" + std::string(spec) + "': unknown kind '" + std::string(kind) +
                     "' (expected shifting-bars, bars-and-stripes, csv, idx or digits)");
  }
  if (has_range) {
    if (count < 0) {
      MARBM_EXPECTS(first < data.n_rows, UsageError,
                    "data spec '" + std::string(spec) + "': row " + std::to_string(first) +
                        " is out of range (the data has " + std::to_string(data.n_rows) + " rows)");
      count = data.n_rows - first;
    }
    data = take_rows(std::move(data), first, count, spec);
  }
  data.description = std::string(spec);
  return data;
}

DistinctRows distinct_rows(const Dataset& data) {
  DistinctRows out;
  std::unordered_map<std::string, int> index;
  for (int r = 0; r < data.n_rows; ++r) {
    const auto row = data.row(r);
    std::string key(reinterpret_cast<const char*>(row.data()), row.size());
    const auto [it, inserted] = index.try_emplace(std::move(key), static_cast<int>(out.rows.size()));
    if (inserted) {
      out.rows.emplace_back(row.begin(), row.end());
      out.counts.push_back(1);
    } else {
      ++out.counts[it->second];
    }
  }
  return out;
}

Dataset random_binary_dataset(int rows, int cols, double p_one, std::uint64_t seed) {
  MARBM_EXPECTS(rows >= 1 && cols >= 1, UsageError,
                "random data needs at least one row and one column (got " + std::to_string(rows) + " x " +
                    std::to_string(cols) + ")");
  MARBM_EXPECTS(p_one >= 0.0 && p_one <= 1.0, UsageError,
                "random data: the probability of a one must be in [0, 1] (got " + std::to_string(p_one) + ")");
  Dataset data;
  data.n_rows = rows;
  data.n_cols = cols;
  data.values.resize(static_cast<std::size_t>(rows) * cols);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::synthetic_data, 0));
  for (std::size_t k = 0; k < data.values.size(); ++k) data.values[k] = stream.uniform_double(k) < p_one ? 1 : 0;
  data.description = "random:" + std::to_string(rows) + "x" + std::to_string(cols);
  return data;
}

}  // namespace marbm
