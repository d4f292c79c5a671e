// The batched ensemble path (see ensemble_batched.cuh).
//
// Device layout, E members of shape n x m:
//   parameters, velocity, gradient: [W (E x n x m) | a (E x n) | b (E x m)],
//     so weight decay covers the first E n m entries, as in the engine;
//   stacked rows per member, as the engine stacks them: V [E][B + P][n] =
//     [v_data; v_neg], H [E][B + P][m] = [p(h|v_data) / B; -p(h|v_neg) / P];
//   persistent chains [E][P][n].
// Each half-sweep is one cublasSgemmStridedBatched (batch count E) and one
// sampling launch over all members, keyed per member by its seed with the
// engines' Philox layout (gibbs_random_index), so member e draws the numbers
// a cuda engine trained with seeds[e] draws. The gradient is one
// strided-batched GEMM (dW = V^T H) and two strided-batched GEMVs (da = V^T w,
// db = H^T 1), and the step one fused update launch.
#include "ensemble_batched.cuh"

#include <cublas_v2.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "detail/batch_schedule.hpp"
#include "detail/gibbs_steps.hpp"
#include "detail/mode_assist.hpp"
#include "detail/mode_batch_plan.hpp"
#include "device_buffer.cuh"
#include "error.cuh"
#include "exact_enumeration.cuh"
#include "gibbs.cuh"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/random.hpp"
#include "mode_search.cuh"
#include "philox.cuh"
#include "resources.cuh"
#include "device_common.cuh"

namespace marbm::detail {

namespace {

constexpr int kThreads = kGridStrideThreads;

// One layer of every member: member e's values start at base + e * stride.
struct MemberLayer {
  const float* pre_activation = nullptr;
  std::size_t pre_activation_stride = 0;
  const float* bias = nullptr;  // stride: width
  float* samples = nullptr;
  std::size_t samples_stride = 0;
  float* probabilities = nullptr;
  std::size_t probabilities_stride = 0;
  float scale = 1.0f;
  bool store_samples_as_probabilities = false;
  int rows = 0;
  int width = 0;
};

// sample_layer_kernel over all members: one thread per (member, row, group of
// four units); the Philox word of unit u of row r is the single engine's.
__global__ void sample_members_kernel(MemberLayer layer, int members, const std::uint64_t* __restrict__ seeds,
                                      std::uint64_t stream, std::uint64_t half_sweep) {
  const std::uint64_t groups_per_row = gibbs_random_stride(layer.width) / 4;
  const std::uint64_t groups_per_member = groups_per_row * layer.rows;
  const std::uint64_t groups = groups_per_member * members;
  for (std::uint64_t group = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; group < groups;
       group += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t member = group / groups_per_member;
    const std::uint64_t within = group % groups_per_member;
    const std::uint64_t row = within / groups_per_row;
    const int first = static_cast<int>(within % groups_per_row) * 4;
    const float* pre = layer.pre_activation + member * layer.pre_activation_stride + row * layer.width;
    const float* bias = layer.bias + member * layer.width;
    sample_unit_group(
        seeds[member], stream, half_sweep, row, layer.width, first, [&](int unit) { return pre[unit] + bias[unit]; },
        [&](int unit, float p, float sample) {
          const std::uint64_t element = row * layer.width + unit;
          if (layer.samples != nullptr) layer.samples[member * layer.samples_stride + element] = sample;
          if (layer.probabilities != nullptr)
            layer.probabilities[member * layer.probabilities_stride + element] =
                layer.scale * (layer.store_samples_as_probabilities ? sample : p);
        });
  }
}

// V[e][r][:] = data[rows[e * batch + r]][:] for r < batch (member stride
// `stride` floats).
__global__ void gather_members_kernel(const std::uint8_t* __restrict__ data, const int* __restrict__ rows,
                                      int members, int batch, int width, float* __restrict__ stacked,
                                      std::size_t stride) {
  const std::uint64_t per_member = static_cast<std::uint64_t>(batch) * width;
  const std::uint64_t total = per_member * members;
  for (std::uint64_t k = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t member = k / per_member;
    const std::uint64_t within = k % per_member;
    const std::uint64_t r = within / width;
    const std::uint64_t c = within % width;
    stacked[member * stride + within] =
        static_cast<float>(data[static_cast<std::uint64_t>(rows[member * batch + r]) * width + c]);
  }
}

// Mode steps of this update. `packed` holds per member [flag, unused, v* (n),
// h* (m)]; a flagged member's negative rows become the single mode row with
// row weight -1 (weight -1/P with P = 1, as in the engine) and zero rows
// after it (which add nothing to the gradient products).
__global__ void mode_rows_kernel(const float* __restrict__ packed, int n, int m, int batch, int negative,
                                 std::size_t rows, float* __restrict__ stacked_visible,
                                 float* __restrict__ stacked_hidden, float* __restrict__ row_weights) {
  const int member = blockIdx.x;
  const std::size_t pack = static_cast<std::size_t>(n) + m + 2;
  const float* mine = packed + member * pack;
  if (mine[0] < 0.5f) return;
  float* v = stacked_visible + member * rows * n + static_cast<std::size_t>(batch) * n;
  float* h = stacked_hidden + member * rows * m + static_cast<std::size_t>(batch) * m;
  float* w = row_weights + member * rows + batch;
  for (std::size_t k = threadIdx.x; k < static_cast<std::size_t>(negative) * n; k += blockDim.x)
    v[k] = k < static_cast<std::size_t>(n) && mine[2 + k] > 0.5f ? 1.0f : 0.0f;
  for (std::size_t k = threadIdx.x; k < static_cast<std::size_t>(negative) * m; k += blockDim.x)
    h[k] = k < static_cast<std::size_t>(m) && mine[2 + n + k] > 0.5f ? -1.0f : 0.0f;
  for (int k = threadIdx.x; k < negative; k += blockDim.x) w[k] = k == 0 ? -1.0f : 0.0f;
}

// Persistent chains of the members that took no mode step (a mode step leaves
// the chains where they were, as in the engine): chains[e] = v_neg[e].
__global__ void store_chains_kernel(const float* __restrict__ stacked_visible, std::size_t stacked_stride,
                                    std::size_t offset, float* __restrict__ chains, std::size_t chain_size,
                                    int members, const float* __restrict__ packed, std::size_t pack) {
  const std::uint64_t total = static_cast<std::uint64_t>(chain_size) * members;
  for (std::uint64_t k = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t member = k / chain_size;
    if (packed != nullptr && packed[member * pack] > 0.5f) continue;
    chains[k] = stacked_visible[member * stacked_stride + offset + k % chain_size];
  }
}

// apply_update with a learning rate per member (mode steps scale theirs by
// the push); the same arithmetic in the same order.
__global__ void update_members_kernel(float* __restrict__ parameters, float* __restrict__ velocity,
                                      const float* __restrict__ gradient, int members, int n, int m,
                                      const float* __restrict__ packed, std::size_t pack, float momentum,
                                      float weight_decay) {
  const std::size_t weights = static_cast<std::size_t>(members) * n * m;
  const std::size_t count = weights + static_cast<std::size_t>(members) * (n + m);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    std::size_t member;
    if (i < weights) {
      member = i / (static_cast<std::size_t>(n) * m);
    } else if (i < weights + static_cast<std::size_t>(members) * n) {
      member = (i - weights) / n;
    } else {
      member = (i - weights - static_cast<std::size_t>(members) * n) / m;
    }
    const float learning_rate = packed[member * pack + 1];
    const float theta = parameters[i];
    const float decay = i < weights ? weight_decay * theta : 0.0f;
    const float step = momentum * velocity[i] + learning_rate * (gradient[i] - decay);
    velocity[i] = step;
    parameters[i] = theta + step;
  }
}

// One member's slice seen as an Engine, for ModeAssist: it reads the model
// and searches its mode on the device; training goes through the ensemble.
class MemberView final : public Engine {
 public:
  MemberView(Resources& resources, const float* weights, const float* visible_bias, const float* hidden_bias, int n,
             int m)
      : resources_(resources), weights_(weights), visible_bias_(visible_bias), hidden_bias_(hidden_bias), n_(n), m_(m) {}

