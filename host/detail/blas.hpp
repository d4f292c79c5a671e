// Matrix products whose result does not depend on the thread count.
#pragma once

#include <cblas.h>

namespace marbm::detail {

/// Sets OpenBLAS to one thread (process-wide, once): callers that cut a
/// product into fixed blocks and run them on OpenMP threads call it first.
void use_single_threaded_blas();

/// cblas_sgemm for row-major C (M x N) = alpha op(A) op(B) + beta C, with C's
/// rows cut into fixed blocks of 64, each computed by single-threaded BLAS on
/// one of `threads` OpenMP threads (0: the OpenMP default). The blocks and
/// the order of every sum inside one do not depend on the thread count, so
/// neither do the bits of the result.
void partitioned_sgemm(CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int m, int n, int k, float alpha,
                       const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc, int threads);

}  // namespace marbm::detail
