// The CUDA engine: marbm::Engine with the whole training state on the device.
//
// Layout: parameters and velocity are each one device array
// [W (n x m row-major) | a (n) | b (m)], so one fused kernel applies a step.
// A gradient step stacks the positive and negative rows, augmented with a
// column each (detail/cuda_update_layout.hpp): V' = [v_data 1; v_neg 1]
// ((B + P) x (n + 1)) and H' = [p(h|v_data) / B  1/B; -p(h|v_neg) / P  -1/P],
// so that G = V'^T H' holds dW, da and db in one GEMM (the gradient array is
// G, (n + 1) rows of augmented_stride(m) floats). MARBM_CUDA_BIAS_GEMV=1
// computes da and db with the former two GEMVs instead (same layout). With
// TF32 allowed (EngineOptions::allow_tf32) the bias sums now go through the
// TF32 GEMM too, like dW; in exact float32 (the default) both ways are
// float32 sums of the same terms in different orders.
//
// A cd or pcd update on one engine replays a CUDA Graph of the whole update
// (gather, fields, draws, gradient GEMM, step): everything that changes from
// update to update (Philox seed and stream, learning rate, momentum, decay,
// the batch's rows) is in a device block (UpdateValues + rows) that the
// kernels read, refreshed by one host-to-device copy before each launch, so
// the graph is captured once per shape and buffer set (the second update of
// a shape captures it; the first runs the launches directly, which also loads
// the kernels and settles cuBLAS's choices). MARBM_CUDA_GRAPH=0 keeps the
// direct launches; both run the same kernels on the same inputs.
//
// Data-parallel (make_cuda_data_parallel_engine_impl): each rank takes a
// contiguous share of every batch's rows and of the persistent chains, draws
// the random numbers those rows draw in the whole batch, scales by the whole
// batch, and the gradient is summed over the ranks with ncclAllReduce on the
// engine's stream before the step (nccl_sum.hpp). Mode and exact terms are
// added by rank 0 only. Every rank then applies the same step.
#include <cublas_v2.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cuda_impl.hpp"
#include "marbm/communicator.hpp"
#include "nccl_sum.hpp"
#include "detail/cuda_update_layout.hpp"
#include "detail/env_flag.hpp"
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
    graphs_enabled_ = cuda_graphs_allowed();
    bias_gemv_ = env_flag("MARBM_CUDA_BIAS_GEMV");
    // Captured GEMMs never allocate: the handle has a workspace of its own
    // (Resources).
  }

  /// Updates replayed from a captured graph so far (tests check that the
  /// graph path ran).
  std::uint64_t graph_launches() const { return graph_launches_; }

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
    shape_model(rbm.n_visible(), rbm.n_hidden());
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

  // Parameters on this engine's device are copied device to device into the
  // parameter buffer [W | a | b] (strided copies where the source has
  // strides); host parameters go through set_model as usual. The values are
  // the source's bits; set_model's finite check is left to the caller
  // (train() reads the parameters back once and checks them).
  void set_resident_model(const ResidentParameters& p) override {
    if (p.backend != Backend::cuda) {
      Engine::set_resident_model(p);
      return;
    }
    activate();
    MARBM_EXPECTS(p.device == options_.device, UsageError,
                  "the initial parameters are on CUDA device " + std::to_string(p.device) +
                      " but the cuda engine runs on device " + std::to_string(options_.device));
    check_resident_parameters(p, "cuda engine: resident parameters");
    // The engine's own parameters (its resident_parameters()) are in place
    // already: no copy onto themselves (checked before any reallocation).
    const float* own = parameters_.data();
    const bool own_weights = own != nullptr && p.weights == own;
    const bool own_visible = own != nullptr && p.visible_bias == own + weight_count();
    const bool own_hidden = own != nullptr && p.hidden_bias == own + weight_count() + n_;
    MARBM_EXPECTS(!(own_weights || own_visible || own_hidden) ||
                      (p.n_visible == n_ && p.n_hidden == m_ && p.weights_row_stride == p.n_hidden &&
                       p.visible_bias_stride == 1 && p.hidden_bias_stride == 1),
                  UsageError, "cuda engine: resident parameters overlap the engine's own with another shape or layout");
    shape_model(p.n_visible, p.n_hidden);
    // The parameters' producer (PyTorch, say) may still be writing them on a
    // stream of its own, and DLPack named none: wait for all work on the device.
    MARBM_CUDA_TRY(cudaDeviceSynchronize());
    const std::size_t n = static_cast<std::size_t>(n_), m = static_cast<std::size_t>(m_);
    float* weights = parameters_.data();
    if (own_weights) {
      // in place
    } else if (p.weights_row_stride == p.n_hidden || n == 1) {
      MARBM_CUDA_TRY(cudaMemcpyAsync(weights, p.weights, sizeof(float) * n * m, cudaMemcpyDeviceToDevice, stream()));
    } else {
      MARBM_CUDA_TRY(cudaMemcpy2DAsync(weights, sizeof(float) * m, p.weights,
                                       sizeof(float) * static_cast<std::size_t>(p.weights_row_stride), sizeof(float) * m,
                                       n, cudaMemcpyDeviceToDevice, stream()));
    }
    if (!own_visible) {
      copy_device_vector(weights + weight_count(), p.visible_bias, n, p.visible_bias_stride);
    }
    if (!own_hidden) {
      copy_device_vector(weights + weight_count() + n, p.hidden_bias, m, p.hidden_bias_stride);
    }
    velocity_.fill_zero();
    resources_.synchronize();  // the source may be freed once this returns
  }

  ResidentParameters resident_parameters() const override {
    activate();
    require_model("resident_parameters");
    resources_.synchronize();  // the last update has landed
    ResidentParameters p;
    p.weights = parameters_.data();
    p.visible_bias = parameters_.data() + weight_count();
    p.hidden_bias = parameters_.data() + weight_count() + n_;
    p.n_visible = n_;
    p.n_hidden = m_;
    p.weights_row_stride = m_;
    p.backend = Backend::cuda;
    p.device = options_.device;
    return p;
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
    const UpdatePlan plan = prepare_update(step);
    enqueue_update(plan, step, false);
    const std::vector<float> host = gradient_.to_host();
    const auto at = [&](std::size_t k) { return host[augmented_gradient_offset(n_, m_, k)]; };
    Gradient result;
    result.weights.resize(weight_count());
    result.visible_bias.resize(static_cast<std::size_t>(n_));
    result.hidden_bias.resize(static_cast<std::size_t>(m_));
    for (std::size_t k = 0; k < weight_count(); ++k) result.weights[k] = at(k);
    for (int i = 0; i < n_; ++i) result.visible_bias[i] = at(weight_count() + i);
    for (int j = 0; j < m_; ++j) result.hidden_bias[j] = at(weight_count() + n_ + j);
    return result;
  }

  void update(const UpdateStep& step) override {
    activate();
    const UpdatePlan plan = prepare_update(step);
    const bool chained = plan.negative == NegativePhase::cd || plan.negative == NegativePhase::pcd;
    if (update_replays_graph(graphs_enabled_, chained, device_sum_ != nullptr, cuda_sync_after_launches())) {
      replay_update(plan, step);
    } else {
      enqueue_update(plan, step, true);
    }
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

  // Buffers for an n x m model; chains of another width are dropped. The
  // parameter values are left for the caller to fill.
  void shape_model(int n, int m) {
    if (n == n_ && m == m_) return;
    n_ = n;
    m_ = m;
    const std::size_t total = parameter_count();
    parameters_ = DeviceBuffer<float>(total, stream());
    velocity_ = DeviceBuffer<float>(total, stream());
    gradient_ = DeviceBuffer<float>(augmented_gradient_size(n_, m_), stream());
    columns_dirty_ = true;  // the augmented strides changed
    // Chains of another width no longer fit this model (data of another
    // width is refused at the next update).
    if (chain_count_ > 0 || chain_total_ > 0) {
      chains_ = DeviceBuffer<float>();
      chain_count_ = 0;
      chain_total_ = 0;
    }
  }

  // `count` floats at source[k * stride] (device memory) into destination
  // (contiguous), on the engine's stream.
  void copy_device_vector(float* destination, const float* source, std::size_t count, std::int64_t stride) {
    if (stride == 1 || count == 1) {
      MARBM_CUDA_TRY(cudaMemcpyAsync(destination, source, sizeof(float) * count, cudaMemcpyDeviceToDevice, stream()));
    } else {
      MARBM_CUDA_TRY(cudaMemcpy2DAsync(destination, sizeof(float), source, sizeof(float) * static_cast<std::size_t>(stride),
                                       sizeof(float), count, cudaMemcpyDeviceToDevice, stream()));
    }
  }

  DeviceBuffer<float> upload_states(std::span<const std::uint8_t> states) {
    DeviceBuffer<std::uint8_t> bytes(states.size(), stream());
    bytes.copy_from_host(states);
    DeviceBuffer<float> values(states.size(), stream());
    bytes_to_floats(bytes.data(), states.size(), values.data(), stream());
    return values;
  }

  // X (rows x m) = V (rows x n, row stride v_stride, 0: n) W, in cuBLAS's
  // column-major view.
  void hidden_fields(const float* v, int rows, float* x, std::size_t v_stride = 0) {
    const float one = 1.0f, zero = 0.0f;
    const int ldv = v_stride == 0 ? n_ : static_cast<int>(v_stride);
    MARBM_CUBLAS_TRY(cublasSgemm(resources_.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, m_, rows, n_, &one, weights(), m_, v,
                                 ldv, &zero, x, m_));
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

  // What one update does on this rank, decided on the host.
  struct UpdatePlan {
    NegativePhase negative = NegativePhase::cd;
    int gibbs_steps = 1;
    int batch = 0;           // this rank's data rows
    int batch_total = 0;     // all ranks' data rows
    int negative_rows = 0;   // this rank's negative rows
    int negative_total = 1;  // the negative rows' 1/P
    int mode_states = 0;
    std::uint64_t first_row = 0;
    bool sample_positive_hidden = false;
  };

  // The update's device block: UpdateValues, then the batch's row indices.
  const UpdateValues* update_values() const { return reinterpret_cast<const UpdateValues*>(update_block_.data()); }
  const int* batch_rows() const { return update_block_.data() + kUpdateBlockInts; }

  // Grows the step's scratch buffers to the sizes of this step: `positive`
  // data rows and `negative` rows here, scaled by 1/positive_total and
  // -1/negative_total (the whole batch and population), and writes the
  // augmented columns (1 in V', the row weights in H') when the rows or
  // their weights changed or a mode step overwrote them.
  void reserve(int positive, int negative, int positive_total, int negative_total) {
    const std::size_t rows = static_cast<std::size_t>(positive) + negative;
    const std::size_t ldv = augmented_stride(n_), ldh = augmented_stride(m_);
    const std::size_t widest = static_cast<std::size_t>(std::max(positive, negative)) * std::max(n_, m_);
    bool fresh = false;
    if (stacked_visible_.size() < rows * ldv) {
      stacked_visible_ = DeviceBuffer<float>(rows * ldv, stream());
      fresh = true;
    }
    if (stacked_hidden_.size() < rows * ldh) {
      stacked_hidden_ = DeviceBuffer<float>(rows * ldh, stream());
      fresh = true;
    }
    if (fields_.size() < widest) fields_ = DeviceBuffer<float>(widest, stream());
    const std::size_t chain_hidden = static_cast<std::size_t>(std::max(positive, negative)) * m_;
    if (hidden_samples_.size() < chain_hidden) hidden_samples_ = DeviceBuffer<float>(chain_hidden, stream());
    const std::size_t block_ints = static_cast<std::size_t>(kUpdateBlockInts) + positive;
    if (update_block_.size() < block_ints) update_block_ = DeviceBuffer<int>(std::max<std::size_t>(block_ints, 1024), stream());
    if (fresh || columns_dirty_ || positive != weights_positive_ || negative != weights_negative_ ||
        positive_total != weights_positive_total_ || negative_total != weights_negative_total_) {
      float* v = stacked_visible_.data();
      float* h = stacked_hidden_.data();
      fill_column(v + n_, static_cast<int>(rows), ldv, 1.0f, stream());
      fill_column(h + m_, positive, ldh, 1.0f / static_cast<float>(positive_total), stream());
      if (negative > 0) {
        fill_column(h + static_cast<std::size_t>(positive) * ldh + m_, negative, ldh,
                    -1.0f / static_cast<float>(negative_total), stream());
      }
      weights_positive_ = positive;
      weights_negative_ = negative;
      weights_positive_total_ = positive_total;
      weights_negative_total_ = negative_total;
      columns_dirty_ = false;
    }
  }

  // Copies the update's values and batch rows to the device block through a
  // ring of pinned slots, in one asynchronous copy: a slot is reused only
  // after its copy is done (the host runs at most kStagingSlots updates ahead
  // of the device).
  void stage_update(const UpdateValues& values, std::span<const int> rows) {
    StagingSlot& slot = staging_[next_slot_];
    next_slot_ = (next_slot_ + 1) % kStagingSlots;
    MARBM_CUDA_TRY(cudaEventSynchronize(slot.copied.get()));
    const std::size_t ints = static_cast<std::size_t>(kUpdateBlockInts) + rows.size();
    if (slot.ints.size() < ints) slot.ints = PinnedBuffer<int>(std::max<std::size_t>(ints, 1024));
    std::memcpy(slot.ints.data(), &values, sizeof values);
    std::copy(rows.begin(), rows.end(), slot.ints.data() + kUpdateBlockInts);
    MARBM_CUDA_TRY(cudaMemcpyAsync(update_block_.data(), slot.ints.data(), sizeof(int) * ints, cudaMemcpyHostToDevice,
                                   stream()));
    MARBM_CUDA_TRY(cudaEventRecord(slot.copied.get(), stream()));
  }

  // Checks the step, starts the chains of a first pcd step, sizes the
  // buffers and stages the update's device block.
  UpdatePlan prepare_update(const UpdateStep& step) {
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
    UpdatePlan plan;
    plan.negative = step.negative;
    plan.gibbs_steps = step.gibbs_steps;
    plan.sample_positive_hidden = step.sample_positive_hidden;
    plan.mode_states = step.negative == NegativePhase::mode ? check_mode_states(step, n_, m_, "cuda engine") : 0;
    if (step.negative == NegativePhase::pcd && chain_total_ == 0) {
      start_chains(static_cast<int>(step.batch_rows.size()), step.seed);
    }

    // This rank's rows of the batch (all of them on one engine); the mode and
    // exact terms come from rank 0 only, the sum over the ranks adds them once.
    plan.batch_total = static_cast<int>(step.batch_rows.size());
    const ItemRange rows_here = share_of(plan.batch_total, "the batch size");
    plan.batch = static_cast<int>(rows_here.last - rows_here.first);
    plan.first_row = static_cast<std::uint64_t>(rows_here.first);
    const bool root = rank_ == 0;
    plan.negative_rows = step.negative == NegativePhase::cd     ? plan.batch
                         : step.negative == NegativePhase::pcd  ? chain_count_
                         : step.negative == NegativePhase::mode ? (root ? plan.mode_states : 0)
                                                                 : 0;
    plan.negative_total = step.negative == NegativePhase::cd    ? plan.batch_total
                          : step.negative == NegativePhase::pcd ? chain_total_
                                                                : std::max(plan.negative_rows, 1);
    reserve(plan.batch, plan.negative_rows, plan.batch_total, plan.negative_total);
    UpdateValues values;
    values.seed = step.seed;
    values.stream = random_stream(RandomPurpose::gibbs, step.step);
    values.learning_rate = static_cast<float>(step.learning_rate);
    values.momentum = static_cast<float>(step.momentum);
    values.weight_decay = static_cast<float>(step.weight_decay);
    stage_update(values, step.batch_rows.subspan(static_cast<std::size_t>(rows_here.first),
                                                 static_cast<std::size_t>(plan.batch)));
    return plan;
  }

  // Enqueues the update's work on the stream: the gradient into G (and, with
  // `apply`, the step). Every per-update value is read on the device from the
  // staged block, so a capture of this replays correctly for every update of
  // the same plan and buffers (cd and pcd; mode and exact copy host data and
  // are never captured).
  void enqueue_update(const UpdatePlan& plan, const UpdateStep& step, bool apply) {
    const std::size_t ldv = augmented_stride(n_), ldh = augmented_stride(m_);
    const int batch = plan.batch, negative = plan.negative_rows;
    float* v_data = stacked_visible_.data();
    float* v_negative = v_data + static_cast<std::size_t>(batch) * ldv;
    float* h_data = stacked_hidden_.data();
    float* h_negative = h_data + static_cast<std::size_t>(batch) * ldh;
    const UpdateValues* keys = update_values();

    // Positive phase: p(h|v_data) / B (or the samples); h_0 samples feed CD.
    gather_rows(data_.data(), batch_rows(), batch, n_, v_data, stream(), ldv);
    hidden_fields(v_data, batch, fields_.data(), ldv);
    {
      LayerOutputs outputs;
      outputs.samples = plan.negative == NegativePhase::cd ? hidden_samples_.data() : nullptr;
      outputs.probabilities = h_data;
      outputs.probabilities_stride = ldh;
      outputs.scale = 1.0f / static_cast<float>(plan.batch_total);
      outputs.store_samples_as_probabilities = plan.sample_positive_hidden;
      sample_layer(fields_.data(), hidden_bias(), batch, m_, keys, 0, outputs, stream(), plan.first_row);
    }

    float gradient_beta = 0.0f;
    switch (plan.negative) {
      case NegativePhase::cd:
        run_chain(v_negative, h_negative, batch, plan.batch_total, plan.gibbs_steps, keys, 0, plan.first_row);
        break;
      case NegativePhase::pcd: {
        if (negative == 0) break;  // no chains in this rank's share
        const auto first_chain = static_cast<std::uint64_t>(chain_first_);
        const std::size_t row_bytes = sizeof(float) * static_cast<std::size_t>(n_);
        MARBM_CUDA_TRY(cudaMemcpy2DAsync(v_negative, sizeof(float) * ldv, chains_.data(), row_bytes, row_bytes,
                                         static_cast<std::size_t>(negative), cudaMemcpyDeviceToDevice, stream()));
        hidden_fields(v_negative, negative, fields_.data(), ldv);
        sample_layer(fields_.data(), hidden_bias(), negative, m_, keys, 1, samples_to(hidden_samples_.data()), stream(),
                     first_chain);
        run_chain(v_negative, h_negative, negative, chain_total_, plan.gibbs_steps, keys, 1, first_chain);
        MARBM_CUDA_TRY(cudaMemcpy2DAsync(chains_.data(), row_bytes, v_negative, sizeof(float) * ldv, row_bytes,
                                         static_cast<std::size_t>(negative), cudaMemcpyDeviceToDevice, stream()));
        break;
      }
      case NegativePhase::mode: {
        if (negative == 0) break;  // not rank 0
        // K augmented rows [v_k 1] and [-w_k h_k  -w_k]: dW gets
        // -sum_k w_k v_k h_k^T, da -sum_k w_k v_k, db -sum_k w_k h_k. The
        // weight column of the negative rows is restored by the next reserve().
        const std::size_t states = static_cast<std::size_t>(plan.mode_states);
        mode_rows_.assign(states * (ldv + ldh), 0.0f);
        float* visible_rows = mode_rows_.data();
        float* hidden_rows = visible_rows + states * ldv;
        for (std::size_t k = 0; k < states; ++k) {
          const float w = static_cast<float>(mode_state_weight(step, static_cast<int>(k)));
          for (int i = 0; i < n_; ++i) visible_rows[k * ldv + i] = step.mode_visible[k * n_ + i] ? 1.0f : 0.0f;
          visible_rows[k * ldv + n_] = 1.0f;
          for (int j = 0; j < m_; ++j) hidden_rows[k * ldh + j] = step.mode_hidden[k * m_ + j] ? -w : 0.0f;
          hidden_rows[k * ldh + m_] = -w;
        }
        MARBM_CUDA_TRY(cudaMemcpyAsync(v_negative, visible_rows, sizeof(float) * states * ldv, cudaMemcpyHostToDevice,
                                       stream()));
        MARBM_CUDA_TRY(cudaMemcpyAsync(h_negative, hidden_rows, sizeof(float) * states * ldh, cudaMemcpyHostToDevice,
                                       stream()));
        columns_dirty_ = true;
        break;
      }
      case NegativePhase::exact: {
        if (rank_ != 0) break;
        // Model expectations by enumeration on the host, in G's layout, then
        // the positive phase is accumulated onto their negatives (beta = 1).
        const ModelExpectations expectations = model_expectations_exact(model(), step.exact);
        exact_rows_.assign(augmented_gradient_size(n_, m_), 0.0f);
        const auto put = [&](std::size_t k, double value) {
          exact_rows_[augmented_gradient_offset(n_, m_, k)] = static_cast<float>(-value);
        };
        for (std::size_t e = 0; e < weight_count(); ++e) put(e, expectations.visible_hidden[e]);
        for (int i = 0; i < n_; ++i) put(weight_count() + i, expectations.visible[i]);
        for (int j = 0; j < m_; ++j) put(weight_count() + n_ + j, expectations.hidden[j]);
        gradient_.copy_from_host(exact_rows_);
        gradient_beta = 1.0f;
        break;
      }
    }

    // G = V'^T H' over the stacked rows: dW, da (column m) and db (row n) in
    // one GEMM; or, under MARBM_CUDA_BIAS_GEMV=1, dW alone and the former two
    // GEMVs, da = V^T w and db = H^T 1, reading w and 1 from the augmented
    // columns.
    const int rows = batch + negative;
    const float one = 1.0f;
    const int lv = static_cast<int>(ldv), lh = static_cast<int>(ldh);
    float* g = gradient_.data();
    if (!bias_gemv_) {
      MARBM_CUBLAS_TRY(cublasSgemm(resources_.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, m_ + 1, n_ + 1, rows, &one, h_data, lh,
                                   v_data, lv, &gradient_beta, g, lh));
    } else {
      MARBM_CUBLAS_TRY(cublasSgemm(resources_.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, m_, n_, rows, &one, h_data, lh, v_data,
                                   lv, &gradient_beta, g, lh));
      MARBM_CUBLAS_TRY(cublasSgemv(resources_.cublas(), CUBLAS_OP_N, n_, rows, &one, v_data, lv, h_data + m_, lh,
                                   &gradient_beta, g + m_, lh));
      MARBM_CUBLAS_TRY(cublasSgemv(resources_.cublas(), CUBLAS_OP_N, m_, rows, &one, h_data, lh, v_data + n_, lv,
                                   &gradient_beta, g + static_cast<std::size_t>(n_) * ldh, 1));
    }
    // The sum over the ranks, on the device and this stream: no host copy.
    if (device_sum_) device_sum_->sum_in_place(g, augmented_gradient_size(n_, m_), stream());
    if (apply) apply_update_augmented(parameters_.data(), velocity_.data(), g, n_, m_, keys, stream());
  }

  // k sweeps from the hidden samples in hidden_samples_ (h_0): v_s and h_s
  // in half-sweeps 2s - 1 + offset and 2s + offset (offset 0 for cd, 1 for
  // pcd, as on the CPU engine); the last sweep leaves v_k in `v` (augmented
  // row stride) and -p(h|v_k) / total in `h_scaled` (augmented row stride).
  // The rows draw as rows first_row.. of all `total`, with the seed and
  // stream of the update's block.
  void run_chain(float* v, float* h_scaled, int rows, int total, int steps, const UpdateValues* keys, int offset,
                 std::uint64_t first_row) {
    const std::size_t ldv = augmented_stride(n_), ldh = augmented_stride(m_);
    for (int s = 1; s <= steps; ++s) {
      visible_fields(hidden_samples_.data(), rows, fields_.data());
      LayerOutputs visible;
      visible.samples = v;
      visible.samples_stride = ldv;
      sample_layer(fields_.data(), visible_bias(), rows, n_, keys, 2 * s - 1 + offset, visible, stream(), first_row);
      hidden_fields(v, rows, fields_.data(), ldv);
      LayerOutputs outputs;
      if (s < steps) {
        outputs.samples = hidden_samples_.data();
      } else {
        outputs.probabilities = h_scaled;
        outputs.probabilities_stride = ldh;
        outputs.scale = -1.0f / static_cast<float>(total);
      }
      sample_layer(fields_.data(), hidden_bias(), rows, m_, keys, 2 * s + offset, outputs, stream(), first_row);
    }
  }

  // Everything a captured update depends on besides its device block: the
  // plan and the buffers' addresses (a reallocated buffer is a new graph).
  using GraphKey = std::array<std::uint64_t, 20>;
  GraphKey graph_key(const UpdatePlan& plan) const {
    const auto address = [](const void* p) { return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(p)); };
    return {static_cast<std::uint64_t>(plan.negative), static_cast<std::uint64_t>(plan.gibbs_steps),
            static_cast<std::uint64_t>(plan.batch), static_cast<std::uint64_t>(plan.batch_total),
            static_cast<std::uint64_t>(plan.negative_rows), static_cast<std::uint64_t>(plan.negative_total),
            plan.first_row, static_cast<std::uint64_t>(chain_first_),
            static_cast<std::uint64_t>(plan.sample_positive_hidden) | (static_cast<std::uint64_t>(bias_gemv_) << 1),
            static_cast<std::uint64_t>(n_) << 32 | static_cast<std::uint32_t>(m_), address(data_.data()),
            address(parameters_.data()), address(velocity_.data()), address(gradient_.data()),
            address(stacked_visible_.data()), address(stacked_hidden_.data()), address(fields_.data()),
            address(hidden_samples_.data()), address(update_block_.data()), address(chains_.data())};
  }

  // A cd or pcd update through the graph: replayed when captured for this
  // key; captured when the previous update had the same key (so the first
  // update of a shape runs direct); direct otherwise.
  void replay_update(const UpdatePlan& plan, const UpdateStep& step) {
    const GraphKey key = graph_key(plan);
    if (graph_.exec == nullptr || graph_.key != key) {
      if (!(graph_.seen && graph_.last_key == key)) {
        graph_.seen = true;
        graph_.last_key = key;
        enqueue_update(plan, step, true);
        return;
      }
      capture_update(plan, step, key);
    }
    MARBM_CUDA_TRY(cudaGraphLaunch(graph_.exec, stream()));
    ++graph_launches_;
  }

  void capture_update(const UpdatePlan& plan, const UpdateStep& step, const GraphKey& key) {
    graph_.reset();
    // Thread-local mode: other threads' engines may allocate meanwhile.
    MARBM_CUDA_TRY(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      enqueue_update(plan, step, true);
    } catch (...) {
      if (cudaStreamEndCapture(stream(), &graph) == cudaSuccess && graph != nullptr) (void)cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      throw;
    }
    const cudaError_t ended = cudaStreamEndCapture(stream(), &graph);
    if (ended != cudaSuccess) {
      (void)cudaGetLastError();
      throw CudaError(std::string("cuda engine: capturing the update as a CUDA Graph failed: ") +
                      cudaGetErrorName(ended) + " (" + cudaGetErrorString(ended) +
                      "); MARBM_CUDA_GRAPH=0 launches the kernels directly");
    }
    const cudaError_t made = cudaGraphInstantiate(&graph_.exec, graph, 0);
    MARBM_CUDA_TRY_NOTHROW(cudaGraphDestroy(graph));
    if (made != cudaSuccess) {
      graph_.exec = nullptr;
      (void)cudaGetLastError();
      throw CudaError(std::string("cuda engine: instantiating the update's CUDA Graph failed: ") +
                      cudaGetErrorName(made) + "; MARBM_CUDA_GRAPH=0 launches the kernels directly");
    }
    graph_.key = key;
  }

  EngineOptions options_;
  Resources resources_;
  std::string device_name_;
  std::string compute_capability_;
  bool graphs_enabled_ = true;
  bool bias_gemv_ = false;
  int n_ = 0;
  int m_ = 0;
  DeviceBuffer<float> parameters_;
  DeviceBuffer<float> velocity_;
  DeviceBuffer<float> gradient_;  // G, augmented layout
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
  DeviceBuffer<float> stacked_visible_;  // V', augmented_stride(n) floats a row
  DeviceBuffer<float> stacked_hidden_;   // H', augmented_stride(m) floats a row
  DeviceBuffer<float> fields_;
  DeviceBuffer<float> hidden_samples_;
  DeviceBuffer<int> update_block_;  // UpdateValues, then the batch rows
  int weights_positive_ = -1;
  int weights_negative_ = -1;
  int weights_positive_total_ = -1;
  int weights_negative_total_ = -1;
  bool columns_dirty_ = true;  // the augmented columns need writing
  std::vector<float> mode_rows_;
  struct StagingSlot {
    PinnedBuffer<int> ints;
    Event copied;
  };
  static constexpr int kStagingSlots = 8;
  StagingSlot staging_[kStagingSlots];
  int next_slot_ = 0;
  std::vector<float> exact_rows_;
  struct CapturedUpdate {
    cudaGraphExec_t exec = nullptr;
    GraphKey key{};
    bool seen = false;  // last_key holds the previous graph-eligible update's key
    GraphKey last_key{};
    CapturedUpdate() = default;
    CapturedUpdate(const CapturedUpdate&) = delete;
    CapturedUpdate& operator=(const CapturedUpdate&) = delete;
    ~CapturedUpdate() { reset(); }
    void reset() noexcept {
      if (exec != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaGraphExecDestroy(exec));
      exec = nullptr;
    }
  };
  CapturedUpdate graph_;  // last: destroyed before the buffers it refers to
  std::uint64_t graph_launches_ = 0;
};

}  // namespace

std::unique_ptr<Engine> make_cuda_engine_impl(const EngineOptions& options) { return std::make_unique<CudaEngine>(options); }

std::uint64_t cuda_engine_graph_launches(const Engine& engine) {
  const auto* cuda = dynamic_cast<const CudaEngine*>(&engine);
  return cuda != nullptr ? cuda->graph_launches() : 0;
}

std::unique_ptr<Engine> make_cuda_data_parallel_engine_impl(const EngineOptions& options,
                                                            const CudaDataParallelSetup& setup) {
  return std::make_unique<CudaEngine>(options, setup);
}

}  // namespace marbm::detail
