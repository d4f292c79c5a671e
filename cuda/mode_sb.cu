// Simulated bifurcation replicas on the device (SPEC.md section 4), the CPU
// solver's algorithm step for step (host/mode_solvers.cpp, mode_sb_cpu): the
// same Ising form and c0, the same Philox start (stream mode_search 0), the
// same time step, momentum gain and wall rule, both layers moved in the
// fields of the step before. Each arithmetic operation of a step is the
// CPU's, rounded alike (no contraction to FMA).
//
// Models whose larger layer has at most 256 units run the fused kernel
// (sb_replicas_kernel): one replica per warp, several replicas per block
// sharing one copy of J = W/4 in shared memory (opted in up to the device's
// limit; detail/replica_plan.hpp decides the shape), all steps in the
// kernel, the per-unit registers unrolled for the model's size class. Its
// bSB fields are summed in the CPU's order (add_scaled_rows); its dSB fields
// are summed in full once and then patched with the rows of the spins that
// flipped, in the CPU's order (add_gathered_rows). So where the CPU takes its
// per-replica path (fewer than 32 replicas or n m < 128^2) the fused
// trajectories equal the CPU's bit for bit, whatever the parameters. Larger
// models evaluate the two fields of a step as cuBLAS sgemm over the replica
// batch plus one update kernel, the steps launched as CUDA graphs of
// kGraphSteps steps; there the sums differ from the CPU's in order, and the
// trajectories agree exactly only when the sums are exact (dyadic couplings).
//
// MARBM_REPLICA_KERNELS=legacy selects the earlier kernels (the legacy
// namespace below: four replicas per block within the default shared memory,
// dSB fields summed in full every step, steps launched one by one).
//
// None of this has run on a GPU yet: compiled, reviewed, tested on the CPU
// twins only (tests/gpu/test_cuda_mode.cpp runs where a device is present).
#include <cublas_v2.h>

#include <vector>

#include "error.cuh"
#include "marbm/random.hpp"
#include "detail/sb_step.hpp"
#include "mode_search_internal.cuh"
#include "mode_solvers.hpp"

