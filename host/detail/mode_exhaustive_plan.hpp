// The exhaustive mode search on the device (cuda/mode_exhaustive.cu): which
// kernel runs and its launch shape, a pure function tested on the CPU; and
// the CPU twin of the one-state-per-thread kernel, the same float64
// arithmetic in the same order, so that the device's lowest energy can be
// compared with it bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "marbm/rbm.hpp"

namespace marbm::detail {

/// warp: one chunk of states per warp, the other layer's float64 fields in
/// shared memory, one warp-wide sum per state (any size). thread: one chunk of
/// states per thread with its fields in registers (larger layer <= 64 units).
enum class ExhaustiveKernel { warp, thread };

/// The largest "other" layer the thread kernel keeps in registers.
constexpr int kExhaustiveThreadMaxUnits = 64;
/// Threads per block of the thread kernel.
constexpr int kExhaustiveThreadBlock = 128;

struct ExhaustivePlan {
  ExhaustiveKernel kernel = ExhaustiveKernel::warp;
  // The rest describes the thread kernel only.
  int size_class = 0;            ///< fields per thread (16, 32 or 64 >= the larger layer)
  int chunk_bits = 0;            ///< each thread enumerates 2^chunk_bits consecutive Gray indices
  std::uint64_t chunks = 0;      ///< 2^k >> chunk_bits: threads with states
  std::uint64_t blocks = 0;      ///< of kExhaustiveThreadBlock threads, >= chunks threads in all
  std::uint64_t slots = 0;       ///< one (energy, index) per warp: blocks * kExhaustiveThreadBlock / 32
  std::size_t shared_bytes = 0;  ///< rows 0..chunk_bits-1 (size_class values each) and their biases
};

/// Bytes per value of the thread kernel's rows in shared memory: float64 up
/// to size class 32, float32 at 64 (float64 rows there exceed the registers).
constexpr std::size_t exhaustive_row_bytes(int size_class) { return size_class <= 32 ? 8 : 4; }

/// The kernel and launch shape for enumerating the smaller layer (k units)
/// with the larger (l units) set optimally, on a device with
/// `multiprocessors` SMs. The thread kernel when l <= 64 unless `force_warp`
/// (MARBM_EXHAUSTIVE_KERNEL=warp). Chunks are powers of two aligned to their
/// size, so the unit flipped at step i of a chunk, the lowest set bit of i,
/// is the same in every thread: a warp reads one row of W at a time. A chunk
/// is at least max(32, 2k) states (its exact restart costs k row additions)
/// and long enough that about 1024 threads per SM cover the states.
ExhaustivePlan plan_exhaustive(int k, int l, int multiprocessors, bool force_warp);

/// Whether MARBM_EXHAUSTIVE_KERNEL selects the old kernel: "warp" forces the
/// one-chunk-per-warp kernel, unset/empty/"auto" leaves the choice to the
/// plan; any other value is a UsageError naming the variable.
bool exhaustive_force_warp(const char* value);

/// The lowest energy over the enumeration and its Gray-code index (the
/// lowest index on ties); index ~0 when no energy compares lower than +inf.
struct ExhaustiveLowest {
  double energy = 0.0;
  std::uint64_t index = ~std::uint64_t{0};
};

/// The enumeration problem of an Rbm as the device kernels take it: the
/// smaller layer (k units) is enumerated; row u of `rows` (k x l, row-major)
/// couples enumerated unit u to every unit of the other layer.
struct ExhaustiveProblem {
  bool enumerate_hidden = false;
  int k = 0;
  int l = 0;
  std::vector<float> rows;
  std::vector<float> bias_k;
  std::vector<float> bias_l;
};
ExhaustiveProblem exhaustive_problem(const Rbm& rbm);

/// The thread kernel on the CPU: chunks of 2^chunk_bits Gray indices, each
/// restarting its float64 fields exactly at its first state (bias, then rows
/// of the set units in ascending order), then per state
/// E = -linear - sum_p max(0, field_p), the sum as four partial sums over
/// p mod 4 (p ascending) combined (s0 + s1) + (s2 + s3); the first lowest
/// index within a chunk, the lowest (energy, index) over chunks.
ExhaustiveLowest exhaustive_thread_twin(const ExhaustiveProblem& problem, int chunk_bits);

}  // namespace marbm::detail
