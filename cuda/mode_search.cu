// Ground-state search on the device (SPEC.md section 4): the driver, the
// Ising terms the solvers share, the descent polish on every replica and the
// best-replica reduction. The solvers live one per file: mode_exhaustive.cu,
// mode_sb.cu, mode_sa.cu.
//
// Each solver is its CPU counterpart's algorithm (host/mode_solvers.cpp) on
// the same Philox streams, and the polish is the CPU's descent (host/mode.cpp,
// DescentPolish) with the same tie rule, so for a given seed both backends
// follow the same trajectories; only the defaults differ (more replicas and
// steps on the device). Everything is stream-ordered on resources.stream();
// the host reads back only a few scalars before the search (the derived scale
// and temperatures) and the best state after it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "cuda_impl.hpp"
#include "detail/mode_search_config.hpp"
#include "device_buffer.cuh"
#include "error.cuh"
#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "device_common.cuh"
#include "launch.cuh"
#include "mode_search.cuh"
#include "mode_search_internal.cuh"
#include "philox.cuh"

namespace marbm::detail {

namespace {

constexpr int kPolishThreads = 256;
// Descent rounds are strictly improving except on exact ties (kept by the
// tie rule), so this cap only guards against pathological float behaviour.
constexpr int kPolishRoundCap = 10000;

// ------------------------------------------------------------ parameters

__global__ void transpose_kernel(const float* __restrict__ weights, float* __restrict__ transposed, int n, int m) {
  const std::size_t total = static_cast<std::size_t>(n) * m;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t i = k / m;
    const std::size_t j = k % m;
    transposed[j * n + i] = weights[k];
  }
}

// transpose_kernel for every model of a batched search (model q's m x n
// block at transposed + q n m).
__global__ void transpose_batched_kernel(BatchedModels models, int count, float* __restrict__ transposed) {
  const std::size_t per_model = static_cast<std::size_t>(models.n) * models.m;
  const std::size_t total = per_model * count;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int q = static_cast<int>(k / per_model);
    const std::size_t within = k % per_model;
    const std::size_t i = within / models.m;
    const std::size_t j = within % models.m;
    transposed[q * per_model + j * models.n + i] = models.weights_of(q)[within];
  }
}

// Per unit: the Ising linear term (a/2 + W 1/4 or b/2 + W^T 1/4), its share of
// the squared couplings for c0, and the mean square local field at a uniformly
// random state for the SA temperatures (SPEC.md section 4; the same
// quantities as the CPU solvers).
__global__ void unit_statistics_kernel(const float* __restrict__ weights, const float* __restrict__ transposed,
                                       const float* __restrict__ visible_bias, const float* __restrict__ hidden_bias,
                                       int n, int m, float* __restrict__ ising_field, double* __restrict__ square,
                                       double* __restrict__ field_square) {
  for (int u = blockIdx.x * blockDim.x + threadIdx.x; u < n + m; u += gridDim.x * blockDim.x) {
    const bool visible = u < n;
    const float* row = visible ? weights + static_cast<std::size_t>(u) * m : transposed + static_cast<std::size_t>(u - n) * n;
    const int length = visible ? m : n;
    const double bias = visible ? visible_bias[u] : hidden_bias[u - n];
    double sum = 0.0, sum_sq = 0.0;
    for (int k = 0; k < length; ++k) {
      const double w = row[k];
      sum += w;
      sum_sq += w * w;
    }
    const double linear = bias / 2.0 + sum / 4.0;
    ising_field[u] = static_cast<float>(linear);
    // Couplings J = W/4 counted once per (i, j) pair, from the visible side,
    // twice for the symmetric form; linear terms as couplings to a fixed spin.
    square[u] = (visible ? 2.0 * sum_sq / 16.0 : 0.0) + 2.0 * linear * linear;
    field_square[u] = (bias + sum / 2.0) * (bias + sum / 2.0) + sum_sq / 4.0;
  }
}

