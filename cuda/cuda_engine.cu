// The CUDA engine: marbm::Engine with the whole training state on the device.
//
// Layout: parameters, velocity and gradient are each one device array
// [W (n x m row-major) | a (n) | b (m)], so one fused kernel applies a step.
// A gradient step stacks the positive and negative rows, V = [v_data; v_neg]
// ((B + P) x n) and H = [p(h|v_data) / B; -p(h|v_neg) / P], so that
// dW = V^T H is a single GEMM; the bias gradients are two GEMVs.
//
// Data-parallel (make_cuda_data_parallel_engine_impl): each rank takes a
// contiguous share of every batch's rows and of the persistent chains, draws
// the random numbers those rows draw in the whole batch, scales by the whole
// batch, and the gradient is summed over the ranks with ncclAllReduce on the
// engine's stream before the step (nccl_sum.hpp). Mode and exact terms are
// added by rank 0 only. Every rank then applies the same step.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda_impl.hpp"
#include "marbm/communicator.hpp"
#include "nccl_sum.hpp"
#include "detail/gibbs_steps.hpp"
#include "detail/mode_states.hpp"
#include "device_buffer.cuh"
#include "error.cuh"
#include "exact_enumeration.cuh"
#include "gibbs.cuh"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/random.hpp"
#include "mode_search.cuh"
#include "resources.cuh"

namespace marbm::detail {

namespace {

// The smallest index of a value other than 0 and 1 among `count` bytes, into
// *first (which starts at the largest value: none found).
__global__ void first_non_binary_kernel(const std::uint8_t* __restrict__ values, std::size_t count,
                                        unsigned long long* first) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    if (values[i] > 1) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

class CudaEngine final : public Engine {
 public:
  explicit CudaEngine(const EngineOptions& options) : options_(options), resources_(options.device, options.allow_tf32) {
    cudaDeviceProp properties{};
    MARBM_CUDA_TRY(cudaGetDeviceProperties(&properties, options.device));
    device_name_ = properties.name;
    compute_capability_ = std::to_string(properties.major) + std::to_string(properties.minor);
  }

  // One rank of data-parallel training: `comm` carries the host-side
  // collectives (chains for checkpoints, the mode), NCCL the gradient.
  CudaEngine(const EngineOptions& options, const CudaDataParallelSetup& setup) : CudaEngine(options) {
    MARBM_EXPECTS(setup.comm != nullptr, UsageError, "cuda data-parallel engine: no communicator");
    comm_ = setup.comm;
    rank_ = comm_->rank();
    ranks_ = comm_->size();
    device_sum_ = std::make_unique<DeviceSum>(setup.nccl_unique_id, rank_, ranks_, options.device);
  }

  Backend backend() const override { return Backend::cuda; }

  std::string description() const override {
    return "cuda (" + device_name_ + ", device " + std::to_string(options_.device) + ", sm_" + compute_capability_ +
           (options_.allow_tf32 ? ", TF32 GEMM)" : ", float32 GEMM)") +
           (comm_ ? " x NCCL, " + std::to_string(ranks_) + (ranks_ == 1 ? " rank" : " ranks") : std::string());
  }

  void set_model(const Rbm& rbm) override {
    activate();
    MARBM_EXPECTS(rbm.n_visible() >= 1 && rbm.n_hidden() >= 1, UsageError, "cuda engine: the model has an empty layer");
    rbm.check_finite("model");
    if (rbm.n_visible() != n_ || rbm.n_hidden() != m_) {
      n_ = rbm.n_visible();
      m_ = rbm.n_hidden();
      const std::size_t total = parameter_count();
      parameters_ = DeviceBuffer<float>(total, stream());
      velocity_ = DeviceBuffer<float>(total, stream());
      gradient_ = DeviceBuffer<float>(total, stream());
      // Chains of another width no longer fit this model (data of another
      // width is refused at the next update).
      if (chain_count_ > 0 || chain_total_ > 0) {
        chains_ = DeviceBuffer<float>();
        chain_count_ = 0;
        chain_total_ = 0;
      }
    }
    std::vector<float> host(parameter_count());
    std::copy(rbm.weights().begin(), rbm.weights().end(), host.begin());
    std::copy(rbm.visible_bias().begin(), rbm.visible_bias().end(), host.begin() + weight_count());
    std::copy(rbm.hidden_bias().begin(), rbm.hidden_bias().end(), host.begin() + weight_count() + n_);
    parameters_.copy_from_host(host);
    velocity_.fill_zero();
    resources_.synchronize();  // `host` goes out of scope
  }

