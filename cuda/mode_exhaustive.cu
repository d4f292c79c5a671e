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
__global__ void exhaustive_kernel(const float* __restrict__ rows, const float* __restrict__ bias_k,
                                  const float* __restrict__ bias_l, int k, int l, std::uint64_t total,
                                  std::uint64_t chunk, double* __restrict__ best_energy,
                                  std::uint64_t* __restrict__ best_index) {
  extern __shared__ double exhaustive_shared[];
  const int lane = threadIdx.x % kWarp;
  const int warp_in_block = threadIdx.x / kWarp;
  double* field = exhaustive_shared + static_cast<std::size_t>(warp_in_block) * l;
  const std::uint64_t warp = static_cast<std::uint64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp_in_block;
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

// One block: the lowest energy over the warps (lowest index on ties), then
// the state: the enumerated layer from the Gray code, the other optimally.
__global__ void exhaustive_decode_kernel(const double* __restrict__ warp_energy,
                                         const std::uint64_t* __restrict__ warp_index, std::uint64_t warps,
                                         const float* __restrict__ rows, const float* __restrict__ bias_l, int k,
                                         int l, std::uint8_t* __restrict__ enumerated, std::uint8_t* __restrict__ other) {
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

}  // namespace

namespace {

// The warp kernel's launch (the shape it always had): slots get each warp's
// lowest (energy, index).
void launch_warp_kernel(Resources& resources, const float* rows, const float* bias_k, const float* bias_l, int k, int l,
                        DeviceBuffer<double>& slot_energy, DeviceBuffer<std::uint64_t>& slot_index) {
  const std::uint64_t total = std::uint64_t{1} << k;
  // Enough warps to fill the device a few times over; chunks long enough
  // that the exact restart (k x l) is small beside the chunk's work.
  const std::uint64_t target_warps = static_cast<std::uint64_t>(resources.multiprocessors()) * 64;
  const std::uint64_t chunk = std::max<std::uint64_t>({std::uint64_t{64}, static_cast<std::uint64_t>(2 * k),
                                                        (total + target_warps - 1) / target_warps});
  const std::uint64_t warps = (total + chunk - 1) / chunk;
  const std::size_t per_warp = static_cast<std::size_t>(l) * sizeof(double);
  // One warp's float64 fields must fit in a block's shared memory; up to four
  // warps share a block while they fit without opting in.
  const SharedMemoryLimits limits = shared_memory_limits(resources.device());
  const std::size_t static_bytes = static_shared_bytes(exhaustive_kernel);
  if (!plan_shared_memory(static_bytes, per_warp, limits).fits) {
    throw RuntimeFailure("exhaustive mode search on the device: the larger layer has " + std::to_string(l) +
                         " units, beyond those whose float64 fields fit in this device's shared memory");
  }
  const std::size_t default_room = limits.per_block > static_bytes ? limits.per_block - static_bytes : 0;
  const int warps_per_block = static_cast<int>(std::clamp<std::size_t>(default_room / per_warp, 1, 4));
  const std::size_t shared = per_warp * warps_per_block;
  MARBM_EXPECTS(prepare_shared_memory(exhaustive_kernel, shared, resources.device()), RuntimeFailure,
                "exhaustive mode search on the device: shared memory plan failed");
  const std::uint64_t blocks = (warps + warps_per_block - 1) / warps_per_block;
  const std::uint64_t slots = blocks * warps_per_block;
  slot_energy = DeviceBuffer<double>(slots, resources.stream());
  slot_index = DeviceBuffer<std::uint64_t>(slots, resources.stream());
  exhaustive_kernel<<<static_cast<unsigned>(blocks), warps_per_block * kWarp, shared, resources.stream()>>>(
      rows, bias_k, bias_l, k, l, total, chunk, slot_energy.data(), slot_index.data());
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
  const bool enumerate_hidden = m <= n;
  const int k = std::min(n, m);
  const int l = std::max(n, m);
  if (k > config.max_enumerated_units) {
    throw RuntimeFailure("exhaustive mode search: the smaller layer has " + std::to_string(k) +
                         " units, beyond the limit of 2^" + std::to_string(config.max_enumerated_units) +
                         " states (max_enumerated_units)");
  }
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

}  // namespace marbm::detail
