// Host-side shapes of the CUDA engine's update (cuda/gibbs.cu,
// cuda/cuda_engine.cu): strides of the augmented matrices, where the
// gradient's entries live in the augmented product, the launch shapes of the
// sampler, gather and update kernels, and when an update is replayed from a
// CUDA Graph. Plain C++ without CUDA, so that the CPU tests check every
// decision (tests/test_cuda_update_layout.cpp).
//
// The gradient is one GEMM over the stacked rows of the augmented matrices
//   V' = [V | 1]  (rows x (n + 1), row stride augmented_stride(n))
//   H' = [H | w]  (rows x (m + 1), row stride augmented_stride(m))
// where w holds each row's weight (1/B for data rows, -1/P or -w_k for the
// negative rows) and H's rows are already scaled by it. G = V'^T H' is
// (n + 1) x (m + 1), row stride augmented_stride(m): G[i][j] = dW[i][j],
// G[i][m] = sum_r w_r v_ri = da[i], G[n][j] = sum_r h_rj = db[j]; G[n][m] is
// never read.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace marbm::detail {

/// Row stride (in floats) of an augmented layer matrix [X | c] of `width`
/// columns: width + 1 rounded up to a multiple of 4, so that every row starts
/// on 16 bytes (float4 stores, aligned GEMM operands).
constexpr std::size_t augmented_stride(int width) {
  return (static_cast<std::size_t>(width) + 1 + 3) / 4 * 4;
}

/// Floats of the augmented gradient G of an n x m model.
constexpr std::size_t augmented_gradient_size(int n, int m) {
  return (static_cast<std::size_t>(n) + 1) * augmented_stride(m);
}

/// The offset in G of entry k of the flat gradient [W (n x m row-major) | a (n)
/// | b (m)] (k < n m + n + m).
constexpr std::size_t augmented_gradient_offset(int n, int m, std::size_t k) {
  const std::size_t weights = static_cast<std::size_t>(n) * m;
  const std::size_t stride = augmented_stride(m);
  if (k < weights) return k / m * stride + k % m;
  if (k < weights + n) return (k - weights) * stride + m;
  return static_cast<std::size_t>(n) * stride + (k - weights - n);
}

/// Launch shape of a kernel over `rows` rows of `items` items each: threads
/// along a row (x), one row per block row (y, a grid-stride loop over rows
/// beyond 65535), so that no thread divides to find its row and column and
/// every in-row index fits 32 bits.
struct RowLaunch {
  unsigned threads = 0;  ///< block size, a multiple of 32, at most max_threads
  unsigned grid_x = 0;   ///< blocks along a row: grid_x * threads >= items
  unsigned grid_y = 0;   ///< blocks across rows: min(rows, 65535)
};

/// The RowLaunch of `rows` x `items` (both >= 1) with at most `max_threads`
/// (a multiple of 32) threads per block: the smallest multiple of 32 that
/// covers a row, capped at max_threads.
constexpr RowLaunch row_launch(std::int64_t rows, std::int64_t items, unsigned max_threads) {
  const std::int64_t warps = (items + 31) / 32;
  const std::int64_t threads = std::min<std::int64_t>(warps * 32, max_threads);
  RowLaunch launch;
  launch.threads = static_cast<unsigned>(threads);
  launch.grid_x = static_cast<unsigned>((items + threads - 1) / threads);
  launch.grid_y = static_cast<unsigned>(std::min<std::int64_t>(rows, 65535));
  return launch;
}

/// Threads per block of the sampler (one thread per group of four units).
inline constexpr unsigned kSamplerThreads = 128;
/// Threads per block of the gather and update kernels (one thread per column).
inline constexpr unsigned kRowKernelThreads = 256;

/// The sampler's launch: one thread per group of four units of a row.
constexpr RowLaunch sampler_launch(int rows, int width) {
  return row_launch(rows, (static_cast<std::int64_t>(width) + 3) / 4, kSamplerThreads);
}

/// Whether rows of `stride` floats starting at `address` can be read or
/// written as float4: the address on 16 bytes and the stride a multiple of 4
/// floats (then every row, and every group of four units in it, is aligned).
constexpr bool float4_rows(std::uintptr_t address, std::size_t stride) {
  return address % 16 == 0 && stride % 4 == 0;
}

/// Whether an update replays a captured CUDA Graph: graphs enabled (not
/// MARBM_CUDA_GRAPH=0), a cd or pcd negative phase (mode and exact steps
/// bring host data with them), one engine (the data-parallel sum is not
/// captured), and launches not synchronised for debugging (MARBM_CUDA_SYNC=1
/// synchronises after each launch, which a capture forbids).
constexpr bool update_replays_graph(bool graphs_enabled, bool chained_negative_phase, bool data_parallel,
                                    bool sync_after_launches) {
  return graphs_enabled && chained_negative_phase && !data_parallel && !sync_after_launches;
}

}  // namespace marbm::detail