  Backend backend() const override { return Backend::cuda; }
  std::string description() const override { return "cuda ensemble member"; }
  void set_model(const Rbm&) override { refuse("set_model"); }
  Rbm model() const override {
    Rbm rbm(n_, m_);
    const cudaStream_t stream = resources_.stream();
    MARBM_CUDA_TRY(cudaMemcpyAsync(rbm.weights().data(), weights_, sizeof(float) * n_ * m_, cudaMemcpyDeviceToHost, stream));
    MARBM_CUDA_TRY(cudaMemcpyAsync(rbm.visible_bias().data(), visible_bias_, sizeof(float) * n_, cudaMemcpyDeviceToHost,
                                   stream));
    MARBM_CUDA_TRY(cudaMemcpyAsync(rbm.hidden_bias().data(), hidden_bias_, sizeof(float) * m_, cudaMemcpyDeviceToHost,
                                   stream));
    resources_.synchronize();
    return rbm;
  }
  double uniform_mean_energy() const override {
    return uniform_mean_energy_device(resources_.stream(), weights_, visible_bias_, hidden_bias_, n_, m_);
  }
  void set_data(const Dataset&) override { refuse("set_data"); }
  void reset_persistent_chains(int, std::uint64_t) override { refuse("reset_persistent_chains"); }
  Gradient gradient(const UpdateStep&) override { refuse("gradient"); }
  void update(const UpdateStep&) override { refuse("update"); }
  std::vector<float> hidden_probabilities(std::span<const std::uint8_t>, int) override {
    refuse("hidden_probabilities");
  }
  std::vector<std::uint8_t> gibbs_chain(std::span<const std::uint8_t>, int, int, std::uint64_t,
                                        std::uint64_t) override {
    refuse("gibbs_chain");
  }
  double log_partition_exact(const ExactOptions& options) override {
    return log_partition_exact_device(resources_, weights_, visible_bias_, hidden_bias_, n_, m_, options);
  }
  ModeResult find_mode(const ModeSearchConfig& config) override {
    ModeSearchConfig device_config = config;
    device_config.backend = Backend::cuda;
    return find_mode_device(resources_, weights_, visible_bias_, hidden_bias_, n_, m_, device_config);
  }