// scalars[0] = c0, scalars[1] = typical local field (rms).
__global__ void search_scalars_kernel(const double* __restrict__ square, const double* __restrict__ field_square,
                                      int units, double* __restrict__ scalars) {
  double s = 0.0, f = 0.0;
  for (int u = threadIdx.x; u < units; u += blockDim.x) {
    s += square[u];
    f += field_square[u];
  }
  s = block_sum(s);
  f = block_sum(f);
  if (threadIdx.x == 0) {
    const double spins = units + 1.0;
    const double rms = sqrt(s / (spins * (spins - 1.0)));
    scalars[0] = rms > 0.0 ? 0.5 / (rms * sqrt(static_cast<double>(units))) : 1.0;
    scalars[1] = fmax(sqrt(f / units), 1e-12);
  }
}

// ------------------------------------------------------------ polish and reduction

// One block per candidate: alternate h = [b + W^T v > 0], v = [a + W h > 0]
// (a zero field keeps the unit, as on the CPU) until nothing changes, then
// E = -(v . (a + W h)) - b . h in float64 from the last v-field pass.
// Candidate r's polish (the single and the batched kernel both run this).
__device__ __forceinline__ void polish_candidate(const float* __restrict__ weights, const float* __restrict__ transposed,
                                                 const float* __restrict__ visible_bias,
                                                 const float* __restrict__ hidden_bias, int n, int m,
                                                 std::uint8_t* __restrict__ candidates_v,
                                                 std::uint8_t* __restrict__ candidates_h, double* __restrict__ energies,
                                                 std::size_t r, std::uint8_t* __restrict__ shared_state) {
  std::uint8_t* v = shared_state;
  std::uint8_t* h = shared_state + n;
  std::uint8_t* global_v = candidates_v + r * n;
  std::uint8_t* global_h = candidates_h + r * m;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v[i] = global_v[i];
  for (int j = threadIdx.x; j < m; j += blockDim.x) h[j] = global_h[j];
  __syncthreads();
  double partial = 0.0;
  for (int round = 0; round < kPolishRoundCap; ++round) {
    int changed = 0;
    // h given v: reads only v, each thread writes its own h[j].
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
      double f = hidden_bias[j];
      for (int i = 0; i < n; ++i) {
        if (v[i]) f += weights[static_cast<std::size_t>(i) * m + j];
      }
      const std::uint8_t want = f > 0.0 ? 1 : (f < 0.0 ? 0 : h[j]);
      changed |= want != h[j];
      h[j] = want;
    }
    __syncthreads();
    // v given h; the energy of the resulting (v, h) comes with it.
    partial = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      double f = visible_bias[i];
      for (int j = 0; j < m; ++j) {
        if (h[j]) f += transposed[static_cast<std::size_t>(j) * n + i];
      }
      const std::uint8_t want = f > 0.0 ? 1 : (f < 0.0 ? 0 : v[i]);
      changed |= want != v[i];
      v[i] = want;
      if (want) partial += f;
    }
    if (!__syncthreads_or(changed)) break;
  }
  for (int j = threadIdx.x; j < m; j += blockDim.x) {
    if (h[j]) partial += hidden_bias[j];
  }
  const double energy = -block_sum(partial);
  for (int i = threadIdx.x; i < n; i += blockDim.x) global_v[i] = v[i];
  for (int j = threadIdx.x; j < m; j += blockDim.x) global_h[j] = h[j];
  if (threadIdx.x == 0) energies[r] = energy;
}

__global__ void polish_kernel(const float* __restrict__ weights, const float* __restrict__ transposed,
                              const float* __restrict__ visible_bias, const float* __restrict__ hidden_bias, int n,
                              int m, std::uint8_t* __restrict__ candidates_v, std::uint8_t* __restrict__ candidates_h,
                              double* __restrict__ energies) {
  extern __shared__ std::uint8_t polish_shared[];
  polish_candidate(weights, transposed, visible_bias, hidden_bias, n, m, candidates_v, candidates_h, energies,
                   blockIdx.x, polish_shared);
}

// One block per model of a batched search, each with its single candidate
// (candidate q is model q's).
__global__ void polish_batched_kernel(BatchedModels models, std::uint8_t* __restrict__ candidates_v,
                                      std::uint8_t* __restrict__ candidates_h, double* __restrict__ energies) {
  extern __shared__ std::uint8_t polish_shared[];
  const int q = static_cast<int>(blockIdx.x);
  polish_candidate(models.weights_of(q), models.transposed_of(q), models.visible_of(q), models.hidden_of(q), models.n,
                   models.m, candidates_v, candidates_h, energies, static_cast<std::size_t>(q), polish_shared);
}

