// The communicator's collectives and exact log Z across ranks, on real MPI
// processes (ctest runs this binary under mpiexec -n 2 and -n 3).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

Communicator& world() { return *world_communicator(); }

TEST(Communicator, RanksAndSize) {
  Communicator& comm = world();
  ASSERT_GE(comm.size(), 1);
  ASSERT_LT(comm.rank(), comm.size());
  if (const char* expected = std::getenv("MARBM_EXPECT_RANKS")) EXPECT_EQ(comm.size(), std::stoi(expected));
  if (comm.size() > 1) EXPECT_TRUE(mpi_compiled());
}

TEST(Communicator, AllReduceSumAndMax) {
  Communicator& comm = world();
  std::vector<double> values{static_cast<double>(comm.rank()), 1.0, -static_cast<double>(comm.rank())};
  comm.all_reduce_sum(values);
  const double r = comm.size();
  EXPECT_EQ(values[0], r * (r - 1) / 2);
  EXPECT_EQ(values[1], r);
  std::vector<double> most{static_cast<double>(comm.rank()), -static_cast<double>(comm.rank())};
  comm.all_reduce_max(most);
  EXPECT_EQ(most[0], r - 1);
  EXPECT_EQ(most[1], 0.0);
}

TEST(Communicator, GatherAndAllGatherKeepRankOrderAndLengths) {
  Communicator& comm = world();
  // Rank r sends r + 1 bytes of value r (rank 0 one byte; lengths differ).
  std::vector<std::byte> mine(static_cast<std::size_t>(comm.rank()) + 1, std::byte(comm.rank()));
  for (int root : {0, comm.size() - 1}) {
    const auto parts = comm.gather(mine, root);
    if (comm.rank() != root) {
      EXPECT_TRUE(parts.empty());
      continue;
    }
    ASSERT_EQ(parts.size(), static_cast<std::size_t>(comm.size()));
    for (int r = 0; r < comm.size(); ++r) {
      EXPECT_EQ(parts[r], std::vector<std::byte>(static_cast<std::size_t>(r) + 1, std::byte(r)));
    }
  }
  const auto all = comm.all_gather(mine);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) {
    EXPECT_EQ(all[r], std::vector<std::byte>(static_cast<std::size_t>(r) + 1, std::byte(r)));
  }
  const auto empty = comm.all_gather({});
  for (const auto& part : empty) EXPECT_TRUE(part.empty());
}

TEST(Communicator, AllToAllDeliversEachPartToItsRank) {
  Communicator& comm = world();
  // Rank p sends rank q  (p + 1) * (q + 1) bytes of value 10 p + q.
  std::vector<std::vector<std::byte>> to_each(static_cast<std::size_t>(comm.size()));
  for (int q = 0; q < comm.size(); ++q) {
    to_each[q].assign(static_cast<std::size_t>((comm.rank() + 1) * (q + 1)), std::byte(10 * comm.rank() + q));
  }
  const auto received = comm.all_to_all(to_each);
  ASSERT_EQ(received.size(), static_cast<std::size_t>(comm.size()));
  for (int p = 0; p < comm.size(); ++p) {
    EXPECT_EQ(received[p], std::vector<std::byte>(static_cast<std::size_t>((p + 1) * (comm.rank() + 1)),
                                                  std::byte(10 * p + comm.rank())));
  }
  EXPECT_THROW(comm.all_to_all(std::vector<std::vector<std::byte>>(static_cast<std::size_t>(comm.size()) + 1)),
               UsageError);
}

TEST(Communicator, BroadcastFromEachRoot) {
  Communicator& comm = world();
  for (int root = 0; root < comm.size(); ++root) {
    std::vector<std::byte> bytes(5, std::byte(comm.rank() == root ? 100 + root : 0));
    comm.broadcast(bytes, root);
    EXPECT_EQ(bytes, std::vector<std::byte>(5, std::byte(100 + root)));
  }
}

TEST(Communicator, MinLocationTakesTheLowestRankOnTies) {
  Communicator& comm = world();
  // Distinct values: the minimum is on the last rank.
  const MinLocation distinct = comm.min_location(10.0 - comm.rank());
  EXPECT_EQ(distinct.value, 10.0 - (comm.size() - 1));
  EXPECT_EQ(distinct.rank, comm.size() - 1);
  // All equal: rank 0.
  const MinLocation tied = comm.min_location(3.5);
  EXPECT_EQ(tied.value, 3.5);
  EXPECT_EQ(tied.rank, 0);
  // NaN counts as +infinity: rank 0's NaN loses to any finite value.
  const MinLocation with_nan = comm.min_location(comm.rank() == 0 ? std::nan("") : 7.0);
  if (comm.size() > 1) {
    EXPECT_EQ(with_nan.value, 7.0);
    EXPECT_EQ(with_nan.rank, 1);
  } else {
    EXPECT_TRUE(std::isinf(with_nan.value));
  }
}

