// Simulated bifurcation and simulated annealing replicas on the CPU
// (SPEC.md section 4). Both end with the descent polish on every replica and
// return the best one.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "detail/blas.hpp"
#include "marbm/communicator.hpp"
#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "detail/sb_step.hpp"
#include "mode_solvers.hpp"

namespace marbm::detail {

int default_mode_replicas(ModeSolver solver, int n_visible, int n_hidden) {
  const int units = n_visible + n_hidden;
  switch (solver) {
    case ModeSolver::exhaustive: return 1;
    case ModeSolver::sb: return units <= 64 ? 16 : 32;
    case ModeSolver::sa: return units <= 64 ? 16 : 32;
    case ModeSolver::local: return default_local_replicas(n_visible, n_hidden);
  }
  return 16;
}

int default_sb_replicas(SbVariant variant, int n_visible, int n_hidden) {
  // Ballistic replicas are cheaper per step but agree with each other more
  // (they follow the same branch of the relaxed problem): more of them.
  const int replicas = default_mode_replicas(ModeSolver::sb, n_visible, n_hidden);
  return variant == SbVariant::ballistic ? 8 * replicas : replicas;
}

int default_mode_steps(ModeSolver solver, int n_visible, int n_hidden) {
  const int units = n_visible + n_hidden;
  switch (solver) {
    case ModeSolver::exhaustive: return 0;
    case ModeSolver::sb: return std::clamp(2 * units, 100, 1000);
    case ModeSolver::sa: return std::clamp(2 * units, 100, 1000);
    case ModeSolver::local: return default_local_rounds(n_visible, n_hidden);
  }
  return 200;
}

double default_sb_time_step(SbVariant variant) { return variant == SbVariant::discrete ? 1.0 : 2.0; }

int default_sb_steps(SbVariant variant, int n_visible, int n_hidden) {
  const int steps = default_mode_steps(ModeSolver::sb, n_visible, n_hidden);
  return variant == SbVariant::ballistic ? steps / 2 : steps;
}

AnnealingRange derived_annealing_range(const Rbm& rbm) {
  const int n = rbm.n_visible();
  const int m = rbm.n_hidden();
  const auto w = rbm.weights();
  const auto a = rbm.visible_bias();
  const auto b = rbm.hidden_bias();
  // Mean square local field of a unit when the other layer is uniformly
  // random: (bias + sum W / 2)^2 + sum W^2 / 4.
  std::vector<double> row_sum(n, 0.0), row_sq(n, 0.0), col_sum(m, 0.0), col_sq(m, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < m; ++j) {
      const double x = w[static_cast<std::size_t>(i) * m + j];
      row_sum[i] += x;
      row_sq[i] += x * x;
      col_sum[j] += x;
      col_sq[j] += x * x;
    }
  }
  double square = 0.0;
  for (int i = 0; i < n; ++i) square += std::pow(a[i] + row_sum[i] / 2.0, 2) + row_sq[i] / 4.0;
  for (int j = 0; j < m; ++j) square += std::pow(b[j] + col_sum[j] / 2.0, 2) + col_sq[j] / 4.0;
  const double typical = std::max(std::sqrt(square / (n + m)), 1e-12);
  AnnealingRange range;
  // Hot: a flip against a typical field is accepted half the time,
  // exp(-beta f) = 1/2.
  range.hot = std::log(2.0) / typical;
  // Cold: about 1% of units excited. With |local field| spread like a
  // half-normal of scale `typical`, its density at 0 is sqrt(2/pi)/typical
  // and the mean excitation sigmoid(-beta |f|) is about that density times
  // ln 2 / beta (the small fields dominate); setting it to 0.01 gives
  // beta = 100 sqrt(2/pi) ln 2 / typical (about 55 / typical).
  range.cold = 100.0 * std::sqrt(2.0 / std::acos(-1.0)) * std::log(2.0) / typical;
  return range;
}

