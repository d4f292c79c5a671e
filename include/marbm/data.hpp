// Binary data sets: generators, file loaders and the data-spec parser (SPEC.md section 7).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace marbm {

/// A binary data set: n_rows rows of n_cols values in {0, 1}, row-major.
/// Its empirical distribution is uniform over rows (duplicates count twice).
struct Dataset {
  int n_rows = 0;
  int n_cols = 0;
  std::vector<std::uint8_t> values;  ///< n_rows * n_cols entries, 0 or 1
  std::string description;           ///< the spec it came from, for metadata and reports

  std::span<const std::uint8_t> row(int r) const {
    return {values.data() + static_cast<std::size_t>(r) * n_cols, static_cast<std::size_t>(n_cols)};
  }
};

/// Shifting bars (N, L): the N cyclic shifts of a run of L ones in N bits, in
/// order of the run's start from the right (for 6/3: 000111, 001110, ...,
/// 100011). Throws UsageError unless 1 <= L < N <= 64.
Dataset shifting_bars(int n, int length);

/// Bars and stripes (N): every N x N image (row-major) whose rows are all
/// constant or whose columns are all constant, each distinct pattern once:
/// 2^(N+1) - 2 rows. Throws UsageError unless 2 <= N <= 8.
Dataset bars_and_stripes(int n);

/// Synthetic data: rows x cols values, each 1 with probability p_one, from
/// Philox (seed, synthetic_data stream). For tests, benchmarks and examples.
/// Throws UsageError unless rows, cols >= 1 and p_one is in [0, 1].
Dataset random_binary_dataset(int rows, int cols, double p_one, std::uint64_t seed);

/// Rows of 0/1 separated by commas or whitespace; blank lines and lines that
/// start with '#' are skipped. Throws DataError (naming file and line) on a
/// missing file, a non-binary value or rows of unequal length.
Dataset read_csv(const std::string& path);

/// IDX3 ubyte images (magic 2051), optionally gzip-compressed, binarized at
/// pixel >= threshold. Throws DataError on a missing file, wrong magic or
/// truncated data.
Dataset read_idx_images(const std::string& path, int threshold = 128);

/// The UCI optical digits CSV (64 values 0..16 then a label per line, .gz
/// accepted), binarized at value >= threshold. Throws DataError on malformed lines.
Dataset read_digits(const std::string& path, int threshold = 8);

/// Parses a data spec:
///   shifting-bars:N:L | bars-and-stripes:N | csv:PATH | idx:PATH | digits:PATH
/// Optional suffix for file specs: `@FIRST:COUNT` takes COUNT rows starting
/// at row FIRST (for example idx:t10k-images-idx3-ubyte.gz@0:9000); `@FIRST:`
/// takes every row from FIRST to the end.
/// Throws UsageError for a malformed spec, DataError for bad file contents.
Dataset load_dataset(std::string_view spec);

/// The distinct rows of a data set with their counts (used by exact KL).
struct DistinctRows {
  std::vector<std::vector<std::uint8_t>> rows;
  std::vector<int> counts;
};
DistinctRows distinct_rows(const Dataset& data);

}  // namespace marbm