TEST(Communicator, ContiguousShareTilesTheItems) {
  for (int size : {1, 2, 3, 7}) {
    for (std::int64_t total : {0, 1, 5, 6, 100}) {
      std::int64_t next = 0;
      for (int rank = 0; rank < size; ++rank) {
        const ItemRange range = contiguous_share(total, size, rank);
        EXPECT_EQ(range.first, next);
        EXPECT_GE(range.last - range.first, total / size);
        EXPECT_LE(range.last - range.first, total / size + 1);
        next = range.last;
      }
      EXPECT_EQ(next, total);
    }
  }
}

// The blocks' sum must be the same bits whatever the rank count: compare
// with the sum taken in block order by this one process.
TEST(Communicator, OrderedBlockSumIsTheSingleProcessSumBitForBit) {
  Communicator& comm = world();
  for (const std::size_t length : {std::size_t{37}, std::size_t{1}})
  for (std::int64_t total : {1, 2, 5, 9}) {
    std::vector<float> blocks(static_cast<std::size_t>(total) * length);
    std::vector<double> wide(blocks.size());
    for (std::size_t k = 0; k < blocks.size(); ++k) {
      // Values of very different sizes: a different order would round differently.
      blocks[k] = static_cast<float>(std::sin(1.0 + 0.37 * k) * std::pow(10.0, static_cast<double>(k % 7)));
      wide[k] = std::sin(1.0 + 0.37 * k) * std::pow(10.0, static_cast<double>(k % 11));
    }
    std::vector<float> expected(blocks.begin(), blocks.begin() + length);
    std::vector<double> expected_wide(wide.begin(), wide.begin() + length);
    for (std::int64_t b = 1; b < total; ++b) {
      for (std::size_t k = 0; k < length; ++k) {
        expected[k] += blocks[static_cast<std::size_t>(b) * length + k];
        expected_wide[k] += wide[static_cast<std::size_t>(b) * length + k];
      }
    }
    const ItemRange mine = contiguous_share(total, comm.size(), comm.rank());
    const auto sum = ordered_block_sum(
        comm, std::span<const float>(blocks).subspan(static_cast<std::size_t>(mine.first) * length,
                                                     static_cast<std::size_t>(mine.last - mine.first) * length),
        mine.first, total, length);
    const auto sum_wide = ordered_block_sum(
        comm, std::span<const double>(wide).subspan(static_cast<std::size_t>(mine.first) * length,
                                                    static_cast<std::size_t>(mine.last - mine.first) * length),
        mine.first, total, length);
    ASSERT_EQ(sum.size(), length);
    for (std::size_t k = 0; k < length; ++k) {
      EXPECT_EQ(std::memcmp(&sum[k], &expected[k], sizeof(float)), 0) << "total " << total << " k " << k;
      EXPECT_EQ(std::memcmp(&sum_wide[k], &expected_wide[k], sizeof(double)), 0) << "total " << total << " k " << k;
    }
  }
}

// Exact log Z across ranks against one process's enumeration (and against
// brute force where both layers are small): k = 4 gives one chunk (some
// ranks get none), k = 16 and 18 give 4 and 16 chunks.
TEST(DistributedExact, LogPartitionEqualsTheSingleProcessValue) {
  Communicator& comm = world();
  struct Case {
    int n, m;
  };
  for (const Case c : {Case{9, 4}, Case{20, 16}, Case{18, 30}}) {
    const Rbm rbm = Rbm::random(c.n, c.m, 0.5, 11 + static_cast<std::uint64_t>(c.n));
    const double single = log_partition_exact(rbm);
    const double distributed = log_partition_exact(rbm, comm);
    EXPECT_LE(std::abs(distributed - single), 1e-12 * std::abs(single)) << c.n << " x " << c.m;
    // Same chunks, same combination order: the same bits.
    EXPECT_EQ(distributed, single) << c.n << " x " << c.m;
    if (c.n + c.m <= 24) EXPECT_NEAR(distributed, log_partition_brute_force(rbm), 1e-10 * std::abs(single));
  }
}

TEST(DistributedExact, BeyondTheLimitEveryRankThrows) {
  Communicator& comm = world();
  ExactOptions options;
  options.max_enumerated_units = 3;
  const Rbm rbm = Rbm::random(6, 5, 0.1, 1);
  EXPECT_THROW(log_partition_exact(rbm, comm, options), RuntimeFailure);
}

}  // namespace
}  // namespace marbm