  std::vector<std::uint8_t> persistent_chain_states() const override {
    activate();
    if (chain_total_ == 0) return {};
    std::vector<std::uint8_t> states;
    if (chain_count_ > 0) {
      const std::vector<float> chains = chains_.to_host();
      states.resize(chains.size());
      for (std::size_t k = 0; k < chains.size(); ++k) states[k] = chains[k] > 0.5f ? 1 : 0;
    }
    if (!comm_) return states;
    // Every rank's share, in rank order (= chain order).
    std::vector<std::uint8_t> all;
    for (const auto& part : comm_->all_gather(std::as_bytes(std::span<const std::uint8_t>(states)))) {
      for (const std::byte b : part) all.push_back(static_cast<std::uint8_t>(b));
    }
    return all;
  }

  OptimizerState optimizer_state() const override {
    activate();
    require_model("optimizer_state");
    const std::vector<float> host = velocity_.to_host();
    OptimizerState state;
    state.weights.assign(host.begin(), host.begin() + weight_count());
    state.visible_bias.assign(host.begin() + weight_count(), host.begin() + weight_count() + n_);
    state.hidden_bias.assign(host.begin() + weight_count() + n_, host.end());
    return state;
  }

  void set_optimizer_state(const OptimizerState& state) override {
    activate();
    require_model("set_optimizer_state");
    MARBM_EXPECTS(state.weights.size() == weight_count() && state.visible_bias.size() == static_cast<std::size_t>(n_) &&
                      state.hidden_bias.size() == static_cast<std::size_t>(m_),
                  UsageError, "cuda engine: the velocity does not match the model");
    std::vector<float> host(parameter_count());
    std::copy(state.weights.begin(), state.weights.end(), host.begin());
    std::copy(state.visible_bias.begin(), state.visible_bias.end(), host.begin() + weight_count());
    std::copy(state.hidden_bias.begin(), state.hidden_bias.end(), host.begin() + weight_count() + n_);
    velocity_.copy_from_host(host);
    resources_.synchronize();  // `host` goes out of scope
  }

  void set_persistent_chain_states(std::span<const std::uint8_t> states, int count) override {
    activate();
    require_model("set_persistent_chain_states");
    MARBM_EXPECTS(count >= 1 && states.size() == static_cast<std::size_t>(count) * n_, UsageError,
                  "cuda engine: expected " + std::to_string(count) + " chain rows of " + std::to_string(n_) + " values");
    for (std::size_t k = 0; k < states.size(); ++k) {
      MARBM_EXPECTS(states[k] <= 1, UsageError, "cuda engine: a chain value is not 0 or 1");
    }
    const ItemRange share = chain_share(count);
    std::vector<float> host(static_cast<std::size_t>(share.last - share.first) * n_);
    for (std::size_t k = 0; k < host.size(); ++k) host[k] = static_cast<float>(states[share.first * n_ + k]);
    chains_ = DeviceBuffer<float>(host.size(), stream());
    chains_.copy_from_host(host);
    chain_total_ = count;
    chain_first_ = static_cast<int>(share.first);
    chain_count_ = static_cast<int>(share.last - share.first);
    resources_.synchronize();
  }

  Rbm model() const override {
    activate();
    require_model("model");
    const std::vector<float> host = parameters_.to_host();
    Rbm rbm(n_, m_);
    std::copy(host.begin(), host.begin() + weight_count(), rbm.weights().begin());
    std::copy(host.begin() + weight_count(), host.begin() + weight_count() + n_, rbm.visible_bias().begin());
    std::copy(host.begin() + weight_count() + n_, host.end(), rbm.hidden_bias().begin());
    return rbm;
  }

  // E_bar of a mode step on the device: one double comes back, not the model.
  double uniform_mean_energy() const override {
    activate();
    require_model("uniform_mean_energy");
    return uniform_mean_energy_device(resources_.stream(), weights(), visible_bias(), hidden_bias(), n_, m_);
  }

  void set_data(const Dataset& data) override {
    activate();
    MARBM_EXPECTS(n_ == 0 || data.n_cols == n_, UsageError,
                  "cuda engine: the data set has " + std::to_string(data.n_cols) + " columns but the model has " +
                      std::to_string(n_) + " visible units");
    MARBM_EXPECTS(data.n_rows >= 1, UsageError, "cuda engine: the data set has no rows");
    MARBM_EXPECTS(data.values.size() == static_cast<std::size_t>(data.n_rows) * data.n_cols, DataError,
                  "cuda engine: the data set's values do not match its shape");
    for (std::size_t k = 0; k < data.values.size(); ++k) {
      MARBM_EXPECTS(data.values[k] <= 1, DataError,
                    "cuda engine: data value " + std::to_string(data.values[k]) + " at row " +
                        std::to_string(k / data.n_cols) + ", column " + std::to_string(k % data.n_cols) +
                        " is not 0 or 1");
    }
    data_ = DeviceBuffer<std::uint8_t>(data.values.size(), stream());
    data_.copy_from_host(data.values);
    data_rows_ = data.n_rows;
    data_cols_ = data.n_cols;
    resources_.synchronize();
  }