namespace {

// Replica states after the dynamics, polished and reduced to the best one.
struct Replicas {
  int n = 0;
  int m = 0;
  int count = 0;
  std::vector<std::uint8_t> visible;  // count x n
  std::vector<std::uint8_t> hidden;   // count x m
  std::uint8_t* v(int r) { return visible.data() + static_cast<std::size_t>(r) * n; }
  std::uint8_t* h(int r) { return hidden.data() + static_cast<std::size_t>(r) * m; }
};

// Polishes every replica, picks the lowest energy (first replica on ties, so
// the result does not depend on the thread count) and counts the replicas at
// the best energy (within 1e-9 relative). The polished warm start, when given,
// is a candidate too, so a search never returns worse than where it started.
// Every replica polished in place (in parallel); their energies.
std::vector<double> polish_all(const Rbm& rbm, const ModeSearchConfig& config, const DescentPolish& polish,
                               Replicas& replicas) {
  std::vector<double> energy(static_cast<std::size_t>(replicas.count));
  const bool collapsed = config.polish == ModePolish::collapsed && replicas.count > 0;
  const std::unique_ptr<CollapsedPolish> descent = collapsed ? std::make_unique<CollapsedPolish>(rbm) : nullptr;
#pragma omp parallel
  {
    DescentPolish::Scratch scratch;
    CollapsedPolish::Scratch collapsed_scratch;
#pragma omp for schedule(static)
    for (int r = 0; r < replicas.count; ++r) {
      energy[r] = polish.run(replicas.v(r), replicas.h(r), scratch);
      if (descent) energy[r] = descent->run(replicas.v(r), replicas.h(r), collapsed_scratch);
    }
  }
  return energy;
}

// The first index of the lowest energy.
int lowest(const std::vector<double>& energy) {
  int best = 0;
  for (int r = 1; r < static_cast<int>(energy.size()); ++r) {
    if (energy[r] < energy[best]) best = r;
  }
  return best;
}

// The warm start, polished, replaces the replicas' best when it is lower.
void keep_polished_warm_start(const ModeSearchConfig& config, const DescentPolish& polish, ModeResult& result) {
  if (config.warm_visible.empty()) return;
  std::vector<std::uint8_t> v = config.warm_visible;
  std::vector<std::uint8_t> h = config.warm_hidden;
  DescentPolish::Scratch scratch;
  const double e = polish.run(v.data(), h.data(), scratch);
  if (e < result.energy) {
    result.visible = std::move(v);
    result.hidden = std::move(h);
    result.energy = e;
  }
}

ModeResult finish(const Rbm& rbm, const ModeSearchConfig& config, Replicas& replicas, int steps,
                  std::chrono::steady_clock::time_point start) {
  const DescentPolish polish(rbm);
  const std::vector<double> energy = polish_all(rbm, config, polish, replicas);
  const int best = lowest(energy);
  ModeResult result;
  result.visible.assign(replicas.v(best), replicas.v(best) + replicas.n);
  result.hidden.assign(replicas.h(best), replicas.h(best) + replicas.m);
  result.energy = energy[best];
  keep_polished_warm_start(config, polish, result);
  const double tolerance = 1e-9 * std::max(1.0, std::abs(result.energy));
  result.replicas_at_best = static_cast<int>(
      std::count_if(energy.begin(), energy.end(), [&](double e) { return e <= result.energy + tolerance; }));
  // The reported energy is recomputed from the state by the model itself.
  result.energy = rbm.energy(result.visible, result.hidden);
  result.replicas = replicas.count;
  result.steps = steps;
  result.seconds = seconds_since(start);
  return result;
}

// The Ising form with spins s = 2v - 1, t = 2h - 1 (SPEC.md section 4):
// E = E_bar - s.field_v - t.field_h - s^T J t with J = W / 4,
// field_v = a/2 + W 1/4, field_h = b/2 + W^T 1/4.
struct IsingForm {
  int n = 0;
  int m = 0;
  std::vector<float> coupling;             // J, n x m
  std::vector<float> coupling_transposed;  // J^T, m x n
  std::vector<float> field_v;
  std::vector<float> field_h;
  double scale = 1.0;  // c0

