// Exhaustive ground-state search on the device (SPEC.md section 4): Gray-code
// enumeration of the smaller layer with the other set optimally, then the
// lowest energy (lowest index on ties) decoded to a state. Two kernels (plan:
// host/detail/mode_exhaustive_plan.hpp): one chunk of states per thread with
// the fields in registers when the larger layer has <= 64 units, else one
// chunk per warp with the fields in shared memory. MARBM_EXHAUSTIVE_KERNEL=warp
// forces the warp kernel (the comparison the GPU tests make). The thread
// kernel is compiled, not yet run on a device.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "detail/mode_exhaustive_plan.hpp"
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

// One chunk of 2^chunk_bits consecutive Gray indices per thread, the other
// layer's L >= l float64 fields in registers (predicated beyond l), restarted
// exactly at the chunk's first state as the warp kernel restarts them. Chunks
// are aligned to their length, so step i of every chunk flips unit
// ctz(i): the same row for the whole warp, read from shared memory as a
// broadcast and added as fma(+-1, row, field), which rounds once like
// field +- row. Rows are kept in shared memory in float64 up to L = 32
// (converted once: a float-to-double conversion per field and state runs at
// a quarter of the FP64 rate); at L = 64 float64 rows made ptxas hoist the
// loads beyond 255 registers and spill, so they stay float32 there. Per
// state E = -linear - sum_p max(0, field_p), the sum as four partial sums
// over p mod 4 in p order, combined (s0 + s1) + (s2 + s3)
// (exhaustive_thread_twin is this arithmetic on the CPU); the lowest (energy,
// index) of each warp goes to its slot. No barrier after the load and no
// shuffle inside the enumeration, so threads without a chunk (only when the
// whole enumeration has fewer than 32 chunks) just skip it.
template <int L>
using ExhaustiveRow = std::conditional_t<L <= 32, double, float>;