  // Rows on this engine's device are copied device to device (a strided
  // copy into the contiguous data buffer) and checked there; host rows go
  // through set_data as usual.
  void set_resident_data(const ResidentRows& rows) override {
    if (rows.backend != Backend::cuda) {
      Engine::set_resident_data(rows);
      return;
    }
    activate();
    MARBM_EXPECTS(rows.device == options_.device, UsageError,
                  "the training rows are on CUDA device " + std::to_string(rows.device) +
                      " but the cuda engine runs on device " + std::to_string(options_.device));
    MARBM_EXPECTS(rows.rows >= 1 && rows.cols >= 1, UsageError, "cuda engine: the resident data have no rows or no columns");
    MARBM_EXPECTS(rows.data != nullptr && rows.row_stride >= rows.cols, UsageError,
                  "cuda engine: rows of " + std::to_string(rows.cols) + " bytes need a row stride of at least that, got " +
                      std::to_string(rows.row_stride));
    MARBM_EXPECTS(n_ == 0 || rows.cols == n_, UsageError,
                  "cuda engine: the data set has " + std::to_string(rows.cols) + " columns but the model has " +
                      std::to_string(n_) + " visible units");
    // The rows' producer (PyTorch, say) may still be writing them on a stream
    // of its own, and DLPack named none: wait for all work on the device.
    MARBM_CUDA_TRY(cudaDeviceSynchronize());
    const std::size_t count = static_cast<std::size_t>(rows.rows) * rows.cols;
    DeviceBuffer<std::uint8_t> copy(count, stream());
    MARBM_CUDA_TRY(cudaMemcpy2DAsync(copy.data(), static_cast<std::size_t>(rows.cols), rows.data,
                                     static_cast<std::size_t>(rows.row_stride), static_cast<std::size_t>(rows.cols),
                                     static_cast<std::size_t>(rows.rows), cudaMemcpyDeviceToDevice, stream()));
    DeviceBuffer<unsigned long long> first(1, stream());
    MARBM_CUDA_TRY(cudaMemsetAsync(first.data(), 0xff, sizeof(unsigned long long), stream()));
    const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>((count + 255) / 256, 4096));
    first_non_binary_kernel<<<blocks, 256, 0, stream()>>>(copy.data(), count, first.data());
    MARBM_CUDA_CHECK_LAST();
    unsigned long long bad = 0;
    MARBM_CUDA_TRY(cudaMemcpyAsync(&bad, first.data(), sizeof bad, cudaMemcpyDeviceToHost, stream()));
    resources_.synchronize();
    if (bad != ~0ull) {
      std::uint8_t value = 0;
      MARBM_CUDA_TRY(cudaMemcpy(&value, copy.data() + bad, 1, cudaMemcpyDeviceToHost));
      throw DataError("resident data: row " + std::to_string(bad / rows.cols) + ", column " +
                      std::to_string(bad % rows.cols) + " is " + std::to_string(value) + "; the values must be 0 or 1");
    }
    data_ = std::move(copy);
    data_rows_ = rows.rows;
    data_cols_ = rows.cols;
  }

  void reset_persistent_chains(int count, std::uint64_t seed) override {
    activate();
    require_model("reset_persistent_chains");
    MARBM_EXPECTS(count >= 1, UsageError, "cuda engine: persistent chain count must be at least 1, got " + std::to_string(count));
    start_chains(count, seed);
  }

  Gradient gradient(const UpdateStep& step) override {
    activate();
    compute_gradient(step);
    const std::vector<float> host = gradient_.to_host();
    Gradient result;
    result.weights.assign(host.begin(), host.begin() + weight_count());
    result.visible_bias.assign(host.begin() + weight_count(), host.begin() + weight_count() + n_);
    result.hidden_bias.assign(host.begin() + weight_count() + n_, host.end());
    return result;
  }

  void update(const UpdateStep& step) override {
    activate();
    compute_gradient(step);
    apply_update(parameters_.data(), velocity_.data(), gradient_.data(), parameter_count(), weight_count(),
                 static_cast<float>(step.learning_rate), static_cast<float>(step.momentum),
                 static_cast<float>(step.weight_decay), stream());
  }

  std::vector<float> hidden_probabilities(std::span<const std::uint8_t> visible, int batch) override {
    activate();
    require_model("hidden_probabilities");
    check_states(visible, batch, n_, "hidden_probabilities");
    DeviceBuffer<float> v = upload_states(visible);
    DeviceBuffer<float> probabilities(static_cast<std::size_t>(batch) * m_, stream());
    hidden_fields(v.data(), batch, probabilities.data());
    LayerOutputs outputs;
    outputs.probabilities = probabilities.data();
    sample_layer(probabilities.data(), hidden_bias(), batch, m_, 0, 0, 0, outputs, stream());
    return probabilities.to_host();
  }

