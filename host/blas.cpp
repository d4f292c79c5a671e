// Thread-count independent matrix products (detail/blas.hpp).
#include "detail/blas.hpp"

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <mutex>

namespace marbm::detail {

namespace {

constexpr int block_rows = 64;
// Products with fewer multiply-adds than this run their blocks on the calling
// thread: an OpenMP fork/join costs microseconds on an idle machine but up to
// a scheduler time slice on shared cores, more than a few milliseconds of
// single-threaded sgemm. (784 x 500 x 100 is 39M multiply-adds.)
constexpr double parallel_multiply_adds = 64.0 * 1024 * 1024;

}  // namespace

// OpenBLAS keeps one process-wide thread count: 1, so that each block is
// summed the same way whichever OpenMP thread computes it. (Engines made
// concurrently, a study's, must not race on it.)
void use_single_threaded_blas() {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

void partitioned_sgemm(CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int m, int n, int k, float alpha,
                       const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc, int threads) {
  use_single_threaded_blas();
  const int blocks = (m + block_rows - 1) / block_rows;
  const bool large = static_cast<double>(m) * n * k >= parallel_multiply_adds;
  const int team = large ? std::max(1, std::min(threads > 0 ? threads : omp_get_max_threads(), blocks)) : 1;
  auto block = [&](int index) {
    const int first = index * block_rows;
    const int rows = std::min(block_rows, m - first);
    // Row `first` of op(A): a row of A, or a column when A is transposed.
    const float* a_block = trans_a == CblasNoTrans ? a + static_cast<std::ptrdiff_t>(first) * lda : a + first;
    cblas_sgemm(CblasRowMajor, trans_a, trans_b, rows, n, k, alpha, a_block, lda, b, ldb, beta,
                c + static_cast<std::ptrdiff_t>(first) * ldc, ldc);
  };
  if (team == 1) {
    for (int index = 0; index < blocks; ++index) block(index);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(team)
  for (int index = 0; index < blocks; ++index) block(index);
}

}  // namespace marbm::detail
