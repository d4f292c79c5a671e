// The MPI communicator (builds with MPI only): MPI_COMM_WORLD for a run
// started by mpiexec, or a caller's MPI_Comm (marbm/mpi.hpp).
#ifdef MARBM_HAVE_MPI

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "marbm/communicator.hpp"
#include "marbm/error.hpp"
#include "marbm/mpi.hpp"

namespace marbm {

namespace {

void check(int status, const char* what) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw RuntimeFailure(std::string("MPI ") + what + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}

int byte_count(std::size_t size, const char* what) {
  MARBM_EXPECTS(size <= static_cast<std::size_t>(std::numeric_limits<int>::max()), RuntimeFailure,
                std::string("MPI ") + what + ": " + std::to_string(size) + " bytes are more than one message carries");
  return static_cast<int>(size);
}

std::vector<int> displacements(const std::vector<int>& counts, const char* what) {
  std::vector<int> at(counts.size());
  long long offset = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    at[r] = byte_count(static_cast<std::size_t>(offset), what);
    offset += counts[r];
  }
  byte_count(static_cast<std::size_t>(offset), what);
  return at;
}

std::vector<std::vector<std::byte>> split(const std::vector<std::byte>& all, const std::vector<int>& counts) {
  std::vector<std::vector<std::byte>> parts(counts.size());
  std::size_t offset = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    parts[r].assign(all.begin() + static_cast<std::ptrdiff_t>(offset),
                    all.begin() + static_cast<std::ptrdiff_t>(offset + static_cast<std::size_t>(counts[r])));
    offset += static_cast<std::size_t>(counts[r]);
  }
  return parts;
}

class MpiCommunicator final : public Communicator {
 public:
  // Owns `comm` (a duplicate) and frees it unless MPI is already finalised.
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    check(MPI_Comm_rank(comm_, &rank_), "Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "Comm_size");
    // Errors come back as codes (thrown as RuntimeFailure), not as aborts.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string description() const override {
    return "MPI, " + std::to_string(size_) + (size_ == 1 ? " rank" : " ranks");
  }

  void all_reduce_sum(std::span<double> values) override { reduce(values, MPI_SUM); }
  void all_reduce_max(std::span<double> values) override { reduce(values, MPI_MAX); }

  void broadcast(std::span<std::byte> bytes, int root) override {
    check_root(root);
    check(MPI_Bcast(bytes.data(), byte_count(bytes.size(), "Bcast"), MPI_BYTE, root, comm_), "Bcast");
  }

  std::vector<std::vector<std::byte>> gather(std::span<const std::byte> bytes, int root) override {
    check_root(root);
    const int mine = byte_count(bytes.size(), "Gatherv");
    std::vector<int> counts(rank_ == root ? size_ : 0);
    check(MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm_), "Gather");
    std::vector<int> at;
    std::vector<std::byte> all;
    if (rank_ == root) {
      at = displacements(counts, "Gatherv");
      all.resize(static_cast<std::size_t>(at.back()) + static_cast<std::size_t>(counts.back()));
    }
    check(MPI_Gatherv(bytes.data(), mine, MPI_BYTE, all.data(), counts.data(), at.data(), MPI_BYTE, root, comm_),
          "Gatherv");
    if (rank_ != root) return {};
    return split(all, counts);
  }

  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> bytes) override {
    const int mine = byte_count(bytes.size(), "Allgatherv");
    std::vector<int> counts(size_);
    check(MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_), "Allgather");
    const std::vector<int> at = displacements(counts, "Allgatherv");
    std::vector<std::byte> all(static_cast<std::size_t>(at.back()) + static_cast<std::size_t>(counts.back()));
    check(MPI_Allgatherv(bytes.data(), mine, MPI_BYTE, all.data(), counts.data(), at.data(), MPI_BYTE, comm_),
          "Allgatherv");
    return split(all, counts);
  }

  std::vector<std::vector<std::byte>> all_to_all(const std::vector<std::vector<std::byte>>& to_each) override {
    MARBM_EXPECTS(to_each.size() == static_cast<std::size_t>(size_), UsageError,
                  "communicator: all_to_all needs one part per rank (" + std::to_string(size_) + "), got " +
                      std::to_string(to_each.size()));
    std::vector<int> send_counts(size_), receive_counts(size_);
    std::vector<std::byte> send;
    for (int q = 0; q < size_; ++q) {
      send_counts[q] = byte_count(to_each[q].size(), "Alltoallv");
      send.insert(send.end(), to_each[q].begin(), to_each[q].end());
    }
    check(MPI_Alltoall(send_counts.data(), 1, MPI_INT, receive_counts.data(), 1, MPI_INT, comm_), "Alltoall");
    const std::vector<int> send_at = displacements(send_counts, "Alltoallv");
    const std::vector<int> receive_at = displacements(receive_counts, "Alltoallv");
    std::vector<std::byte> all(static_cast<std::size_t>(receive_at.back()) + static_cast<std::size_t>(receive_counts.back()));
    check(MPI_Alltoallv(send.data(), send_counts.data(), send_at.data(), MPI_BYTE, all.data(), receive_counts.data(),
                        receive_at.data(), MPI_BYTE, comm_),
          "Alltoallv");
    return split(all, receive_counts);
  }

  MinLocation min_location(double value) override {
    struct {
      double value;
      int rank;
    } in{value != value ? std::numeric_limits<double>::infinity() : value, rank_}, out{};
    // MPI_MINLOC keeps the lowest rank among equal values.
    check(MPI_Allreduce(&in, &out, 1, MPI_DOUBLE_INT, MPI_MINLOC, comm_), "Allreduce (MINLOC)");
    return {out.value, out.rank};
  }

  void barrier() override { check(MPI_Barrier(comm_), "Barrier"); }

  void abort(int status) noexcept override { MPI_Abort(comm_, status); }

 private:
  void reduce(std::span<double> values, MPI_Op op) {
    MARBM_EXPECTS(values.size() <= static_cast<std::size_t>(std::numeric_limits<int>::max()), RuntimeFailure,
                  "MPI Allreduce: too many values for one message");
    check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, op, comm_),
          "Allreduce");
  }
  void check_root(int root) const {
    MARBM_EXPECTS(root >= 0 && root < size_, UsageError,
                  "communicator: root rank " + std::to_string(root) + " of " + std::to_string(size_) + " ranks");
  }

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

// Finalises MPI at exit when marbm initialised it.
struct MpiLifetime {
  bool initialised_here = false;
  ~MpiLifetime() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (initialised_here && !finalized) MPI_Finalize();
  }
};

MPI_Comm duplicate(MPI_Comm comm) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  MARBM_EXPECTS(initialised, RuntimeFailure, "mpi_communicator: MPI is not initialised (call MPI_Init first)");
  MPI_Comm copy = MPI_COMM_NULL;
  check(MPI_Comm_dup(comm, &copy), "Comm_dup");
  return copy;
}

}  // namespace

std::shared_ptr<Communicator> mpi_communicator(MPI_Comm comm) {
  return std::make_shared<MpiCommunicator>(duplicate(comm));
}

namespace detail {

std::shared_ptr<Communicator> mpi_world_communicator() {
  // Declared before the communicator so that it is destroyed after it.
  static MpiLifetime lifetime;
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    // MPI calls come from the main thread only; OpenMP threads compute.
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "Init_thread");
    lifetime.initialised_here = true;
  }
  static const std::shared_ptr<Communicator> world = mpi_communicator(MPI_COMM_WORLD);
  return world;
}

}  // namespace detail
}  // namespace marbm

#endif  // MARBM_HAVE_MPI