namespace marbm::detail {

namespace {

// Initial positions and momenta uniform in [-0.1, 0.1) from Philox (seed,
// mode_search stream 0) as on the CPU (sb_initialise): one word per unit,
// replica r owning the words from 4 r ceil((n + m) / 4), the high half giving
// x and the low half y; replica 0 at the warm start (x = +-1, y = 0) when given.
__device__ __forceinline__ void sb_initial(std::uint64_t seed, int r, int n, int m, int unit, bool warm_replica,
                                           std::uint8_t warm_state, float& x, float& y) {
  if (warm_replica) {
    x = warm_state ? 1.0f : -1.0f;
    y = 0.0f;
    return;
  }
  const std::uint64_t stream = random_stream(RandomPurpose::mode_search, 0);
  const std::uint64_t index =
      static_cast<std::uint64_t>(r) * ((static_cast<std::uint64_t>(n + m) + 3) / 4 * 4) + static_cast<std::uint64_t>(unit);
  const std::uint32_t word = philox_word(seed, stream, index);
  constexpr float amp = 0.1f;
  x = __fsub_rn(__fmul_rn(__fmul_rn(2.0f * amp, static_cast<float>(word >> 16)), 0x1.0p-16f), amp);
  y = __fsub_rn(__fmul_rn(__fmul_rn(2.0f * amp, static_cast<float>(word & 0xFFFFu)), 0x1.0p-16f), amp);
}

// The detuning a0 - a(t) at `step` of `steps`, as the CPU computes it.
__host__ __device__ __forceinline__ float sb_detuning(float a0, int step, int steps) {
  return a0 - a0 * static_cast<float>(step) / static_cast<float>(steps);
}

// linear + sum_k source(k) coupling(k), associated as the CPU's
// add_scaled_rows (four terms per pass, out += ((t0 + t1) + t2) + t3) with
// every operation rounded alike: the fused kernel's fields are then the CPU's
// bit for bit, whatever the positions.
template <typename Coupling, typename Source>
__device__ __forceinline__ float field_in_cpu_order(float linear, int count, Coupling coupling, Source source) {
  float out = linear;
  int k = 0;
  for (; k + 4 <= count; k += 4) {
    float terms = __fadd_rn(__fmul_rn(source(k), coupling(k)), __fmul_rn(source(k + 1), coupling(k + 1)));
    terms = __fadd_rn(terms, __fmul_rn(source(k + 2), coupling(k + 2)));
    terms = __fadd_rn(terms, __fmul_rn(source(k + 3), coupling(k + 3)));
    out = __fadd_rn(out, terms);
  }
  for (; k < count; ++k) out = __fadd_rn(out, __fmul_rn(source(k), coupling(k)));
  return out;
}

struct SbParameters {
  int n, m, replicas, steps;
  float dt, c0, a0, gain;
  std::uint64_t seed;
};

namespace legacy {

// Small models: one replica per warp, all steps in the kernel. Lane owns
// visible i = lane + 32 k and hidden j = lane + 32 k; positions live in shared
// memory (the other lanes read them for the fields), momenta in registers.
template <bool kDiscrete>
__global__ void sb_fused_kernel(const float* __restrict__ weights, const float* __restrict__ ising_field, int stride,
                                SbParameters p, const std::uint8_t* __restrict__ warm_v,
                                const std::uint8_t* __restrict__ warm_h, std::uint8_t* __restrict__ out_v,
                                std::uint8_t* __restrict__ out_h, ReplicaOutput positions) {
  extern __shared__ float sb_shared[];
  const int n = p.n, m = p.m;
  float* coupling = sb_shared;  // J = W/4, n rows of `stride`
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  float* xv = sb_shared + static_cast<std::size_t>(n) * stride + static_cast<std::size_t>(warp) * (n + m);
  float* xh = xv + n;
  load_weights_shared(weights, n, m, stride, 0.25f, coupling);
  __syncthreads();
  const int r = blockIdx.x * (blockDim.x / kWarp) + warp;
  if (r >= p.replicas) return;  // after the only block-wide barrier
  const bool warm_replica = r == 0 && warm_v != nullptr;

  float yv[kMaxOwned], yh[kMaxOwned], lv[kMaxOwned], lh[kMaxOwned], fv[kMaxOwned], fh[kMaxOwned];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) {
    const int i = lane + kWarp * k;
    yv[k] = yh[k] = lv[k] = lh[k] = 0.0f;
    if (i < n) {
      float x;
      sb_initial(p.seed, r, n, m, i, warm_replica, warm_replica ? warm_v[i] : 0, x, yv[k]);
      xv[i] = x;
      lv[k] = ising_field[i];
    }
    if (i < m) {
      float x;
      sb_initial(p.seed, r, n, m, n + i, warm_replica, warm_replica ? warm_h[i] : 0, x, yh[k]);
      xh[i] = x;
      lh[k] = ising_field[n + i];
    }
  }
  __syncwarp();
  for (int step = 0; step < p.steps; ++step) {
    const float detuning = sb_detuning(p.a0, step, p.steps);
#pragma unroll
    for (int k = 0; k < kMaxOwned; ++k) {
      const int i = lane + kWarp * k;
      if (i < n) {
        const float* row = coupling + static_cast<std::size_t>(i) * stride;
        fv[k] = field_in_cpu_order(
            lv[k], m, [&](int j) { return row[j]; }, [&](int j) { return kDiscrete ? sign_of(xh[j]) : xh[j]; });
      }
      if (i < m) {
        fh[k] = field_in_cpu_order(
            lh[k], n, [&](int v) { return coupling[static_cast<std::size_t>(v) * stride + i]; },
            [&](int v) { return kDiscrete ? sign_of(xv[v]) : xv[v]; });
      }
    }
    __syncwarp();  // every field read the old positions before any moves
#pragma unroll
    for (int k = 0; k < kMaxOwned; ++k) {
      const int i = lane + kWarp * k;
      if (i < n) sb_spin_step(xv[i], yv[k], fv[k], p.dt, detuning, p.c0, p.a0, p.gain);
      if (i < m) sb_spin_step(xh[i], yh[k], fh[k], p.dt, detuning, p.c0, p.a0, p.gain);
    }
    __syncwarp();
  }
  for (int i = lane; i < n; i += kWarp) {
    out_v[static_cast<std::size_t>(r) * n + i] = xv[i] > 0.0f ? 1 : 0;
    if (positions.visible != nullptr) positions.visible[static_cast<std::size_t>(r) * n + i] = xv[i];
  }
  for (int j = lane; j < m; j += kWarp) {
    out_h[static_cast<std::size_t>(r) * m + j] = xh[j] > 0.0f ? 1 : 0;
    if (positions.hidden != nullptr) positions.hidden[static_cast<std::size_t>(r) * m + j] = xh[j];
  }
}

}  // namespace legacy

// ------------------------------------------------------------ fused kernel

// out + s . (c0, c1, c2, c3) associated as the CPU's add_scaled_rows pass,
// out + (((s0 c0 + s1 c1) + s2 c2) + s3 c3), every operation rounded alone.
__device__ __forceinline__ float scaled_pass(float out, float4 s, float c0, float c1, float c2, float c3) {
  float terms = __fadd_rn(__fmul_rn(s.x, c0), __fmul_rn(s.y, c1));
  terms = __fadd_rn(terms, __fmul_rn(s.z, c2));
  terms = __fadd_rn(terms, __fmul_rn(s.w, c3));
  return __fadd_rn(out, terms);
}

// linear + sum_k source[k] coupling(k) over `count` sources in the CPU's
// order; `source` is a warp's shared array starting 16-byte aligned, read
// four at a time as one broadcast float4.
template <typename Coupling>
__device__ __forceinline__ float field_from_shared(float linear, int count, const float* __restrict__ source,
                                                   Coupling coupling) {
  const float4* source4 = reinterpret_cast<const float4*>(source);
  float out = linear;
  int k = 0;
  for (; k + 4 <= count; k += 4) {
    out = scaled_pass(out, source4[k / 4], coupling(k), coupling(k + 1), coupling(k + 2), coupling(k + 3));
  }
  for (; k < count; ++k) out = __fadd_rn(out, __fmul_rn(source[k], coupling(k)));
  return out;
}

// dSB: adds to this lane's fields (units lane + 32 t < targets) the rows of
// the source units whose sign changed, `change` holding each owned source
// unit's new sign minus its old (0 when unchanged or beyond the layer), as
// the CPU's add_gathered_rows does: the changed units in ascending order,
// four per pass as out + ((c0 r0 + c1 r1) + (c2 r2 + c3 r3)), the last
// (fewer than four) one at a time. Every lane runs the same loop (the masks
// come from a ballot), so the shuffles see the full warp.
template <int kOwned, typename Coupling>
__device__ __forceinline__ void patch_fields(const float (&change)[kOwned], float (&field)[kOwned], int targets,
                                             int lane, Coupling coupling) {
  int queued = 0;
  int q0 = 0, q1 = 0, q2 = 0, q3 = 0;
  float c0 = 0.0f, c1 = 0.0f, c2 = 0.0f, c3 = 0.0f;
#pragma unroll
  for (int k = 0; k < kOwned; ++k) {
    unsigned flipped = __ballot_sync(kFullMask, change[k] != 0.0f);
    while (flipped != 0u) {
      const int bit = __ffs(flipped) - 1;
      flipped &= flipped - 1u;
      const float c = __shfl_sync(kFullMask, change[k], bit);
      q0 = q1, q1 = q2, q2 = q3, q3 = kWarp * k + bit;
      c0 = c1, c1 = c2, c2 = c3, c3 = c;
      if (++queued == 4) {
#pragma unroll
        for (int t = 0; t < kOwned; ++t) {
          const int u = lane + kWarp * t;
          if (u < targets) {
            const float pair01 = __fadd_rn(__fmul_rn(c0, coupling(q0, u)), __fmul_rn(c1, coupling(q1, u)));
            const float pair23 = __fadd_rn(__fmul_rn(c2, coupling(q2, u)), __fmul_rn(c3, coupling(q3, u)));
            field[t] = __fadd_rn(field[t], __fadd_rn(pair01, pair23));
          }
        }
        queued = 0;
      }
    }
  }
  // The queue holds the last `queued` flips in q(4 - queued)..q3, oldest first.
#pragma unroll
  for (int t = 0; t < kOwned; ++t) {
    const int u = lane + kWarp * t;
    if (u < targets) {
      if (queued >= 3) field[t] = __fadd_rn(field[t], __fmul_rn(c1, coupling(q1, u)));
      if (queued >= 2) field[t] = __fadd_rn(field[t], __fmul_rn(c2, coupling(q2, u)));
      if (queued >= 1) field[t] = __fadd_rn(field[t], __fmul_rn(c3, coupling(q3, u)));
    }
  }
}

// Threads per block of class kOwned: replica_max_warps warps (the register
// budget the plan assumes: 64 a thread through class 4, 128 for class 8).
template <int kOwned>
constexpr int sb_block_threads() {
  return kReplicaLanes * replica_max_warps(ReplicaKernel::sb, kOwned);
}

// One replica per warp, blockDim.x / 32 replicas per block sharing J in
// shared memory (layout: detail/replica_shared_bytes): J (n rows of
// `stride`), the Ising linear terms (padded n, then m), and per warp the
// positions (bSB) or signs (dSB) of its replica, visible then hidden, each
// padded to whole float4. Lane owns visible i = lane + 32 k and hidden
// j = lane + 32 k, k < kOwned (32 kOwned >= both layers). bSB keeps the
// positions in shared memory (every lane reads them for its fields) and the
// momenta and fields in registers; dSB keeps positions, momenta and fields
// in registers and needs the shared signs only for the first full fields.
template <int kOwned, bool kDiscrete>
__global__ void __launch_bounds__(sb_block_threads<kOwned>(), 1)
    sb_replicas_kernel(const float* __restrict__ weights, const float* __restrict__ ising_field, int stride,
                       SbParameters p, const std::uint8_t* __restrict__ warm_v, const std::uint8_t* __restrict__ warm_h,
                       std::uint8_t* __restrict__ out_v, std::uint8_t* __restrict__ out_h, ReplicaOutput positions) {
  extern __shared__ float4 sb_replica_shared[];
  float* shared = reinterpret_cast<float*>(sb_replica_shared);
  const int n = p.n, m = p.m;
  const int pn = static_cast<int>(pad4(n)), pm = static_cast<int>(pad4(m));
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  float* coupling = shared;  // J = W/4
  float* linear = shared + pad4(static_cast<std::size_t>(n) * stride);
  float* sv = linear + (pn + pm) + warp * (pn + pm);  // this warp's positions or signs
  float* sh = sv + pn;
  load_weights_shared(weights, n, m, stride, 0.25f, coupling);
  for (int u = threadIdx.x; u < n + m; u += blockDim.x) linear[u < n ? u : pn + (u - n)] = ising_field[u];
  __syncthreads();
  const int r = blockIdx.x * (blockDim.x / kWarp) + warp;
  if (r >= p.replicas) return;  // after the only block-wide barrier; whole warps leave
  const bool warm_replica = r == 0 && warm_v != nullptr;
  auto j_row = [&](int i, int j) { return coupling[i * stride + j]; };  // J[i][j]; i * stride < 2^31 (fits shared memory)

  float xv[kOwned], yv[kOwned], fv[kOwned], xh[kOwned], yh[kOwned], fh[kOwned];
#pragma unroll
  for (int k = 0; k < kOwned; ++k) {
    const int i = lane + kWarp * k;
    xv[k] = yv[k] = fv[k] = xh[k] = yh[k] = fh[k] = 0.0f;
    if (i < n) {
      sb_initial(p.seed, r, n, m, i, warm_replica, warm_replica ? warm_v[i] : 0, xv[k], yv[k]);
      sv[i] = kDiscrete ? sign_of(xv[k]) : xv[k];
    }
    if (i < m) {
      sb_initial(p.seed, r, n, m, n + i, warm_replica, warm_replica ? warm_h[i] : 0, xh[k], yh[k]);
      sh[i] = kDiscrete ? sign_of(xh[k]) : xh[k];
    }
  }
  __syncwarp();
  auto full_fields = [&] {
#pragma unroll
    for (int k = 0; k < kOwned; ++k) {
      const int i = lane + kWarp * k;
      if (i < n) fv[k] = field_from_shared(linear[i], m, sh, [&](int j) { return j_row(i, j); });
      if (i < m) fh[k] = field_from_shared(linear[pn + i], n, sv, [&](int v) { return j_row(v, i); });
    }
  };

  if constexpr (kDiscrete) {
    full_fields();
    for (int step = 0; step < p.steps; ++step) {
      const float detuning = sb_detuning(p.a0, step, p.steps);
      float cv[kOwned], ch[kOwned];
#pragma unroll
      for (int k = 0; k < kOwned; ++k) {
        const int i = lane + kWarp * k;
        cv[k] = ch[k] = 0.0f;
        if (i < n) {
          const float before = sign_of(xv[k]);
          sb_spin_step(xv[k], yv[k], fv[k], p.dt, detuning, p.c0, p.a0, p.gain);
          cv[k] = __fsub_rn(sign_of(xv[k]), before);
        }
        if (i < m) {
          const float before = sign_of(xh[k]);
          sb_spin_step(xh[k], yh[k], fh[k], p.dt, detuning, p.c0, p.a0, p.gain);
          ch[k] = __fsub_rn(sign_of(xh[k]), before);
        }
      }
      // Both layers moved in the fields of the step before; now the fields
      // follow the flips (hidden fields from visible flips and back).
      patch_fields<kOwned>(cv, fh, m, lane, [&](int flipped, int j) { return j_row(flipped, j); });
      patch_fields<kOwned>(ch, fv, n, lane, [&](int flipped, int i) { return j_row(i, flipped); });
    }
  } else {
    for (int step = 0; step < p.steps; ++step) {
      const float detuning = sb_detuning(p.a0, step, p.steps);
      full_fields();
      __syncwarp();  // every field read the old positions before any moves
#pragma unroll
      for (int k = 0; k < kOwned; ++k) {
        const int i = lane + kWarp * k;
        if (i < n) {
          sb_spin_step(xv[k], yv[k], fv[k], p.dt, detuning, p.c0, p.a0, p.gain);
          sv[i] = xv[k];
        }
        if (i < m) {
          sb_spin_step(xh[k], yh[k], fh[k], p.dt, detuning, p.c0, p.a0, p.gain);
          sh[i] = xh[k];
        }
      }
      __syncwarp();
    }
  }
#pragma unroll
  for (int k = 0; k < kOwned; ++k) {
    const int i = lane + kWarp * k;
    if (i < n) {
      out_v[static_cast<std::size_t>(r) * n + i] = xv[k] > 0.0f ? 1 : 0;
      if (positions.visible != nullptr) positions.visible[static_cast<std::size_t>(r) * n + i] = xv[k];
    }
    if (i < m) {
      out_h[static_cast<std::size_t>(r) * m + i] = xh[k] > 0.0f ? 1 : 0;
      if (positions.hidden != nullptr) positions.hidden[static_cast<std::size_t>(r) * m + i] = xh[k];
    }
  }
}

// Large models: positions, momenta (and signs for dSB) of all replicas as
// R x n and R x m row-major matrices.
__global__ void sb_initial_kernel(int replicas, int n, int m, std::uint64_t seed,
                                  const std::uint8_t* __restrict__ warm_v,
                                  const std::uint8_t* __restrict__ warm_h, float* __restrict__ xv, float* __restrict__ yv,
                                  float* __restrict__ xh, float* __restrict__ yh, float* __restrict__ sv,
                                  float* __restrict__ sh) {
  const std::size_t visible_total = static_cast<std::size_t>(replicas) * n;
  const std::size_t total = visible_total + static_cast<std::size_t>(replicas) * m;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const bool visible = k < visible_total;
    const std::size_t local = visible ? k : k - visible_total;
    const int width = visible ? n : m;
    const int r = static_cast<int>(local / width);
    const int unit = static_cast<int>(local % width);
    const bool warm_replica = r == 0 && warm_v != nullptr;
    const std::uint8_t warm_state = warm_replica ? (visible ? warm_v[unit] : warm_h[unit]) : 0;
    float x, y;
    sb_initial(seed, r, n, m, visible ? unit : n + unit, warm_replica, warm_state, x, y);
    (visible ? xv : xh)[local] = x;
    (visible ? yv : yh)[local] = y;
    if (sv != nullptr) (visible ? sv : sh)[local] = sign_of(x);
  }
}