  explicit IsingForm(const Rbm& rbm) : n(rbm.n_visible()), m(rbm.n_hidden()) {
    const auto w = rbm.weights();
    const auto a = rbm.visible_bias();
    const auto b = rbm.hidden_bias();
    coupling.resize(static_cast<std::size_t>(n) * m);
    coupling_transposed.resize(coupling.size());
    std::vector<double> fv(n), fh(m);
    for (int i = 0; i < n; ++i) fv[i] = a[i] / 2.0;
    for (int j = 0; j < m; ++j) fh[j] = b[j] / 2.0;
    double square = 0.0;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < m; ++j) {
        const double x = w[static_cast<std::size_t>(i) * m + j];
        coupling[static_cast<std::size_t>(i) * m + j] = static_cast<float>(x / 4.0);
        coupling_transposed[static_cast<std::size_t>(j) * n + i] = static_cast<float>(x / 4.0);
        fv[i] += x / 4.0;
        fh[j] += x / 4.0;
        square += 2.0 * (x / 4.0) * (x / 4.0);  // J_ij and J_ji of the symmetric form
      }
    }
    field_v.assign(fv.begin(), fv.end());
    field_h.assign(fh.begin(), fh.end());
    // c0 = 0.5 / (rms(J) sqrt(N)) (Goto et al. 2019), with the linear terms
    // counted as couplings to one extra fixed spin so that bias-dominated
    // models get a sensible scale too.
    for (int i = 0; i < n; ++i) square += 2.0 * fv[i] * fv[i];
    for (int j = 0; j < m; ++j) square += 2.0 * fh[j] * fh[j];
    const double spins = n + m + 1.0;
    const double rms = std::sqrt(square / (spins * (spins - 1.0)));
    scale = rms > 0.0 ? 0.5 / (rms * std::sqrt(static_cast<double>(n + m))) : 1.0;
  }
};

inline float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

// One SB integration step on positions x and momenta y of one layer, given
// that layer's field: symplectic Euler and perfectly inelastic walls.
// `gain` multiplies the momenta each step before the force acts: 1 for the
// plain dynamics, slightly above 1 for heated ballistic replicas.
MARBM_VECTOR_CLONES void sb_update(float* x, float* y, const float* field, int count, float dt, float detuning, float c0,
                      float a0, float gain) {
#pragma omp simd
  for (int k = 0; k < count; ++k) sb_spin_step(x[k], y[k], field[k], dt, detuning, c0, a0, gain);
}

// Initial positions and momenta of replica r: uniform in [-0.1, 0.1) from
// Philox (seed, mode_search stream); replica 0 at the warm start when given.
void sb_initialise(const ModeSearchConfig& config, int r, int n, int m, float* xv, float* yv, float* xh, float* yh) {
  const PhiloxStream stream(config.seed, random_stream(RandomPurpose::mode_search, 0));
  // One 32-bit word per unit: the high half gives the position, the low
  // half the momentum (16 bits are plenty for a small random start); replica
  // r owns the blocks from r ceil((n + m) / 4), drawn a block at a time.
  const std::uint64_t first_block = static_cast<std::uint64_t>(r) * ((static_cast<std::uint64_t>(n + m) + 3) / 4);
  constexpr float amp = 0.1f;
  auto value = [](std::uint32_t half) { return 2.0f * amp * static_cast<float>(half) * 0x1.0p-16f - amp; };
  for (int unit = 0; unit < n + m; unit += 4) {
    const auto block = stream.block(first_block + static_cast<std::uint64_t>(unit / 4));
    for (int k = 0; k < 4 && unit + k < n + m; ++k) {
      const int u = unit + k;
      float* x = u < n ? xv + u : xh + (u - n);
      float* y = u < n ? yv + u : yh + (u - n);
      *x = value(block[k] >> 16);
      *y = value(block[k] & 0xFFFFu);
    }
  }
  if (r == 0 && !config.warm_visible.empty()) {
    for (int i = 0; i < n; ++i) xv[i] = config.warm_visible[i] ? 1.0f : -1.0f;
    for (int j = 0; j < m; ++j) xh[j] = config.warm_hidden[j] ? 1.0f : -1.0f;
    std::fill(yv, yv + n, 0.0f);
    std::fill(yh, yh + m, 0.0f);
  }
}

