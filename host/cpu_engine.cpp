// The CPU engine: the reference implementation of Engine (OpenBLAS sgemm for
// the matrix products of large layers, plain loops for tiny models, OpenMP for
// the elementwise sigmoid/Bernoulli work).
//
// Random numbers. Every Bernoulli draw of a block-Gibbs half-sweep reads the
// Philox word at
//     index = half_sweep * 2^40 + row * stride + unit,   stride = layer width rounded up to 4,
// of the stream (seed, random_stream(gibbs, step)), so a draw depends only on
// (row, unit, half-sweep), never on the thread that makes it, and each row
// starts on a fresh Philox block. Half-sweeps are numbered per update:
//   cd:  h_s sampled in half-sweep 2s, v_{s+1} in 2s + 1 (s = 0..k-1); a sampled
//        positive-phase h is h_0 (half-sweep 0), the same draw the chain uses;
//   pcd: a sampled positive-phase h uses half-sweep 0; the chains sample h in
//        2s + 1 and v in 2s + 2;
//   gibbs_chain: as cd, on the stream named by its `stream` argument.
// Persistent chains start uniform: bit 31 of the word at row * stride + unit of
// (seed, random_stream(persistent_chains, 0)).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "detail/blas.hpp"
#include "detail/cpu_elementwise.hpp"
#include "detail/cpu_engine.hpp"
#include "detail/fast_math.hpp"
#include "detail/gibbs_steps.hpp"
#include "detail/mode_states.hpp"
#include "detail/tiny_engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/mode.hpp"
#include "marbm/random.hpp"

namespace marbm::detail {
namespace {

// A matrix product runs as plain loops unless it has this many multiply-adds
// and the weight matrix this many entries: for tiny models (6 x 6, batch 6, or
// 5 x 4 with thousands of chains) a BLAS call's dispatch and packing cost more
// than the arithmetic.
constexpr long blas_threshold = 16 * 1024;
constexpr long blas_min_weights = 512;
// Elementwise work on fewer elements than this stays on the calling thread:
// a fork/join costs microseconds on an idle machine but up to a scheduler
// time slice when the cores are shared, while 128k sigmoid + Philox draws take
// ~0.5 ms. (A lower threshold for large models, 32k, made a 784 x 500 CD-1
// update 15x slower on a loaded machine: OpenMP workers and OpenBLAS's
// spinning pthreads then compete for the same cores.)
constexpr long parallel_threshold = 128 * 1024;
// Half-sweeps occupy the high bits of the Philox index (see the file comment).
constexpr int half_sweep_shift = 40;
// A BLAS-sized half-sweep runs as tiles of up to tile_rows rows by a block of
// columns: the tile's product (single-threaded sgemm), then its bias-added
// fields go through the logistic and the draws in one pass while the tile is
// in cache. Tiles are fixed by the shape alone, so the bits of the result do
// not depend on which thread computes a tile, and they run on the engine's
// threads when the half-sweep has at least parallel_tile_work multiply-adds
// (784 x 500 at batch 100 has 39 million).
constexpr int tile_rows = 128;
constexpr long parallel_tile_work = 4L * 1024 * 1024;
// The weight gradient v0^T p0 - v1^T p1 runs in four blocks of rows of the
// gradient (visible units; a multiple of 8 rows each), each block's update of
// W following at once while the block is in cache.
constexpr int weight_blocks = 4;

int round_up4(int x) { return (x + 3) & ~3; }

// The logistic of the plain-loop path for tiny models.
float logistic_libm(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Width of a tile's column block for an output layer of `width` units: the
// whole layer below 256 units, else an even number of blocks of 128 to 256
// columns (multiples of 4: each block starts a Philox block), so that two
// threads get equal shares while each sgemm call stays large (every call packs
// its rows of the input again).
int column_block_width(int width) {
  if (width < 256) return width;
  const int blocks = 2 * ((width + 511) / 512);
  return round_up4((width + blocks - 1) / blocks);
}

// out[k] += scale * x[r][k] for rows r in order: float64 sums of the bias
// gradients. Vectorised across k, so the order of each sum stays the rows'.
MARBM_VECTOR_CLONES
void add_scaled_rows(const float* __restrict x, int rows, int width, double scale, double* __restrict out) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<std::size_t>(r) * width;
    for (int k = 0; k < width; ++k) out[k] += scale * xr[k];
  }
}

// velocity = momentum velocity + lr (grad - decay W), W += velocity.
MARBM_VECTOR_CLONES
void momentum_step(float* __restrict w, float* __restrict velocity, const float* __restrict g, std::size_t count,
                   float lr, float momentum, float decay) {
  for (std::size_t k = 0; k < count; ++k) {
    velocity[k] = momentum * velocity[k] + lr * (g[k] - decay * w[k]);
    w[k] += velocity[k];
  }
}

std::string str(long long x) { return std::to_string(x); }

// Bernoulli draws of one half-sweep: state = [u < p] with u the Philox
// uniform of (row, unit, half_sweep). `row_offset`: the rows are rows
// row_offset.. of the whole batch (a block of a data-parallel step) and
// draw those rows' numbers.
struct Draws {
  const PhiloxStream* random = nullptr;  // null: no draws
  std::uint64_t half_sweep = 0;
  int row_offset = 0;
  float* state = nullptr;  // rows x width
};

// Sets the calling thread's OpenMP team size for one call and restores it:
// exact enumeration and the mode solvers open their own parallel regions,
// which would otherwise use the process default, not the engine's threads.
class OmpThreadScope {
 public:
  explicit OmpThreadScope(int threads) : saved_(omp_get_max_threads()), active_(threads > 0) {
    if (active_) omp_set_num_threads(threads);
  }
  ~OmpThreadScope() {
    if (active_) omp_set_num_threads(saved_);
  }
  OmpThreadScope(const OmpThreadScope&) = delete;
  OmpThreadScope& operator=(const OmpThreadScope&) = delete;

 private:
  int saved_;
  bool active_;
};

class CpuEngine final : public Engine, public BlockwiseGradientEngine {
 public:
  CpuEngine(const EngineOptions& options, bool tiny_path) : threads_(options.threads), tiny_path_(tiny_path) {
    MARBM_EXPECTS(options.threads >= 0, UsageError,
                  "engine threads must be >= 0 (0 keeps the default), got " + str(options.threads));
  }

  Backend backend() const override { return Backend::cpu; }

  std::string description() const override {
    return "cpu (" + str(thread_count()) + (thread_count() == 1 ? " thread" : " threads") + ", OpenBLAS)";
  }

