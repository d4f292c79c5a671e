// Exhaustive ground-state search on the device (SPEC.md section 4): Gray-code
// enumeration of the smaller layer with the other set optimally, one chunk
// per warp, then the lowest energy (lowest index on ties) decoded to a state.
#include <algorithm>
#include <string>

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

  const std::uint64_t total = std::uint64_t{1} << k;
  // Enough warps to fill the device a few times over; chunks long enough
  // that the exact restart (k x l) is small beside the chunk's work.
  const std::uint64_t target_warps = static_cast<std::uint64_t>(search.resources.multiprocessors()) * 64;
  const std::uint64_t chunk = std::max<std::uint64_t>({std::uint64_t{64}, static_cast<std::uint64_t>(2 * k),
                                                        (total + target_warps - 1) / target_warps});
  const std::uint64_t warps = (total + chunk - 1) / chunk;
  const std::size_t per_warp = static_cast<std::size_t>(l) * sizeof(double);
  // One warp's float64 fields must fit in a block's shared memory; up to four
  // warps share a block while they fit without opting in.
  const SharedMemoryLimits limits = shared_memory_limits(search.resources.device());
  const std::size_t static_bytes = static_shared_bytes(exhaustive_kernel);
  if (!plan_shared_memory(static_bytes, per_warp, limits).fits) {
    throw RuntimeFailure("exhaustive mode search on the device: the larger layer has " + std::to_string(l) +
                         " units, beyond those whose float64 fields fit in this device's shared memory");
  }
  const std::size_t default_room = limits.per_block > static_bytes ? limits.per_block - static_bytes : 0;
  const int warps_per_block = static_cast<int>(std::clamp<std::size_t>(default_room / per_warp, 1, 4));
  const std::size_t shared = per_warp * warps_per_block;
  MARBM_EXPECTS(prepare_shared_memory(exhaustive_kernel, shared, search.resources.device()), RuntimeFailure,
                "exhaustive mode search on the device: shared memory plan failed");
  const std::uint64_t blocks = (warps + warps_per_block - 1) / warps_per_block;
  const std::uint64_t slots = blocks * warps_per_block;
  DeviceBuffer<double> warp_energy(slots, search.stream());
  DeviceBuffer<std::uint64_t> warp_index(slots, search.stream());
  exhaustive_kernel<<<static_cast<unsigned>(blocks), warps_per_block * kWarp, shared, search.stream()>>>(
      rows, bias_k, bias_l, k, l, total, chunk, warp_energy.data(), warp_index.data());
  MARBM_CUDA_CHECK_LAST();
  std::uint8_t* enumerated = enumerate_hidden ? search.candidates_h.data() : search.candidates_v.data();
  std::uint8_t* other = enumerate_hidden ? search.candidates_v.data() : search.candidates_h.data();
  exhaustive_decode_kernel<<<1, kReduceThreads, 0, search.stream()>>>(warp_energy.data(), warp_index.data(), slots, rows,
                                                                      bias_l, k, l, enumerated, other);
  MARBM_CUDA_CHECK_LAST();
}

}  // namespace marbm::detail