// out += sum_k source[k] * row k over `sources` consecutive rows: contiguous
// and vectorised, four rows per pass so each output is loaded and stored a
// quarter as often (no horizontal sums, unlike a dot product per output).
MARBM_VECTOR_CLONES void add_scaled_rows(float* out, int size, const float* rows, std::size_t stride,
                                         const float* source, int sources) {
  int k = 0;
  for (; k + 4 <= sources; k += 4) {
    const float s0 = source[k], s1 = source[k + 1], s2 = source[k + 2], s3 = source[k + 3];
    const float* r0 = rows + static_cast<std::size_t>(k) * stride;
    const float* r1 = r0 + stride;
    const float* r2 = r1 + stride;
    const float* r3 = r2 + stride;
#pragma omp simd
    for (int i = 0; i < size; ++i) out[i] += s0 * r0[i] + s1 * r1[i] + s2 * r2[i] + s3 * r3[i];
  }
  for (; k < sources; ++k) {
    const float s0 = source[k];
    const float* r0 = rows + static_cast<std::size_t>(k) * stride;
#pragma omp simd
    for (int i = 0; i < size; ++i) out[i] += s0 * r0[i];
  }
}

// out += sum_k coefficient[k] * row(index[k]) over `count` listed rows, four
// rows per pass so each output is loaded and stored a quarter as often.
MARBM_VECTOR_CLONES void add_gathered_rows(float* out, int size, const float* rows, std::size_t stride, const int* index,
                       const float* coefficient, int count) {
  int k = 0;
  for (; k + 4 <= count; k += 4) {
    const float* r0 = rows + static_cast<std::size_t>(index[k]) * stride;
    const float* r1 = rows + static_cast<std::size_t>(index[k + 1]) * stride;
    const float* r2 = rows + static_cast<std::size_t>(index[k + 2]) * stride;
    const float* r3 = rows + static_cast<std::size_t>(index[k + 3]) * stride;
    const float c0 = coefficient[k], c1 = coefficient[k + 1], c2 = coefficient[k + 2], c3 = coefficient[k + 3];
#pragma omp simd
    for (int i = 0; i < size; ++i) out[i] += (c0 * r0[i] + c1 * r1[i]) + (c2 * r2[i] + c3 * r3[i]);
  }
  for (; k < count; ++k) {
    const float* r0 = rows + static_cast<std::size_t>(index[k]) * stride;
    const float c0 = coefficient[k];
#pragma omp simd
    for (int i = 0; i < size; ++i) out[i] += c0 * r0[i];
  }
}

// Uniform floats at indices first.. of `stream` (first a multiple of 4),
// one Philox block per four numbers.
void fill_uniforms(const PhiloxStream& stream, std::uint64_t first, std::vector<float>& out) {
  for (std::size_t k = 0; k < out.size(); k += 4) {
    const auto words = stream.block((first + k) / 4);
    for (std::size_t w = 0; w < 4; ++w) out[k + w] = PhiloxStream::to_uniform(words[w]);
  }
}