 private:
  [[noreturn]] static void refuse(const char* what) {
    throw RuntimeFailure(std::string("train_ensemble: an ensemble member has no ") + what);
  }

  Resources& resources_;
  const float* weights_;
  const float* visible_bias_;
  const float* hidden_bias_;
  int n_;
  int m_;
};

void check_inputs(const Dataset& data, const TrainConfig& config) {
  const std::string name = "train_ensemble: ";
  MARBM_EXPECTS(data.n_rows >= 1, UsageError, name + "the data set '" + data.description + "' has no rows");
  MARBM_EXPECTS(data.values.size() == static_cast<std::size_t>(data.n_rows) * data.n_cols, DataError,
                name + "the data set '" + data.description + "' holds the wrong number of values for its size");
  for (const std::uint8_t x : data.values)
    MARBM_EXPECTS(x <= 1, DataError, name + "the data set '" + data.description + "' holds a value other than 0 or 1");
  MARBM_EXPECTS(std::isfinite(config.learning_rate) && config.learning_rate > 0, UsageError,
                name + "learning rate must be finite and > 0, got " + std::to_string(config.learning_rate));
  MARBM_EXPECTS(std::isfinite(config.momentum) && config.momentum >= 0 && config.momentum < 1, UsageError,
                name + "momentum must be in [0, 1), got " + std::to_string(config.momentum));
  MARBM_EXPECTS(std::isfinite(config.weight_decay) && config.weight_decay >= 0, UsageError,
                name + "weight decay must be finite and >= 0, got " + std::to_string(config.weight_decay));
  check_gibbs_steps(config.gibbs_steps, "train_ensemble");
  MARBM_EXPECTS(config.persistent_chains >= 0, UsageError,
                name + "persistent chain count must be >= 0 (0: batch size), got " +
                    std::to_string(config.persistent_chains));
  MARBM_EXPECTS(config.eval_every >= 0, UsageError,
                name + "eval_every must be >= 0 (0: only at the end), got " + std::to_string(config.eval_every));
  MARBM_EXPECTS(config.exact.max_enumerated_units >= 0 && config.exact.max_enumerated_units <= 62, UsageError,
                name + "the exact enumeration limit must be in [0, 62] units, got " +
                    std::to_string(config.exact.max_enumerated_units));
  MARBM_EXPECTS(config.method != TrainMethod::exact, UsageError,
                name + "the batched ensemble path trains cd, pcd and mode members, not the exact method");
  if (config.method == TrainMethod::mode) {
    MARBM_EXPECTS(config.mode.base == NegativePhase::cd || config.mode.base == NegativePhase::pcd, UsageError,
                  name + "the base negative phase of mode-assisted training must be cd or pcd");
  }
}

// The whole training state of the ensemble on one device.
class BatchedEnsemble {
 public:
  BatchedEnsemble(Resources& resources, const Dataset& data, const std::vector<Rbm>& initial,
                  const std::vector<std::uint64_t>& seeds, const TrainConfig& config)
      : resources_(resources),
        members_(static_cast<int>(initial.size())),
        n_(initial.front().n_visible()),
        m_(initial.front().n_hidden()),
        batch_(std::min(config.batch_size, data.n_rows)),
        persistent_(config.method == TrainMethod::pcd ||
                    (config.method == TrainMethod::mode && config.mode.base == NegativePhase::pcd)),
        negative_(persistent_ ? (config.persistent_chains > 0 ? config.persistent_chains : batch_) : batch_),
        config_(config) {
    const cudaStream_t s = stream();
    const std::size_t e = members_;
    parameters_ = DeviceBuffer<float>(e * parameter_count(), s);
    velocity_ = DeviceBuffer<float>(e * parameter_count(), s);
    gradient_ = DeviceBuffer<float>(e * parameter_count(), s);
    std::vector<float> host(e * parameter_count());
    for (int k = 0; k < members_; ++k) {
      const Rbm& rbm = initial[k];
      std::copy(rbm.weights().begin(), rbm.weights().end(), host.begin() + k * weight_count());
      std::copy(rbm.visible_bias().begin(), rbm.visible_bias().end(), host.begin() + e * weight_count() + k * n_);
      std::copy(rbm.hidden_bias().begin(), rbm.hidden_bias().end(),
                host.begin() + e * (weight_count() + n_) + k * m_);
    }
    parameters_.copy_from_host(host);
    velocity_.fill_zero();

    data_ = DeviceBuffer<std::uint8_t>(data.values.size(), s);
    data_.copy_from_host(data.values);
    seeds_ = DeviceBuffer<std::uint64_t>(seeds.size(), s);
    seeds_.copy_from_host(seeds);

    const std::size_t rows = stacked_rows();
    const std::size_t widest = static_cast<std::size_t>(std::max(batch_, negative_)) * std::max(n_, m_);
    stacked_visible_ = DeviceBuffer<float>(e * rows * n_, s);
    stacked_hidden_ = DeviceBuffer<float>(e * rows * m_, s);
    fields_ = DeviceBuffer<float>(e * widest, s);
    hidden_samples_ = DeviceBuffer<float>(e * std::max(batch_, negative_) * m_, s);
    batch_rows_ = DeviceBuffer<int>(e * batch_, s);
    // Row weights (set per batch size, see update) and ones per member, for
    // the strided-batched bias GEMVs.
    std::vector<float> ones(e * rows, 1.0f);
    row_weights_ = DeviceBuffer<float>(ones.size(), s);
    mode_row_weights_ = DeviceBuffer<float>(ones.size(), s);
    ones_ = DeviceBuffer<float>(ones.size(), s);
    ones_.copy_from_host(ones);
    packed_ = DeviceBuffer<float>(e * pack_size(), s);
    if (persistent_) {
      chains_ = DeviceBuffer<float>(e * negative_ * n_, s);
      for (int k = 0; k < members_; ++k)
        uniform_binary(chains_.data() + static_cast<std::size_t>(k) * negative_ * n_, negative_, n_, seeds[k],
                       random_stream(RandomPurpose::persistent_chains, 0), s);
    }
    resources_.synchronize();  // the host vectors go out of scope
  }