  void set_model(const Rbm& rbm) override {
    MARBM_EXPECTS(rbm.n_visible() >= 1 && rbm.n_hidden() >= 1, UsageError,
                  "set_model: the model has no units (default-constructed Rbm)");
    rbm.check_finite("set_model");
    rbm_ = rbm;
    n_ = rbm.n_visible();
    m_ = rbm.n_hidden();
    weight_velocity_.assign(static_cast<std::size_t>(n_) * m_, 0.0f);
    visible_velocity_.assign(n_, 0.0f);
    hidden_velocity_.assign(m_, 0.0f);
    weight_gradient_.assign(static_cast<std::size_t>(n_) * m_, 0.0f);
    visible_gradient_.assign(n_, 0.0);
    hidden_gradient_.assign(m_, 0.0);
    if (chains_.size() != static_cast<std::size_t>(chain_count_) * n_) {
      // Chains of another width cannot continue under this model.
      chains_.clear();
      chain_count_ = 0;
    }
  }

  std::vector<std::uint8_t> persistent_chain_states() const override {
    std::vector<std::uint8_t> states(chains_.size());
    for (std::size_t k = 0; k < chains_.size(); ++k) states[k] = chains_[k] > 0.5f ? 1 : 0;
    return states;
  }

  Rbm model() const override {
    require_model("model");
    return rbm_;
  }

  ResidentParameters resident_parameters() const override {
    require_model("resident_parameters");
    ResidentParameters p;
    p.weights = rbm_.weights().data();
    p.visible_bias = rbm_.visible_bias().data();
    p.hidden_bias = rbm_.hidden_bias().data();
    p.n_visible = n_;
    p.n_hidden = m_;
    p.weights_row_stride = m_;
    p.backend = Backend::cpu;
    return p;
  }

  double uniform_mean_energy() const override {
    require_model("uniform_mean_energy");
    return rbm_.uniform_mean_energy();
  }

  OptimizerState optimizer_state() const override {
    require_model("optimizer_state");
    return {weight_velocity_, visible_velocity_, hidden_velocity_};
  }

  void set_optimizer_state(const OptimizerState& state) override {
    require_model("set_optimizer_state");
    MARBM_EXPECTS(state.weights.size() == weight_velocity_.size() && state.visible_bias.size() == visible_velocity_.size() &&
                      state.hidden_bias.size() == hidden_velocity_.size(),
                  UsageError, "set_optimizer_state: the velocity does not match the " + str(n_) + " x " + str(m_) + " model");
    weight_velocity_ = state.weights;
    visible_velocity_ = state.visible_bias;
    hidden_velocity_ = state.hidden_bias;
  }

  void set_persistent_chain_states(std::span<const std::uint8_t> states, int count) override {
    require_model("set_persistent_chain_states");
    MARBM_EXPECTS(count >= 1 && states.size() == static_cast<std::size_t>(count) * n_, UsageError,
                  "set_persistent_chain_states: expected " + str(count) + " rows of " + str(n_) + " values, got " +
                      str(static_cast<long long>(states.size())) + " values");
    chains_.resize(states.size());
    for (std::size_t k = 0; k < states.size(); ++k) {
      MARBM_EXPECTS(states[k] <= 1, UsageError, "set_persistent_chain_states: a chain value is not 0 or 1");
      chains_[k] = static_cast<float>(states[k]);
    }
    chain_count_ = count;
  }

  void set_data(const Dataset& data) override {
    MARBM_EXPECTS(n_ == 0 || data.n_cols == n_, UsageError,
                  "set_data: the data set has " + str(data.n_cols) + " columns, the model has " + str(n_) +
                      " visible units");
    MARBM_EXPECTS(data.n_rows >= 1, UsageError, "set_data: the data set has no rows");
    MARBM_EXPECTS(data.values.size() == static_cast<std::size_t>(data.n_rows) * data.n_cols, DataError,
                  "set_data: the data set holds " + str(static_cast<long long>(data.values.size())) +
                      " values, expected rows x columns = " + str(static_cast<long long>(data.n_rows) * data.n_cols));
    data_.resize(data.values.size());
    for (std::size_t k = 0; k < data.values.size(); ++k) {
      const std::uint8_t x = data.values[k];
      MARBM_EXPECTS(x <= 1, DataError,
                    "set_data: value " + str(x) + " at row " + str(static_cast<long long>(k / data.n_cols)) +
                        ", column " + str(static_cast<long long>(k % data.n_cols)) + " is not 0 or 1");
      data_[k] = x;
    }
    data_rows_ = data.n_rows;
    data_cols_ = data.n_cols;
  }

  void reset_persistent_chains(int count, std::uint64_t seed) override {
    require_model("reset_persistent_chains");
    MARBM_EXPECTS(count >= 1, UsageError, "persistent chain count must be >= 1, got " + str(count));
    start_chains(count, 0, seed);
  }

  void reset_chain_share(int total, int first, int last, std::uint64_t seed) override {
    require_model("reset_chain_share");
    MARBM_EXPECTS(total >= 1 && first >= 0 && first <= last && last <= total, UsageError,
                  "reset_chain_share: chains [" + str(first) + ", " + str(last) + ") of " + str(total));
    chain_total_ = total;
    chain_first_ = first;
    start_chains(last - first, first, seed);
  }

  std::vector<std::uint8_t> chain_share_states() const override { return persistent_chain_states(); }

  void set_chain_share(int total, int first, std::span<const std::uint8_t> states) override {
    require_model("set_chain_share");
    const int count = static_cast<int>(states.size() / static_cast<std::size_t>(n_));
    MARBM_EXPECTS(states.size() == static_cast<std::size_t>(count) * n_ && first >= 0 && first + count <= total,
                  UsageError, "set_chain_share: chains [" + str(first) + ", " + str(first + count) + ") of " + str(total));
    if (count > 0) {
      set_persistent_chain_states(states, count);
    } else {
      chains_.clear();
      chain_count_ = 0;
    }
    chain_total_ = total;
    chain_first_ = first;
  }

  // Chains first.. first + count - 1 of the population.
  void start_chains(int count, int first, std::uint64_t seed) {
    const PhiloxStream stream(seed, random_stream(RandomPurpose::persistent_chains, 0));
    const int stride = round_up4(n_);
    chain_count_ = count;
    chains_.resize(static_cast<std::size_t>(count) * n_);
    float* chains = chains_.data();
    const int n = n_;
    parallel_for(count, static_cast<long>(count) * n >= parallel_threshold, [&](int r) {
      const std::uint64_t base = static_cast<std::uint64_t>(r + first) * stride;
      for (int i = 0; i < n; i += 4) {
        const auto words = stream.block((base + i) >> 2);
        for (int q = 0; q < 4 && i + q < n; ++q) chains[static_cast<std::size_t>(r) * n + i + q] = static_cast<float>(words[q] >> 31);
      }
    });
  }

  Gradient gradient(const UpdateStep& step) override {
    compute_gradient(step, false);
    Gradient g;
    g.weights.assign(weight_gradient_.begin(), weight_gradient_.end());
    g.visible_bias = visible_gradient_;
    g.hidden_bias = hidden_gradient_;
    return g;
  }