  std::vector<std::uint8_t> gibbs_chain(std::span<const std::uint8_t> visible, int batch, int steps, std::uint64_t seed,
                                        std::uint64_t stream_id) override {
    activate();
    require_model("gibbs_chain");
    check_states(visible, batch, n_, "gibbs_chain");
    check_gibbs_steps(steps, "cuda engine: gibbs_chain");
    DeviceBuffer<float> v = upload_states(visible);
    DeviceBuffer<float> h(static_cast<std::size_t>(batch) * m_, stream());
    DeviceBuffer<float> x(static_cast<std::size_t>(batch) * std::max(n_, m_), stream());
    const std::uint64_t random = random_stream(RandomPurpose::gibbs, stream_id);
    for (int s = 1; s <= steps; ++s) {
      hidden_fields(v.data(), batch, x.data());
      sample_layer(x.data(), hidden_bias(), batch, m_, seed, random, 2 * s - 2, samples_to(h.data()), stream());
      visible_fields(h.data(), batch, x.data());
      sample_layer(x.data(), visible_bias(), batch, n_, seed, random, 2 * s - 1, samples_to(v.data()), stream());
    }
    DeviceBuffer<std::uint8_t> bytes(v.size(), stream());
    floats_to_bytes(v.data(), v.size(), bytes.data(), stream());
    return bytes.to_host();
  }

  double log_partition_exact(const ExactOptions& options) override {
    activate();
    require_model("log_partition_exact");
    return log_partition_exact_device(resources_, weights(), visible_bias(), hidden_bias(), n_, m_, options);
  }

  ModeResult find_mode(const ModeSearchConfig& config) override {
    activate();
    require_model("find_mode");
    if (!comm_) return find_mode_here(config);
    // Rank 0 searches; every rank takes its result, so that every rank's
    // step (whose size depends on the mode's energy) is the same.
    ModeResult found;
    if (rank_ == 0) found = find_mode_here(config);
    return broadcast_mode(found);
  }

 private:
  ModeResult find_mode_here(const ModeSearchConfig& config) {
    // The local search runs on the host (a few passes over W per start), so
    // it takes a host copy of the model: the one mode-step path that still
    // copies it on this engine (with the marginal target and several mode
    // states, host/mode_assist.cpp).
    if (config.solver == ModeSolver::local) return marbm::find_mode(model(), config);
    ModeSearchConfig device_config = config;
    device_config.backend = Backend::cuda;
    return find_mode_device(resources_, weights(), visible_bias(), hidden_bias(), n_, m_, device_config);
  }

  // Rank 0's result on every rank: the sizes, then the values, as bytes.
  ModeResult broadcast_mode(const ModeResult& mine) {
    std::int64_t sizes[3] = {static_cast<std::int64_t>(mine.visible.size()),
                             static_cast<std::int64_t>(mine.hidden.size()),
                             static_cast<std::int64_t>(mine.minima_energy.size())};
    comm_->broadcast(std::as_writable_bytes(std::span<std::int64_t>(sizes)), 0);
    ModeResult result = mine;
    result.visible.resize(static_cast<std::size_t>(sizes[0]));
    result.hidden.resize(static_cast<std::size_t>(sizes[1]));
    result.minima_energy.resize(static_cast<std::size_t>(sizes[2]));
    result.minima_visible.resize(static_cast<std::size_t>(sizes[2]) * static_cast<std::size_t>(sizes[0]));
    double numbers[5] = {result.energy, static_cast<double>(result.replicas), static_cast<double>(result.steps),
                         static_cast<double>(result.replicas_at_best), result.seconds};
    comm_->broadcast(std::as_writable_bytes(std::span<double>(numbers)), 0);
    result.energy = numbers[0];
    result.replicas = static_cast<int>(numbers[1]);
    result.steps = static_cast<int>(numbers[2]);
    result.replicas_at_best = static_cast<int>(numbers[3]);
    result.seconds = numbers[4];
    comm_->broadcast(std::as_writable_bytes(std::span<std::uint8_t>(result.visible)), 0);
    comm_->broadcast(std::as_writable_bytes(std::span<std::uint8_t>(result.hidden)), 0);
    comm_->broadcast(std::as_writable_bytes(std::span<double>(result.minima_energy)), 0);
    comm_->broadcast(std::as_writable_bytes(std::span<std::uint8_t>(result.minima_visible)), 0);
    return result;
  }