  int batch() const { return batch_; }
  std::size_t pack_size() const { return static_cast<std::size_t>(n_) + m_ + 2; }
  const float* weights(int member) const { return parameters_.data() + member * weight_count(); }
  const float* visible_bias(int member) const {
    return parameters_.data() + members_ * weight_count() + static_cast<std::size_t>(member) * n_;
  }
  const float* hidden_bias(int member) const {
    return parameters_.data() + members_ * (weight_count() + n_) + static_cast<std::size_t>(member) * m_;
  }

  /// All members' models (synchronizes).
  std::vector<Rbm> models() const {
    const std::vector<float> host = parameters_.to_host();
    std::vector<Rbm> result;
    const std::size_t e = members_;
    for (int k = 0; k < members_; ++k) {
      Rbm rbm(n_, m_);
      const float* w = host.data() + k * weight_count();
      std::copy(w, w + weight_count(), rbm.weights().begin());
      const float* a = host.data() + e * weight_count() + static_cast<std::size_t>(k) * n_;
      std::copy(a, a + n_, rbm.visible_bias().begin());
      const float* b = host.data() + e * (weight_count() + n_) + static_cast<std::size_t>(k) * m_;
      std::copy(b, b + m_, rbm.hidden_bias().begin());
      result.push_back(std::move(rbm));
    }
    return result;
  }

  /// Copies the members' batch rows (E x B, member-major) to the device.
  void set_batch_rows(std::span<const int> rows) {
    StagingSlot& slot = staging_[next_slot_];
    next_slot_ = (next_slot_ + 1) % kStagingSlots;
    MARBM_CUDA_TRY(cudaEventSynchronize(slot.copied.get()));
    if (slot.values.size() < rows.size()) slot.values = PinnedBuffer<int>(rows.size());
    std::copy(rows.begin(), rows.end(), slot.values.data());
    MARBM_CUDA_TRY(cudaMemcpyAsync(batch_rows_.data(), slot.values.data(), sizeof(int) * rows.size(),
                                   cudaMemcpyHostToDevice, stream()));
    MARBM_CUDA_TRY(cudaEventRecord(slot.copied.get(), stream()));
  }