  void update(const UpdateStep& step) override {
    if (tiny_path_ && tiny_model(n_, m_) && step.negative != NegativePhase::exact) {
      // Tiny models: the same update, computed without the general path's
      // overheads (detail/tiny_engine.hpp).
      validate_step(step);
      if (step.negative == NegativePhase::pcd && chain_count_ == 0)
        reset_persistent_chains(static_cast<int>(step.batch_rows.size()), step.seed);
      tiny_.update({n_, m_, rbm_.weights().data(), rbm_.visible_bias().data(), rbm_.hidden_bias().data(),
                    weight_velocity_.data(), visible_velocity_.data(), hidden_velocity_.data(), data_.data(),
                    chains_.data(), chain_count_},
                   step);
      return;
    }
    const bool weights_updated = compute_gradient(step, true);
    apply_update(step, weights_updated);
  }

  std::vector<float> hidden_probabilities(std::span<const std::uint8_t> visible, int batch) override {
    require_model("hidden_probabilities");
    const std::vector<float> v = visible_rows(visible, batch, "hidden_probabilities");
    std::vector<float> p(static_cast<std::size_t>(batch) * m_);
    hidden_given_visible(v.data(), batch, p.data());
    return p;
  }

  std::vector<std::uint8_t> gibbs_chain(std::span<const std::uint8_t> visible, int batch, int steps,
                                        std::uint64_t seed, std::uint64_t stream) override {
    require_model("gibbs_chain");
    check_gibbs_steps(steps, "gibbs_chain");
    std::vector<float> v = visible_rows(visible, batch, "gibbs_chain");
    const PhiloxStream random(seed, random_stream(RandomPurpose::gibbs, stream));
    std::vector<float> hp(static_cast<std::size_t>(batch) * m_), h(hp.size()), vp(v.size());
    for (int s = 0; s < steps; ++s) {
      hidden_given_visible(v.data(), batch, hp.data(), {&random, 2 * static_cast<std::uint64_t>(s), 0, h.data()}, false);
      visible_given_hidden(h.data(), batch, vp.data(), {&random, 2 * static_cast<std::uint64_t>(s) + 1, 0, v.data()},
                           false);
    }
    std::vector<std::uint8_t> out(v.size());
    for (std::size_t k = 0; k < v.size(); ++k) out[k] = v[k] != 0.0f ? 1 : 0;
    return out;
  }

  double log_partition_exact(const ExactOptions& options) override {
    require_model("log_partition_exact");
    const OmpThreadScope scope(threads_);
    return marbm::log_partition_exact(rbm_, options);
  }

  ModeResult find_mode(const ModeSearchConfig& config) override {
    require_model("find_mode");
    ModeSearchConfig cpu_config = config;
    cpu_config.backend = Backend::cpu;
    const OmpThreadScope scope(threads_);
    return marbm::find_mode(rbm_, cpu_config);
  }

 private:
  int thread_count() const { return threads_ > 0 ? threads_ : omp_get_max_threads(); }

  // body(i) for i in [0, count): on an OpenMP team when `parallel` holds and
  // more than one thread is allowed, else inline. Small work never enters an
  // OpenMP region at all: even a serialized one costs a team setup.
  template <typename Index, typename Body>
  void parallel_for(Index count, bool parallel, const Body& body) const {
    const int threads = parallel ? thread_count() : 1;
    if (threads > 1) {
#pragma omp parallel for num_threads(threads)
      for (Index i = 0; i < count; ++i) body(i);
    } else {
      for (Index i = 0; i < count; ++i) body(i);
    }
  }

  // body(t) for every tile t in [0, tiles): on the engine's threads, tiles
  // handed out in turn, when `parallel` holds; else in order on this thread.
  template <typename Body>
  void parallel_tiles(int tiles, bool parallel, const Body& body) const {
    const int threads = parallel ? std::min(thread_count(), tiles) : 1;
    if (threads > 1) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
      for (int t = 0; t < tiles; ++t) body(t);
    } else {
      for (int t = 0; t < tiles; ++t) body(t);
    }
  }

  void require_model(const char* what) const {
    MARBM_EXPECTS(n_ > 0, UsageError, std::string(what) + ": the engine has no model (call set_model first)");
  }

  // Checks a batch of visible states and converts it to float rows.
  std::vector<float> visible_rows(std::span<const std::uint8_t> visible, int batch, const char* what) const {
    MARBM_EXPECTS(batch >= 1, UsageError, std::string(what) + ": batch must be >= 1, got " + str(batch));
    MARBM_EXPECTS(visible.size() == static_cast<std::size_t>(batch) * n_, UsageError,
                  std::string(what) + ": " + str(static_cast<long long>(visible.size())) +
                      " visible values given, expected batch x n = " + str(batch) + " x " + str(n_));
    std::vector<float> v(visible.size());
    for (std::size_t k = 0; k < visible.size(); ++k) {
      MARBM_EXPECTS(visible[k] <= 1, UsageError,
                    std::string(what) + ": visible value " + str(visible[k]) + " at position " +
                        str(static_cast<long long>(k)) + " is not 0 or 1");
      v[k] = visible[k];
    }
    return v;
  }

  // out (rows x m) = sigmoid(v W + b) for v rows x n; with draws, draws.state
  // = Bernoulli(out). keep = false: out is scratch (p is not stored).
  void hidden_given_visible(const float* v, int rows, float* out, const Draws& draws = {}, bool keep = true) const {
    conditional(true, v, rows, out, draws, keep);
  }

  // out (rows x n) = sigmoid(h W^T + a) for h rows x m; draws and keep as above.
  void visible_given_hidden(const float* h, int rows, float* out, const Draws& draws = {}, bool keep = true) const {
    conditional(false, h, rows, out, draws, keep);
  }