// The SB dynamics of mode_sb_cpu: the replicas' final positions.
// Replicas [first, last) of all `total` (last < 0: all): a rank of a
// distributed search runs a range; each replica's dynamics depend only on its
// index (and, on the matrix-product path, which the total decides, on its
// 64-replica block, so ranges start on block boundaries).
ReplicaTrajectory sb_trajectory(const Rbm& rbm, const ModeSearchConfig& config, int first = 0, int last = -1) {
  const int n = rbm.n_visible();
  const int m = rbm.n_hidden();
  const int total = config.replicas > 0 ? config.replicas : default_sb_replicas(config.sb_variant, n, m);
  if (last < 0) last = total;
  const int count = last - first;
  const int steps = config.steps > 0 ? config.steps : default_sb_steps(config.sb_variant, n, m);
  const float dt = static_cast<float>(config.time_step > 0.0 ? config.time_step : default_sb_time_step(config.sb_variant));
  const bool discrete = config.sb_variant == SbVariant::discrete;
  const IsingForm form(rbm);
  const float a0 = 1.0f;
  const float c0 = static_cast<float>(form.scale);
  // Ballistic replicas started near x = 0 follow nearly one adiabatic branch
  // and end in the same state, right or wrong; a small anti-damping of the
  // momenta (0.4 per unit time, heating) spreads them. Measured in
  // bench/results/mode-defaults.md: it lifts the share of instances solved by
  // bSB from about 85% to all; dSB, already spread by its sign(x) field,
  // gets worse with it.
  const float gain = discrete ? 1.0f : 1.0f + 0.4f * dt;

  std::vector<float> xv(static_cast<std::size_t>(count) * n), yv(xv.size()), xh(static_cast<std::size_t>(count) * m),
      yh(xh.size());
  for (int r = 0; r < count; ++r) {
    sb_initialise(config, first + r, n, m, xv.data() + static_cast<std::size_t>(r) * n, yv.data() + static_cast<std::size_t>(r) * n,
                  xh.data() + static_cast<std::size_t>(r) * m, yh.data() + static_cast<std::size_t>(r) * m);
  }
  auto detuning_at = [&](int step) { return a0 - a0 * static_cast<float>(step) / static_cast<float>(steps); };

  // Large problems with many replicas: the two field evaluations of a step
  // are matrix products over all replicas (BLAS); otherwise each replica runs
  // on its own with vectorised loops (OpenMP across replicas).
  const bool use_gemm = total >= 32 && static_cast<long>(n) * m >= 128L * 128L;
  if (use_gemm) {
    std::vector<float> sv(xv.size()), sh(xh.size()), fv(xv.size()), fh(xh.size());
    for (int step = 0; step < steps; ++step) {
      const float detuning = detuning_at(step);
      const float* pv = xv.data();
      const float* ph = xh.data();
      if (discrete) {
        for (std::size_t k = 0; k < xv.size(); ++k) sv[k] = sign_of(xv[k]);
        for (std::size_t k = 0; k < xh.size(); ++k) sh[k] = sign_of(xh[k]);
        pv = sv.data();
        ph = sh.data();
      }
      for (int r = 0; r < count; ++r) {
        std::copy(form.field_v.begin(), form.field_v.end(), fv.begin() + static_cast<std::ptrdiff_t>(r) * n);
        std::copy(form.field_h.begin(), form.field_h.end(), fh.begin() + static_cast<std::ptrdiff_t>(r) * m);
      }
      // fv (R x n) += X_h (R x m) J^T;  fh (R x m) += X_v (R x n) J.
      partitioned_sgemm(CblasNoTrans, CblasTrans, count, n, m, 1.0f, ph, m, form.coupling.data(), m, 1.0f, fv.data(),
                        n, 0);
      partitioned_sgemm(CblasNoTrans, CblasNoTrans, count, m, n, 1.0f, pv, n, form.coupling.data(), m, 1.0f, fh.data(),
                        m, 0);
#pragma omp parallel for schedule(static)
      for (int r = 0; r < count; ++r) {
        sb_update(xv.data() + static_cast<std::size_t>(r) * n, yv.data() + static_cast<std::size_t>(r) * n,
                  fv.data() + static_cast<std::size_t>(r) * n, n, dt, detuning, c0, a0, gain);
        sb_update(xh.data() + static_cast<std::size_t>(r) * m, yh.data() + static_cast<std::size_t>(r) * m,
                  fh.data() + static_cast<std::size_t>(r) * m, m, dt, detuning, c0, a0, gain);
      }
    }
  } else {
#pragma omp parallel
    {
      std::vector<float> sv(n), sh(m), fv(n), fh(m), change_v(n), change_h(m);
      std::vector<int> flipped_v(n), flipped_h(m);
#pragma omp for schedule(static)
      for (int r = 0; r < count; ++r) {
        float* x_v = xv.data() + static_cast<std::size_t>(r) * n;
        float* y_v = yv.data() + static_cast<std::size_t>(r) * n;
        float* x_h = xh.data() + static_cast<std::size_t>(r) * m;
        float* y_h = yh.data() + static_cast<std::size_t>(r) * m;
        // Fields from the current positions (bSB) or signs (dSB).
        // Fields from the current positions (bSB) or signs (dSB), as sums of
        // rows scaled by the source spins.
        auto full_fields = [&](const float* pv, const float* ph) {
          std::copy(form.field_v.begin(), form.field_v.end(), fv.begin());
          std::copy(form.field_h.begin(), form.field_h.end(), fh.begin());
          add_scaled_rows(fv.data(), n, form.coupling_transposed.data(), static_cast<std::size_t>(n), ph, m);
          add_scaled_rows(fh.data(), m, form.coupling.data(), static_cast<std::size_t>(m), pv, n);
        };
        if (discrete) {
          // dSB fields change only where a sign flips, and after the first
          // few steps few do: patch the fields with the flipped units' rows
          // (O(flips x layer)) instead of two full products per step.
          for (int i = 0; i < n; ++i) sv[i] = sign_of(x_v[i]);
          for (int j = 0; j < m; ++j) sh[j] = sign_of(x_h[j]);
          full_fields(sv.data(), sh.data());
          for (int step = 0; step < steps; ++step) {
            const float detuning = detuning_at(step);
            sb_update(x_v, y_v, fv.data(), n, dt, detuning, c0, a0, gain);
            sb_update(x_h, y_h, fh.data(), m, dt, detuning, c0, a0, gain);
            // Both layers' flips are found before either field is patched:
            // every spin of a step moves in the fields of the step before.
            int flips_v = 0, flips_h = 0;
            for (int i = 0; i < n; ++i) {
              const float sign = sign_of(x_v[i]);
              flipped_v[flips_v] = i;
              change_v[flips_v] = sign - sv[i];
              flips_v += sign != sv[i] ? 1 : 0;
              sv[i] = sign;
            }
            for (int j = 0; j < m; ++j) {
              const float sign = sign_of(x_h[j]);
              flipped_h[flips_h] = j;
              change_h[flips_h] = sign - sh[j];
              flips_h += sign != sh[j] ? 1 : 0;
              sh[j] = sign;
            }
            add_gathered_rows(fh.data(), m, form.coupling.data(), static_cast<std::size_t>(m), flipped_v.data(),
                              change_v.data(), flips_v);
            add_gathered_rows(fv.data(), n, form.coupling_transposed.data(), static_cast<std::size_t>(n),
                              flipped_h.data(), change_h.data(), flips_h);
          }
        } else {
          for (int step = 0; step < steps; ++step) {
            const float detuning = detuning_at(step);
            full_fields(x_v, x_h);
            sb_update(x_v, y_v, fv.data(), n, dt, detuning, c0, a0, gain);
            sb_update(x_h, y_h, fh.data(), m, dt, detuning, c0, a0, gain);
          }
        }
      }
    }
  }
  return ReplicaTrajectory{count, steps, std::move(xv), std::move(xh)};
}

