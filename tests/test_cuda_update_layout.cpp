// Host decisions of the CUDA engine's update, checked without a device
// (detail/cuda_update_layout.hpp): the augmented gradient layout, the launch
// shapes of the row kernels and when an update replays its CUDA Graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <set>
#include <vector>

#include "detail/cuda_update_layout.hpp"

namespace marbm::detail {
namespace {

TEST(CudaUpdateLayout, AugmentedStrideHoldsTheExtraColumnOnSixteenBytes) {
  for (int width = 1; width <= 70; ++width) {
    const std::size_t stride = augmented_stride(width);
    EXPECT_GE(stride, static_cast<std::size_t>(width) + 1) << width;
    EXPECT_LT(stride, static_cast<std::size_t>(width) + 5) << width;
    EXPECT_EQ(stride % 4, 0u) << width;
  }
  EXPECT_EQ(augmented_stride(784), 788u);
  EXPECT_EQ(augmented_stride(500), 504u);
  // No int overflow at the largest width.
  EXPECT_EQ(augmented_stride(INT_MAX), static_cast<std::size_t>(INT_MAX) + 1);
}

// The gradient entries' offsets: every entry of [W | a | b] has its own cell
// of G, inside G, at the row and column the GEMM of V'^T H' writes it to.
TEST(CudaUpdateLayout, GradientOffsetsAreTheAugmentedProductsCells) {
  for (const auto [n, m] : {std::array{1, 1}, std::array{3, 5}, std::array{7, 4}, std::array{16, 3}, std::array{13, 31}}) {
    const std::size_t stride = augmented_stride(m);
    const std::size_t count = static_cast<std::size_t>(n) * m + n + m;
    std::set<std::size_t> cells;
    for (std::size_t k = 0; k < count; ++k) {
      const std::size_t offset = augmented_gradient_offset(n, m, k);
      ASSERT_LT(offset, augmented_gradient_size(n, m)) << k;
      const std::size_t row = offset / stride, column = offset % stride;
      if (k < static_cast<std::size_t>(n) * m) {
        EXPECT_EQ(row, k / m);  // dW[i][j] = G[i][j]
        EXPECT_EQ(column, k % m);
      } else if (k < static_cast<std::size_t>(n) * m + n) {
        EXPECT_EQ(row, k - static_cast<std::size_t>(n) * m);  // da[i] = G[i][m]
        EXPECT_EQ(column, static_cast<std::size_t>(m));
      } else {
        EXPECT_EQ(row, static_cast<std::size_t>(n));  // db[j] = G[n][j]
        EXPECT_EQ(column, k - static_cast<std::size_t>(n) * m - n);
      }
      cells.insert(offset);
    }
    EXPECT_EQ(cells.size(), count) << n << "x" << m << ": two entries share a cell";
    EXPECT_EQ(cells.count(static_cast<std::size_t>(n) * stride + m), 0u) << "G[n][m] is not an entry";
  }
}

// The augmented product computed in plain loops from V' and H' gives back
// V^T H, V^T w and H^T 1 at those offsets.
TEST(CudaUpdateLayout, AugmentedProductHoldsTheThreeGradients) {
  const int n = 5, m = 3, rows = 4;
  const std::size_t ldv = augmented_stride(n), ldh = augmented_stride(m);
  std::vector<double> v(rows * ldv, 0.0), h(rows * ldh, 0.0), w(rows);
  for (int r = 0; r < rows; ++r) {
    w[r] = r < 2 ? 0.5 : -0.5;
    for (int i = 0; i < n; ++i) v[r * ldv + i] = (r * 3 + i) % 2;
    v[r * ldv + n] = 1.0;
    for (int j = 0; j < m; ++j) h[r * ldh + j] = w[r] * (0.1 * (r + 1) + 0.01 * j);
    h[r * ldh + m] = w[r];
  }
  std::vector<double> g(augmented_gradient_size(n, m), 0.0);
  for (int i = 0; i <= n; ++i)
    for (int j = 0; j <= m; ++j)
      for (int r = 0; r < rows; ++r) g[i * ldh + j] += v[r * ldv + i] * h[r * ldh + j];
  const auto at = [&](std::size_t k) { return g[augmented_gradient_offset(n, m, k)]; };
  for (int i = 0; i < n; ++i) {
    double da = 0.0;
    for (int r = 0; r < rows; ++r) da += w[r] * v[r * ldv + i];
    EXPECT_DOUBLE_EQ(at(static_cast<std::size_t>(n) * m + i), da);
    for (int j = 0; j < m; ++j) {
      double dw = 0.0;
      for (int r = 0; r < rows; ++r) dw += v[r * ldv + i] * h[r * ldh + j];
      EXPECT_DOUBLE_EQ(at(static_cast<std::size_t>(i) * m + j), dw);
    }
  }
  for (int j = 0; j < m; ++j) {
    double db = 0.0;
    for (int r = 0; r < rows; ++r) db += h[r * ldh + j];
    EXPECT_DOUBLE_EQ(at(static_cast<std::size_t>(n) * m + n + j), db);
  }
}

TEST(CudaUpdateLayout, RowLaunchCoversEveryItemOnce) {
  for (const std::int64_t items : {1, 31, 32, 33, 125, 196, 257, 100000}) {
    for (const std::int64_t rows : {1, 7, 1024, 65535, 65536, 200000}) {
      const RowLaunch launch = row_launch(rows, items, 256);
      EXPECT_EQ(launch.threads % 32, 0u);
      EXPECT_LE(launch.threads, 256u);
      EXPECT_GE(static_cast<std::int64_t>(launch.grid_x) * launch.threads, items);
      EXPECT_LT(static_cast<std::int64_t>(launch.grid_x - 1) * launch.threads, items) << "no idle block";
      EXPECT_EQ(launch.grid_y, static_cast<unsigned>(std::min<std::int64_t>(rows, 65535)));
    }
  }
  // A narrow row gets one warp, not a block of idle threads.
  EXPECT_EQ(row_launch(10, 5, 256).threads, 32u);
}

TEST(CudaUpdateLayout, SamplerTakesOneThreadPerGroupOfFourUnits) {
  // 784 x 500 at batch 1024: 196 and 125 groups a row.
  const RowLaunch visible = sampler_launch(1024, 784);
  EXPECT_EQ(visible.threads, kSamplerThreads);
  EXPECT_EQ(visible.grid_x, 2u);
  EXPECT_EQ(visible.grid_y, 1024u);
  const RowLaunch hidden = sampler_launch(1024, 500);
  EXPECT_EQ(hidden.threads, 128u);
  EXPECT_EQ(hidden.grid_x, 1u);
  // Tails: width 5 is two groups (the second partial) in one warp.
  const RowLaunch tail = sampler_launch(3, 5);
  EXPECT_EQ(tail.threads, 32u);
  EXPECT_EQ(tail.grid_x, 1u);
  // The widest width the sampler takes (INT_MAX - 3): groups fit an int.
  const std::int64_t widest_groups = (static_cast<std::int64_t>(INT_MAX) - 3 + 3) / 4;
  const RowLaunch widest = sampler_launch(1, INT_MAX - 3);
  EXPECT_GE(static_cast<std::int64_t>(widest.grid_x) * widest.threads, widest_groups);
}

TEST(CudaUpdateLayout, Float4RowsNeedAlignedStartAndStride) {
  EXPECT_TRUE(float4_rows(0x1000, 500));
  EXPECT_TRUE(float4_rows(0x1000, augmented_stride(784)));
  EXPECT_FALSE(float4_rows(0x1004, 500)) << "start off 16 bytes";
  EXPECT_FALSE(float4_rows(0x1000, 785)) << "rows drift off 16 bytes";
  EXPECT_TRUE(float4_rows(0, 4)) << "a null output is never written";
}

TEST(CudaUpdateLayout, OnlyPlainCdAndPcdUpdatesReplayTheGraph) {
  EXPECT_TRUE(update_replays_graph(true, true, false, false));
  EXPECT_FALSE(update_replays_graph(false, true, false, false)) << "MARBM_CUDA_GRAPH=0";
  EXPECT_FALSE(update_replays_graph(true, false, false, false)) << "mode and exact steps";
  EXPECT_FALSE(update_replays_graph(true, true, true, false)) << "data-parallel (NCCL sum)";
  EXPECT_FALSE(update_replays_graph(true, true, false, true)) << "MARBM_CUDA_SYNC=1";
}

}  // namespace
}  // namespace marbm::detail