  // This rank's contiguous share of `total` rows (all of them on one engine).
  ItemRange share_of(std::int64_t total, const char* what) const {
    if (!comm_) return ItemRange{0, total};
    MARBM_EXPECTS(total >= ranks_, UsageError,
                  std::string("cuda data-parallel engine: ") + what + " (" + std::to_string(total) +
                      ") must be at least the number of GPU ranks (" + std::to_string(ranks_) + ")");
    return contiguous_share(total, ranks_, rank_);
  }
  ItemRange chain_share(int total) const { return share_of(total, "the persistent chain count"); }
  cudaStream_t stream() const { return resources_.stream(); }
  // The calling thread's current device may be another one (several engines,
  // several threads): every entry point selects this engine's device first.
  void activate() const { MARBM_CUDA_TRY(cudaSetDevice(options_.device)); }
  std::size_t weight_count() const { return static_cast<std::size_t>(n_) * m_; }
  std::size_t parameter_count() const { return weight_count() + n_ + m_; }
  const float* weights() const { return parameters_.data(); }
  const float* visible_bias() const { return parameters_.data() + weight_count(); }
  const float* hidden_bias() const { return parameters_.data() + weight_count() + n_; }

  static LayerOutputs samples_to(float* samples) {
    LayerOutputs outputs;
    outputs.samples = samples;
    return outputs;
  }

  void require_model(const char* what) const {
    MARBM_EXPECTS(n_ > 0, UsageError, std::string("cuda engine: ") + what + " called before set_model");
  }

  static void check_states(std::span<const std::uint8_t> states, int batch, int width, const char* what) {
    MARBM_EXPECTS(batch >= 1, UsageError, std::string("cuda engine: ") + what + " needs a batch of at least 1 row");
    MARBM_EXPECTS(states.size() == static_cast<std::size_t>(batch) * width, UsageError,
                  std::string("cuda engine: ") + what + " got " + std::to_string(states.size()) + " values for " +
                      std::to_string(batch) + " rows of " + std::to_string(width));
    for (std::size_t k = 0; k < states.size(); ++k) {
      MARBM_EXPECTS(states[k] <= 1, UsageError,
                    std::string("cuda engine: ") + what + " got value " + std::to_string(states[k]) + " at row " +
                        std::to_string(k / width) + ", unit " + std::to_string(k % width) + " (expected 0 or 1)");
    }
  }

  DeviceBuffer<float> upload_states(std::span<const std::uint8_t> states) {
    DeviceBuffer<std::uint8_t> bytes(states.size(), stream());
    bytes.copy_from_host(states);
    DeviceBuffer<float> values(states.size(), stream());
    bytes_to_floats(bytes.data(), states.size(), values.data(), stream());
    return values;
  }

  // X (rows x m) = V (rows x n) W, in cuBLAS's column-major view.
  void hidden_fields(const float* v, int rows, float* x) {
    const float one = 1.0f, zero = 0.0f;
    MARBM_CUBLAS_TRY(cublasSgemm(resources_.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, m_, rows, n_, &one, weights(), m_, v,
                                 n_, &zero, x, m_));
  }
  // X (rows x n) = H (rows x m) W^T.
  void visible_fields(const float* h, int rows, float* x) {
    const float one = 1.0f, zero = 0.0f;
    MARBM_CUBLAS_TRY(cublasSgemm(resources_.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, n_, rows, m_, &one, weights(), m_, h,
                                 m_, &zero, x, n_));
  }

  // This rank's share of `count` chains, each started as chain first + c of
  // the whole population.
  void start_chains(int count, std::uint64_t seed) {
    const ItemRange share = chain_share(count);
    chain_total_ = count;
    chain_first_ = static_cast<int>(share.first);
    chain_count_ = static_cast<int>(share.last - share.first);
    chains_ = DeviceBuffer<float>(static_cast<std::size_t>(chain_count_) * n_, stream());
    uniform_binary(chains_.data(), chain_count_, n_, seed, random_stream(RandomPurpose::persistent_chains, 0), stream(),
                   static_cast<std::uint64_t>(chain_first_));
  }

  // Grows the step's scratch buffers to the sizes of this step: `positive`
  // data rows and `negative` rows here, scaled by 1/positive_total and
  // -1/negative_total (the whole batch and population).
  void reserve(int positive, int negative, int positive_total, int negative_total) {
    const std::size_t rows = static_cast<std::size_t>(positive) + negative;
    const std::size_t widest = static_cast<std::size_t>(std::max(positive, negative)) * std::max(n_, m_);
    if (stacked_visible_.size() < rows * n_) stacked_visible_ = DeviceBuffer<float>(rows * n_, stream());
    if (stacked_hidden_.size() < rows * m_) stacked_hidden_ = DeviceBuffer<float>(rows * m_, stream());
    if (fields_.size() < widest) fields_ = DeviceBuffer<float>(widest, stream());
    const std::size_t chain_hidden = static_cast<std::size_t>(std::max(positive, negative)) * m_;
    if (hidden_samples_.size() < chain_hidden) hidden_samples_ = DeviceBuffer<float>(chain_hidden, stream());
    if (batch_rows_.size() < static_cast<std::size_t>(positive)) batch_rows_ = DeviceBuffer<int>(positive, stream());
    if (positive != weights_positive_ || negative != weights_negative_ || positive_total != weights_positive_total_ ||
        negative_total != weights_negative_total_) {
      // Row weights of the stacked rows: 1/B for the data, -1/P for the negative rows.
      row_weights_ = DeviceBuffer<float>(rows, stream());
      ones_ = DeviceBuffer<float>(rows, stream());
      fill(row_weights_.data(), positive, 1.0f / static_cast<float>(positive_total), stream());
      if (negative > 0) {
        fill(row_weights_.data() + positive, negative, -1.0f / static_cast<float>(negative_total), stream());
      }
      fill(ones_.data(), rows, 1.0f, stream());
      weights_positive_ = positive;
      weights_negative_ = negative;
      weights_positive_total_ = positive_total;
      weights_negative_total_ = negative_total;
    }
  }

