// The engine interface: where the training state lives and the heavy work runs.
//
// The training driver (train.hpp) is written once against Engine; the CPU
// engine (host/, the reference) and the CUDA engine (cuda/) implement it and
// pass the same typed test suite. On the CUDA engine all training state
// (parameters, momentum, persistent chains, data) stays on the device.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/exact.hpp"
#include "marbm/mode.hpp"
#include "marbm/rbm.hpp"

namespace marbm {

/// How an engine is set up.
struct EngineOptions {
  int threads = 0;          ///< CPU: OpenMP/BLAS threads; 0 keeps the runtime default
  bool allow_tf32 = false;  ///< CUDA: let cuBLAS use TF32 tensor cores (off: exact float32)
  int device = 0;           ///< CUDA: device ordinal
  bool quiet = false;       ///< automatic backend: no notice when falling back to cpu
};

/// The negative phase of a gradient step (SPEC.md sections 2 and 3).
enum class NegativePhase {
  cd,     ///< k steps of block Gibbs from the batch
  pcd,    ///< k steps of block Gibbs from the persistent chains
  exact,  ///< model expectations by enumeration (small models)
  mode,   ///< the given mode (v*, h*)
};

/// One gradient step. theta += velocity, velocity = momentum * velocity +
/// learning_rate * (grad - weight_decay * W) (decay on W only); the gradient
/// is averaged over the batch.
struct UpdateStep {
  std::span<const int> batch_rows;  ///< rows of the engine's data set (set_data)
  NegativePhase negative = NegativePhase::cd;
  int gibbs_steps = 1;              ///< k for cd and pcd
  double learning_rate = 0.1;
  double momentum = 0.0;
  double weight_decay = 0.0;
  bool sample_positive_hidden = false;  ///< positive phase h sampled instead of p(h|v)
  std::uint64_t seed = 0;               ///< random numbers: Philox (seed, gibbs stream of `step`)
  std::uint64_t step = 0;               ///< update counter; names the random stream
  /// negative == mode: the state(s) whose statistics replace <v h>_model,
  /// K rows of v (K n values) and of h (K m values). With K > 1,
  /// mode_weights gives each row's weight (K values >= 0 summing to 1); with
  /// K = 1 it may be empty (weight 1).
  std::span<const std::uint8_t> mode_visible;
  std::span<const std::uint8_t> mode_hidden;
  std::span<const double> mode_weights;
  ExactOptions exact;                          ///< negative == exact: enumeration limit
};

/// A gradient in host memory, same shapes as the model: <.>_data - <.>_model.
struct Gradient {
  std::vector<double> weights;       ///< n x m, row-major
  std::vector<double> visible_bias;  ///< n
  std::vector<double> hidden_bias;   ///< m
};

/// The optimiser's state: the momentum velocity of every parameter, in the
/// model's layout (float32, as the engines keep it).
struct OptimizerState {
  std::vector<float> weights;       ///< n x m, row-major
  std::vector<float> visible_bias;  ///< n
  std::vector<float> hidden_bias;   ///< m
};

/// Rows of 0/1 bytes where an engine computes, for training data that should
/// not pass through another copy: host memory (backend cpu), or the memory of
/// a CUDA device (backend cuda; a PyTorch CUDA tensor's, say). Row r starts at
/// data + r * row_stride; its cols bytes must each be 0 or 1.
struct ResidentRows {
  const std::uint8_t* data = nullptr;
  int rows = 0;
  int cols = 0;
  std::int64_t row_stride = 0;   ///< bytes from one row to the next (>= cols)
  Backend backend = Backend::cpu;  ///< where the memory is: cpu (host) or cuda
  int device = 0;                ///< the CUDA device ordinal (backend cuda)
};

/// Float32 parameters where an engine computes, for a model that should not
/// pass through another copy: host memory (backend cpu), or the memory of a
/// CUDA device (backend cuda; PyTorch CUDA tensors, say). W(i, j) is
/// weights[i * weights_row_stride + j] (the columns of a row contiguous), a_i
/// is visible_bias[i * visible_bias_stride], b_j hidden_bias[j *
/// hidden_bias_stride]; strides count floats.
struct ResidentParameters {
  const float* weights = nullptr;
  const float* visible_bias = nullptr;
  const float* hidden_bias = nullptr;
  int n_visible = 0;
  int n_hidden = 0;
  std::int64_t weights_row_stride = 0;   ///< >= n_hidden
  std::int64_t visible_bias_stride = 1;  ///< >= 1
  std::int64_t hidden_bias_stride = 1;   ///< >= 1
  Backend backend = Backend::cpu;        ///< where the memory is: cpu (host) or cuda
  int device = 0;                        ///< the CUDA device ordinal (backend cuda)
};

/// Throws UsageError, one line starting with `what`, when `parameters` has an
/// empty layer, a null pointer or a stride out of range (the checks every
/// engine's set_resident_model makes before reading).
void check_resident_parameters(const ResidentParameters& parameters, const std::string& what);

/// An engine holds one model, its optimiser state, a data set and persistent
/// chains. Methods are synchronous from the caller's point of view unless
/// noted; they throw UsageError for bad arguments and CudaError on device
/// failures.
class Engine {
 public:
  virtual ~Engine() = default;

  virtual Backend backend() const = 0;
  /// One line for reports, e.g. "cpu (2 threads, OpenBLAS)".
  virtual std::string description() const = 0;