// One step of every spin of every replica, given fields = J-products from
// the two GEMMs (linear terms added here); writes signs for the next dSB step.
// The step is *step_base + offset (run_step_loop), its detuning the host's
// value from `detunings`.
__global__ void sb_update_kernel(SbParameters p, const float* __restrict__ ising_field,
                                 const float* __restrict__ product_v, const float* __restrict__ product_h,
                                 float* __restrict__ xv, float* __restrict__ yv, float* __restrict__ xh,
                                 float* __restrict__ yh, float* __restrict__ sv, float* __restrict__ sh,
                                 const float* __restrict__ detunings, const int* __restrict__ step_base, int offset) {
  const float detuning = detunings[*step_base + offset];
  const std::size_t visible_total = static_cast<std::size_t>(p.replicas) * p.n;
  const std::size_t total = visible_total + static_cast<std::size_t>(p.replicas) * p.m;
  for (std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const bool visible = k < visible_total;
    const std::size_t local = visible ? k : k - visible_total;
    const int width = visible ? p.n : p.m;
    const int unit = static_cast<int>(local % width);
    const float field = ising_field[visible ? unit : p.n + unit] + (visible ? product_v : product_h)[local];
    float* x = (visible ? xv : xh) + local;
    float* y = (visible ? yv : yh) + local;
    float xk = *x, yk = *y;
    sb_spin_step(xk, yk, field, p.dt, detuning, p.c0, p.a0, p.gain);
    *x = xk;
    *y = yk;
    if (sv != nullptr) (visible ? sv : sh)[local] = sign_of(xk);
  }
}

}  // namespace

