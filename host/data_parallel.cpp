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
//
// On GPU ranks (make_cuda_data_parallel_engine) the CUDA engine itself takes
// its share of the rows and sums the gradient with NCCL (cuda/cuda_engine.cu);
// here it is only set up: every rank agrees that it can take part, then rank
// 0 makes NCCL's id and broadcasts it.
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "detail/cpu_engine.hpp"
#include "detail/cuda_entry.hpp"
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
  std::string description() const override {
    // Alone (plain `marbm train`), nothing is distributed worth naming.
    const std::string ranks = comm_->description();
    return ranks == single_process_communicator()->description() ? local_->description()
                                                                  : local_->description() + " x " + ranks;
  }

  void set_model(const Rbm& rbm) override {
    local_->set_model(rbm);
    n_ = rbm.n_visible();
    m_ = rbm.n_hidden();
    chains_total_ = 0;
  }
  Rbm model() const override { return local_->model(); }
  // Every rank holds the same parameters and computes the same value.
  double uniform_mean_energy() const override { return local_->uniform_mean_energy(); }
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

  void update(const UpdateStep& step) override {
    // One rank, cd: the gradient's last pass is the update's.
    if (comm_->size() == 1 && step.negative == NegativePhase::cd) {
      MARBM_EXPECTS(n_ > 0, UsageError, "update: no model (call set_model first)");
      blockwise_->apply_batch_statistics(step, gradient_);
      return;
    }
    blockwise_->apply_gradient(step, combined_gradient(step));
  }

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

  // One rank (plain `marbm train`) asks its engine, which keeps to its
  // thread count: the same bits as the distributed calls, which equal the
  // single-process ones.
  double log_partition_exact(const ExactOptions& options) override {
    if (comm_->size() == 1) return local_->log_partition_exact(options);
    return marbm::log_partition_exact(local_->model(), *comm_, options);
  }

  // The replicas shared among the ranks; the same mode on every rank.
  ModeResult find_mode(const ModeSearchConfig& config) override {
    if (comm_->size() == 1) return local_->find_mode(config);
    ModeSearchConfig cpu = config;
    cpu.backend = Backend::cpu;
    return marbm::find_mode(local_->model(), cpu, *comm_);
  }

 private:
  // The gradient of the step, in gradient_ (kept between updates: at
  // 784 x 500 fresh arrays cost page faults on every update).
  const Gradient& combined_gradient(const UpdateStep& step) {
    MARBM_EXPECTS(n_ > 0, UsageError, "update: no model (call set_model first)");
    const std::size_t weights = static_cast<std::size_t>(n_) * m_;
    const std::size_t length = weights + n_ + m_;
    const std::int64_t batch_blocks = blocks_of(static_cast<std::int64_t>(step.batch_rows.size()));
    MARBM_EXPECTS(batch_blocks >= 1, UsageError, "update: the batch is empty");
    Gradient& g = gradient_;
    // One rank (what `marbm train` runs): the engine adds the blocks in
    // block order straight into the gradient (no vector per block, no
    // exchange): the bits of ordered_block_sum.
    const bool alone = comm_->size() == 1;
    if (alone) {
      blockwise_->batch_statistics_sum(step, g);
    } else {
      const ItemRange mine = contiguous_share(batch_blocks, comm_->size(), comm_->rank());
      blockwise_->batch_block_statistics(step, static_cast<int>(mine.first), static_cast<int>(mine.last), blocks_);
      // For cd a block already holds data minus model statistics: one
      // reduction for both phases.
      copy_into(g, ordered_block_sum(*comm_, blocks_, mine.first, batch_blocks, length));
    }
    if (step.negative == NegativePhase::pcd) {
      if (chains_total_ == 0) reset_persistent_chains(static_cast<int>(step.batch_rows.size()), step.seed);
      if (alone) {
        blockwise_->chain_statistics_sum(step, chain_sum_);
        add_into(g, chain_sum_);
      } else {
        const std::int64_t chain_blocks = blocks_of(chains_total_);
        const ItemRange chains = contiguous_share(chain_blocks, comm_->size(), comm_->rank());
        blockwise_->chain_block_statistics(step, blocks_);
        const std::vector<double> sum = ordered_block_sum(*comm_, blocks_, chains.first, chain_blocks, length);
        Gradient& more = chain_sum_;
        copy_into(more, sum);
        add_into(g, more);
      }
    }
    switch (step.negative) {
      case NegativePhase::cd:
      case NegativePhase::pcd:
        break;  // added above
      case NegativePhase::exact: {
        const ModelExpectations ex = model_expectations_exact(local_->model(), step.exact);
        for (std::size_t k = 0; k < weights; ++k) g.weights[k] -= ex.visible_hidden[k];
        for (int i = 0; i < n_; ++i) g.visible_bias[i] -= ex.visible[i];
        for (int j = 0; j < m_; ++j) g.hidden_bias[j] -= ex.hidden[j];
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
            double* row = g.weights.data() + static_cast<std::size_t>(i) * m_;
            for (int j = 0; j < m_; ++j) row[j] -= weight * h[j];
          }
          for (int i = 0; i < n_; ++i) g.visible_bias[i] -= weight * v[i];
          for (int j = 0; j < m_; ++j) g.hidden_bias[j] -= weight * h[j];
        }
        break;
      }
    }
    return g;
  }

  // g = sum (n x m weights, visible bias, hidden bias in one vector).
  void copy_into(Gradient& g, const std::vector<double>& sum) const {
    const std::size_t weights = static_cast<std::size_t>(n_) * m_;
    g.weights.resize(weights);
    g.visible_bias.resize(static_cast<std::size_t>(n_));
    g.hidden_bias.resize(static_cast<std::size_t>(m_));
    const auto weights_end = sum.begin() + static_cast<std::ptrdiff_t>(weights);
    std::copy(sum.begin(), weights_end, g.weights.begin());
    std::copy(weights_end, weights_end + n_, g.visible_bias.begin());
    std::copy(weights_end + n_, sum.end(), g.hidden_bias.begin());
  }

  static void add_into(Gradient& g, const Gradient& more) {
    for (std::size_t k = 0; k < g.weights.size(); ++k) g.weights[k] += more.weights[k];
    for (std::size_t k = 0; k < g.visible_bias.size(); ++k) g.visible_bias[k] += more.visible_bias[k];
    for (std::size_t k = 0; k < g.hidden_bias.size(); ++k) g.hidden_bias[k] += more.hidden_bias[k];
  }

  std::unique_ptr<Engine> local_;
  std::shared_ptr<Communicator> comm_;
  detail::BlockwiseGradientEngine* blockwise_ = nullptr;
  int n_ = 0;
  int m_ = 0;
  int chains_total_ = 0;
  std::vector<double> blocks_;  // this rank's blocks of a phase (several ranks)
  Gradient gradient_, chain_sum_;
};

}  // namespace