  /// One update of every member on `batch` rows each (the rows last given
  /// to set_batch_rows; the last batch of an epoch may be short). `packed`
  /// (E x pack_size(), or empty when no member takes a mode step): per
  /// member [mode flag, learning rate, v*, h*].
  void update(long t, int batch, const std::vector<float>& packed) {
    const cudaStream_t s = stream();
    const bool mode_update = !packed.empty();
    // The negative rows follow the batch's rows; member strides stay those of
    // the full batch. cd runs one chain per batch row, as the engine does.
    const int negative = persistent_ ? negative_ : batch;
    if (batch != weights_batch_) set_row_weights(batch, negative);
    if (mode_update) {
      // From pageable memory the call returns once `packed` is staged, so
      // the caller may refill it for the next update.
      MARBM_CUDA_TRY(cudaMemcpyAsync(packed_.data(), packed.data(), sizeof(float) * packed.size(),
                                     cudaMemcpyHostToDevice, s));
    }
    const std::size_t rows = static_cast<std::size_t>(batch) + negative;
    const std::size_t v_stride = stacked_rows() * n_, h_stride = stacked_rows() * m_;
    const std::size_t field_stride = static_cast<std::size_t>(std::max(batch_, negative_)) * std::max(n_, m_);
    const std::size_t sample_stride = static_cast<std::size_t>(std::max(batch_, negative_)) * m_;
    float* v_data = stacked_visible_.data();
    float* v_negative = v_data + static_cast<std::size_t>(batch) * n_;
    float* h_data = stacked_hidden_.data();
    float* h_negative = h_data + static_cast<std::size_t>(batch) * m_;
    const std::uint64_t random = random_stream(RandomPurpose::gibbs, static_cast<std::uint64_t>(t));
    const bool cd = !persistent_;

    gather_members_kernel<<<grid_for(static_cast<std::size_t>(members_) * batch * n_), kThreads, 0, s>>>(
        data_.data(), batch_rows_.data(), members_, batch, n_, v_data, v_stride);
    MARBM_CUDA_CHECK_LAST();
    hidden_fields(v_data, v_stride, batch, fields_.data(), field_stride);
    {
      MemberLayer layer = hidden_layer(fields_.data(), field_stride, batch);
      layer.samples = cd ? hidden_samples_.data() : nullptr;
      layer.samples_stride = sample_stride;
      layer.probabilities = h_data;
      layer.probabilities_stride = h_stride;
      layer.scale = 1.0f / static_cast<float>(batch);
      layer.store_samples_as_probabilities = config_.sample_positive_hidden;
      sample(layer, random, 0);
    }
    if (cd) {
      run_chain(v_negative, h_negative, batch, random, 0);
    } else {
      // Chains into the negative rows (one strided copy), h_0 in half-sweep 1.
      MARBM_CUDA_TRY(cudaMemcpy2DAsync(v_negative, sizeof(float) * v_stride, chains_.data(),
                                       sizeof(float) * negative_ * n_, sizeof(float) * negative_ * n_, members_,
                                       cudaMemcpyDeviceToDevice, s));
      hidden_fields(v_negative, v_stride, negative_, fields_.data(), field_stride);
      MemberLayer layer = hidden_layer(fields_.data(), field_stride, negative_);
      layer.samples = hidden_samples_.data();
      layer.samples_stride = sample_stride;
      sample(layer, random, 1);
      run_chain(v_negative, h_negative, negative_, random, 1);
      const std::size_t chain_size = static_cast<std::size_t>(negative_) * n_;
      store_chains_kernel<<<grid_for(chain_size * members_), kThreads, 0, s>>>(
          v_data, v_stride, static_cast<std::size_t>(batch) * n_, chains_.data(), chain_size, members_,
          mode_update ? packed_.data() : nullptr, pack_size());
      MARBM_CUDA_CHECK_LAST();
    }
    const float* row_weights = row_weights_.data();
    if (mode_update) {
      MARBM_CUDA_TRY(cudaMemcpyAsync(mode_row_weights_.data(), row_weights_.data(), sizeof(float) * row_weights_.size(),
                                     cudaMemcpyDeviceToDevice, s));
      mode_rows_kernel<<<members_, kThreads, 0, s>>>(packed_.data(), n_, m_, batch, negative, stacked_rows(), v_data,
                                                     h_data, mode_row_weights_.data());
      MARBM_CUDA_CHECK_LAST();
      row_weights = mode_row_weights_.data();
    }

    // dW = V^T H, da = V^T w, db = H^T 1 over each member's stacked rows.
    const int r = static_cast<int>(rows);
    const float one = 1.0f, zero = 0.0f;
    const std::size_t e = members_;
    float* gradient_weights = gradient_.data();
    float* gradient_visible = gradient_weights + e * weight_count();
    float* gradient_hidden = gradient_visible + e * n_;
    MARBM_CUBLAS_TRY(cublasSgemmStridedBatched(resources_.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, m_, n_, r, &one, h_data,
                                               m_, h_stride, v_data, n_, v_stride, &zero, gradient_weights, m_,
                                               weight_count(), members_));
    // The bias gradients as the engine's GEMVs, batched over the members.
    MARBM_CUBLAS_TRY(cublasSgemvStridedBatched(resources_.cublas(), CUBLAS_OP_N, n_, r, &one, v_data, n_, v_stride,
                                               row_weights, 1, stacked_rows(), &zero, gradient_visible, 1, n_,
                                               members_));
    MARBM_CUBLAS_TRY(cublasSgemvStridedBatched(resources_.cublas(), CUBLAS_OP_N, m_, r, &one, h_data, m_, h_stride,
                                               ones_.data(), 1, stacked_rows(), &zero, gradient_hidden, 1, m_,
                                               members_));
    const auto momentum = static_cast<float>(config_.momentum);
    const auto decay = static_cast<float>(config_.weight_decay);
    if (mode_update) {
      update_members_kernel<<<grid_for(e * parameter_count()), kThreads, 0, s>>>(
          parameters_.data(), velocity_.data(), gradient_.data(), members_, n_, m_, packed_.data(), pack_size(),
          momentum, decay);
      MARBM_CUDA_CHECK_LAST();
    } else {
      apply_update(parameters_.data(), velocity_.data(), gradient_.data(), e * parameter_count(), e * weight_count(),
                   static_cast<float>(config_.learning_rate), momentum, decay, s);
    }
  }

