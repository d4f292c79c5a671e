// Scale-out: a small communicator interface over the processes (ranks) of a
// run. Every distributed caller (studies, data-parallel training, the mode
// search, exact log Z) is written once against it; an MPI implementation
// spans the ranks of an MPI launch, a single-process one the calling process.
// No MPI type appears here: marbm/mpi.hpp (builds with MPI only) wraps a
// caller's MPI_Comm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace marbm {

/// The smallest value over the ranks and the lowest rank that holds it.
struct MinLocation {
  double value = 0.0;
  int rank = 0;
};

/// Collective operations over `size()` ranks. Every rank must make the same
/// calls in the same order (collectives); a call blocks until all ranks have
/// made it. Failures of the transport throw RuntimeFailure.
class Communicator {
 public:
  virtual ~Communicator() = default;

  /// This process's rank, 0 .. size() - 1.
  virtual int rank() const = 0;
  /// Number of ranks.
  virtual int size() const = 0;
  /// "single process" or "MPI, 3 ranks" (for reports).
  virtual std::string description() const = 0;

  /// Element-wise sum over the ranks, in place, the same result on every rank.
  /// The order of the additions is the transport's: for sums that must not
  /// depend on the rank count use ordered_block_sum.
  virtual void all_reduce_sum(std::span<double> values) = 0;
  /// Element-wise maximum over the ranks, in place.
  virtual void all_reduce_max(std::span<double> values) = 0;
  /// Copies `root`'s bytes into every rank's `bytes` (same length everywhere).
  virtual void broadcast(std::span<std::byte> bytes, int root) = 0;
  /// Each rank's bytes (any length, up to 2^31 - 1) to `root`, in rank
  /// order; other ranks get an empty vector.
  virtual std::vector<std::vector<std::byte>> gather(std::span<const std::byte> bytes, int root) = 0;
  /// Each rank's bytes to every rank, in rank order.
  virtual std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> bytes) = 0;
  /// Personalised exchange: `to_each[q]` (one entry per rank) goes to rank q;
  /// returns what each rank sent this one, in rank order.
  virtual std::vector<std::vector<std::byte>> all_to_all(const std::vector<std::vector<std::byte>>& to_each) = 0;
  /// The minimum of `value` over the ranks and the lowest rank holding it
  /// (NaN counts as +infinity), the same on every rank.
  virtual MinLocation min_location(double value) = 0;
  /// Waits for every rank.
  virtual void barrier() = 0;
  /// Ends every rank of the run at once with `status` (a rank that failed
  /// alone would otherwise leave the others waiting in a collective). The
  /// single-process communicator does nothing.
  virtual void abort(int status) noexcept = 0;
};

/// A communicator of one rank: every collective is a copy or nothing.
std::shared_ptr<Communicator> single_process_communicator();

/// Whether this build has MPI (MARBM_MPI).
bool mpi_compiled();

/// Whether this process was started by an MPI launcher (mpiexec, mpirun,
/// srun): its environment names a rank (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
/// PMIX_RANK or PMI_RANK).
bool launched_by_mpi();

/// The communicator of the whole run: MPI_COMM_WORLD when marbm has MPI and
/// the process was started by an MPI launcher (MPI is initialised here if the
/// program has not done so, and finalised at exit), else a single process.
/// The same object on every call.
std::shared_ptr<Communicator> world_communicator();

/// The contiguous share [first, last) of `total` items that rank `rank` of
/// `size` takes: the first total % size ranks take one item more.
struct ItemRange {
  std::int64_t first = 0;
  std::int64_t last = 0;
};
ItemRange contiguous_share(std::int64_t total, int size, int rank);

/// Sum of `total_blocks` blocks of `block_length` values, taken in block
/// order, where this rank holds blocks [first_block, first_block + count) in
/// `blocks` (count * block_length values; the ranks' ranges must tile
/// 0 .. total_blocks - 1 in rank order). The result is the same on every rank
/// and does not depend on how the blocks were shared among the ranks:
/// ((b0 + b1) + b2) + ..., starting from b0. Bit for bit. Each rank sums one
/// slice of the values over all blocks (an all-to-all of the slices), then
/// the slices are gathered: the traffic of a reduce-scatter + all-gather.
std::vector<float> ordered_block_sum(Communicator& comm, std::span<const float> blocks, std::int64_t first_block,
                                     std::int64_t total_blocks, std::size_t block_length);
std::vector<double> ordered_block_sum(Communicator& comm, std::span<const double> blocks, std::int64_t first_block,
                                      std::int64_t total_blocks, std::size_t block_length);

}  // namespace marbm