  void conditional(bool to_hidden, const float* in, int rows, float* out, const Draws& draws, bool keep) const {
    const float* w = rbm_.weights().data();
    const int n = n_, m = m_;
    const int width = to_hidden ? m : n;
    const int depth = to_hidden ? n : m;
    const float* bias = to_hidden ? rbm_.hidden_bias().data() : rbm_.visible_bias().data();
    const ElementwiseKernels& kernels = elementwise_kernels();
    const std::uint64_t stride = static_cast<std::uint64_t>(round_up4(width));
    const std::uint64_t offset = draws.half_sweep << half_sweep_shift;
    // Rows [r0, r1), columns [c0, c1) of out hold fields: logistic (and draws) in one pass.
    auto finish = [&](int r0, int r1, int c0, int c1) {
      for (int r = r0; r < r1; ++r) {
        float* o = out + static_cast<std::size_t>(r) * width + c0;
        if (draws.random != nullptr) {
          const std::uint64_t base = offset + static_cast<std::uint64_t>(r + draws.row_offset) * stride + c0;
          kernels.logistic_sample(o, nullptr, keep ? o : nullptr, draws.state + static_cast<std::size_t>(r) * width + c0,
                                  c1 - c0, draws.random->seed(), draws.random->stream(), base);
        } else {
          kernels.logistic(o, nullptr, o, c1 - c0);
        }
      }
    };
    const long work = static_cast<long>(rows) * n * m;
    if (work >= blas_threshold && static_cast<long>(n) * m >= blas_min_weights) {
      use_single_threaded_blas();
      const int block = column_block_width(width);
      const int column_blocks = (width + block - 1) / block;
      const int tiles = (rows + tile_rows - 1) / tile_rows * column_blocks;
      parallel_tiles(tiles, work >= parallel_tile_work, [&](int t) {
        const int r0 = t / column_blocks * tile_rows, r1 = std::min(rows, r0 + tile_rows);
        const int c0 = t % column_blocks * block, c1 = std::min(width, c0 + block);
        float* c = out + static_cast<std::size_t>(r0) * width + c0;
        for (int r = r0; r < r1; ++r) std::copy(bias + c0, bias + c1, out + static_cast<std::size_t>(r) * width + c0);
        const float* a = in + static_cast<std::size_t>(r0) * depth;
        if (to_hidden) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, c1 - c0, n, 1.0f, a, n, w + c0, m, 1.0f, c, m);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, c1 - c0, m, 1.0f, a, m,
                      w + static_cast<std::size_t>(c0) * m, m, 1.0f, c, n);
        }
        finish(r0, r1, c0, c1);
      });
      return;
    }
    parallel_for(rows, static_cast<long>(rows) * width >= parallel_threshold, [&](int r) {
      float* o = out + static_cast<std::size_t>(r) * width;
      if (to_hidden) {
        const float* vr = in + static_cast<std::size_t>(r) * n;
        std::copy(bias, bias + m, o);
        for (int i = 0; i < n; ++i) {
          if (vr[i] == 0.0f) continue;
          const float x = vr[i];
          const float* wi = w + static_cast<std::size_t>(i) * m;
          for (int j = 0; j < m; ++j) o[j] += x * wi[j];
        }
      } else {
        const float* hr = in + static_cast<std::size_t>(r) * m;
        for (int i = 0; i < n; ++i) {
          const float* wi = w + static_cast<std::size_t>(i) * m;
          float acc = bias[i];
          for (int j = 0; j < m; ++j) acc += hr[j] * wi[j];
          o[i] = acc;
        }
      }
      // Tiny models keep the C library's 1 / (1 + expf(-x)), so that their
      // trajectories (the reference study's among them) stay those they were.
      for (int k = 0; k < width; ++k) o[k] = logistic_libm(o[k]);
      if (draws.random != nullptr) {
        // Rows narrower than a vector of Philox blocks draw with the plain kernel (the same numbers).
        const ElementwiseKernels& row_kernels = width >= 32 ? kernels : baseline_elementwise_kernels();
        row_kernels.sample(o, draws.state + static_cast<std::size_t>(r) * width, width, draws.random->seed(),
                       draws.random->stream(), offset + static_cast<std::uint64_t>(r + draws.row_offset) * stride);
      }
    });
  }

  // out (n x m, float64) += scale * v^T p, rows in order; rows of v are
  // mostly 0/1, so zero entries are skipped.
  static void add_outer_product(const float* v, const float* p, int rows, int n, int m, double scale, double* out) {
    for (int r = 0; r < rows; ++r) {
      const float* vr = v + static_cast<std::size_t>(r) * n;
      const float* pr = p + static_cast<std::size_t>(r) * m;
      for (int i = 0; i < n; ++i) {
        if (vr[i] == 0.0f) continue;
        const double x = scale * vr[i];
        double* oi = out + static_cast<std::size_t>(i) * m;
        for (int j = 0; j < m; ++j) oi[j] += x * pr[j];
      }
    }
  }

  // weight_gradient_ (+)= scale * v^T p for v rows x n, p rows x m. The loop
  // path sums in float64 (weight_sum_ carries the sum across the positive and
  // negative phases); sgemm sums in float32 with blocked accumulation.
  void accumulate_outer(const float* v, const float* p, int rows, double scale, bool accumulate) {
    float* g = weight_gradient_.data();
    const int n = n_, m = m_;
    const long work = static_cast<long>(rows) * n * m;
    if (work >= blas_threshold && static_cast<long>(n) * m >= blas_min_weights) {
      partitioned_sgemm(CblasTrans, CblasNoTrans, n, m, rows, static_cast<float>(scale), v, n, p, m,
                        accumulate ? 1.0f : 0.0f, g, m, thread_count());
      weight_sum_valid_ = false;
      return;
    }
    weight_sum_.resize(weight_gradient_.size());
    double* sum = weight_sum_.data();
    if (!accumulate) {
      std::fill(weight_sum_.begin(), weight_sum_.end(), 0.0);
    } else if (!weight_sum_valid_) {
      for (std::size_t k = 0; k < weight_sum_.size(); ++k) sum[k] = g[k];
    }
    add_outer_product(v, p, rows, n, m, scale, sum);
    for (std::size_t k = 0; k < weight_sum_.size(); ++k) g[k] = static_cast<float>(sum[k]);
    weight_sum_valid_ = true;
  }

  // Bias gradients in float64: sum over rows of v and p, times scale.
  static void accumulate_mean(const float* x, int rows, int width, double scale, std::vector<double>& out) {
    add_scaled_rows(x, rows, width, scale, out.data());
  }

  void validate_step(const UpdateStep& step) const {
    require_model("update");
    MARBM_EXPECTS(data_rows_ > 0, UsageError, "update: the engine has no data (call set_data first)");
    MARBM_EXPECTS(data_cols_ == n_, UsageError,
                  "update: the data set has " + str(data_cols_) + " columns, the model has " + str(n_) +
                      " visible units");
    MARBM_EXPECTS(!step.batch_rows.empty(), UsageError, "update: the batch is empty");
    for (const int row : step.batch_rows) {
      MARBM_EXPECTS(row >= 0 && row < data_rows_, UsageError,
                    "update: batch row " + str(row) + " is outside the data set's " + str(data_rows_) + " rows");
    }
    if (step.negative == NegativePhase::cd || step.negative == NegativePhase::pcd) {
      check_gibbs_steps(step.gibbs_steps, "update");
    }
    MARBM_EXPECTS(std::isfinite(step.learning_rate) && step.learning_rate >= 0, UsageError,
                  "update: learning rate must be finite and >= 0, got " + std::to_string(step.learning_rate));
    MARBM_EXPECTS(std::isfinite(step.momentum) && step.momentum >= 0 && step.momentum < 1, UsageError,
                  "update: momentum must be in [0, 1), got " + std::to_string(step.momentum));
    MARBM_EXPECTS(std::isfinite(step.weight_decay) && step.weight_decay >= 0, UsageError,
                  "update: weight decay must be finite and >= 0, got " + std::to_string(step.weight_decay));
    if (step.negative == NegativePhase::mode) check_mode_states(step, n_, m_, "update");
  }

  // Runs k sweeps from chain (rows x n, overwritten with v_k) starting with
  // half-sweep `first_half_sweep`; leaves p(h | v_k) in chain_hidden_.
  // When `initial_hidden` is given it is h_0 (already sampled) and the chain's
  // rows are not read before the first visible half-sweep writes them.
  void run_chain(float* chain, int rows, int k, const PhiloxStream& random, std::uint64_t first_half_sweep,
                 const float* initial_hidden, int row_offset = 0) {
    const std::size_t hidden_size = static_cast<std::size_t>(rows) * m_;
    chain_hidden_.resize(hidden_size);
    chain_sample_.resize(hidden_size);
    chain_visible_prob_.resize(static_cast<std::size_t>(rows) * n_);
    for (int s = 0; s < k; ++s) {
      const std::uint64_t half = first_half_sweep + 2 * static_cast<std::uint64_t>(s);
      const float* h = initial_hidden;
      if (s > 0 || h == nullptr) {
        hidden_given_visible(chain, rows, chain_hidden_.data(), {&random, half, row_offset, chain_sample_.data()}, false);
        h = chain_sample_.data();
      }
      visible_given_hidden(h, rows, chain_visible_prob_.data(), {&random, half + 1, row_offset, chain}, false);
    }
    hidden_given_visible(chain, rows, chain_hidden_.data());
  }

  bool blas_sized(int rows) const {
    return static_cast<long>(rows) * n_ * m_ >= blas_threshold && static_cast<long>(n_) * m_ >= blas_min_weights;
  }

  // The gradient of `step` into weight_gradient_ and the bias gradients.
  // With `fuse_update`, the CD/PCD weight update may run inside the weight
  // gradient's blocks (returns true when it did; the biases are left to
  // apply_update).
  bool compute_gradient(const UpdateStep& step, bool fuse_update) {
    validate_step(step);
    const int batch = static_cast<int>(step.batch_rows.size());
    // CD and PCD with both products BLAS-sized: the weight gradient of both
    // phases at the end, in one pass of blocks.
    const bool sampled = step.negative == NegativePhase::cd || step.negative == NegativePhase::pcd;
    const int negative_rows = step.negative == NegativePhase::pcd && chain_count_ > 0 ? chain_count_ : batch;
    const bool blocked_weights = sampled && blas_sized(batch) && blas_sized(negative_rows);
    const PhiloxStream random(step.seed, random_stream(RandomPurpose::gibbs, step.step));

    // Positive phase: the batch rows and p(h | v) (or a sample of it).
    batch_visible_.resize(static_cast<std::size_t>(batch) * n_);
    for (int r = 0; r < batch; ++r) {
      const float* src = data_.data() + static_cast<std::size_t>(step.batch_rows[r]) * n_;
      std::copy(src, src + n_, batch_visible_.data() + static_cast<std::size_t>(r) * n_);
    }
    batch_hidden_.resize(static_cast<std::size_t>(batch) * m_);
    const bool need_h0 = step.sample_positive_hidden || step.negative == NegativePhase::cd;
    batch_hidden_sample_.resize(need_h0 ? batch_hidden_.size() : 0);
    hidden_given_visible(batch_visible_.data(), batch, batch_hidden_.data(),
                         need_h0 ? Draws{&random, 0, 0, batch_hidden_sample_.data()} : Draws{});
    const float* positive_hidden = step.sample_positive_hidden ? batch_hidden_sample_.data() : batch_hidden_.data();
    if (!blocked_weights) accumulate_outer(batch_visible_.data(), positive_hidden, batch, 1.0 / batch, false);
    std::fill(visible_gradient_.begin(), visible_gradient_.end(), 0.0);
    std::fill(hidden_gradient_.begin(), hidden_gradient_.end(), 0.0);
    accumulate_mean(batch_visible_.data(), batch, n_, 1.0 / batch, visible_gradient_);
    accumulate_mean(positive_hidden, batch, m_, 1.0 / batch, hidden_gradient_);

    // Negative phase.
    switch (step.negative) {
      case NegativePhase::cd: {
        // The chain starts from h_0 (k >= 1): its first half-sweep writes v_1.
        negative_visible_.resize(batch_visible_.size());
        run_chain(negative_visible_.data(), batch, step.gibbs_steps, random, 0, batch_hidden_sample_.data());
        if (blocked_weights) {
          subtract_bias_samples(negative_visible_.data(), batch);
          blocked_weight_gradient(batch_visible_.data(), positive_hidden, batch, negative_visible_.data(), batch,
                                  fuse_update ? &step : nullptr);
          return fuse_update;
        }
        subtract_samples(negative_visible_.data(), batch);
        break;
      }
      case NegativePhase::pcd: {
        if (chain_count_ == 0) reset_persistent_chains(batch, step.seed);
        run_chain(chains_.data(), chain_count_, step.gibbs_steps, random, 1, nullptr);
        if (blocked_weights) {
          subtract_bias_samples(chains_.data(), chain_count_);
          blocked_weight_gradient(batch_visible_.data(), positive_hidden, batch, chains_.data(), chain_count_,
                                  fuse_update ? &step : nullptr);
          return fuse_update;
        }
        subtract_samples(chains_.data(), chain_count_);
        break;
      }
      case NegativePhase::exact: {
        const ModelExpectations ex = [&] {
          const OmpThreadScope scope(threads_);
          return model_expectations_exact(rbm_, step.exact);
        }();
        float* g = weight_gradient_.data();
        for (std::size_t k = 0; k < weight_gradient_.size(); ++k) g[k] = static_cast<float>(g[k] - ex.visible_hidden[k]);
        for (int i = 0; i < n_; ++i) visible_gradient_[i] -= ex.visible[i];
        for (int j = 0; j < m_; ++j) hidden_gradient_[j] -= ex.hidden[j];
        break;
      }
      case NegativePhase::mode: {
        // sum_k w_k v_k h_k^T over the states (one state: weight 1).
        float* g = weight_gradient_.data();
        const int states = static_cast<int>(step.mode_visible.size()) / n_;
        for (int k = 0; k < states; ++k) {
          const double weight = mode_state_weight(step, k);
          const std::uint8_t* v = step.mode_visible.data() + static_cast<std::size_t>(k) * n_;
          const std::uint8_t* h = step.mode_hidden.data() + static_cast<std::size_t>(k) * m_;
          for (int i = 0; i < n_; ++i) {
            if (!v[i]) continue;
            float* gi = g + static_cast<std::size_t>(i) * m_;
            for (int j = 0; j < m_; ++j) gi[j] -= static_cast<float>(weight * h[j]);
          }
          for (int i = 0; i < n_; ++i) visible_gradient_[i] -= weight * v[i];
          for (int j = 0; j < m_; ++j) hidden_gradient_[j] -= weight * h[j];
        }
        break;
      }
    }
    return false;
  }

  // Negative statistics of `rows` chains: sampled v_k and p(h | v_k) (in chain_hidden_).
  void subtract_samples(const float* visible, int rows) {
    accumulate_outer(visible, chain_hidden_.data(), rows, -1.0 / rows, true);
    subtract_bias_samples(visible, rows);
  }

  void subtract_bias_samples(const float* visible, int rows) {
    accumulate_mean(visible, rows, n_, -1.0 / rows, visible_gradient_);
    accumulate_mean(chain_hidden_.data(), rows, m_, -1.0 / rows, hidden_gradient_);
  }

  // weight_gradient_ = v0^T p0 / rows0 - v1^T p1 / rows1 (negatives: p1 in
  // chain_hidden_) by sgemm in weight_blocks blocks of rows, fixed by the
  // shape; with `step`, each block's rows of W and their velocity are updated
  // right after the block.
  void blocked_weight_gradient(const float* v0, const float* p0, int rows0, const float* v1, int rows1,
                               const UpdateStep* step) {
    use_single_threaded_blas();
    float* g = weight_gradient_.data();
    const float* p1 = chain_hidden_.data();
    const int n = n_, m = m_;
    const float scale0 = static_cast<float>(1.0 / rows0), scale1 = static_cast<float>(-1.0 / rows1);
    const int block_rows = std::max(8, (n + 8 * weight_blocks - 1) / (8 * weight_blocks) * 8);
    const int blocks = (n + block_rows - 1) / block_rows;
    const long work = static_cast<long>(rows0 + rows1) * n * m;
    parallel_tiles(blocks, work >= parallel_tile_work, [&](int b) {
      const int i0 = b * block_rows, rows = std::min(block_rows, n - i0);
      float* gb = g + static_cast<std::size_t>(i0) * m;
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, m, rows0, scale0, v0 + i0, n, p0, m, 0.0f, gb, m);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, m, rows1, scale1, v1 + i0, n, p1, m, 1.0f, gb, m);
      if (step != nullptr) {
        update_weights(*step, static_cast<std::size_t>(i0) * m, static_cast<std::size_t>(i0 + rows) * m);
      }
    });
    weight_sum_valid_ = false;
  }

  // velocity = momentum velocity + lr (grad - decay W), W += velocity, for
  // weights [first, last).
  void update_weights(const UpdateStep& step, std::size_t first, std::size_t last) {
    momentum_step(rbm_.weights().data() + first, weight_velocity_.data() + first, weight_gradient_.data() + first,
                  last - first, static_cast<float>(step.learning_rate), static_cast<float>(step.momentum),
                  static_cast<float>(step.weight_decay));
  }

  // The update of `step` from the gradient; the weights' part unless
  // `weights_updated` (done already, in the gradient's blocks).
  void apply_update(const UpdateStep& step, bool weights_updated = false) {
    const long size = static_cast<long>(weight_gradient_.size());
    if (!weights_updated) {
      constexpr long chunk = 16 * 1024;
      parallel_for((size + chunk - 1) / chunk, size >= 4 * parallel_threshold, [&](long c) {
        update_weights(step, static_cast<std::size_t>(c * chunk), static_cast<std::size_t>(std::min(size, (c + 1) * chunk)));
      });
    }
    update_biases(step);
  }

  // ------------------------------------------------ data-parallel blocks

  std::size_t block_length() const { return static_cast<std::size_t>(n_) * m_ + n_ + m_; }

  // Where block statistics go: each block into its own slot of `blocks`
  // (sized by the caller; for an exchange between ranks), or, without
  // `blocks`, into one running sum: the first block stored, the next ones
  // added in block order (ordered_block_sum's arithmetic, bit for bit). The
  // running sum's sgemm products wait in pairs, so that one pass adds two
  // (finish_sum flushes the last).
  struct BlockTarget {
    std::vector<double>* blocks = nullptr;
    std::size_t next = 0;  // slot of the next block
    double* weights = nullptr;
    double* visible = nullptr;
    double* hidden = nullptr;
    bool started = false;          // the bias sums hold a block
    bool weights_started = false;  // the weight sum holds a block
    int pending = 0;               // sgemm products waiting in block_products_[0, pending)
  };

  // dst[k] = src[k] (store) or dst[k] += src[k] (add), widened to float64:
  // one pass, element-wise (threads do not change bits).
  template <typename T>
  void store_or_add(const T* src, double* dst, std::size_t count, bool add) const {
    constexpr std::size_t chunk = 8192;
    const long chunks = static_cast<long>((count + chunk - 1) / chunk);
    parallel_for(chunks, static_cast<long>(count) >= parallel_threshold, [&](long c) {
      const std::size_t begin = static_cast<std::size_t>(c) * chunk;
      const std::size_t end = std::min(count, begin + chunk);
      if (add) {
        for (std::size_t k = begin; k < end; ++k) dst[k] += static_cast<double>(src[k]);
      } else {
        for (std::size_t k = begin; k < end; ++k) dst[k] = static_cast<double>(src[k]);
      }
    });
  }

  // The pending products into the running weight sum, in block order:
  // (sum + a) + b, or a + b when the sum holds nothing yet (float64).
  void flush_products(BlockTarget& target) const {
    if (target.pending == 0) return;
    const std::size_t count = static_cast<std::size_t>(n_) * m_;
    double* dst = target.weights;
    const float* a = block_products_[0].data();
    if (target.pending == 1) {
      store_or_add(a, dst, count, target.weights_started);
    } else {
      const float* b = block_products_[1].data();
      const bool add = target.weights_started;
      constexpr std::size_t chunk = 8192;
      const long chunks = static_cast<long>((count + chunk - 1) / chunk);
      parallel_for(chunks, static_cast<long>(count) >= parallel_threshold, [&](long c) {
        const std::size_t begin = static_cast<std::size_t>(c) * chunk;
        const std::size_t end = std::min(count, begin + chunk);
        if (add) {
          for (std::size_t k = begin; k < end; ++k) dst[k] = (dst[k] + static_cast<double>(a[k])) + static_cast<double>(b[k]);
        } else {
          for (std::size_t k = begin; k < end; ++k) dst[k] = static_cast<double>(a[k]) + static_cast<double>(b[k]);
        }
      });
    }
    target.pending = 0;
    target.weights_started = true;
  }

  // One block's statistics: scale * (v^T p, sum v, sum p) over `rows` rows,
  // the visible sums of rows >= flip_from scaled by -scale (cd's chain rows,
  // whose p the caller negated). The weight part by one sgemm (float32) when
  // the model is BLAS-sized, else in float64 loops; the same on every rank.
  void put_block(const float* v, const float* p, int rows, int flip_from, double scale, BlockTarget& target) {
    const int n = n_, m = m_;
    const std::size_t weight_count = static_cast<std::size_t>(n) * m;
    double *weights, *visible, *hidden;
    bool add = false;
    const bool running = target.blocks == nullptr;
    if (!running) {
      double* slot = target.blocks->data() + target.next * block_length();
      ++target.next;
      weights = slot;
      visible = slot + weight_count;
      hidden = visible + n;
    } else {
      weights = target.weights;
      visible = target.visible;
      hidden = target.hidden;
      add = target.started;
      target.started = true;
    }
    const long work = static_cast<long>(rows) * n * m;
    if (work >= blas_threshold && static_cast<long>(n) * m >= blas_min_weights) {
      if (running && target.pending == 2) flush_products(target);
      std::vector<float>& product = block_products_[running ? target.pending : 0];
      product.resize(weight_count);
      partitioned_sgemm(CblasTrans, CblasNoTrans, n, m, rows, static_cast<float>(scale), v, n, p, m, 0.0f,
                        product.data(), m, thread_count());
      if (!running) {
        store_or_add(product.data(), weights, weight_count, false);
      } else {
        ++target.pending;  // added when a third product needs the room, or by the caller
      }
    } else {
      // Loop path (float64): earlier products first, then this block.
      bool weights_add = false;
      if (running) {
        flush_products(target);
        weights_add = target.weights_started;
        target.weights_started = true;
      }
      if (!weights_add) {
        std::fill(weights, weights + weight_count, 0.0);
        add_outer_product(v, p, rows, n, m, scale, weights);
      } else {
        block_weights_.assign(weight_count, 0.0);
        add_outer_product(v, p, rows, n, m, scale, block_weights_.data());
        store_or_add(block_weights_.data(), weights, weight_count, true);
      }
    }
    block_bias_.assign(static_cast<std::size_t>(n) + m, 0.0);
    double* visible_sum = block_bias_.data();
    double* hidden_sum = visible_sum + n;
    for (int r = 0; r < rows; ++r) {
      const double s = r < flip_from ? scale : -scale;
      for (int i = 0; i < n; ++i) visible_sum[i] += s * v[static_cast<std::size_t>(r) * n + i];
      for (int j = 0; j < m; ++j) hidden_sum[j] += scale * p[static_cast<std::size_t>(r) * m + j];
    }
    store_or_add(visible_sum, visible, static_cast<std::size_t>(n), add);
    store_or_add(hidden_sum, hidden, static_cast<std::size_t>(m), add);
  }

  // The batch blocks [first_block, last_block) into `target`. For cd a
  // block is one product: [v0; v_k]^T [h0; -p(h | v_k)] * 1/batch.
  void batch_blocks(const UpdateStep& step, int first_block, int last_block, BlockTarget& target) {
    validate_step(step);
    const int batch = static_cast<int>(step.batch_rows.size());
    const PhiloxStream random(step.seed, random_stream(RandomPurpose::gibbs, step.step));
    const bool cd = step.negative == NegativePhase::cd;
    const bool need_h0 = step.sample_positive_hidden || cd;
    for (int block = first_block; block < last_block; ++block) {
      const int first = block * gradient_block_rows;
      const int rows = std::min(gradient_block_rows, batch - first);
      MARBM_EXPECTS(rows >= 1, UsageError, "batch_block_statistics: block " + str(block) + " is past the batch");
      // Data rows, then (cd) the chain rows, in one matrix for the product.
      const int stacked = cd ? 2 * rows : rows;
      batch_visible_.resize(static_cast<std::size_t>(stacked) * n_);
      for (int r = 0; r < rows; ++r) {
        const float* src = data_.data() + static_cast<std::size_t>(step.batch_rows[first + r]) * n_;
        std::copy(src, src + n_, batch_visible_.data() + static_cast<std::size_t>(r) * n_);
      }
      batch_hidden_.resize(static_cast<std::size_t>(rows) * m_);
      batch_hidden_sample_.resize(need_h0 ? batch_hidden_.size() : 0);
      hidden_given_visible(batch_visible_.data(), rows, batch_hidden_.data(),
                           need_h0 ? Draws{&random, 0, first, batch_hidden_sample_.data()} : Draws{});
      const float* positive_hidden =
          step.sample_positive_hidden ? batch_hidden_sample_.data() : batch_hidden_.data();
      if (!cd) {
        put_block(batch_visible_.data(), positive_hidden, rows, rows, 1.0 / batch, target);
        continue;
      }
      const std::size_t half = static_cast<std::size_t>(rows) * n_;
      float* chain = batch_visible_.data() + half;
      std::copy(batch_visible_.data(), batch_visible_.data() + half, chain);
      run_chain(chain, rows, step.gibbs_steps, random, 0, batch_hidden_sample_.data(), first);
      const std::size_t hidden_half = static_cast<std::size_t>(rows) * m_;
      stacked_hidden_.resize(2 * hidden_half);
      std::copy(positive_hidden, positive_hidden + hidden_half, stacked_hidden_.data());
      for (std::size_t k = 0; k < hidden_half; ++k) stacked_hidden_[hidden_half + k] = -chain_hidden_[k];
      put_block(batch_visible_.data(), stacked_hidden_.data(), stacked, rows, 1.0 / batch, target);
    }
  }

  void chain_blocks(const UpdateStep& step, BlockTarget& target) {
    validate_step(step);
    MARBM_EXPECTS(chain_total_ >= 1 && (chain_count_ == 0 || chain_first_ % gradient_block_rows == 0), UsageError,
                  "chain_block_statistics: no chain share starting on a block boundary (reset_chain_share)");
    const PhiloxStream random(step.seed, random_stream(RandomPurpose::gibbs, step.step));
    for (int first = 0; first < chain_count_; first += gradient_block_rows) {
      const int rows = std::min(gradient_block_rows, chain_count_ - first);
      float* chain = chains_.data() + static_cast<std::size_t>(first) * n_;
      run_chain(chain, rows, step.gibbs_steps, random, 1, nullptr, chain_first_ + first);
      put_block(chain, chain_hidden_.data(), rows, rows, -1.0 / chain_total_, target);
    }
  }

  BlockTarget sum_target(Gradient& sum) const {
    sum.weights.resize(static_cast<std::size_t>(n_) * m_);
    sum.visible_bias.resize(static_cast<std::size_t>(n_));
    sum.hidden_bias.resize(static_cast<std::size_t>(m_));
    BlockTarget target;
    target.weights = sum.weights.data();
    target.visible = sum.visible_bias.data();
    target.hidden = sum.hidden_bias.data();
    return target;
  }

  void batch_block_statistics(const UpdateStep& step, int first_block, int last_block,
                              std::vector<double>& blocks) override {
    blocks.resize(static_cast<std::size_t>(std::max(last_block - first_block, 0)) * block_length());
    BlockTarget target;
    target.blocks = &blocks;
    batch_blocks(step, first_block, last_block, target);
  }

  void batch_statistics_sum(const UpdateStep& step, Gradient& sum) override {
    const int batch_blocks_total =
        (static_cast<int>(step.batch_rows.size()) + gradient_block_rows - 1) / gradient_block_rows;
    MARBM_EXPECTS(batch_blocks_total >= 1, UsageError, "update: the batch is empty");
    BlockTarget target = sum_target(sum);
    batch_blocks(step, 0, batch_blocks_total, target);
    flush_products(target);
  }

  void chain_block_statistics(const UpdateStep& step, std::vector<double>& blocks) override {
    blocks.resize(static_cast<std::size_t>((chain_count_ + gradient_block_rows - 1) / gradient_block_rows) *
                  block_length());
    BlockTarget target;
    target.blocks = &blocks;
    chain_blocks(step, target);
  }

  void chain_statistics_sum(const UpdateStep& step, Gradient& sum) override {
    MARBM_EXPECTS(chain_count_ >= 1 && chain_count_ == chain_total_, UsageError,
                  "chain_statistics_sum: this engine does not hold every chain");
    BlockTarget target = sum_target(sum);
    chain_blocks(step, target);
    flush_products(target);
  }

  void apply_gradient(const UpdateStep& step, const Gradient& gradient) override {
    require_model("apply_gradient");
    MARBM_EXPECTS(gradient.weights.size() == weight_gradient_.size() &&
                      gradient.visible_bias.size() == static_cast<std::size_t>(n_) &&
                      gradient.hidden_bias.size() == static_cast<std::size_t>(m_),
                  UsageError, "apply_gradient: the gradient's sizes are not the model's");
    const double* g = gradient.weights.data();
    momentum_pass(step, [g](std::size_t k) { return g[k]; });
    apply_bias_gradient(step, gradient);
  }

  // apply_update's arithmetic on the weights with gradient float(grad(k)),
  // in one pass: no float32 copy of the gradient written and read again.
  template <typename Grad>
  void momentum_pass(const UpdateStep& step, const Grad& grad) {
    const float lr = static_cast<float>(step.learning_rate);
    const float momentum = static_cast<float>(step.momentum);
    const float decay = static_cast<float>(step.weight_decay);
    float* w = rbm_.weights().data();
    float* vw = weight_velocity_.data();
    const std::size_t size = weight_velocity_.size();
    // In chunks with the factors in locals: a loop the compiler vectorises
    // (stores through vw cannot change them).
    constexpr std::size_t chunk = 8192;
    const long chunks = static_cast<long>((size + chunk - 1) / chunk);
    parallel_for(chunks, size >= 4 * static_cast<std::size_t>(parallel_threshold), [&](long c) {
      const float l = lr, mu = momentum, d = decay;
      const std::size_t begin = static_cast<std::size_t>(c) * chunk;
      const std::size_t end = std::min(size, begin + chunk);
      float* __restrict wk = w;
      float* __restrict vk = vw;
      for (std::size_t k = begin; k < end; ++k) {
        const float v = mu * vk[k] + l * (static_cast<float>(grad(k)) - d * wk[k]);
        vk[k] = v;
        wk[k] += v;
      }
    });
  }

  void apply_bias_gradient(const UpdateStep& step, const Gradient& gradient) {
    visible_gradient_ = gradient.visible_bias;
    hidden_gradient_ = gradient.hidden_bias;
    update_biases(step);
  }

  // The biases' momentum update from visible_gradient_ and hidden_gradient_.
  void update_biases(const UpdateStep& step) {
    const float lr = static_cast<float>(step.learning_rate);
    const float momentum = static_cast<float>(step.momentum);
    auto update_bias = [&](std::span<float> bias, std::vector<float>& velocity, const std::vector<double>& grad) {
      for (std::size_t k = 0; k < bias.size(); ++k) {
        velocity[k] = momentum * velocity[k] + lr * static_cast<float>(grad[k]);
        bias[k] += velocity[k];
      }
    };
    update_bias(rbm_.visible_bias(), visible_velocity_, visible_gradient_);
    update_bias(rbm_.hidden_bias(), hidden_velocity_, hidden_gradient_);
  }

  void apply_batch_statistics(const UpdateStep& step, Gradient& sum) override {
    MARBM_EXPECTS(step.negative == NegativePhase::cd, UsageError,
                  "apply_batch_statistics: the gradient of a cd step only");
    const int batch_blocks_total =
        (static_cast<int>(step.batch_rows.size()) + gradient_block_rows - 1) / gradient_block_rows;
    MARBM_EXPECTS(batch_blocks_total >= 1, UsageError, "update: the batch is empty");
    BlockTarget target = sum_target(sum);
    batch_blocks(step, 0, batch_blocks_total, target);
    // The weight sum's last pass (the pending products, in block order)
    // inside the momentum pass: the same float64 sum, then float().
    const double* dst = target.weights;
    const bool started = target.weights_started;
    const float* a = block_products_[0].data();
    const float* b = block_products_[1].data();
    if (target.pending == 0) {
      momentum_pass(step, [dst](std::size_t k) { return dst[k]; });
    } else if (target.pending == 1) {
      if (started) {
        momentum_pass(step, [dst, a](std::size_t k) { return dst[k] + static_cast<double>(a[k]); });
      } else {
        momentum_pass(step, [a](std::size_t k) { return static_cast<double>(a[k]); });
      }
    } else if (started) {
      momentum_pass(step, [dst, a, b](std::size_t k) {
        return (dst[k] + static_cast<double>(a[k])) + static_cast<double>(b[k]);
      });
    } else {
      momentum_pass(step, [a, b](std::size_t k) { return static_cast<double>(a[k]) + static_cast<double>(b[k]); });
    }
    target.pending = 0;
    apply_bias_gradient(step, sum);
  }

  int chain_total_ = 0;  // data-parallel: chains in all ranks' shares
  int chain_first_ = 0;  // data-parallel: index of this share's first chain
  std::vector<float> block_products_[2];  // data-parallel: sgemm products of blocks (a pair waits to be added)
  std::vector<double> block_weights_;    // data-parallel: a block's loop-path product
  std::vector<double> block_bias_;       // data-parallel: a block's bias sums
  std::vector<float> stacked_hidden_;    // data-parallel cd: [h0; -p(h | v_k)] of a block

  int threads_ = 0;
  bool tiny_path_ = true;
  TinyTrainer tiny_;
  Rbm rbm_;
  int n_ = 0;
  int m_ = 0;
  std::vector<float> weight_velocity_, visible_velocity_, hidden_velocity_;
  std::vector<float> weight_gradient_;
  std::vector<double> weight_sum_;  // float64 sums of the loop path
  bool weight_sum_valid_ = false;    // weight_sum_ holds the sum behind weight_gradient_
  std::vector<double> visible_gradient_, hidden_gradient_;
  std::vector<float> data_;  // data rows as float32 for BLAS
  int data_rows_ = 0;
  int data_cols_ = 0;
  std::vector<float> chains_;  // persistent chains, chain_count_ x n
  int chain_count_ = 0;
  // Workspace reused between updates (no allocation once sizes settle).
  std::vector<float> batch_visible_, batch_hidden_, batch_hidden_sample_;
  std::vector<float> negative_visible_, chain_hidden_, chain_sample_, chain_visible_prob_;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const EngineOptions& options, bool tiny_path) {
  return std::make_unique<CpuEngine>(options, tiny_path);
}

}  // namespace marbm::detail