 private:
  struct StagingSlot {
    PinnedBuffer<int> values;
    Event copied;
  };
  static constexpr int kStagingSlots = 8;

  cudaStream_t stream() const { return resources_.stream(); }

  // Row weights of the stacked rows: 1/B for the data, -1/P for the negative
  // rows (zero beyond them). Changes only around a short last batch.
  void set_row_weights(int batch, int negative) {
    const std::size_t rows = stacked_rows();
    std::vector<float> weights(static_cast<std::size_t>(members_) * rows, 0.0f);
    for (std::size_t k = 0; k < static_cast<std::size_t>(members_); ++k)
      for (std::size_t r = 0; r < static_cast<std::size_t>(batch) + negative; ++r)
        weights[k * rows + r] = r < static_cast<std::size_t>(batch) ? 1.0f / static_cast<float>(batch)
                                                                     : -1.0f / static_cast<float>(negative);
    row_weights_.copy_from_host(weights);
    resources_.synchronize();  // `weights` goes out of scope
    weights_batch_ = batch;
  }

  std::size_t weight_count() const { return static_cast<std::size_t>(n_) * m_; }
  std::size_t parameter_count() const { return weight_count() + n_ + m_; }
  std::size_t stacked_rows() const { return static_cast<std::size_t>(batch_) + negative_; }
  const float* all_visible_bias() const { return parameters_.data() + members_ * weight_count(); }
  const float* all_hidden_bias() const { return all_visible_bias() + static_cast<std::size_t>(members_) * n_; }

  MemberLayer hidden_layer(const float* fields, std::size_t stride, int rows) const {
    MemberLayer layer;
    layer.pre_activation = fields;
    layer.pre_activation_stride = stride;
    layer.bias = all_hidden_bias();
    layer.rows = rows;
    layer.width = m_;
    return layer;
  }
  MemberLayer visible_layer(const float* fields, std::size_t stride, int rows) const {
    MemberLayer layer;
    layer.pre_activation = fields;
    layer.pre_activation_stride = stride;
    layer.bias = all_visible_bias();
    layer.rows = rows;
    layer.width = n_;
    return layer;
  }

  void sample(const MemberLayer& layer, std::uint64_t random, std::uint64_t half_sweep) {
    const std::size_t groups = static_cast<std::size_t>(members_) * layer.rows * (gibbs_random_stride(layer.width) / 4);
    sample_members_kernel<<<grid_for(groups), kThreads, 0, stream()>>>(layer, members_, seeds_.data(), random,
                                                                        half_sweep);
    MARBM_CUDA_CHECK_LAST();
  }

  // X_e (rows x m) = V_e (rows x n) W_e for every member.
  void hidden_fields(const float* v, std::size_t v_stride, int rows, float* x, std::size_t x_stride) {
    const float one = 1.0f, zero = 0.0f;
    MARBM_CUBLAS_TRY(cublasSgemmStridedBatched(resources_.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, m_, rows, n_, &one,
                                               parameters_.data(), m_, weight_count(), v, n_, v_stride, &zero, x, m_,
                                               x_stride, members_));
  }
  // X_e (rows x n) = H_e (rows x m) W_e^T for every member.
  void visible_fields(const float* h, std::size_t h_stride, int rows, float* x, std::size_t x_stride) {
    const float one = 1.0f, zero = 0.0f;
    MARBM_CUBLAS_TRY(cublasSgemmStridedBatched(resources_.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, n_, rows, m_, &one,
                                               parameters_.data(), m_, weight_count(), h, m_, h_stride, &zero, x, n_,
                                               x_stride, members_));
  }

  // The engine's run_chain over all members: k sweeps from hidden_samples_
  // (h_0); v_s in half-sweep 2s - 1 + offset, h_s in 2s + offset; the last
  // leaves v_k in `v` and -p(h|v_k) / rows in `h_scaled`.
  void run_chain(float* v, float* h_scaled, int rows, std::uint64_t random, int offset) {
    const std::size_t v_stride = stacked_rows() * n_, h_stride = stacked_rows() * m_;
    const std::size_t field_stride = static_cast<std::size_t>(std::max(batch_, negative_)) * std::max(n_, m_);
    const std::size_t sample_stride = static_cast<std::size_t>(std::max(batch_, negative_)) * m_;
    const int steps = config_.gibbs_steps;
    for (int s = 1; s <= steps; ++s) {
      visible_fields(hidden_samples_.data(), sample_stride, rows, fields_.data(), field_stride);
      MemberLayer visible = visible_layer(fields_.data(), field_stride, rows);
      visible.samples = v;
      visible.samples_stride = v_stride;
      sample(visible, random, static_cast<std::uint64_t>(2 * s - 1 + offset));
      hidden_fields(v, v_stride, rows, fields_.data(), field_stride);
      MemberLayer hidden = hidden_layer(fields_.data(), field_stride, rows);
      if (s < steps) {
        hidden.samples = hidden_samples_.data();
        hidden.samples_stride = sample_stride;
      } else {
        hidden.probabilities = h_scaled;
        hidden.probabilities_stride = h_stride;
        hidden.scale = -1.0f / static_cast<float>(rows);
      }
      sample(hidden, random, static_cast<std::uint64_t>(2 * s + offset));
    }
  }