struct BestSummary {
  double energy;
  int index;
  int at_best;
};

// One block: the lowest energy over all candidates (lowest index on ties, so
// a search replica wins over the appended warm start), the number of search
// replicas (the first `replicas`) within 1e-9 relative of it, and the best
// state gathered into `best_v`, `best_h`.
__device__ __forceinline__ void best_candidate(const double* __restrict__ energies, int candidates, int replicas,
                                      const std::uint8_t* __restrict__ candidates_v,
                                      const std::uint8_t* __restrict__ candidates_h, int n, int m,
                                      std::uint8_t* __restrict__ best_v, std::uint8_t* __restrict__ best_h,
                                      BestSummary* __restrict__ summary) {
  __shared__ double best_energy[kReduceThreads];
  __shared__ int best_index[kReduceThreads];
  double best = INFINITY;
  int best_at = candidates;
  for (int r = threadIdx.x; r < candidates; r += blockDim.x) {
    if (energies[r] < best) {
      best = energies[r];
      best_at = r;
    }
  }
  best_energy[threadIdx.x] = best;
  best_index[threadIdx.x] = best_at;
  block_lowest(best_energy, best_index);
  best = best_energy[0];
  // Non-finite parameters give NaN energies that never compare lower: fall
  // back to the first candidate rather than read out of bounds.
  best_at = best_index[0] < candidates ? best_index[0] : 0;
  const double tolerance = 1e-9 * fmax(1.0, fabs(best));
  double count = 0.0;
  for (int r = threadIdx.x; r < replicas; r += blockDim.x) count += energies[r] <= best + tolerance ? 1.0 : 0.0;
  count = block_sum(count);
  for (int i = threadIdx.x; i < n; i += blockDim.x) best_v[i] = candidates_v[static_cast<std::size_t>(best_at) * n + i];
  for (int j = threadIdx.x; j < m; j += blockDim.x) best_h[j] = candidates_h[static_cast<std::size_t>(best_at) * m + j];
  if (threadIdx.x == 0) *summary = BestSummary{best, best_at, static_cast<int>(count)};
}

__global__ void best_candidate_kernel(const double* __restrict__ energies, int candidates, int replicas,
                                      const std::uint8_t* __restrict__ candidates_v,
                                      const std::uint8_t* __restrict__ candidates_h, int n, int m,
                                      std::uint8_t* __restrict__ best_v, std::uint8_t* __restrict__ best_h,
                                      BestSummary* __restrict__ summary) {
  best_candidate(energies, candidates, replicas, candidates_v, candidates_h, n, m, best_v, best_h, summary);
}

// One block per model of a batched search: model q's single candidate, its
// state into best + q (n + m), its summary into summary[q].
__global__ void best_candidate_batched_kernel(const double* __restrict__ energies,
                                              const std::uint8_t* __restrict__ candidates_v,
                                              const std::uint8_t* __restrict__ candidates_h, int n, int m,
                                              std::uint8_t* __restrict__ best, BestSummary* __restrict__ summary) {
  const std::size_t q = blockIdx.x;
  std::uint8_t* best_v = best + q * (static_cast<std::size_t>(n) + m);
  best_candidate(energies + q, 1, 1, candidates_v + q * n, candidates_h + q * m, n, m, best_v, best_v + n, summary + q);
}

__global__ void to_binary_kernel(const float* __restrict__ values, std::size_t count, std::uint8_t* __restrict__ states) {
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < count;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    states[k] = values[k] > 0.0f ? 1 : 0;
  }
}

// ------------------------------------------------------------ host side

// Default sizes on the device: many more replicas than the CPU solver (they
// run side by side), the CPU step counts with a floor. Not yet tuned by
// measurement on a device.
int device_default_replicas(int n, int m) { return n + m <= 2 * kMaxFusedUnits ? 1024 : 512; }

int device_default_steps(ModeSolver solver, int n, int m) {
  const int units = n + m;
  if (solver == ModeSolver::sa) return std::clamp(2 * units, 500, 1000);
  return std::clamp(4 * units, 1000, 2000);
}

}  // namespace

