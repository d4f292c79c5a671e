// The single-process communicator, the choice of the run's communicator and
// the rank-count-independent block sum.
#include "marbm/communicator.hpp"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "marbm/error.hpp"

namespace marbm {

namespace detail {
// host/mpi_communicator.cpp (builds with MPI): MPI_COMM_WORLD, initialising MPI.
std::shared_ptr<Communicator> mpi_world_communicator();
}  // namespace detail

namespace {

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string description() const override { return "single process"; }
  void all_reduce_sum(std::span<double>) override {}
  void all_reduce_max(std::span<double>) override {}
  void broadcast(std::span<std::byte>, int root) override { check_root(root); }
  std::vector<std::vector<std::byte>> gather(std::span<const std::byte> bytes, int root) override {
    check_root(root);
    return {std::vector<std::byte>(bytes.begin(), bytes.end())};
  }
  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> bytes) override {
    return {std::vector<std::byte>(bytes.begin(), bytes.end())};
  }
  std::vector<std::vector<std::byte>> all_to_all(const std::vector<std::vector<std::byte>>& to_each) override {
    MARBM_EXPECTS(to_each.size() == 1, UsageError, "communicator: all_to_all needs one part per rank");
    return to_each;
  }
  MinLocation min_location(double value) override {
    return {value != value ? std::numeric_limits<double>::infinity() : value, 0};
  }
  void barrier() override {}
  void abort(int) noexcept override {}

 private:
  static void check_root(int root) {
    MARBM_EXPECTS(root == 0, UsageError, "communicator: root rank " + std::to_string(root) + " of a single process");
  }
};

template <typename T>
std::vector<T> block_sum(Communicator& comm, std::span<const T> blocks, std::int64_t first_block,
                         std::int64_t total_blocks, std::size_t block_length) {
  MARBM_EXPECTS(block_length >= 1 && total_blocks >= 1 && first_block >= 0, UsageError,
                "ordered_block_sum: needs at least one block of at least one value");
  MARBM_EXPECTS(blocks.size() % block_length == 0, UsageError,
                "ordered_block_sum: " + std::to_string(blocks.size()) + " values are not whole blocks of " +
                    std::to_string(block_length));
  const std::int64_t count = static_cast<std::int64_t>(blocks.size() / block_length);
  std::vector<T> sum;
  auto add_in_order = [&](const T* values, std::int64_t block_count) {
    for (std::int64_t b = 0; b < block_count; ++b) {
      const T* block = values + static_cast<std::size_t>(b) * block_length;
      if (sum.empty()) {
        sum.assign(block, block + block_length);
      } else {
        for (std::size_t k = 0; k < block_length; ++k) sum[k] += block[k];
      }
    }
  };
  if (comm.size() == 1) {
    MARBM_EXPECTS(first_block == 0 && count == total_blocks, UsageError,
                  "ordered_block_sum: a single rank must hold every block");
    add_in_order(blocks.data(), count);
    return sum;
  }
  // Rank q sums slice q of the values over every block, in block order: it
  // receives that slice of each rank's blocks (rank order is block order).
  const int size = comm.size();
  std::vector<std::vector<std::byte>> to_each(static_cast<std::size_t>(size));
  for (int q = 0; q < size; ++q) {
    const ItemRange slice = contiguous_share(static_cast<std::int64_t>(block_length), size, q);
    const std::size_t width = static_cast<std::size_t>(slice.last - slice.first);
    auto& out = to_each[static_cast<std::size_t>(q)];
    out.resize(static_cast<std::size_t>(count) * width * sizeof(T));
    for (std::int64_t b = 0; b < count; ++b) {
      std::memcpy(out.data() + static_cast<std::size_t>(b) * width * sizeof(T),
                  blocks.data() + static_cast<std::size_t>(b) * block_length + static_cast<std::size_t>(slice.first),
                  width * sizeof(T));
    }
  }
  const auto received = comm.all_to_all(to_each);
  const ItemRange mine = contiguous_share(static_cast<std::int64_t>(block_length), size, comm.rank());
  const std::size_t width = static_cast<std::size_t>(mine.last - mine.first);
  std::vector<T> slice_sum;
  std::int64_t seen = 0;
  std::vector<T> values;
  for (const auto& part : received) {
    const std::size_t n = part.size() / sizeof(T);
    MARBM_EXPECTS(width == 0 ? part.empty() : (part.size() % sizeof(T) == 0 && n % width == 0), RuntimeFailure,
                  "ordered_block_sum: a rank sent a part that is not whole block slices");
    if (width == 0) continue;
    values.resize(n);
    std::memcpy(values.data(), part.data(), part.size());
    for (std::size_t b = 0; b < n / width; ++b) {
      const T* block = values.data() + b * width;
      if (seen == 0 && slice_sum.empty()) {
        slice_sum.assign(block, block + width);
      } else {
        for (std::size_t k = 0; k < width; ++k) slice_sum[k] += block[k];
      }
      ++seen;
    }
  }
  std::vector<double> counted{static_cast<double>(count)};
  comm.all_reduce_sum(counted);
  MARBM_EXPECTS(static_cast<std::int64_t>(counted[0]) == total_blocks && (width == 0 || seen == total_blocks),
                RuntimeFailure,
                "ordered_block_sum: the ranks hold " + std::to_string(static_cast<std::int64_t>(counted[0])) +
                    " blocks, expected " + std::to_string(total_blocks));
  const auto slices = comm.all_gather(std::as_bytes(std::span<const T>(slice_sum)));
  sum.resize(block_length);
  std::size_t at = 0;
  for (const auto& part : slices) {
    std::memcpy(sum.data() + at, part.data(), part.size());
    at += part.size() / sizeof(T);
  }
  MARBM_EXPECTS(at == block_length, RuntimeFailure, "ordered_block_sum: the slices do not cover a block");
  return sum;
}

}  // namespace

std::shared_ptr<Communicator> single_process_communicator() { return std::make_shared<SingleProcessCommunicator>(); }

bool mpi_compiled() {
#ifdef MARBM_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

std::shared_ptr<Communicator> world_communicator() {
  static const std::shared_ptr<Communicator> world = []() -> std::shared_ptr<Communicator> {
#ifdef MARBM_HAVE_MPI
    if (launched_by_mpi()) return detail::mpi_world_communicator();
#endif
    return single_process_communicator();
  }();
  return world;
}

ItemRange contiguous_share(std::int64_t total, int size, int rank) {
  MARBM_EXPECTS(size >= 1 && rank >= 0 && rank < size && total >= 0, UsageError,
                "contiguous_share: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                    " ranks, " + std::to_string(total) + " items");
  const std::int64_t base = total / size, extra = total % size;
  ItemRange range;
  range.first = rank * base + std::min<std::int64_t>(rank, extra);
  range.last = range.first + base + (rank < extra ? 1 : 0);
  return range;
}

std::vector<float> ordered_block_sum(Communicator& comm, std::span<const float> blocks, std::int64_t first_block,
                                     std::int64_t total_blocks, std::size_t block_length) {
  return block_sum(comm, blocks, first_block, total_blocks, block_length);
}

std::vector<double> ordered_block_sum(Communicator& comm, std::span<const double> blocks, std::int64_t first_block,
                                      std::int64_t total_blocks, std::size_t block_length) {
  return block_sum(comm, blocks, first_block, total_blocks, block_length);
}

}  // namespace marbm
