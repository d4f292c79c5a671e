// The CPU engine: the reference implementation of Engine (BLAS + OpenMP).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "marbm/engine.hpp"

namespace marbm::detail {

/// `tiny_path`: models with n, m <= tiny_max_units update through the tiny
/// path (detail/tiny_engine.hpp), bit-identical to the general loops; false
/// keeps every update on the general path (tests compare the two).
std::unique_ptr<Engine> make_cpu_engine(const EngineOptions& options, bool tiny_path = true);

/// Rows of one block of a data-parallel gradient: statistics are summed per
/// block and the blocks in block order, so that the sum does not depend on
/// how the blocks are shared among ranks.
inline constexpr int gradient_block_rows = 64;

/// What the CPU engine offers the data-parallel engine (host/data_parallel.cpp):
/// the statistics of some blocks of a step, and the update from a gradient.
/// Each block's statistics are n x m + n + m float64 values (weights
/// row-major, visible bias, hidden bias), already scaled by +-1/rows.
class BlockwiseGradientEngine {
 public:
  virtual ~BlockwiseGradientEngine() = default;

  /// Statistics of the step's batch blocks [first_block, last_block) (block
  /// b: batch positions 64 b .. 64 b + 63), one block after another in
  /// `blocks`: the positive phase scaled by 1/batch, and for cd minus the
  /// same rows' chains' statistics (one product over the block's data and
  /// chain rows). Random numbers are those of the batch position (row index
  /// within the whole batch), so every block is the same whichever rank
  /// computes it.
  virtual void batch_block_statistics(const UpdateStep& step, int first_block, int last_block,
                                      std::vector<double>& blocks) = 0;
  /// All of the batch's blocks summed in block order ((b0 + b1) + b2 ...)
  /// into `sum`: the bits of ordered_block_sum over batch_block_statistics'
  /// blocks, without a vector per block (one rank).
  virtual void batch_statistics_sum(const UpdateStep& step, Gradient& sum) = 0;

  /// Starts this rank's share [first, last) of `total` persistent chains,
  /// each chain as reset_persistent_chains would start chain `first + c`.
  virtual void reset_chain_share(int total, int first, int last, std::uint64_t seed) = 0;
  /// Negative statistics (scaled by -1/total) of this rank's chains, advanced
  /// k sweeps; one block per 64 chains of the whole population (the share
  /// must start on a block boundary).
  virtual void chain_block_statistics(const UpdateStep& step, std::vector<double>& blocks) = 0;
  /// This rank's chain blocks summed in block order into `sum`, as
  /// batch_statistics_sum (one rank, holding every chain).
  virtual void chain_statistics_sum(const UpdateStep& step, Gradient& sum) = 0;
  /// Sets this rank's share [first, first + count) of `total` chains to
  /// `states` (count x n, 0/1; count may be 0): a resumed checkpoint.
  virtual void set_chain_share(int total, int first, std::span<const std::uint8_t> states) = 0;
  /// The chains of this rank's share (count x n, 0/1).
  virtual std::vector<std::uint8_t> chain_share_states() const = 0;

  /// Applies `gradient` as update() applies its own (momentum, decay).
  virtual void apply_gradient(const UpdateStep& step, const Gradient& gradient) = 0;
  /// For a cd step on one rank: apply_gradient(step, g) for g the
  /// batch_statistics_sum of the step, with the weight sum's last pass
  /// inside the update's (the same bits; `sum` is workspace: its weights
  /// are not the gradient afterwards, its biases are).
  virtual void apply_batch_statistics(const UpdateStep& step, Gradient& sum) = 0;
};

}  // namespace marbm::detail