  /// Loads parameters and zeroes the momentum.
  virtual void set_model(const Rbm& rbm) = 0;
  /// Copies the current parameters to the host.
  virtual Rbm model() const = 0;
  /// The mean energy over all states of the current parameters,
  /// -sum(a)/2 - sum(b)/2 - sum(W)/4 (Rbm::uniform_mean_energy), computed
  /// where the parameters live: a mode step's E_bar without a copy of the
  /// model. The CPU engine returns Rbm::uniform_mean_energy bit for bit; the
  /// CUDA engine sums in float64 on its device (other order, so equal up to
  /// float64 rounding) and copies back one double. The default copies the
  /// model.
  virtual double uniform_mean_energy() const;

  /// Loads parameters from where this engine computes and zeroes the
  /// momentum, as set_model: the CUDA engine copies parameters on its own
  /// device device to device (no host copy), after the device's pending work
  /// (the producer's) has finished. The default takes host parameters
  /// through set_model. UsageError for parameters in memory this engine
  /// cannot read (another device, or a device for an engine without one) or
  /// a bad shape or stride. Device parameters are not checked for finite
  /// values (train() reads them back once and does).
  virtual void set_resident_model(const ResidentParameters& parameters);
  /// The engine's own parameter memory, where it computes: host memory on
  /// the CPU engine, the device on the CUDA engine (W, a and b contiguous,
  /// weights_row_stride = m). Valid until the next set_model,
  /// set_resident_model or the engine's end; the values are final when this
  /// returns (the CUDA engine's stream is synchronised), and the next update
  /// changes them. The default throws UsageError (an engine that keeps no
  /// parameters of its own to show).
  virtual ResidentParameters resident_parameters() const;

  /// The training data; batch_rows index its rows. Column count must equal n.
  virtual void set_data(const Dataset& data) = 0;
  /// The training data from where this engine computes: the CUDA engine
  /// takes rows on its own device device to device (no host copy), after the
  /// device's pending work (the producer's) has finished, and checks the
  /// values there. The default takes host rows through set_data. UsageError
  /// for rows in memory this engine cannot read (another device, or a device
  /// for an engine without one) or a bad shape; DataError for a value other
  /// than 0 and 1.
  virtual void set_resident_data(const ResidentRows& rows);

  /// Starts `count` persistent chains, visible states uniform random from
  /// Philox (seed, persistent_chains stream).
  virtual void reset_persistent_chains(int count, std::uint64_t seed) = 0;

  /// The gradient estimate the step would apply, parameters untouched. For
  /// pcd the chains advance as in update().
  virtual Gradient gradient(const UpdateStep& step) = 0;
  /// Computes the gradient and applies the step; state stays in the engine.
  virtual void update(const UpdateStep& step) = 0;

  /// p(h|v) for `batch` visible rows (batch x n row-major, 0/1 values):
  /// batch x m probabilities.
  virtual std::vector<float> hidden_probabilities(std::span<const std::uint8_t> visible, int batch) = 0;

  /// Runs `steps` full block-Gibbs sweeps (v -> h -> v) from `visible`
  /// (batch x n); returns the final visible states. Random numbers from
  /// Philox (seed, gibbs stream of `stream`).
  virtual std::vector<std::uint8_t> gibbs_chain(std::span<const std::uint8_t> visible, int batch, int steps,
                                                std::uint64_t seed, std::uint64_t stream) = 0;

  /// The persistent chains' visible states (count x n, 0/1; empty when
  /// none are running). Synchronous; the default has none.
  virtual std::vector<std::uint8_t> persistent_chain_states() const { return {}; }

  /// Checkpoints (train.hpp): the velocity, and setting it and the persistent
  /// chains back, so that a resumed run continues bit for bit. set_model
  /// zeroes the velocity, so restore it after set_model. `states` holds
  /// `count` rows of n values 0/1. The defaults throw UsageError (an engine
  /// that cannot be checkpointed).
  virtual OptimizerState optimizer_state() const;
  virtual void set_optimizer_state(const OptimizerState& state);
  virtual void set_persistent_chain_states(std::span<const std::uint8_t> states, int count);

  /// Exact log Z of the current parameters (throws beyond the limit).
  virtual double log_partition_exact(const ExactOptions& options) = 0;

  /// Mode of the current parameters; the search runs on this engine's backend
  /// (config.backend is ignored).
  virtual ModeResult find_mode(const ModeSearchConfig& config) = 0;
};

/// Creates an engine. `automatic` chooses cuda when a device is usable, else
/// cpu with a one-line notice on stderr (unless options.quiet). Throws
/// CudaError when cuda is asked for and not compiled in or no device is usable.
std::unique_ptr<Engine> make_engine(Backend backend, const EngineOptions& options = {});

/// Whether this build has the CUDA engine.
bool cuda_compiled();

/// A CUDA device this process can use.
struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  std::size_t memory_bytes = 0;
};

/// Usable CUDA devices (empty without the CUDA engine, a driver or a device).
/// Never throws.
std::vector<DeviceInfo> cuda_devices();

/// The CUDA versions this process sees, in CUDA's encoding (1000 * major +
/// 10 * minor): the runtime marbm runs on and the newest the installed driver
/// supports. 0 where unknown (no CUDA engine, no driver). A driver older than
/// the runtime is the usual reason for "no usable CUDA device". Never throws.
struct CudaVersions {
  int runtime = 0;
  int driver = 0;
};
CudaVersions cuda_versions();

/// marbm's version string.
std::string version();

}  // namespace marbm