// The annealing of mode_sa_cpu: the replicas' final 0/1 states.
ReplicaTrajectory sa_trajectory(const Rbm& rbm, const ModeSearchConfig& config, int first = 0, int last = -1) {
  const int n = rbm.n_visible();
  const int m = rbm.n_hidden();
  const int total = config.replicas > 0 ? config.replicas : default_mode_replicas(ModeSolver::sa, n, m);
  if (last < 0) last = total;
  const int count = last - first;
  const int steps = config.steps > 0 ? config.steps : default_mode_steps(ModeSolver::sa, n, m);
  AnnealingRange range = derived_annealing_range(rbm);
  if (config.beta_hot > 0.0) range.hot = config.beta_hot;
  if (config.beta_cold > 0.0) range.cold = config.beta_cold;
  MARBM_EXPECTS(range.cold >= range.hot, UsageError,
                "simulated annealing: beta_cold (" + std::to_string(range.cold) + ") is below beta_hot (" +
                    std::to_string(range.hot) + ")");
  const double ratio = steps > 1 ? std::pow(range.cold / range.hot, 1.0 / (steps - 1)) : 1.0;

  Replicas replicas{n, m, count, std::vector<std::uint8_t>(static_cast<std::size_t>(count) * n),
                    std::vector<std::uint8_t>(static_cast<std::size_t>(count) * m)};
  const auto w = rbm.weights();
  const auto a = rbm.visible_bias();
  const auto b = rbm.hidden_bias();
  const PhiloxStream stream(config.seed, random_stream(RandomPurpose::mode_search, 1));
  // Words per step: each layer's share padded to whole Philox blocks.
  const std::uint64_t padded_n = (static_cast<std::uint64_t>(n) + 3) / 4 * 4;
  const std::uint64_t padded_m = (static_cast<std::uint64_t>(m) + 3) / 4 * 4;
  const std::uint64_t units = padded_n + padded_m;

#pragma omp parallel
  {
    std::vector<float> hidden_state(m), field_h(m), uniform_v(padded_n), uniform_h(padded_m);
#pragma omp for schedule(static)
    for (int r = 0; r < count; ++r) {
      std::uint8_t* v = replicas.v(r);
      std::uint8_t* h = replicas.h(r);
      // Index space of replica r: one block of (steps + 1) x units words.
      const std::uint64_t base =
          static_cast<std::uint64_t>(first + r) * (static_cast<std::uint64_t>(steps) + 1) * units;
      for (int i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(stream.bits(base + i) >> 31);
      if (first + r == 0 && !config.warm_visible.empty()) std::copy(config.warm_visible.begin(), config.warm_visible.end(), v);
      double beta = range.hot;
      for (int step = 0; step < steps; ++step, beta *= ratio) {
        const std::uint64_t offset = base + (static_cast<std::uint64_t>(step) + 1) * units;
        const float fbeta = static_cast<float>(beta);
        fill_uniforms(stream, offset, uniform_v);
        fill_uniforms(stream, offset + padded_n, uniform_h);
        // h ~ p(h | v) at beta: field b + W^T v, summed over the visible units that are on.
        std::copy(b.begin(), b.end(), field_h.begin());
        for (int i = 0; i < n; ++i) {
          if (!v[i]) continue;
          const float* row = w.data() + static_cast<std::size_t>(i) * m;
#pragma omp simd
          for (int j = 0; j < m; ++j) field_h[j] += row[j];
        }
        for (int j = 0; j < m; ++j) {
          const float p = 1.0f / (1.0f + std::exp(-fbeta * field_h[j]));
          h[j] = uniform_h[j] < p ? 1 : 0;
          hidden_state[j] = h[j];
        }
        // v ~ p(v | h) at beta: field a + W h.
        for (int i = 0; i < n; ++i) {
          const float* row = w.data() + static_cast<std::size_t>(i) * m;
          float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
          for (int j = 0; j < m; ++j) acc += row[j] * hidden_state[j];
          const float p = 1.0f / (1.0f + std::exp(-fbeta * (a[i] + acc)));
          v[i] = uniform_v[i] < p ? 1 : 0;
        }
      }
    }
  }
  ReplicaTrajectory trajectory{count, steps, std::vector<float>(replicas.visible.begin(), replicas.visible.end()),
                               std::vector<float>(replicas.hidden.begin(), replicas.hidden.end())};
  return trajectory;
}

// Binary replica states (x > 0) of a trajectory.
Replicas replicas_of(const Rbm& rbm, const ReplicaTrajectory& trajectory) {
  Replicas replicas{rbm.n_visible(), rbm.n_hidden(), trajectory.replicas,
                    std::vector<std::uint8_t>(trajectory.visible.size()),
                    std::vector<std::uint8_t>(trajectory.hidden.size())};
  for (std::size_t k = 0; k < trajectory.visible.size(); ++k) replicas.visible[k] = trajectory.visible[k] > 0.0f ? 1 : 0;
  for (std::size_t k = 0; k < trajectory.hidden.size(); ++k) replicas.hidden[k] = trajectory.hidden[k] > 0.0f ? 1 : 0;
  return replicas;
}

}  // namespace

