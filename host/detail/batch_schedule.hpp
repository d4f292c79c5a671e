// The minibatch order of a training run, shared by the driver and the
// batched GPU ensemble so that an ensemble member sees the same batches as
// marbm::train with the member's seed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "marbm/random.hpp"

namespace marbm::detail {

/// Rows of each update: per epoch a Fisher-Yates shuffle driven by Philox
/// (seed, batch_order stream of the epoch), or all rows in order when one
/// batch covers the data set (the shuffle would change nothing but the order
/// of a sum).
class BatchSchedule {
 public:
  BatchSchedule(int rows, int batch, std::uint64_t seed)
      : rows_(rows), batch_(batch), seed_(seed), order_(static_cast<std::size_t>(rows)) {
    std::iota(order_.begin(), order_.end(), 0);
  }

  /// Minibatches in one pass over the data.
  static long batches_per_epoch(int batch, int rows) { return (static_cast<long>(rows) + batch - 1) / batch; }

  /// Prepares the schedule to continue at update t (a resumed run): the
  /// order of t's epoch, as rows_of(t) would have left it.
  void seek(long t) {
    const long per_epoch = batches_per_epoch(batch_, rows_);
    if (batch_ < rows_ && t % per_epoch != 0) shuffle(t / per_epoch);
  }

  /// Rows of update t (0-based); t must grow by one per call (after seek(t0), from t0).
  std::span<const int> rows_of(long t) {
    const long per_epoch = batches_per_epoch(batch_, rows_);
    const long epoch = t / per_epoch;
    const long position = t % per_epoch;
    if (batch_ < rows_ && position == 0) shuffle(epoch);
    const long first = position * batch_;
    const long count = std::min<long>(batch_, rows_ - first);
    return {order_.data() + first, static_cast<std::size_t>(count)};
  }

 private:
  void shuffle(long epoch) {
    const PhiloxStream stream(seed_, random_stream(RandomPurpose::batch_order, static_cast<std::uint64_t>(epoch)));
    std::iota(order_.begin(), order_.end(), 0);
    for (int i = rows_ - 1; i > 0; --i) {
      const auto j = static_cast<int>(stream.uniform_double(static_cast<std::uint64_t>(i)) * (i + 1));
      std::swap(order_[i], order_[std::min(j, i)]);
    }
  }

  int rows_;
  int batch_;
  std::uint64_t seed_;
  std::vector<int> order_;
};

}  // namespace marbm::detail