  // Copies the batch rows to the device through a ring of pinned slots: the
  // copy is asynchronous, and a slot is reused only after its copy is done
  // (the host runs at most kStagingSlots updates ahead of the device).
  void stage_batch_rows(std::span<const int> rows) {
    StagingSlot& slot = staging_[next_slot_];
    next_slot_ = (next_slot_ + 1) % kStagingSlots;
    MARBM_CUDA_TRY(cudaEventSynchronize(slot.copied.get()));
    if (slot.rows.size() < rows.size()) slot.rows = PinnedBuffer<int>(std::max<std::size_t>(rows.size(), 1024));
    std::copy(rows.begin(), rows.end(), slot.rows.data());
    MARBM_CUDA_TRY(cudaMemcpyAsync(batch_rows_.data(), slot.rows.data(), sizeof(int) * rows.size(),
                                   cudaMemcpyHostToDevice, stream()));
    MARBM_CUDA_TRY(cudaEventRecord(slot.copied.get(), stream()));
  }

  void compute_gradient(const UpdateStep& step) {
    require_model("update");
    MARBM_EXPECTS(data_rows_ > 0, UsageError, "cuda engine: update called before set_data");
    MARBM_EXPECTS(data_cols_ == n_, UsageError,
                  "cuda engine: the data set has " + std::to_string(data_cols_) + " columns, the model has " +
                      std::to_string(n_) + " visible units");
    MARBM_EXPECTS(std::isfinite(step.learning_rate) && step.learning_rate >= 0, UsageError,
                  "cuda engine: learning rate must be finite and >= 0, got " + std::to_string(step.learning_rate));
    MARBM_EXPECTS(std::isfinite(step.momentum) && step.momentum >= 0 && step.momentum < 1, UsageError,
                  "cuda engine: momentum must be in [0, 1), got " + std::to_string(step.momentum));
    MARBM_EXPECTS(std::isfinite(step.weight_decay) && step.weight_decay >= 0, UsageError,
                  "cuda engine: weight decay must be finite and >= 0, got " + std::to_string(step.weight_decay));
    MARBM_EXPECTS(!step.batch_rows.empty(), UsageError, "cuda engine: the update step has an empty batch");
    for (const int row : step.batch_rows) {
      MARBM_EXPECTS(row >= 0 && row < data_rows_, UsageError,
                    "cuda engine: batch row " + std::to_string(row) + " is outside the data set's " +
                        std::to_string(data_rows_) + " rows");
    }
    const bool chained = step.negative == NegativePhase::cd || step.negative == NegativePhase::pcd;
    if (chained) check_gibbs_steps(step.gibbs_steps, "cuda engine: update");
    const int mode_states = step.negative == NegativePhase::mode ? check_mode_states(step, n_, m_, "cuda engine") : 0;
    if (step.negative == NegativePhase::pcd && chain_total_ == 0) {
      start_chains(static_cast<int>(step.batch_rows.size()), step.seed);
    }

    // This rank's rows of the batch (all of them on one engine); the mode and
    // exact terms come from rank 0 only, the sum over the ranks adds them once.
    const int batch_total = static_cast<int>(step.batch_rows.size());
    const ItemRange rows_here = share_of(batch_total, "the batch size");
    const int batch = static_cast<int>(rows_here.last - rows_here.first);
    const auto first_row = static_cast<std::uint64_t>(rows_here.first);
    const bool root = rank_ == 0;
    const int negative = step.negative == NegativePhase::cd     ? batch
                         : step.negative == NegativePhase::pcd  ? chain_count_
                         : step.negative == NegativePhase::mode ? (root ? mode_states : 0)
                                                                 : 0;
    const int negative_total = step.negative == NegativePhase::cd    ? batch_total
                               : step.negative == NegativePhase::pcd ? chain_total_
                                                                     : std::max(negative, 1);
    reserve(batch, negative, batch_total, negative_total);
    float* v_data = stacked_visible_.data();
    float* v_negative = v_data + static_cast<std::size_t>(batch) * n_;
    float* h_data = stacked_hidden_.data();
    float* h_negative = h_data + static_cast<std::size_t>(batch) * m_;
    const std::uint64_t seed = step.seed;
    const std::uint64_t random = random_stream(RandomPurpose::gibbs, step.step);

    // Positive phase: p(h|v_data) / B (or the samples); h_0 samples feed CD.
    stage_batch_rows(step.batch_rows.subspan(static_cast<std::size_t>(rows_here.first), static_cast<std::size_t>(batch)));
    gather_rows(data_.data(), batch_rows_.data(), batch, n_, v_data, stream());
    hidden_fields(v_data, batch, fields_.data());
    {
      LayerOutputs outputs;
      outputs.samples = step.negative == NegativePhase::cd ? hidden_samples_.data() : nullptr;
      outputs.probabilities = h_data;
      outputs.scale = 1.0f / static_cast<float>(batch_total);
      outputs.store_samples_as_probabilities = step.sample_positive_hidden;
      sample_layer(fields_.data(), hidden_bias(), batch, m_, seed, random, 0, outputs, stream(), first_row);
    }

    float gradient_beta = 0.0f;
    switch (step.negative) {
      case NegativePhase::cd:
        run_chain(v_negative, h_negative, batch, batch_total, step.gibbs_steps, seed, random, 0, first_row);
        break;
      case NegativePhase::pcd: {
        if (negative == 0) break;  // no chains in this rank's share
        const auto first_chain = static_cast<std::uint64_t>(chain_first_);
        MARBM_CUDA_TRY(cudaMemcpyAsync(v_negative, chains_.data(), sizeof(float) * chains_.size(),
                                       cudaMemcpyDeviceToDevice, stream()));
        hidden_fields(v_negative, negative, fields_.data());
        sample_layer(fields_.data(), hidden_bias(), negative, m_, seed, random, 1, samples_to(hidden_samples_.data()),
                     stream(), first_chain);
        run_chain(v_negative, h_negative, negative, chain_total_, step.gibbs_steps, seed, random, 1, first_chain);
        MARBM_CUDA_TRY(cudaMemcpyAsync(chains_.data(), v_negative, sizeof(float) * chains_.size(),
                                       cudaMemcpyDeviceToDevice, stream()));
        break;
      }
      case NegativePhase::mode: {
        if (!root) break;
        // K rows v_k and -w_k h_k, and row weights -w_k for the visible
        // bias: dW gets -sum_k w_k v_k h_k^T, da -sum_k w_k v_k, db -sum_k w_k h_k
        // (one state: the -1/P = -1 that reserve() set).
        const std::size_t states = static_cast<std::size_t>(mode_states);
        mode_rows_.assign(states * (n_ + m_) + states, 0.0f);
        float* visible_rows = mode_rows_.data();
        float* hidden_rows = visible_rows + states * n_;
        float* weights = hidden_rows + states * m_;
        for (std::size_t k = 0; k < states; ++k) {
          const float w = static_cast<float>(mode_state_weight(step, static_cast<int>(k)));
          for (int i = 0; i < n_; ++i) visible_rows[k * n_ + i] = step.mode_visible[k * n_ + i] ? 1.0f : 0.0f;
          for (int j = 0; j < m_; ++j) hidden_rows[k * m_ + j] = step.mode_hidden[k * m_ + j] ? -w : 0.0f;
          weights[k] = -w;
        }
        MARBM_CUDA_TRY(cudaMemcpyAsync(v_negative, visible_rows, sizeof(float) * states * n_, cudaMemcpyHostToDevice,
                                       stream()));
        MARBM_CUDA_TRY(cudaMemcpyAsync(h_negative, hidden_rows, sizeof(float) * states * m_, cudaMemcpyHostToDevice,
                                       stream()));
        if (states > 1) {
          MARBM_CUDA_TRY(cudaMemcpyAsync(row_weights_.data() + batch, weights, sizeof(float) * states,
                                         cudaMemcpyHostToDevice, stream()));
          weights_negative_ = -1;  // the next reserve() restores -1/P
        }
        break;
      }
      case NegativePhase::exact: {
        if (!root) break;
        // Model expectations by enumeration on the host, then the positive
        // phase is accumulated onto their negatives (beta = 1).
        const ModelExpectations expectations = model_expectations_exact(model(), step.exact);
        exact_rows_.resize(parameter_count());
        for (std::size_t e = 0; e < weight_count(); ++e) exact_rows_[e] = static_cast<float>(-expectations.visible_hidden[e]);
        for (int i = 0; i < n_; ++i) exact_rows_[weight_count() + i] = static_cast<float>(-expectations.visible[i]);
        for (int j = 0; j < m_; ++j) exact_rows_[weight_count() + n_ + j] = static_cast<float>(-expectations.hidden[j]);
        gradient_.copy_from_host(exact_rows_);
        gradient_beta = 1.0f;
        break;
      }
    }

    // dW = V^T H over the stacked rows; da = V^T w; db = H^T 1.
    const int rows = batch + negative;
    const float one = 1.0f;
    float* gradient_weights = gradient_.data();
    float* gradient_visible = gradient_weights + weight_count();
    float* gradient_hidden = gradient_visible + n_;
    MARBM_CUBLAS_TRY(cublasSgemm(resources_.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, m_, n_, rows, &one, h_data, m_, v_data,
                                 n_, &gradient_beta, gradient_weights, m_));
    MARBM_CUBLAS_TRY(cublasSgemv(resources_.cublas(), CUBLAS_OP_N, n_, rows, &one, v_data, n_, row_weights_.data(), 1,
                                 &gradient_beta, gradient_visible, 1));
    MARBM_CUBLAS_TRY(cublasSgemv(resources_.cublas(), CUBLAS_OP_N, m_, rows, &one, h_data, m_, ones_.data(), 1,
                                 &gradient_beta, gradient_hidden, 1));
    // The sum over the ranks, on the device and this stream: no host copy.
    if (device_sum_) device_sum_->sum_in_place(gradient_.data(), parameter_count(), stream());
  }

