// Exhaustive ground-state search on the device (SPEC.md section 4): Gray-code
// enumeration of the smaller layer with the other set optimally, one chunk
// per warp, then the lowest energy (lowest index on ties) decoded to a state.
#include <algorithm>
#include <string>

#include "detail/mode_batch_plan.hpp"
#include "error.cuh"
#include "marbm/error.hpp"
#include "mode_search_internal.cuh"

namespace marbm::detail {

namespace {

// Each warp enumerates a chunk of Gray-code indices of the smaller layer
// ("enumerated", k units); the other layer (l units) is set optimally, so
// E = -bias_k . g - sum_p max(0, field_p) with field = bias_l + sum_{u in g} rows[u].
// Lanes own field entries p = lane + 32 t, kept in float64 in shared memory
// and restarted exactly at the chunk start.
// The work of warp `warp` (of one model) on `field` (l doubles of shared
// memory); the single and the batched kernel both run it, so a model's search
// in a batched launch does exactly the arithmetic of its own search.
__device__ __forceinline__ void exhaustive_warp(const float* __restrict__ rows, const float* __restrict__ bias_k,
                                                const float* __restrict__ bias_l, int k, int l, std::uint64_t total,
                                                std::uint64_t chunk, std::uint64_t warp, double* __restrict__ field,
                                                double* __restrict__ best_energy, std::uint64_t* __restrict__ best_index) {
  const int lane = threadIdx.x % kWarp;
  const std::uint64_t begin = warp * chunk;
  double best = INFINITY;
  std::uint64_t best_at = ~std::uint64_t{0};
  if (begin < total) {
    const std::uint64_t end = total - begin < chunk ? total : begin + chunk;
    std::uint64_t gray = begin ^ (begin >> 1);
    double linear = 0.0;
    for (int u = 0; u < k; ++u) {
      if ((gray >> u) & 1u) linear += bias_k[u];
    }
    double relu = 0.0;
    for (int p = lane; p < l; p += kWarp) {
      double f = bias_l[p];
      for (int u = 0; u < k; ++u) {
        if ((gray >> u) & 1u) f += rows[static_cast<std::size_t>(u) * l + p];
      }
      field[p] = f;
      relu += fmax(0.0, f);
    }
    for (std::uint64_t s = begin;;) {
      const double energy = -linear - warp_sum(relu);
      if (energy < best) {
        best = energy;
        best_at = s;
      }
      if (++s == end) break;
      const int u = __ffsll(static_cast<long long>(s)) - 1;  // the bit gray(s) flips
      gray ^= std::uint64_t{1} << u;
      const bool on = (gray >> u) & 1u;
      linear += on ? bias_k[u] : -bias_k[u];
      const float* row = rows + static_cast<std::size_t>(u) * l;
      relu = 0.0;
      for (int p = lane; p < l; p += kWarp) {
        const double f = on ? field[p] + row[p] : field[p] - row[p];
        field[p] = f;
        relu += fmax(0.0, f);
      }
    }
  }
  if (lane == 0) {
    best_energy[warp] = best;
    best_index[warp] = best_at;
  }
}

__global__ void exhaustive_kernel(const float* __restrict__ rows, const float* __restrict__ bias_k,
                                  const float* __restrict__ bias_l, int k, int l, std::uint64_t total,
                                  std::uint64_t chunk, double* __restrict__ best_energy,
                                  std::uint64_t* __restrict__ best_index) {
  extern __shared__ double exhaustive_shared[];
  const int warp_in_block = threadIdx.x / kWarp;
  double* field = exhaustive_shared + static_cast<std::size_t>(warp_in_block) * l;
  const std::uint64_t warp = static_cast<std::uint64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp_in_block;
  exhaustive_warp(rows, bias_k, bias_l, k, l, total, chunk, warp, field, best_energy, best_index);
}

// Several models in one launch: model `first + blockIdx.y` of the batch, its
// blocks along x exactly as its own launch would have them; its warp results
// at slot offset model x slots.
__global__ void exhaustive_batched_kernel(BatchedModels models, int first, int k, int l, std::uint64_t total,
                                          std::uint64_t chunk, std::uint64_t slots, double* __restrict__ best_energy,
                                          std::uint64_t* __restrict__ best_index) {
  extern __shared__ double exhaustive_shared[];
  const int model = first + static_cast<int>(blockIdx.y);
  const int warp_in_block = threadIdx.x / kWarp;
  double* field = exhaustive_shared + static_cast<std::size_t>(warp_in_block) * l;
  const std::uint64_t warp = static_cast<std::uint64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp_in_block;
  const std::size_t offset = static_cast<std::size_t>(model) * slots;
  exhaustive_warp(models.rows(model), models.bias_k(model), models.bias_l(model), k, l, total, chunk, warp, field,
                  best_energy + offset, best_index + offset);
}

// One block: the lowest energy over the warps (lowest index on ties), then
// the state: the enumerated layer from the Gray code, the other optimally.
__device__ __forceinline__ void exhaustive_decode(const double* __restrict__ warp_energy,
                                                  const std::uint64_t* __restrict__ warp_index, std::uint64_t warps,
                                                  const float* __restrict__ rows, const float* __restrict__ bias_l,
                                                  int k, int l, std::uint8_t* __restrict__ enumerated,
                                                  std::uint8_t* __restrict__ other) {
  __shared__ double energies[kReduceThreads];
  __shared__ std::uint64_t indices[kReduceThreads];
  double best = INFINITY;
  std::uint64_t best_at = ~std::uint64_t{0};
  for (std::uint64_t w = threadIdx.x; w < warps; w += blockDim.x) {
    const double e = warp_energy[w];
    if (e < best || (e == best && warp_index[w] < best_at)) {
      best = e;
      best_at = warp_index[w];
    }
  }
  energies[threadIdx.x] = best;
  indices[threadIdx.x] = best_at;
  block_lowest(energies, indices);
  const std::uint64_t index = indices[0];
  const std::uint64_t gray = index ^ (index >> 1);
  for (int u = threadIdx.x; u < k; u += blockDim.x) enumerated[u] = (gray >> u) & 1u;
  for (int p = threadIdx.x; p < l; p += blockDim.x) {
    double f = bias_l[p];
    for (int u = 0; u < k; ++u) {
      if ((gray >> u) & 1u) f += rows[static_cast<std::size_t>(u) * l + p];
    }
    other[p] = f > 0.0 ? 1 : 0;
  }
}

__global__ void exhaustive_decode_kernel(const double* __restrict__ warp_energy,
                                         const std::uint64_t* __restrict__ warp_index, std::uint64_t warps,
                                         const float* __restrict__ rows, const float* __restrict__ bias_l, int k,
                                         int l, std::uint8_t* __restrict__ enumerated, std::uint8_t* __restrict__ other) {
  exhaustive_decode(warp_energy, warp_index, warps, rows, bias_l, k, l, enumerated, other);
}

// One block per model (model first + blockIdx.x), kReduceThreads threads;
// its state into the model's candidate slot (n visible, m hidden bytes).
__global__ void exhaustive_decode_batched_kernel(BatchedModels models, int first, const double* __restrict__ warp_energy,
                                                 const std::uint64_t* __restrict__ warp_index, std::uint64_t slots, int k,
                                                 int l, std::uint8_t* __restrict__ candidates_v,
                                                 std::uint8_t* __restrict__ candidates_h) {
  const int model = first + static_cast<int>(blockIdx.x);
  const std::size_t offset = static_cast<std::size_t>(model) * slots;
  std::uint8_t* v = candidates_v + static_cast<std::size_t>(model) * models.n;
  std::uint8_t* h = candidates_h + static_cast<std::size_t>(model) * models.m;
  exhaustive_decode(warp_energy + offset, warp_index + offset, slots, models.rows(model), models.bias_l(model), k, l,
                    models.enumerate_hidden ? h : v, models.enumerate_hidden ? v : h);
}

}  // namespace

void check_enumerable(int n, int m, const ModeSearchConfig& config) {
  const int k = std::min(n, m);
  if (k > config.max_enumerated_units) {
    throw RuntimeFailure("exhaustive mode search: the smaller layer has " + std::to_string(k) +
                         " units, beyond the limit of 2^" + std::to_string(config.max_enumerated_units) +
                         " states (max_enumerated_units)");
  }
}

namespace {

// The launch plan on this device; refused where one warp's float64 fields do
// not fit, else the kernel opted in as the plan needs.
template <typename Kernel>
ExhaustivePlan prepare_exhaustive(Kernel kernel, Resources& resources, int n, int m) {
  const SharedMemoryLimits limits = shared_memory_limits(resources.device());
  const ExhaustivePlan plan = plan_exhaustive(n, m, resources.multiprocessors(), static_shared_bytes(kernel), limits);
  if (!plan.fits) {
    throw RuntimeFailure("exhaustive mode search on the device: the larger layer has " + std::to_string(plan.l) +
                         " units, beyond those whose float64 fields fit in this device's shared memory");
  }
  MARBM_EXPECTS(prepare_shared_memory(kernel, plan.shared_bytes, resources.device()), RuntimeFailure,
                "exhaustive mode search on the device: shared memory plan failed");
  return plan;
}

}  // namespace

void run_exhaustive(Search& search, const ModeSearchConfig& config) {
  const int n = search.n, m = search.m;
  check_enumerable(n, m, config);
  const ExhaustivePlan plan = prepare_exhaustive(exhaustive_kernel, search.resources, n, m);
  // Row u of `rows` couples enumerated unit u to every unit of the other layer.
  const float* rows = plan.enumerate_hidden ? search.transposed.data() : search.weights;
  const float* bias_k = plan.enumerate_hidden ? search.hidden_bias : search.visible_bias;
  const float* bias_l = plan.enumerate_hidden ? search.visible_bias : search.hidden_bias;
  DeviceBuffer<double> warp_energy(plan.slots, search.stream());
  DeviceBuffer<std::uint64_t> warp_index(plan.slots, search.stream());
  exhaustive_kernel<<<static_cast<unsigned>(plan.blocks), plan.warps_per_block * kWarp, plan.shared_bytes,
                      search.stream()>>>(rows, bias_k, bias_l, plan.k, plan.l, plan.total, plan.chunk,
                                         warp_energy.data(), warp_index.data());
  MARBM_CUDA_CHECK_LAST();
  std::uint8_t* enumerated = plan.enumerate_hidden ? search.candidates_h.data() : search.candidates_v.data();
  std::uint8_t* other = plan.enumerate_hidden ? search.candidates_v.data() : search.candidates_h.data();
  exhaustive_decode_kernel<<<1, kReduceThreads, 0, search.stream()>>>(warp_energy.data(), warp_index.data(), plan.slots,
                                                                      rows, bias_l, plan.k,
                                                                      plan.l, enumerated, other);
  MARBM_CUDA_CHECK_LAST();
}

void run_exhaustive_batched(Resources& resources, const BatchedModels& models, int count, std::uint8_t* candidates_v,
                            std::uint8_t* candidates_h) {
  const ExhaustivePlan plan = prepare_exhaustive(exhaustive_batched_kernel, resources, models.n, models.m);
  MARBM_EXPECTS(plan.enumerate_hidden == models.enumerate_hidden, RuntimeFailure,
                "batched exhaustive search: the models' enumerated layer disagrees with the plan");
  cudaStream_t stream = resources.stream();
  DeviceBuffer<double> warp_energy(plan.slots * static_cast<std::uint64_t>(count), stream);
  DeviceBuffer<std::uint64_t> warp_index(plan.slots * static_cast<std::uint64_t>(count), stream);
  for (const ModelGroup group : model_groups(count)) {
    const dim3 grid(static_cast<unsigned>(plan.blocks), static_cast<unsigned>(group.count));
    exhaustive_batched_kernel<<<grid, plan.warps_per_block * kWarp, plan.shared_bytes, stream>>>(
        models, group.first, plan.k, plan.l, plan.total, plan.chunk, plan.slots, warp_energy.data(), warp_index.data());
    MARBM_CUDA_CHECK_LAST();
  }
  for (const ModelGroup group : model_groups(count)) {
    exhaustive_decode_batched_kernel<<<static_cast<unsigned>(group.count), kReduceThreads, 0, stream>>>(
        models, group.first, warp_energy.data(), warp_index.data(), plan.slots, plan.k, plan.l, candidates_v,
        candidates_h);
    MARBM_CUDA_CHECK_LAST();
  }
}

}  // namespace marbm::detail
