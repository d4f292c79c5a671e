// The CPU engine's elementwise kernels: the logistic function, Philox words
// and Bernoulli draws, each over a row at a time. Two implementations: the
// baseline (plain C++, the reference) and, on x86-64 CPUs with AVX2 and FMA,
// a vector one, picked once at run time. Internal; not part of the public API.
//
// What the two share exactly: the Philox words (the vector generator computes
// eight blocks at a time and gives the same bits as PhiloxStream::block) and
// the map word -> uniform -> draw (state = [PhiloxStream::to_uniform(word) < p]).
// The logistic is the float nearest sigmoid(x) computed in float64
// (e = exp(-|x|) by detail::exp_nonpositive, then 1 / (1 + e) or e / (1 + e)),
// in both; the vector one evaluates the same polynomial with fused
// multiply-adds, so its float64 value differs by about a double rounding and
// the float result by at most one ulp, and only when the float64 value lies
// that close to a midpoint between floats (tests/test_cpu_elementwise.cpp
// measures it). Within one process the choice is fixed, so results never
// depend on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>

namespace marbm::detail {

struct ElementwiseKernels {
  const char* name;  // "avx2" or "baseline"

  /// Words of Philox blocks first_block .. first_block + blocks - 1 of the
  /// stream (seed, stream), four per block, in order: out[4 b + q] is word q
  /// of block first_block + b (block indices wrap modulo 2^64).
  void (*philox_words)(std::uint64_t seed, std::uint64_t stream, std::uint64_t first_block, std::size_t blocks,
                       std::uint32_t* out);

  /// out[k] = 1 / (1 + exp(-(x[k] + bias[k]))) for k < count; bias may be
  /// null (no bias), out may be x.
  void (*logistic)(const float* x, const float* bias, float* out, std::size_t count);

  /// One row of a Bernoulli half-sweep: p = logistic(x + bias) (bias may be
  /// null), stored to p_out unless it is null (p_out may be x), and
  /// state[k] = [uniform(base_index + k) < p] with the uniform of the Philox
  /// word at index base_index + k of (seed, stream). base_index is a multiple
  /// of 4 (a row starts on a fresh block).
  void (*logistic_sample)(const float* x, const float* bias, float* p_out, float* state, std::size_t count,
                          std::uint64_t seed, std::uint64_t stream, std::uint64_t base_index);

  /// state[k] = [uniform(base_index + k) < p[k]], as above without the logistic.
  void (*sample)(const float* p, float* state, std::size_t count, std::uint64_t seed, std::uint64_t stream,
                 std::uint64_t base_index);
};

/// The kernels this CPU runs best (AVX2 + FMA when it has them, unless the
/// environment variable MARBM_NO_AVX2 is set to anything but "0" or empty).
const ElementwiseKernels& elementwise_kernels();

/// The plain C++ kernels.
const ElementwiseKernels& baseline_elementwise_kernels();

/// The AVX2 + FMA kernels, or null when this CPU (or build) has none.
const ElementwiseKernels* avx2_elementwise_kernels();

}  // namespace marbm::detail
