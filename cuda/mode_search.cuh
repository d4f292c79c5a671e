// Ground-state search on the device: simulated bifurcation and annealing
// replicas, exhaustive enumeration, descent polish, best-replica reduction.
#pragma once

#include <cuda_runtime.h>

#include "marbm/mode.hpp"
#include "resources.cuh"

namespace marbm::detail {

/// Finds the mode of the RBM whose parameters are already on the device
/// (weights n x m row-major, visible_bias n, hidden_bias m, float32), on
/// resources.stream(). Only the result is copied back. Used by the CUDA
/// engine for mode steps without a host round trip of the parameters.
ModeResult find_mode_device(Resources& resources, const float* weights, const float* visible_bias,
                            const float* hidden_bias, int n_visible, int n_hidden, const ModeSearchConfig& config);

/// The mean energy over all states (Rbm::uniform_mean_energy) of the RBM
/// whose parameters are on the device, summed in float64 on `stream`; the one
/// double is copied back (synchronous). Equal to the host's value up to
/// float64 rounding (the order of the sums differs).
double uniform_mean_energy_device(cudaStream_t stream, const float* weights, const float* visible_bias,
                                  const float* hidden_bias, int n_visible, int n_hidden);

}  // namespace marbm::detail
