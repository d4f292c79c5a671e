// Data-parallel training of one model across ranks: an Engine that every
// rank's training driver uses as it would a local one. Each update's batch is
// cut into 64-row blocks (detail::gradient_block_rows), the blocks shared
// among the ranks in contiguous ranges; every rank gets every block's
// statistics and sums them in block order (ordered_block_sum), so the
// gradient, and hence the model after any number of updates, has the same
// bits for any rank count, one included. Persistent chains are shared the
// same way, 64-chain blocks per rank. Every rank holds the whole model and
// data and applies the same update; mode steps search with the replicas
// shared among the ranks.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "detail/cpu_engine.hpp"
#include "detail/mode_states.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"

namespace marbm {

namespace {

using detail::gradient_block_rows;

std::int64_t blocks_of(std::int64_t rows) { return (rows + gradient_block_rows - 1) / gradient_block_rows; }

class DataParallelEngine final : public Engine {
 public:
  DataParallelEngine(std::unique_ptr<Engine> local, std::shared_ptr<Communicator> comm)
      : local_(std::move(local)), comm_(std::move(comm)) {
    MARBM_EXPECTS(local_ != nullptr && comm_ != nullptr, UsageError, "data-parallel engine: no engine or communicator");
    blockwise_ = dynamic_cast<detail::BlockwiseGradientEngine*>(local_.get());
    MARBM_EXPECTS(blockwise_ != nullptr, UsageError,
                  "data-parallel training runs on the cpu engine (the " + std::string(to_string(local_->backend())) +
                      " engine has no blockwise gradient)");
  }

  Backend backend() const override { return local_->backend(); }
  std::string description() const override { return local_->description() + " x " + comm_->description(); }

  void set_model(const Rbm& rbm) override {
    local_->set_model(rbm);
    n_ = rbm.n_visible();
    m_ = rbm.n_hidden();
    chains_total_ = 0;
  }
  Rbm model() const override { return local_->model(); }
  void set_data(const Dataset& data) override { local_->set_data(data); }

  void reset_persistent_chains(int count, std::uint64_t seed) override {
    MARBM_EXPECTS(count >= 1, UsageError, "persistent chain count must be >= 1, got " + std::to_string(count));
    const ItemRange blocks = contiguous_share(blocks_of(count), comm_->size(), comm_->rank());
    const auto first = static_cast<int>(std::min<std::int64_t>(blocks.first * gradient_block_rows, count));
    const auto last = static_cast<int>(std::min<std::int64_t>(blocks.last * gradient_block_rows, count));
    blockwise_->reset_chain_share(count, first, last, seed);
    chains_total_ = count;
  }

  // Checkpoints: every rank holds the same velocity; the chains are shared.
  OptimizerState optimizer_state() const override { return local_->optimizer_state(); }
  void set_optimizer_state(const OptimizerState& state) override { local_->set_optimizer_state(state); }
  void set_persistent_chain_states(std::span<const std::uint8_t> states, int count) override {
    MARBM_EXPECTS(count >= 1 && n_ > 0 && states.size() == static_cast<std::size_t>(count) * n_, UsageError,
                  "set_persistent_chain_states: expected " + std::to_string(count) + " rows of " + std::to_string(n_) +
                      " values, got " + std::to_string(states.size()));
    const ItemRange blocks = contiguous_share(blocks_of(count), comm_->size(), comm_->rank());
    const auto first = static_cast<std::size_t>(std::min<std::int64_t>(blocks.first * gradient_block_rows, count));
    const auto last = static_cast<std::size_t>(std::min<std::int64_t>(blocks.last * gradient_block_rows, count));
    const auto width = static_cast<std::size_t>(n_);
    blockwise_->set_chain_share(count, static_cast<int>(first), states.subspan(first * width, (last - first) * width));
    chains_total_ = count;
  }

  Gradient gradient(const UpdateStep& step) override { return combined_gradient(step); }

  void update(const UpdateStep& step) override { blockwise_->apply_gradient(step, combined_gradient(step)); }

  std::vector<float> hidden_probabilities(std::span<const std::uint8_t> visible, int batch) override {
    return local_->hidden_probabilities(visible, batch);
  }
  std::vector<std::uint8_t> gibbs_chain(std::span<const std::uint8_t> visible, int batch, int steps,
                                        std::uint64_t seed, std::uint64_t stream) override {
    return local_->gibbs_chain(visible, batch, steps, seed, stream);
  }

  std::vector<std::uint8_t> persistent_chain_states() const override {
    const std::vector<std::uint8_t> mine = blockwise_->chain_share_states();
    std::vector<std::uint8_t> all;
    for (const auto& part : comm_->all_gather(std::as_bytes(std::span<const std::uint8_t>(mine)))) {
      for (std::byte b : part) all.push_back(static_cast<std::uint8_t>(b));
    }
    return all;
  }

  double log_partition_exact(const ExactOptions& options) override {
    return marbm::log_partition_exact(local_->model(), *comm_, options);
  }

  // The replicas shared among the ranks; the same mode on every rank.
  ModeResult find_mode(const ModeSearchConfig& config) override {
    ModeSearchConfig cpu = config;
    cpu.backend = Backend::cpu;
    return marbm::find_mode(local_->model(), cpu, *comm_);
  }