template <int L>
__global__ void __launch_bounds__(kExhaustiveThreadBlock)
    exhaustive_thread_kernel(const float* __restrict__ rows, const float* __restrict__ bias_k,
                             const float* __restrict__ bias_l, int k, int l, int chunk_bits, std::uint64_t chunks,
                             double* __restrict__ best_energy, std::uint64_t* __restrict__ best_index) {
  static_assert(L % 4 == 0 && L <= kExhaustiveThreadMaxUnits, "size classes are multiples of 4 up to 64");
  using Row = ExhaustiveRow<L>;
  extern __shared__ __align__(16) unsigned char exhaustive_thread_shared[];
  Row* shared_rows = reinterpret_cast<Row*>(exhaustive_thread_shared);  // chunk_bits x L, zero beyond l
  Row* shared_bias = shared_rows + chunk_bits * L;                      // chunk_bits
  for (int x = threadIdx.x; x < chunk_bits * L; x += blockDim.x) {
    const int u = x / L, p = x % L;
    shared_rows[x] = p < l ? static_cast<Row>(rows[static_cast<std::size_t>(u) * l + p]) : Row{0};
  }
  for (int u = threadIdx.x; u < chunk_bits; u += blockDim.x) shared_bias[u] = bias_k[u];
  __syncthreads();  // every thread of the block reaches it

  const std::uint64_t thread = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  double best = INFINITY;
  std::uint64_t best_at = ~std::uint64_t{0};
  if (thread < chunks) {
    const std::uint64_t begin = thread << chunk_bits;
    const std::uint64_t chunk = std::uint64_t{1} << chunk_bits;
    std::uint64_t gray = begin ^ (begin >> 1);
    double linear = 0.0;
    for (int u = 0; u < k; ++u) {
      if ((gray >> u) & 1u) linear += bias_k[u];
    }
    double field[L];
#pragma unroll
    for (int p = 0; p < L; ++p) field[p] = p < l ? static_cast<double>(bias_l[p]) : 0.0;
    for (int u = 0; u < k; ++u) {
      if (!((gray >> u) & 1u)) continue;
      const float* row = rows + static_cast<std::size_t>(u) * l;
#pragma unroll
      for (int p = 0; p < L; ++p) {
        if (p < l) field[p] += row[p];
      }
    }
    for (std::uint64_t i = 0;;) {
      // Four partial sums (p mod 4, p ascending) shorten the dependent chain
      // of additions from l to l / 4.
      double part[4] = {0.0, 0.0, 0.0, 0.0};
#pragma unroll
      for (int p = 0; p < L; ++p) {
        if (p < l) part[p % 4] += fmax(0.0, field[p]);
      }
      const double energy = -linear - ((part[0] + part[1]) + (part[2] + part[3]));
      if (energy < best) {
        best = energy;
        best_at = begin + i;
      }
      if (++i == chunk) break;
      const int u = __ffsll(static_cast<long long>(i)) - 1;  // < chunk_bits; the same in every thread
      gray ^= std::uint64_t{1} << u;
      const bool on = (gray >> u) & 1u;
      const double sign = on ? 1.0 : -1.0;
      linear = fma(sign, static_cast<double>(shared_bias[u]), linear);
      if constexpr (std::is_same_v<Row, double>) {
        const Row* row = shared_rows + u * L;
#pragma unroll
        for (int p = 0; p < L; ++p) {
          if (p < l) field[p] = fma(sign, row[p], field[p]);
        }
      } else {
        // float32 rows: the sign on the float (exact), then one conversion
        // and one addition per field.
        const float4* row = reinterpret_cast<const float4*>(shared_rows + u * L);
#pragma unroll
        for (int q = 0; q < L / 4; ++q) {
          const float4 r = row[q];
          if (4 * q + 0 < l) field[4 * q + 0] += on ? r.x : -r.x;
          if (4 * q + 1 < l) field[4 * q + 1] += on ? r.y : -r.y;
          if (4 * q + 2 < l) field[4 * q + 2] += on ? r.z : -r.z;
          if (4 * q + 3 < l) field[4 * q + 3] += on ? r.w : -r.w;
        }
      }
    }
  }
  // The warp's lowest (energy, index): every lane takes part (full mask).
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const double e = __shfl_down_sync(0xffffffffu, best, offset);
    const std::uint64_t at = __shfl_down_sync(0xffffffffu, best_at, offset);
    if (e < best || (e == best && at < best_at)) {
      best = e;
      best_at = at;
    }
  }
  if (threadIdx.x % kWarp == 0) {
    best_energy[thread / kWarp] = best;
    best_index[thread / kWarp] = best_at;
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

// The launch plan of the warp kernels on this device (plan_exhaustive_warp:
// the single and the batched search share it); refused where one warp's
// float64 fields do not fit, else the kernel opted in as the plan needs.
template <typename Kernel>
WarpExhaustivePlan prepare_exhaustive(Kernel kernel, Resources& resources, int n, int m) {
  const SharedMemoryLimits limits = shared_memory_limits(resources.device());
  const WarpExhaustivePlan plan =
      plan_exhaustive_warp(n, m, resources.multiprocessors(), static_shared_bytes(kernel), limits);
  if (!plan.fits) {
    throw RuntimeFailure("exhaustive mode search on the device: the larger layer has " + std::to_string(plan.l) +
                         " units, beyond those whose float64 fields fit in this device's shared memory");
  }
  MARBM_EXPECTS(prepare_shared_memory(kernel, plan.shared_bytes, resources.device()), RuntimeFailure,
                "exhaustive mode search on the device: shared memory plan failed");
  return plan;
}

// The warp kernel's launch: slots get each warp's lowest (energy, index).
// (l, k) as (n, m) makes the plan enumerate the k units (k <= l).
void launch_warp_kernel(Resources& resources, const float* rows, const float* bias_k, const float* bias_l, int k, int l,
                        DeviceBuffer<double>& slot_energy, DeviceBuffer<std::uint64_t>& slot_index) {
  const WarpExhaustivePlan plan = prepare_exhaustive(exhaustive_kernel, resources, l, k);
  slot_energy = DeviceBuffer<double>(plan.slots, resources.stream());
  slot_index = DeviceBuffer<std::uint64_t>(plan.slots, resources.stream());
  exhaustive_kernel<<<static_cast<unsigned>(plan.blocks), plan.warps_per_block * kWarp, plan.shared_bytes,
                      resources.stream()>>>(rows, bias_k, bias_l, plan.k, plan.l, plan.total, plan.chunk,
                                            slot_energy.data(), slot_index.data());
  MARBM_CUDA_CHECK_LAST();
}

template <int L>
void launch_thread_kernel(Resources& resources, const float* rows, const float* bias_k, const float* bias_l, int k,
                          int l, const ExhaustivePlan& plan, DeviceBuffer<double>& slot_energy,
                          DeviceBuffer<std::uint64_t>& slot_index) {
  // At most 62 x 33 doubles or 62 x 65 floats (16.4 KB): within the default
  // 48 KB, no opt-in.
  MARBM_EXPECTS(prepare_shared_memory(exhaustive_thread_kernel<L>, plan.shared_bytes, resources.device()),
                RuntimeFailure, "exhaustive mode search on the device: shared memory plan failed");
  slot_energy = DeviceBuffer<double>(plan.slots, resources.stream());
  slot_index = DeviceBuffer<std::uint64_t>(plan.slots, resources.stream());
  exhaustive_thread_kernel<L><<<static_cast<unsigned>(plan.blocks), kExhaustiveThreadBlock, plan.shared_bytes,
                                resources.stream()>>>(rows, bias_k, bias_l, k, l, plan.chunk_bits, plan.chunks,
                                                      slot_energy.data(), slot_index.data());
  MARBM_CUDA_CHECK_LAST();
}

}  // namespace

