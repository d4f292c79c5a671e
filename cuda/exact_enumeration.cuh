// Exact log Z on the device by Gray-code enumeration of the smaller layer
// (SPEC.md section 5).
#pragma once

#include "marbm/exact.hpp"
#include "resources.cuh"

namespace marbm::detail {

/// log Z of the RBM whose float32 parameters are on the device (weights n x m
/// row-major, visible_bias n, hidden_bias m). Each thread enumerates a chunk of
/// consecutive Gray codes with float64 fields (restarted exactly at the chunk
/// start) and keeps a running log-sum-exp; blocks reduce (max, then sum of
/// exp) and one final block combines them on the device. Synchronizes the
/// stream to return the value. Throws RuntimeFailure beyond the enumeration
/// limit.
double log_partition_exact_device(Resources& resources, const float* weights, const float* visible_bias,
                                  const float* hidden_bias, int n_visible, int n_hidden,
                                  const ExactOptions& options);

}  // namespace marbm::detail