 private:
  Gradient combined_gradient(const UpdateStep& step) {
    MARBM_EXPECTS(n_ > 0, UsageError, "update: no model (call set_model first)");
    const std::size_t length = static_cast<std::size_t>(n_) * m_ + n_ + m_;
    const std::int64_t batch_blocks = blocks_of(static_cast<std::int64_t>(step.batch_rows.size()));
    MARBM_EXPECTS(batch_blocks >= 1, UsageError, "update: the batch is empty");
    const ItemRange mine = contiguous_share(batch_blocks, comm_->size(), comm_->rank());
    blockwise_->batch_block_statistics(step, static_cast<int>(mine.first), static_cast<int>(mine.last), positive_,
                                       negative_);
    std::vector<double> sum;
    if (step.negative == NegativePhase::cd) {
      // One reduction for both phases: block b carries [data | model]
      // statistics of its rows; each half is still summed in block order.
      const std::size_t blocks = positive_.size() / length;
      both_.resize(2 * positive_.size());
      for (std::size_t b = 0; b < blocks; ++b) {
        std::copy_n(positive_.begin() + static_cast<std::ptrdiff_t>(b * length), length,
                    both_.begin() + static_cast<std::ptrdiff_t>(2 * b * length));
        std::copy_n(negative_.begin() + static_cast<std::ptrdiff_t>(b * length), length,
                    both_.begin() + static_cast<std::ptrdiff_t>((2 * b + 1) * length));
      }
      const std::vector<double> halves = ordered_block_sum(*comm_, both_, mine.first, batch_blocks, 2 * length);
      sum.assign(halves.begin(), halves.begin() + static_cast<std::ptrdiff_t>(length));
      for (std::size_t k = 0; k < length; ++k) sum[k] += halves[length + k];
    } else {
      sum = ordered_block_sum(*comm_, positive_, mine.first, batch_blocks, length);
    }
    switch (step.negative) {
      case NegativePhase::cd: break;  // added above
      case NegativePhase::pcd: {
        if (chains_total_ == 0) reset_persistent_chains(static_cast<int>(step.batch_rows.size()), step.seed);
        const std::int64_t chain_blocks = blocks_of(chains_total_);
        const ItemRange chains = contiguous_share(chain_blocks, comm_->size(), comm_->rank());
        blockwise_->chain_block_statistics(step, negative_);
        add(sum, ordered_block_sum(*comm_, negative_, chains.first, chain_blocks, length));
        break;
      }
      case NegativePhase::exact: {
        const ModelExpectations ex = model_expectations_exact(local_->model(), step.exact);
        std::vector<double> model_term(length);
        std::copy(ex.visible_hidden.begin(), ex.visible_hidden.end(), model_term.begin());
        std::copy(ex.visible.begin(), ex.visible.end(), model_term.begin() + static_cast<std::ptrdiff_t>(n_) * m_);
        std::copy(ex.hidden.begin(), ex.hidden.end(), model_term.begin() + static_cast<std::ptrdiff_t>(n_) * m_ + n_);
        for (std::size_t k = 0; k < length; ++k) sum[k] -= model_term[k];
        break;
      }
      case NegativePhase::mode: {
        const int states = detail::check_mode_states(step, n_, m_, "update");
        for (int s = 0; s < states; ++s) {
          const double weight = step.mode_weights.empty() ? 1.0 : step.mode_weights[static_cast<std::size_t>(s)];
          const std::uint8_t* v = step.mode_visible.data() + static_cast<std::size_t>(s) * n_;
          const std::uint8_t* h = step.mode_hidden.data() + static_cast<std::size_t>(s) * m_;
          for (int i = 0; i < n_; ++i) {
            if (!v[i]) continue;
            double* row = sum.data() + static_cast<std::size_t>(i) * m_;
            for (int j = 0; j < m_; ++j) row[j] -= weight * h[j];
          }
          double* visible = sum.data() + static_cast<std::size_t>(n_) * m_;
          double* hidden = visible + n_;
          for (int i = 0; i < n_; ++i) visible[i] -= weight * v[i];
          for (int j = 0; j < m_; ++j) hidden[j] -= weight * h[j];
        }
        break;
      }
    }
    Gradient g;
    const auto weights_end = sum.begin() + static_cast<std::ptrdiff_t>(n_) * m_;
    g.weights.assign(sum.begin(), weights_end);
    g.visible_bias.assign(weights_end, weights_end + n_);
    g.hidden_bias.assign(weights_end + n_, sum.end());
    return g;
  }

  static void add(std::vector<double>& sum, const std::vector<double>& more) {
    for (std::size_t k = 0; k < sum.size(); ++k) sum[k] += more[k];
  }

  std::unique_ptr<Engine> local_;
  std::shared_ptr<Communicator> comm_;
  detail::BlockwiseGradientEngine* blockwise_ = nullptr;
  int n_ = 0;
  int m_ = 0;
  int chains_total_ = 0;
  std::vector<double> positive_, negative_, both_;
};

}  // namespace

std::unique_ptr<Engine> make_data_parallel_engine(std::unique_ptr<Engine> local, std::shared_ptr<Communicator> comm) {
  return std::make_unique<DataParallelEngine>(std::move(local), std::move(comm));
}

}  // namespace marbm