namespace {

__global__ void advance_step_kernel(int* __restrict__ step_base, int by) { *step_base += by; }

// An executable CUDA graph captured from the work `record` enqueues on
// `stream` (capture mode thread-local: other threads' CUDA calls are not
// disturbed). A capture that fails midway is ended before the error
// propagates, so the stream stays usable.
// An executable graph destroyed while a launch of it is still in flight is
// freed by the driver once that launch completes (cuGraphExecDestroy).
class StreamGraph {
 public:
  StreamGraph(cudaStream_t stream, const std::function<void()>& record) {
    MARBM_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      record();
    } catch (...) {
      MARBM_CUDA_TRY_NOTHROW(cudaStreamEndCapture(stream, &graph));
      if (graph != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaGraphDestroy(graph));
      throw;
    }
    MARBM_CUDA_TRY(cudaStreamEndCapture(stream, &graph));
    // The cuBLAS handle has a workspace of its own (Resources), so captured
    // GEMMs should not allocate; should anything captured allocate
    // stream-ordered anyway, its allocation nodes are freed at each relaunch
    // rather than refusing it.
    const cudaError_t made = cudaGraphInstantiate(&exec_, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch);
    MARBM_CUDA_TRY_NOTHROW(cudaGraphDestroy(graph));
    MARBM_CUDA_TRY(made);
  }
  StreamGraph(const StreamGraph&) = delete;
  StreamGraph& operator=(const StreamGraph&) = delete;
  ~StreamGraph() {
    if (exec_ != nullptr) MARBM_CUDA_TRY_NOTHROW(cudaGraphExecDestroy(exec_));
  }
  void launch(cudaStream_t stream) const { MARBM_CUDA_TRY(cudaGraphLaunch(exec_, stream)); }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace

bool legacy_replica_kernels() {
  const char* value = std::getenv("MARBM_REPLICA_KERNELS");
  if (value == nullptr || *value == '\0' || std::string_view(value) == "current") return false;
  MARBM_EXPECTS(std::string_view(value) == "legacy", UsageError,
                "MARBM_REPLICA_KERNELS must be 'current' or 'legacy', got '" + std::string(value) + "'");
  return true;
}

void run_step_loop(cudaStream_t stream, int steps, int* step_base, bool graphs,
                   const std::function<void(int offset)>& record_step) {
  MARBM_CUDA_TRY(cudaMemsetAsync(step_base, 0, sizeof(int), stream));
  // Under MARBM_CUDA_SYNC=1 every launch is followed by a device
  // synchronisation, which a stream capture refuses: steps one by one (and
  // so under MARBM_CUDA_GRAPH=0).
  if (!graphs || !cuda_graphs_allowed() || cuda_sync_after_launches() || steps < kGraphSteps) {
    for (int step = 0; step < steps; ++step) record_step(step);
    return;
  }
  const StreamGraph chunk = [&] {
    try {
      return StreamGraph(stream, [&] {
        for (int offset = 0; offset < kGraphSteps; ++offset) record_step(offset);
        advance_step_kernel<<<1, 1, 0, stream>>>(step_base, kGraphSteps);
        MARBM_CUDA_CHECK_LAST();
      });
    } catch (const CudaError& error) {
      throw CudaError(std::string(error.what()) + "; MARBM_CUDA_GRAPH=0 launches the search's steps directly");
    }
  }();
  const int chunks = steps / kGraphSteps;
  for (int c = 0; c < chunks; ++c) chunk.launch(stream);
  // The last steps % kGraphSteps steps directly, from *step_base = chunks x kGraphSteps.
  for (int offset = 0; offset < steps % kGraphSteps; ++offset) record_step(offset);
}

void Search::allocate_candidates(int search_replicas) {
  replicas = search_replicas;
  candidates = replicas + (warm_v.empty() ? 0 : 1);
  candidates_v = DeviceBuffer<std::uint8_t>(static_cast<std::size_t>(candidates) * n, stream());
  candidates_h = DeviceBuffer<std::uint8_t>(static_cast<std::size_t>(candidates) * m, stream());
  if (candidates > replicas) {
    // The warm start itself is the last candidate, so a search never
    // returns worse than its polished starting point.
    MARBM_CUDA_TRY(cudaMemcpyAsync(candidates_v.data() + static_cast<std::size_t>(replicas) * n, warm_v.data(), n,
                                   cudaMemcpyDeviceToDevice, stream()));
    MARBM_CUDA_TRY(cudaMemcpyAsync(candidates_h.data() + static_cast<std::size_t>(replicas) * m, warm_h.data(), m,
                                   cudaMemcpyDeviceToDevice, stream()));
  }
}

void finish_replicas(Search& search, const float* visible, const float* hidden, const ReplicaOutput& output) {
  const std::size_t visible_total = static_cast<std::size_t>(search.replicas) * search.n;
  const std::size_t hidden_total = static_cast<std::size_t>(search.replicas) * search.m;
  for (const auto& [values, count, states, copy] :
       {std::tuple{visible, visible_total, search.candidates_v.data(), output.visible},
        std::tuple{hidden, hidden_total, search.candidates_h.data(), output.hidden}}) {
    if (count == 0) continue;
    to_binary_kernel<<<grid_for(count), kGridStrideThreads, 0, search.stream()>>>(values, count, states);
    MARBM_CUDA_CHECK_LAST();
    if (copy != nullptr) {
      MARBM_CUDA_TRY(cudaMemcpyAsync(copy, values, count * sizeof(float), cudaMemcpyDeviceToDevice, search.stream()));
    }
  }
}

// Ising linear terms on the device; c0 and the typical field on the host
// (one small read-back before the search).
SearchScalars prepare_ising(Search& search, DeviceBuffer<float>& ising_field) {
  const int units = search.n + search.m;
  DeviceBuffer<double> square(units, search.stream());
  DeviceBuffer<double> field_square(units, search.stream());
  DeviceBuffer<double> scalars(2, search.stream());
  unit_statistics_kernel<<<grid_for(units, 1, 128), 128, 0, search.stream()>>>(
      search.weights, search.transposed.data(), search.visible_bias, search.hidden_bias, search.n, search.m,
      ising_field.data(), square.data(), field_square.data());
  MARBM_CUDA_CHECK_LAST();
  search_scalars_kernel<<<1, kReduceThreads, 0, search.stream()>>>(square.data(), field_square.data(), units,
                                                                    scalars.data());
  MARBM_CUDA_CHECK_LAST();
  const std::vector<double> host = scalars.to_host();
  SearchScalars result;
  result.c0 = host[0];
  result.typical_field = host[1];
  return result;
}

namespace {

// The search state of one call: transposed weights, the warm start and the
// candidate slots; the solver's step count in `steps` (0 for exhaustive).
Search prepare_search(Resources& resources, const float* weights, const float* visible_bias, const float* hidden_bias,
                      int n, int m, const ModeSearchConfig& config, int& steps) {
  cudaStream_t stream = resources.stream();
  Search search{resources, weights, visible_bias, hidden_bias, n, m, DeviceBuffer<float>(static_cast<std::size_t>(n) * m, stream),
                {}, {}, {}, {}};
  transpose_kernel<<<grid_for(static_cast<std::size_t>(n) * m), kGridStrideThreads, 0, stream>>>(
      weights, search.transposed.data(), n, m);
  MARBM_CUDA_CHECK_LAST();
  steps = 0;
  if (config.solver == ModeSolver::exhaustive) {
    // The oracle ignores the warm start: it is exact anyway.
    search.allocate_candidates(1);
    return search;
  }
  if (!config.warm_visible.empty()) {
    search.warm_v = DeviceBuffer<std::uint8_t>(n, stream);
    search.warm_h = DeviceBuffer<std::uint8_t>(m, stream);
    search.warm_v.copy_from_host(config.warm_visible);
    search.warm_h.copy_from_host(config.warm_hidden);
  }
  steps = config.steps > 0 ? config.steps : device_default_steps(config.solver, n, m);
  search.allocate_candidates(config.replicas > 0 ? config.replicas : device_default_replicas(n, m));
  return search;
}

// An Rbm's parameters on the device.
struct DeviceModel {
  DeviceBuffer<float> weights;
  DeviceBuffer<float> visible_bias;
  DeviceBuffer<float> hidden_bias;