std::unique_ptr<Engine> make_data_parallel_engine(std::unique_ptr<Engine> local, std::shared_ptr<Communicator> comm) {
  return std::make_unique<DataParallelEngine>(std::move(local), std::move(comm));
}

bool nccl_compiled() {
#ifdef MARBM_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

int nccl_version() { return nccl_compiled() ? detail::nccl_version() : 0; }

namespace {

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

std::string as_string(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Every rank's `problem` (empty: none); the first one, on every rank.
std::string first_problem(Communicator& comm, const std::string& problem) {
  for (const auto& part : comm.all_gather(std::as_bytes(std::span<const char>(problem)))) {
    if (!part.empty()) return as_string(part);
  }
  return {};
}

}  // namespace

int local_rank(Communicator& comm) {
  const std::string mine = host_name();
  const auto names = comm.all_gather(std::as_bytes(std::span<const char>(mine)));
  int local = 0;
  for (int q = 0; q < comm.rank(); ++q) local += as_string(names[static_cast<std::size_t>(q)]) == mine ? 1 : 0;
  return local;
}

std::unique_ptr<Engine> make_cuda_data_parallel_engine(std::shared_ptr<Communicator> comm, const EngineOptions& options) {
  MARBM_EXPECTS(comm != nullptr, UsageError, "cuda data-parallel engine: no communicator");
  const std::string rank = "rank " + std::to_string(comm->rank());
  // NCCL's set-up is collective: a rank that cannot take part would leave
  // the others waiting in it, so every rank first says whether it can.
  std::string problem;
  std::string gpu;
  if (!cuda_compiled()) {
    problem = "this build of marbm has no CUDA engine (configure with MARBM_CUDA=ON)";
  } else if (!nccl_compiled()) {
    problem = "this build of marbm has no NCCL for summing gradients between GPU ranks (MARBM_NCCL=OFF, or nccl.h "
              "and libnccl were not found beside the CUDA toolkit)";
  } else {
    const std::vector<DeviceInfo> devices = cuda_devices();
    if (devices.empty()) {
      problem = rank + " on " + host_name() + " has no usable CUDA device";
    } else if (options.device < 0 || options.device >= static_cast<int>(devices.size())) {
      problem = rank + " on " + host_name() + " asks for CUDA device " + std::to_string(options.device) + " of " +
                std::to_string(devices.size());
    } else if (nccl_version() == 0) {
      problem = "NCCL cannot be used: " + detail::cuda_library_problem();
    } else {
      const std::string bus = detail::cuda_pci_bus_id(options.device);
      gpu = host_name() + " " + (bus.empty() ? "device " + std::to_string(options.device) : bus);
    }
  }
  if (const std::string first = first_problem(*comm, problem); !first.empty()) {
    throw CudaError("data-parallel training on GPUs: " + first);
  }
  // NCCL needs one GPU per rank.
  const auto gpus = comm->all_gather(std::as_bytes(std::span<const char>(gpu)));
  for (std::size_t q = 0; q < gpus.size(); ++q) {
    for (std::size_t r = q + 1; r < gpus.size(); ++r) {
      MARBM_EXPECTS(as_string(gpus[q]) != as_string(gpus[r]), UsageError,
                    "data-parallel training on GPUs: ranks " + std::to_string(q) + " and " + std::to_string(r) +
                        " would share the GPU " + as_string(gpus[q]) +
                        " (NCCL needs one GPU per rank: start at most as many ranks per host as it has GPUs)");
    }
  }
  // Rank 0 makes the id; byte 0 says whether it could.
  std::vector<std::byte> message(1 + 128);
  std::string failure;
  if (comm->rank() == 0) {
    try {
      const std::vector<std::byte> id = detail::nccl_unique_id();
      MARBM_EXPECTS(id.size() == message.size() - 1, RuntimeFailure, "NCCL's unique id has an unexpected size");
      message[0] = std::byte{1};
      std::memcpy(message.data() + 1, id.data(), id.size());
    } catch (const std::exception& error) {
      failure = error.what();
    }
  }
  comm->broadcast(message, 0);
  if (message[0] != std::byte{1}) {
    throw CudaError("data-parallel training on GPUs: rank 0 could not make NCCL's id" +
                    (failure.empty() ? std::string() : ": " + failure));
  }
  detail::CudaDataParallelSetup setup;
  setup.nccl_unique_id.assign(message.begin() + 1, message.end());
  setup.comm = std::move(comm);
  return detail::make_cuda_data_parallel_engine(options, setup);
}

}  // namespace marbm