  Resources& resources_;
  int members_;
  int n_;
  int m_;
  int batch_;
  bool persistent_;
  int negative_;
  TrainConfig config_;
  DeviceBuffer<float> parameters_;
  DeviceBuffer<float> velocity_;
  DeviceBuffer<float> gradient_;
  DeviceBuffer<std::uint8_t> data_;
  DeviceBuffer<std::uint64_t> seeds_;
  DeviceBuffer<float> stacked_visible_;
  DeviceBuffer<float> stacked_hidden_;
  DeviceBuffer<float> fields_;
  DeviceBuffer<float> hidden_samples_;
  DeviceBuffer<int> batch_rows_;
  DeviceBuffer<float> row_weights_;
  DeviceBuffer<float> mode_row_weights_;
  DeviceBuffer<float> ones_;
  DeviceBuffer<float> packed_;
  DeviceBuffer<float> chains_;
  StagingSlot staging_[kStagingSlots];
  int next_slot_ = 0;
  int weights_batch_ = -1;
};

}  // namespace

std::vector<TrainResult> train_ensemble_batched(const Dataset& data, const std::vector<Rbm>& initial,
                                                const std::vector<std::uint64_t>& seeds, const TrainConfig& config,
                                                const EnsembleMetricsCallback& on_metrics) {
  check_inputs(data, config);
  const long total = total_iterations(config, data.n_rows);
  const int members = static_cast<int>(initial.size());
  const int n = initial.front().n_visible(), m = initial.front().n_hidden();
  const bool exact_metrics = config.exact_metrics && exact_enumerable(initial.front(), config.exact);

  Resources& resources = thread_resources(config.device);
  BatchedEnsemble ensemble(resources, data, initial, seeds, config);
  const int batch = ensemble.batch();

  std::vector<BatchSchedule> schedules;
  std::vector<std::optional<ModeAssist>> assists(members);
  std::vector<MemberView> views;
  for (int e = 0; e < members; ++e) {
    schedules.emplace_back(data.n_rows, batch, seeds[e]);
    if (config.method == TrainMethod::mode) {
      TrainConfig member_config = config;
      member_config.seed = seeds[e];
      assists[e].emplace(member_config, n, m, total);
    }
    views.emplace_back(resources, ensemble.weights(e), ensemble.visible_bias(e), ensemble.hidden_bias(e), n, m);
  }

  std::vector<TrainResult> results(members);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto report = [&](long t) {
    std::vector<Rbm> models;
    if (exact_metrics) models = ensemble.models();
    for (int e = 0; e < members; ++e) {
      TrainMetrics metrics;
      metrics.iteration = t;
      if (exact_metrics) {
        const double log_z = views[e].log_partition_exact(config.exact);
        metrics.log_z = log_z;
        metrics.kl = kl_divergence(models[e], data, log_z);
        metrics.mean_log_likelihood = mean_log_likelihood(models[e], data, log_z);
      }
      if (assists[e]) {
        metrics.p_mode = assists[e]->probability(t);
        metrics.mode_steps = assists[e]->steps_taken();
        if (assists[e]->steps_taken() > 0) {
          metrics.mode_push = assists[e]->last_push();
          metrics.mode_energy = assists[e]->last_energy();
        }
      }
      metrics.seconds = elapsed();
      results[e].history.push_back(metrics);
      if (on_metrics) on_metrics(e, results[e].history.back());
    }
  };
  auto due = [&](long t) { return t == 0 || t == total || (config.eval_every > 0 && t % config.eval_every == 0); };

  // When one batch covers the data set every member uses all rows in order,
  // every update: one transfer at the start.
  const bool fixed_rows = batch >= data.n_rows;
  std::vector<int> rows(static_cast<std::size_t>(members) * batch);
  const std::size_t pack = ensemble.pack_size();
  std::vector<float> packed;
  if (fixed_rows) {
    for (int e = 0; e < members; ++e) std::iota(rows.begin() + static_cast<std::size_t>(e) * batch,
                                                rows.begin() + static_cast<std::size_t>(e + 1) * batch, 0);
    ensemble.set_batch_rows(rows);
  }

  // Mode steps: MARBM_ENSEMBLE_MODE_SEARCH=per-member searches each flagged
  // member through its own view, one after another (as before the batched
  // search; kept for comparison and diagnosis).
  const bool per_member_search = ensemble_mode_search_per_member(std::getenv("MARBM_ENSEMBLE_MODE_SEARCH"));
  const MemberParameters parameters{ensemble.weights(0), static_cast<std::size_t>(n) * m, ensemble.visible_bias(0),
                                    static_cast<std::size_t>(n), ensemble.hidden_bias(0), static_cast<std::size_t>(m)};
  std::vector<UpdateStep> mode_steps(members);
  std::vector<int> searched;
  auto pack_mode_step = [&](int e, const UpdateStep& step) {
    float* mine = packed.data() + static_cast<std::size_t>(e) * pack;
    mine[0] = 1.0f;
    mine[1] = static_cast<float>(step.learning_rate);
    for (int i = 0; i < n; ++i) mine[2 + i] = step.mode_visible[i] ? 1.0f : 0.0f;
    for (int j = 0; j < m; ++j) mine[2 + n + j] = step.mode_hidden[j] ? 1.0f : 0.0f;
  };

  report(0);
  int count = batch;
  for (long t = 0; t < total; ++t) {
    if (!fixed_rows) {
      for (int e = 0; e < members; ++e) {
        // Every member's schedule has the same shape (rows, batch): the
        // same count at update t.
        const std::span<const int> mine = schedules[e].rows_of(t);
        count = static_cast<int>(mine.size());
        std::copy(mine.begin(), mine.end(), rows.begin() + static_cast<std::size_t>(e) * count);
      }
      ensemble.set_batch_rows(std::span<const int>(rows.data(), static_cast<std::size_t>(members) * count));
    }
    packed.clear();
    searched.clear();
    for (int e = 0; e < members; ++e) {
      if (!assists[e] || !assists[e]->is_mode_step(t)) continue;
      if (packed.empty()) {
        packed.assign(static_cast<std::size_t>(members) * pack, 0.0f);
        for (int k = 0; k < members; ++k) packed[k * pack + 1] = static_cast<float>(config.learning_rate);
      }
      UpdateStep& step = mode_steps[e];
      step = UpdateStep{};
      step.learning_rate = config.learning_rate;
      if (!per_member_search &&
          batched_mode_search_covers(assists[e]->search_config(), assists[e]->needs_search())) {
        // Searched below with the other flagged members, in one launch.
        assists[e]->begin_mode_step(views[e], step, t);
        searched.push_back(e);
        continue;
      }
      // The local search (on the host, one or several states), SB and SA,
      // the marginal target without a search, or MARBM_ENSEMBLE_MODE_SEARCH
      // =per-member: one member after another, each through its view.
      assists[e]->prepare_mode_step(views[e], step, t);
      pack_mode_step(e, step);
    }
    if (!searched.empty()) {
      // The members' exhaustive searches in one launch per stage; each
      // result is bit for bit the member's own search with the per-warp
      // kernel (MARBM_EXHAUSTIVE_KERNEL=warp; by default a member's own
      // search enumerates up to 64 units per thread, the same state up to
      // ties within rounding), as the exhaustive solver ignores the seed and
      // warm start, the only fields in which the members' search
      // configurations differ; then the host part of each
      // mode step with E_bar from each member's view (on the device, as
      // the per-member path takes it) and, only where a member needs them
      // on the host, the parameters copied once for all members.
      ModeSearchConfig search = assists[searched.front()]->search_config();
      search.backend = Backend::cuda;  // as MemberView::find_mode sets it
      const std::vector<ModeResult> found = find_modes_exhaustive_batched(resources, parameters, n, m, searched, search);
      const bool copy = std::any_of(searched.begin(), searched.end(), [&](int e) { return assists[e]->needs_model(); });
      const std::vector<Rbm> models = copy ? ensemble.models() : std::vector<Rbm>{};
      for (std::size_t q = 0; q < searched.size(); ++q) {
        const int e = searched[q];
        assists[e]->finish_mode_step(copy ? &models[e] : nullptr, views[e].uniform_mean_energy(), &found[q],
                                     mode_steps[e]);
        pack_mode_step(e, mode_steps[e]);
      }
    }
    ensemble.update(t, count, packed);
    if (due(t + 1)) report(t + 1);
  }

  const std::vector<Rbm> models = ensemble.models();
  const double seconds = elapsed();
  auto finite = [](std::span<const float> values) {
    return std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); });
  };
  for (int e = 0; e < members; ++e) {
    results[e].model = models[e];
    MARBM_EXPECTS(finite(results[e].model.weights()) && finite(results[e].model.visible_bias()) &&
                      finite(results[e].model.hidden_bias()),
                  RuntimeFailure,
                  "train_ensemble: member " + std::to_string(e) + "'s parameters became non-finite after " +
                      std::to_string(total) + " updates (the run diverged; lower the learning rate)");
    results[e].mode_steps = assists[e] ? assists[e]->steps_taken() : 0;
    results[e].seconds = seconds;
  }
  return results;
}

}  // namespace marbm::detail