  DeviceModel(const Rbm& rbm, cudaStream_t stream)
      : weights(rbm.weights().size(), stream),
        visible_bias(rbm.visible_bias().size(), stream),
        hidden_bias(rbm.hidden_bias().size(), stream) {
    weights.copy_from_host(rbm.weights());
    visible_bias.copy_from_host(rbm.visible_bias());
    hidden_bias.copy_from_host(rbm.hidden_bias());
  }
};

}  // namespace

ModeResult find_mode_device(Resources& resources, const float* weights, const float* visible_bias,
                            const float* hidden_bias, int n_visible, int n_hidden, const ModeSearchConfig& config) {
  const auto start = std::chrono::steady_clock::now();
  check_mode_search_config(n_visible, n_hidden, config);
  const int n = n_visible, m = n_hidden;
  cudaStream_t stream = resources.stream();
  // The polish keeps one candidate's (v, h) bytes in a block's shared memory:
  // refused before any search work rather than at the polish launch.
  const std::size_t polish_shared = static_cast<std::size_t>(n) + m;
  MARBM_EXPECTS(shared_memory_plan(polish_kernel, polish_shared, resources.device()).fits, RuntimeFailure,
                "mode search on the device: the model has " + std::to_string(polish_shared) +
                    " units, more than whose states fit in this device's shared memory");
  int steps = 0;
  Search search = prepare_search(resources, weights, visible_bias, hidden_bias, n, m, config, steps);
  switch (config.solver) {
    case ModeSolver::exhaustive: run_exhaustive(search, config); break;
    case ModeSolver::sb: run_sb(search, config, steps); break;
    case ModeSolver::sa: run_sa(search, config, steps); break;
    case ModeSolver::local:
      // The CUDA engine hands the local search to the host before this.
      throw RuntimeFailure("mode search on the device: the local search runs on the host");
  }

  DeviceBuffer<double> energies(search.candidates, stream);
  (void)prepare_shared_memory(polish_kernel, polish_shared, resources.device());  // fits: checked above
  polish_kernel<<<search.candidates, kPolishThreads, polish_shared, stream>>>(
      weights, search.transposed.data(), visible_bias, hidden_bias, n, m, search.candidates_v.data(),
      search.candidates_h.data(), energies.data());
  MARBM_CUDA_CHECK_LAST();
  DeviceBuffer<std::uint8_t> best_state(static_cast<std::size_t>(n + m), stream);
  DeviceBuffer<BestSummary> summary(1, stream);
  best_candidate_kernel<<<1, kReduceThreads, 0, stream>>>(energies.data(), search.candidates, search.replicas,
                                                          search.candidates_v.data(), search.candidates_h.data(), n, m,
                                                          best_state.data(), best_state.data() + n, summary.data());
  MARBM_CUDA_CHECK_LAST();

  const std::vector<std::uint8_t> state = best_state.to_host();
  const std::vector<BestSummary> best = summary.to_host();
  ModeResult result;
  result.visible.assign(state.begin(), state.begin() + n);
  result.hidden.assign(state.begin() + n, state.end());
  result.energy = best[0].energy;
  result.replicas = search.replicas;
  result.steps = steps;
  result.replicas_at_best = config.solver == ModeSolver::exhaustive ? 1 : best[0].at_best;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

std::vector<ModeResult> find_modes_exhaustive_batched(Resources& resources, const MemberParameters& parameters,
                                                      int n_visible, int n_hidden, std::span<const int> members,
                                                      const ModeSearchConfig& config) {
  const auto start = std::chrono::steady_clock::now();
  check_mode_search_config(n_visible, n_hidden, config);
  MARBM_EXPECTS(config.solver == ModeSolver::exhaustive, UsageError,
                "batched mode search: only the exhaustive solver searches several models in one launch");
  const int n = n_visible, m = n_hidden;
  const int count = static_cast<int>(members.size());
  if (count == 0) return {};
  for (const int member : members) {
    MARBM_EXPECTS(member >= 0, UsageError, "batched mode search: a member index is negative");
  }
  // The same refusals, in the same order, as find_mode_device.
  const std::size_t polish_shared = static_cast<std::size_t>(n) + m;
  MARBM_EXPECTS(shared_memory_plan(polish_kernel, polish_shared, resources.device()).fits, RuntimeFailure,
                "mode search on the device: the model has " + std::to_string(polish_shared) +
                    " units, more than whose states fit in this device's shared memory");
  check_enumerable(n, m, config);

  cudaStream_t stream = resources.stream();
  DeviceBuffer<int> indices(static_cast<std::size_t>(count), stream);
  indices.copy_from_host(members);
  const std::size_t per_model = static_cast<std::size_t>(n) * m;
  DeviceBuffer<float> transposed(per_model * count, stream);
  BatchedModels models;
  models.weights = parameters.weights;
  models.weights_stride = parameters.weights_stride;
  models.visible_bias = parameters.visible_bias;
  models.visible_stride = parameters.visible_stride;
  models.hidden_bias = parameters.hidden_bias;
  models.hidden_stride = parameters.hidden_stride;
  models.transposed = transposed.data();
  models.members = indices.data();
  models.n = n;
  models.m = m;
  models.enumerate_hidden = m <= n;
  transpose_batched_kernel<<<grid_for(per_model * count), kGridStrideThreads, 0, stream>>>(models, count,
                                                                                           transposed.data());
  MARBM_CUDA_CHECK_LAST();

  DeviceBuffer<std::uint8_t> candidates_v(static_cast<std::size_t>(count) * n, stream);
  DeviceBuffer<std::uint8_t> candidates_h(static_cast<std::size_t>(count) * m, stream);
  run_exhaustive_batched(resources, models, count, candidates_v.data(), candidates_h.data());

  DeviceBuffer<double> energies(static_cast<std::size_t>(count), stream);
  (void)prepare_shared_memory(polish_batched_kernel, polish_shared, resources.device());
  polish_batched_kernel<<<static_cast<unsigned>(count), kPolishThreads, polish_shared, stream>>>(
      models, candidates_v.data(), candidates_h.data(), energies.data());
  MARBM_CUDA_CHECK_LAST();
  DeviceBuffer<std::uint8_t> best_states(static_cast<std::size_t>(count) * (n + m), stream);
  DeviceBuffer<BestSummary> summaries(static_cast<std::size_t>(count), stream);
  best_candidate_batched_kernel<<<static_cast<unsigned>(count), kReduceThreads, 0, stream>>>(
      energies.data(), candidates_v.data(), candidates_h.data(), n, m, best_states.data(), summaries.data());
  MARBM_CUDA_CHECK_LAST();

  const std::vector<std::uint8_t> states = best_states.to_host();
  const std::vector<BestSummary> best = summaries.to_host();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<ModeResult> results(static_cast<std::size_t>(count));
  for (int q = 0; q < count; ++q) {
    const auto first = states.begin() + static_cast<std::ptrdiff_t>(q) * (n + m);
    ModeResult& result = results[q];
    result.visible.assign(first, first + n);
    result.hidden.assign(first + n, first + n + m);
    result.energy = best[q].energy;
    result.replicas = 1;
    result.steps = 0;
    result.replicas_at_best = 1;
    result.seconds = seconds;
  }
  return results;
}

ModeResult find_mode_cuda_impl(const Rbm& rbm, const ModeSearchConfig& config) {
  const auto start = std::chrono::steady_clock::now();
  check_mode_search_config(rbm.n_visible(), rbm.n_hidden(), config);
  Resources& resources = thread_resources(config.device);
  const DeviceModel model(rbm, resources.stream());
  ModeResult result = find_mode_device(resources, model.weights.data(), model.visible_bias.data(),
                                       model.hidden_bias.data(), rbm.n_visible(), rbm.n_hidden(), config);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

ReplicaTrajectory mode_trajectory_cuda_impl(const Rbm& rbm, const ModeSearchConfig& config) {
  check_mode_search_config(rbm.n_visible(), rbm.n_hidden(), config);
  MARBM_EXPECTS(config.solver != ModeSolver::exhaustive, UsageError,
                "mode_trajectory_cuda: the exhaustive search has no replica trajectories");
  Resources& resources = thread_resources(config.device);
  cudaStream_t stream = resources.stream();
  const DeviceModel model(rbm, stream);
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  int steps = 0;
  Search search = prepare_search(resources, model.weights.data(), model.visible_bias.data(), model.hidden_bias.data(),
                                 n, m, config, steps);
  DeviceBuffer<float> visible(static_cast<std::size_t>(search.replicas) * n, stream);
  DeviceBuffer<float> hidden(static_cast<std::size_t>(search.replicas) * m, stream);
  const ReplicaOutput output{visible.data(), hidden.data()};
  if (config.solver == ModeSolver::sb) {
    run_sb(search, config, steps, output);
  } else {
    run_sa(search, config, steps, output);
  }
  return ReplicaTrajectory{search.replicas, steps, visible.to_host(), hidden.to_host()};
}

}  // namespace marbm::detail
