// Ground-state search on the device: simulated bifurcation and annealing
// replicas, exhaustive enumeration, descent polish, best-replica reduction.
#pragma once

#include <cuda_runtime.h>
#include <cstddef>
#include <span>
#include <vector>

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

/// Several models' parameters on the device, n x m each, laid out by member:
/// member e's weights at weights + e x weights_stride, its biases at
/// visible_bias + e x visible_stride and hidden_bias + e x hidden_stride (the
/// batched ensemble's layout).
struct MemberParameters {
  const float* weights = nullptr;
  std::size_t weights_stride = 0;
  const float* visible_bias = nullptr;
  std::size_t visible_stride = 0;
  const float* hidden_bias = nullptr;
  std::size_t hidden_stride = 0;
};

/// The exhaustive mode searches of the members `members` (indices into
/// `parameters`, each at most once or more: they are independent) in one
/// launch per stage: transpose, enumerate, decode, polish, best candidate,
/// then one copy back. The enumeration is the per-warp kernel's: result q is
/// bit for bit what find_mode_device gives for member members[q] with
/// `config` (solver exhaustive, checked) under MARBM_EXHAUSTIVE_KERNEL=warp
/// (the same per-model work, the same launch plan per model; only the timing,
/// `seconds`, the batch's, differs). By default find_mode_device enumerates
/// up to 64 units with the per-thread kernel, whose float64 sums run in
/// another order: the same state except where two states' energies tie to
/// within rounding.
std::vector<ModeResult> find_modes_exhaustive_batched(Resources& resources, const MemberParameters& parameters,
                                                      int n_visible, int n_hidden, std::span<const int> members,
                                                      const ModeSearchConfig& config);

}  // namespace marbm::detail