void launch_exhaustive(Resources& resources, const float* rows, const float* bias_k, const float* bias_l, int k, int l,
                       const ExhaustivePlan& plan, DeviceBuffer<double>& slot_energy,
                       DeviceBuffer<std::uint64_t>& slot_index) {
  if (plan.kernel == ExhaustiveKernel::warp) {
    launch_warp_kernel(resources, rows, bias_k, bias_l, k, l, slot_energy, slot_index);
    return;
  }
  switch (plan.size_class) {
    case 16: launch_thread_kernel<16>(resources, rows, bias_k, bias_l, k, l, plan, slot_energy, slot_index); break;
    case 32: launch_thread_kernel<32>(resources, rows, bias_k, bias_l, k, l, plan, slot_energy, slot_index); break;
    case 64: launch_thread_kernel<64>(resources, rows, bias_k, bias_l, k, l, plan, slot_energy, slot_index); break;
    default: throw RuntimeFailure("exhaustive mode search: no thread kernel for size class " +
                                  std::to_string(plan.size_class));
  }
}

ExhaustivePlan device_exhaustive_plan(Resources& resources, int k, int l) {
  return plan_exhaustive(k, l, resources.multiprocessors(), exhaustive_force_warp(std::getenv("MARBM_EXHAUSTIVE_KERNEL")));
}

ExhaustiveLowest exhaustive_lowest_device(Resources& resources, const float* rows, const float* bias_k,
                                          const float* bias_l, int k, int l, const ExhaustivePlan& plan) {
  DeviceBuffer<double> slot_energy;
  DeviceBuffer<std::uint64_t> slot_index;
  launch_exhaustive(resources, rows, bias_k, bias_l, k, l, plan, slot_energy, slot_index);
  const std::vector<double> energy = slot_energy.to_host();
  const std::vector<std::uint64_t> index = slot_index.to_host();
  ExhaustiveLowest lowest{INFINITY, ~std::uint64_t{0}};
  for (std::size_t s = 0; s < energy.size(); ++s) {
    if (energy[s] < lowest.energy || (energy[s] == lowest.energy && index[s] < lowest.index)) {
      lowest = {energy[s], index[s]};
    }
  }
  return lowest;
}

void run_exhaustive(Search& search, const ModeSearchConfig& config) {
  const int n = search.n, m = search.m;
  check_enumerable(n, m, config);
  const bool enumerate_hidden = m <= n;
  const int k = std::min(n, m);
  const int l = std::max(n, m);
  // Row u of `rows` couples enumerated unit u to every unit of the other layer.
  const float* rows = enumerate_hidden ? search.transposed.data() : search.weights;
  const float* bias_k = enumerate_hidden ? search.hidden_bias : search.visible_bias;
  const float* bias_l = enumerate_hidden ? search.visible_bias : search.hidden_bias;
  DeviceBuffer<double> slot_energy;
  DeviceBuffer<std::uint64_t> slot_index;
  launch_exhaustive(search.resources, rows, bias_k, bias_l, k, l, device_exhaustive_plan(search.resources, k, l),
                    slot_energy, slot_index);
  std::uint8_t* enumerated = enumerate_hidden ? search.candidates_h.data() : search.candidates_v.data();
  std::uint8_t* other = enumerate_hidden ? search.candidates_v.data() : search.candidates_h.data();
  exhaustive_decode_kernel<<<1, kReduceThreads, 0, search.stream()>>>(slot_energy.data(), slot_index.data(),
                                                                      slot_energy.size(), rows, bias_l, k, l,
                                                                      enumerated, other);
  MARBM_CUDA_CHECK_LAST();
}

void run_exhaustive_batched(Resources& resources, const BatchedModels& models, int count, std::uint8_t* candidates_v,
                            std::uint8_t* candidates_h) {
  const WarpExhaustivePlan plan = prepare_exhaustive(exhaustive_batched_kernel, resources, models.n, models.m);
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