  // k sweeps from the hidden samples in hidden_samples_ (h_0): v_s and h_s
  // in half-sweeps 2s - 1 + offset and 2s + offset (offset 0 for cd, 1 for
  // pcd, as on the CPU engine); the last sweep leaves v_k in `v` and
  // -p(h|v_k) / total in `h_scaled`. The rows draw as rows first_row.. of
  // all `total`.
  void run_chain(float* v, float* h_scaled, int rows, int total, int steps, std::uint64_t seed, std::uint64_t random,
                 int offset, std::uint64_t first_row) {
    for (int s = 1; s <= steps; ++s) {
      visible_fields(hidden_samples_.data(), rows, fields_.data());
      sample_layer(fields_.data(), visible_bias(), rows, n_, seed, random, 2 * s - 1 + offset, samples_to(v),
                   stream(), first_row);
      hidden_fields(v, rows, fields_.data());
      LayerOutputs outputs;
      if (s < steps) {
        outputs.samples = hidden_samples_.data();
      } else {
        outputs.probabilities = h_scaled;
        outputs.scale = -1.0f / static_cast<float>(total);
      }
      sample_layer(fields_.data(), hidden_bias(), rows, m_, seed, random, 2 * s + offset, outputs, stream(), first_row);
    }
  }

  EngineOptions options_;
  Resources resources_;
  std::string device_name_;
  std::string compute_capability_;
  int n_ = 0;
  int m_ = 0;
  DeviceBuffer<float> parameters_;
  DeviceBuffer<float> velocity_;
  DeviceBuffer<float> gradient_;
  DeviceBuffer<std::uint8_t> data_;
  int data_rows_ = 0;
  int data_cols_ = 0;
  DeviceBuffer<float> chains_;
  int chain_count_ = 0;  // chains here
  int chain_total_ = 0;  // chains of all ranks
  int chain_first_ = 0;  // index of this rank's first chain
  std::shared_ptr<Communicator> comm_;  // data-parallel only
  std::unique_ptr<DeviceSum> device_sum_;
  int rank_ = 0;
  int ranks_ = 1;
  DeviceBuffer<float> stacked_visible_;
  DeviceBuffer<float> stacked_hidden_;
  DeviceBuffer<float> fields_;
  DeviceBuffer<float> hidden_samples_;
  DeviceBuffer<int> batch_rows_;
  DeviceBuffer<float> row_weights_;
  DeviceBuffer<float> ones_;
  int weights_positive_ = -1;
  int weights_negative_ = -1;
  int weights_positive_total_ = -1;
  int weights_negative_total_ = -1;
  std::vector<float> mode_rows_;
  struct StagingSlot {
    PinnedBuffer<int> rows;
    Event copied;
  };
  static constexpr int kStagingSlots = 8;
  StagingSlot staging_[kStagingSlots];
  int next_slot_ = 0;
  std::vector<float> exact_rows_;
};

}  // namespace

std::unique_ptr<Engine> make_cuda_engine_impl(const EngineOptions& options) { return std::make_unique<CudaEngine>(options); }

std::unique_ptr<Engine> make_cuda_data_parallel_engine_impl(const EngineOptions& options,
                                                            const CudaDataParallelSetup& setup) {
  return std::make_unique<CudaEngine>(options, setup);
}

}  // namespace marbm::detail