void run_sb(Search& search, const ModeSearchConfig& config, int steps, const ReplicaOutput& output) {
  const int n = search.n, m = search.m, replicas = search.replicas;
  const bool discrete = config.sb_variant == SbVariant::discrete;
  const bool legacy = legacy_replica_kernels();
  DeviceBuffer<float> ising_field(n + m, search.stream());
  const SearchScalars scalars = prepare_ising(search, ising_field);
  SbParameters p;
  p.n = n;
  p.m = m;
  p.replicas = replicas;
  p.steps = steps;
  p.dt = static_cast<float>(config.time_step > 0.0 ? config.time_step : default_sb_time_step(config.sb_variant));
  p.c0 = static_cast<float>(scalars.c0);
  p.a0 = 1.0f;
  // The CPU solver's anti-damping of ballistic momenta (0.4 per unit time;
  // bench/results/mode-defaults.md); none for dSB.
  p.gain = discrete ? 1.0f : 1.0f + 0.4f * p.dt;
  p.seed = config.seed;

  if (legacy) {
    auto kernel = discrete ? legacy::sb_fused_kernel<true> : legacy::sb_fused_kernel<false>;
    if (use_fused(kernel, n, m, search.resources.device())) {
      const int blocks = (replicas + kFusedWarps - 1) / kFusedWarps;
      kernel<<<blocks, kFusedWarps * kWarp, fused_shared_bytes(n, m), search.stream()>>>(
          search.weights, ising_field.data(), odd_stride(m), p, search.warm_visible(), search.warm_hidden(),
          search.candidates_v.data(), search.candidates_h.data(), output);
      MARBM_CUDA_CHECK_LAST();
      return;
    }
  } else {
    // The size class (units per lane) picks the instantiation.
    using Kernel = decltype(&sb_replicas_kernel<1, true>);
    Kernel kernel = nullptr;
    switch (replica_owned_class(n, m)) {
      case 1: kernel = discrete ? sb_replicas_kernel<1, true> : sb_replicas_kernel<1, false>; break;
      case 2: kernel = discrete ? sb_replicas_kernel<2, true> : sb_replicas_kernel<2, false>; break;
      case 4: kernel = discrete ? sb_replicas_kernel<4, true> : sb_replicas_kernel<4, false>; break;
      case 8: kernel = discrete ? sb_replicas_kernel<8, true> : sb_replicas_kernel<8, false>; break;
      default: break;
    }
    const ReplicaPlan plan =
        kernel == nullptr ? ReplicaPlan{}
                          : prepare_replica_kernel(kernel, ReplicaKernel::sb, n, m, replicas,
                                                   search.resources.multiprocessors(), search.resources.device());
    if (plan.fused) {
      kernel<<<plan.blocks, plan.warps * kWarp, plan.shared_bytes, search.stream()>>>(
          search.weights, ising_field.data(), replica_weight_stride(m), p, search.warm_visible(),
          search.warm_hidden(), search.candidates_v.data(), search.candidates_h.data(), output);
      MARBM_CUDA_CHECK_LAST();
      return;
    }
  }

  const std::size_t visible_total = static_cast<std::size_t>(replicas) * n;
  const std::size_t hidden_total = static_cast<std::size_t>(replicas) * m;
  DeviceBuffer<float> xv(visible_total, search.stream()), yv(visible_total, search.stream());
  DeviceBuffer<float> xh(hidden_total, search.stream()), yh(hidden_total, search.stream());
  DeviceBuffer<float> sv, sh;
  if (discrete) {
    sv = DeviceBuffer<float>(visible_total, search.stream());
    sh = DeviceBuffer<float>(hidden_total, search.stream());
  }
  DeviceBuffer<float> product_v(visible_total, search.stream()), product_h(hidden_total, search.stream());
  // The detuning of every step, computed on the host as the CPU does.
  std::vector<float> host_detunings(static_cast<std::size_t>(steps));
  for (int step = 0; step < steps; ++step) host_detunings[step] = sb_detuning(p.a0, step, steps);
  DeviceBuffer<float> detunings(host_detunings.size(), search.stream());
  detunings.copy_from_host(host_detunings);
  DeviceBuffer<int> step_base(1, search.stream());
  const unsigned blocks = grid_for(visible_total + hidden_total);
  sb_initial_kernel<<<blocks, kGridStrideThreads, 0, search.stream()>>>(
      replicas, n, m, config.seed, search.warm_visible(), search.warm_hidden(), xv.data(), yv.data(), xh.data(),
      yh.data(), discrete ? sv.data() : nullptr, discrete ? sh.data() : nullptr);
  MARBM_CUDA_CHECK_LAST();
  const float* qv = discrete ? sv.data() : xv.data();
  const float* qh = discrete ? sh.data() : xh.data();
  const float quarter = 0.25f;  // J = W / 4, exact in float
  const float zero = 0.0f;
  cublasHandle_t handle = search.resources.cublas();
  run_step_loop(search.stream(), steps, step_base.data(), !legacy, [&](int offset) {
    // Row-major R x n product_v = Q_h (R x m) J^T; in cuBLAS's column-major
    // view W is m x n (lda m), so product_v^T = W^T-as-stored^T * Q_h^T.
    MARBM_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, replicas, m, &quarter, search.weights, m, qh, m,
                                 &zero, product_v.data(), n));
    // Row-major R x m product_h = Q_v (R x n) J.
    MARBM_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, replicas, n, &quarter, search.weights, m, qv, n,
                                 &zero, product_h.data(), m));
    sb_update_kernel<<<blocks, kGridStrideThreads, 0, search.stream()>>>(
        p, ising_field.data(), product_v.data(), product_h.data(), xv.data(), yv.data(), xh.data(), yh.data(),
        discrete ? sv.data() : nullptr, discrete ? sh.data() : nullptr, detunings.data(), step_base.data(), offset);
    MARBM_CUDA_CHECK_LAST();
  });
  finish_replicas(search, xv.data(), xh.data(), output);
}

}  // namespace marbm::detail
