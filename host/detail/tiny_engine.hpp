// The CPU engine's path for tiny models (n, m <= 16: the toy problems, where
// a 6 x 6 update is a few hundred multiply-adds and bookkeeping dominates).
// Internal; used by host/cpu_engine.cpp, defined in host/tiny_engine.cpp.
//
// It computes exactly what the general CPU engine computes for such a model,
// in the same order, and draws the same Philox words for the same draws: the
// parameters after any sequence of updates are bit-identical to the general
// path's (tests/test_tiny_engine.cpp). What it does differently: rows padded
// to 8 or 16 units and summed as vectors (AVX2 where the CPU has it, never
// FMA), W^T kept for the visible fields, Philox blocks four or eight at a
// time (AVX2, AVX-512F), the sigmoid's exp four or eight at a time by a
// replica of glibc's expf (its FMA variant, operation for operation) that
// is checked against std::exp once per process and not used where it
// disagrees, and no allocation once the sizes settle.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "marbm/engine.hpp"
#include "marbm/random.hpp"

namespace marbm::detail {

/// Largest layer the tiny path takes. With n, m <= 16, n m <= 256 stays
/// below the general engine's BLAS threshold, so the general engine runs its
/// plain loops there too, whose order the tiny path repeats.
inline constexpr int tiny_max_units = 16;

inline bool tiny_model(int n, int m) { return n >= 1 && m >= 1 && n <= tiny_max_units && m <= tiny_max_units; }

/// The engine state an update reads and writes (the CPU engine's own arrays).
struct TinyModelView {
  int n = 0, m = 0;
  float* weights = nullptr;  // n x m, row-major
  float* visible_bias = nullptr;
  float* hidden_bias = nullptr;
  float* weight_velocity = nullptr;
  float* visible_velocity = nullptr;
  float* hidden_velocity = nullptr;
  const float* data = nullptr;  // data rows, 0/1 as float
  float* chains = nullptr;      // persistent chains, chain_count x n
  int chain_count = 0;
};

/// Workspace of the tiny path: rows padded to 8 or 16 units.
struct TinyWorkspace {
  std::vector<float> visible, hidden, hidden_sample;
  std::vector<float> chain, chain_hidden, chain_sample, chain_visible_prob;
  std::vector<float> weight_gradient;
  std::vector<double> positive_hidden, negative_hidden;  // hidden rows in float64
  std::vector<std::uint32_t> words;
};

/// One update of a tiny model (negative phase cd, pcd or mode; the caller
/// has validated the step and started the chains of pcd). Keeps workspace
/// between calls.
class TinyTrainer {
 public:
  void update(const TinyModelView& model, const UpdateStep& step);

 private:
  TinyWorkspace work_;
};

/// x[k] = 1 / (1 + exp(-x[k])) in float32, bit-identical to
/// 1.0f / (1.0f + std::exp(-x)) with this process's libm (vectorised where
/// tiny_fast_exp() holds).
void tiny_sigmoid(float* x, std::size_t count);

/// Whether the vectorised expf replica is in use: the CPU has AVX2 and FMA
/// and the replica agreed with std::exp(float) on a check set at first use.
bool tiny_fast_exp();

/// exp(x[k]) into out[k] by the replica (for tests; requires tiny_fast_exp()).
void tiny_exp_replica(const float* x, float* out, std::size_t count);

/// The Philox words of blocks first .. first + count - 1 of `stream`, four
/// per block, in order (the words of block b at 4 (b - first)).
void philox_words(const PhiloxStream& stream, std::uint64_t first, std::size_t count, std::uint32_t* out);

}  // namespace marbm::detail