ReplicaTrajectory mode_trajectory_cpu(const Rbm& rbm, const ModeSearchConfig& config) {
  return config.solver == ModeSolver::sa ? sa_trajectory(rbm, config) : sb_trajectory(rbm, config);
}

ModeResult mode_replicas_distributed(const Rbm& rbm, const ModeSearchConfig& config, Communicator& comm) {
  const auto start = std::chrono::steady_clock::now();
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  const bool sa = config.solver == ModeSolver::sa;
  const int total = config.replicas > 0 ? config.replicas
                                        : (sa ? default_mode_replicas(ModeSolver::sa, n, m)
                                              : default_sb_replicas(config.sb_variant, n, m));
  // 64-replica blocks in contiguous ranges: the matrix-product path computes
  // the same blocks as one process does.
  constexpr int block = 64;
  const ItemRange blocks = contiguous_share((total + block - 1) / block, comm.size(), comm.rank());
  const int first = static_cast<int>(std::min<std::int64_t>(blocks.first * block, total));
  const int last = static_cast<int>(std::min<std::int64_t>(blocks.last * block, total));
  int steps = 0;
  Replicas replicas{n, m, 0, {}, {}};
  if (last > first) {
    const ReplicaTrajectory trajectory =
        sa ? sa_trajectory(rbm, config, first, last) : sb_trajectory(rbm, config, first, last);
    replicas = replicas_of(rbm, trajectory);
    steps = trajectory.steps;
  }
  const DescentPolish polish(rbm);
  const std::vector<double> energy = polish_all(rbm, config, polish, replicas);
  const int best = lowest(energy);
  // The lowest energy over the ranks; the lowest rank holds the lowest
  // replica index among equals (ranges are in rank order), as one process picks.
  const MinLocation winner =
      comm.min_location(replicas.count > 0 ? energy[best] : std::numeric_limits<double>::infinity());
  std::vector<std::byte> state(static_cast<std::size_t>(n + m));
  if (comm.rank() == winner.rank && replicas.count > 0) {
    std::memcpy(state.data(), replicas.v(best), static_cast<std::size_t>(n));
    std::memcpy(state.data() + n, replicas.h(best), static_cast<std::size_t>(m));
  }
  comm.broadcast(state, winner.rank);
  ModeResult result;
  result.visible.resize(static_cast<std::size_t>(n));
  result.hidden.resize(static_cast<std::size_t>(m));
  std::memcpy(result.visible.data(), state.data(), static_cast<std::size_t>(n));
  std::memcpy(result.hidden.data(), state.data() + n, static_cast<std::size_t>(m));
  result.energy = winner.value;
  keep_polished_warm_start(config, polish, result);
  const double tolerance = 1e-9 * std::max(1.0, std::abs(result.energy));
  std::vector<double> at_best{static_cast<double>(
      std::count_if(energy.begin(), energy.end(), [&](double e) { return e <= result.energy + tolerance; }))};
  comm.all_reduce_sum(at_best);
  std::vector<double> most_steps{static_cast<double>(steps)};
  comm.all_reduce_max(most_steps);
  result.replicas_at_best = static_cast<int>(at_best[0]);
  result.energy = rbm.energy(result.visible, result.hidden);
  result.replicas = total;
  result.steps = static_cast<int>(most_steps[0]);
  result.seconds = seconds_since(start);
  return result;
}

ModeResult mode_sb_cpu(const Rbm& rbm, const ModeSearchConfig& config) {
  const auto start = std::chrono::steady_clock::now();
  const ReplicaTrajectory trajectory = sb_trajectory(rbm, config);
  Replicas replicas = replicas_of(rbm, trajectory);
  return finish(rbm, config, replicas, trajectory.steps, start);
}

ModeResult mode_sa_cpu(const Rbm& rbm, const ModeSearchConfig& config) {
  const auto start = std::chrono::steady_clock::now();
  const ReplicaTrajectory trajectory = sa_trajectory(rbm, config);
  Replicas replicas = replicas_of(rbm, trajectory);
  return finish(rbm, config, replicas, trajectory.steps, start);
}

}  // namespace marbm::detail
