// Ground-state (mode) search on the CPU (SPEC.md section 4): exhaustive
// enumeration, the descent polish and the dispatch between backends.
#include "marbm/mode.hpp"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "detail/cuda_entry.hpp"
#include "detail/mode_search_config.hpp"
#include "marbm/error.hpp"
#include "mode_solvers.hpp"

namespace marbm {

ModeSolver parse_mode_solver(std::string_view text) {
  if (text == "exhaustive") return ModeSolver::exhaustive;
  if (text == "sb") return ModeSolver::sb;
  if (text == "sa") return ModeSolver::sa;
  if (text == "local") return ModeSolver::local;
  throw UsageError("unknown mode solver '" + std::string(text) + "' (expected exhaustive, sb, sa or local)");
}

std::string_view to_string(ModeSolver solver) {
  switch (solver) {
    case ModeSolver::exhaustive: return "exhaustive";
    case ModeSolver::sb: return "sb";
    case ModeSolver::sa: return "sa";
    case ModeSolver::local: return "local";
  }
  return "?";
}

ModePolish parse_mode_polish(std::string_view text) {
  if (text == "descent") return ModePolish::descent;
  if (text == "collapsed") return ModePolish::collapsed;
  throw UsageError("unknown polish '" + std::string(text) + "' (expected descent or collapsed)");
}

std::string_view to_string(ModePolish polish) {
  return polish == ModePolish::collapsed ? "collapsed" : "descent";
}

namespace {

// The best state of the enumeration over one contiguous block of Gray-code
// indices of the smaller layer.
struct BlockBest {
  double energy = std::numeric_limits<double>::infinity();
  std::uint64_t state = 0;  // the enumerated layer's bits (bit j = unit j)
};

// Enumerates Gray-code indices first .. first + size - 1 of the smaller layer
// (k units, couplings to the f units of the other layer as k rows of f),
// restarting the fields exactly at `first`.
MARBM_VECTOR_CLONES BlockBest enumerate_block(std::uint64_t first, std::uint64_t block_size, int k, int f,
                                              const double* coupling, const float* enum_bias, const float* free_bias,
                                              double* field) {
  std::uint64_t gray = first ^ (first >> 1);
  double linear = 0.0;
  for (int i = 0; i < f; ++i) field[i] = free_bias[i];
  for (int j = 0; j < k; ++j) {
    if (!((gray >> j) & 1u)) continue;
    linear += enum_bias[j];
    const double* column = coupling + static_cast<std::size_t>(j) * f;
    for (int i = 0; i < f; ++i) field[i] += column[i];
  }
  BlockBest local;
  for (std::uint64_t index = first;; ++index) {
    double gain = 0.0;
#pragma omp simd reduction(+ : gain)
    for (int i = 0; i < f; ++i) gain += std::max(0.0, field[i]);
    const double energy = -linear - gain;
    if (energy < local.energy) local = {energy, gray};
    if (index + 1 == first + block_size) break;
    // Next Gray code differs in the lowest set bit of index + 1.
    const int j = std::countr_zero(index + 1);
    const double sign = ((gray >> j) & 1u) ? -1.0 : 1.0;
    gray ^= std::uint64_t{1} << j;
    linear += sign * enum_bias[j];
    const double* column = coupling + static_cast<std::size_t>(j) * f;
#pragma omp simd
    for (int i = 0; i < f; ++i) field[i] += sign * column[i];
  }
  return local;
}

}  // namespace

ModeResult mode_exhaustive(const Rbm& rbm, int max_enumerated_units) {
  const auto start = std::chrono::steady_clock::now();
  const int n = rbm.n_visible();
  const int m = rbm.n_hidden();
  MARBM_EXPECTS(n >= 1 && m >= 1, UsageError, "mode_exhaustive: the model is empty");
  MARBM_EXPECTS(max_enumerated_units >= 1 && max_enumerated_units <= 62, UsageError,
                "mode_exhaustive: max_enumerated_units must be in 1..62, got " + std::to_string(max_enumerated_units));
  // Enumerate the smaller layer ("enumerated", k units); the other layer
  // ("free", f units) is set optimally: unit i on iff its field is positive,
  // so E = -bias_enum.s - sum_i max(0, field_i).
  const bool enumerate_hidden = m <= n;
  const int k = enumerate_hidden ? m : n;
  const int f = enumerate_hidden ? n : m;
  MARBM_EXPECTS(k <= max_enumerated_units, RuntimeFailure,
                "exhaustive mode search: the smaller layer has " + std::to_string(k) +
                    " units, beyond the limit of " + std::to_string(max_enumerated_units) +
                    " (2^" + std::to_string(k) + " states); use --solver sb or sa");

  const auto weights = rbm.weights();
  // Coupling column of enumerated unit j as a contiguous float64 vector of
  // length f: column j of W when hidden is enumerated, row j otherwise.
  std::vector<double> coupling(static_cast<std::size_t>(k) * f);
  for (int j = 0; j < k; ++j) {
    for (int i = 0; i < f; ++i) {
      coupling[static_cast<std::size_t>(j) * f + i] =
          enumerate_hidden ? weights[static_cast<std::size_t>(i) * m + j] : weights[static_cast<std::size_t>(j) * m + i];
    }
  }
  const auto enum_bias = enumerate_hidden ? rbm.hidden_bias() : rbm.visible_bias();
  const auto free_bias = enumerate_hidden ? rbm.visible_bias() : rbm.hidden_bias();

  const std::uint64_t total = std::uint64_t{1} << k;
  // Blocks of Gray-code indices; each restarts its fields exactly from its
  // first state, so rounding never accumulates over more than one block.
  const int block_bits = std::min(k, 14);
  const std::uint64_t block_size = std::uint64_t{1} << block_bits;
  const std::int64_t blocks = static_cast<std::int64_t>(total / block_size);
  std::vector<BlockBest> best(static_cast<std::size_t>(blocks));

  const auto search_block = [&](std::int64_t block, double* field) {
    const std::uint64_t first = static_cast<std::uint64_t>(block) * block_size;
    best[static_cast<std::size_t>(block)] =
        enumerate_block(first, block_size, k, f, coupling.data(), enum_bias.data(), free_bias.data(), field);
  };
  if (blocks == 1) {
    // Small models (training's mode steps): no OpenMP region at all; even an
    // inactive one sets up a team, which costs more than the whole search.
    std::vector<double> field(static_cast<std::size_t>(f));
    search_block(0, field.data());
  } else {
#pragma omp parallel
    {
      std::vector<double> field(static_cast<std::size_t>(f));
#pragma omp for schedule(static)
      for (std::int64_t block = 0; block < blocks; ++block) search_block(block, field.data());
    }
  }
  // Lowest energy; the first block wins ties, so the result does not depend on
  // the thread count.
  BlockBest overall;
  for (const auto& candidate : best) {
    if (candidate.energy < overall.energy) overall = candidate;
  }

  ModeResult result;
  std::vector<std::uint8_t> enumerated(static_cast<std::size_t>(k));
  for (int j = 0; j < k; ++j) enumerated[j] = static_cast<std::uint8_t>((overall.state >> j) & 1u);
  std::vector<std::uint8_t> other(static_cast<std::size_t>(f));
  for (int i = 0; i < f; ++i) {
    double field = free_bias[i];
    for (int j = 0; j < k; ++j) {
      if (enumerated[j]) field += coupling[static_cast<std::size_t>(j) * f + i];
    }
    other[i] = field > 0.0 ? 1 : 0;
  }
  result.visible = enumerate_hidden ? other : enumerated;
  result.hidden = enumerate_hidden ? enumerated : other;
  result.energy = rbm.energy(result.visible, result.hidden);
  result.replicas = 1;
  result.steps = 0;
  result.replicas_at_best = 1;
  result.seconds = detail::seconds_since(start);
  return result;
}

double polish_descent(const Rbm& rbm, std::span<std::uint8_t> visible, std::span<std::uint8_t> hidden) {
  const int n = rbm.n_visible();
  const int m = rbm.n_hidden();
  MARBM_EXPECTS(static_cast<int>(visible.size()) == n, UsageError,
                "polish_descent: visible state has " + std::to_string(visible.size()) + " units, the model " +
                    std::to_string(n));
  MARBM_EXPECTS(static_cast<int>(hidden.size()) == m, UsageError,
                "polish_descent: hidden state has " + std::to_string(hidden.size()) + " units, the model " +
                    std::to_string(m));
  const detail::DescentPolish polish(rbm);
  detail::DescentPolish::Scratch scratch;
  polish.run(visible.data(), hidden.data(), scratch);
  return rbm.energy(visible, hidden);
}

namespace detail {

namespace {

// field += sign_k * row(index_k) for the `count` listed rows, four rows per
// pass so that each output is loaded and stored a quarter as often.
MARBM_VECTOR_CLONES void add_signed_rows(std::vector<double>& field, const double* rows, std::size_t stride,
                                         const std::vector<int>& index, const std::vector<double>& sign,
                                         std::size_t count) {
  const std::size_t size = field.size();
  double* out = field.data();
  std::size_t k = 0;
  for (; k + 4 <= count; k += 4) {
    const double* r0 = rows + static_cast<std::size_t>(index[k]) * stride;
    const double* r1 = rows + static_cast<std::size_t>(index[k + 1]) * stride;
    const double* r2 = rows + static_cast<std::size_t>(index[k + 2]) * stride;
    const double* r3 = rows + static_cast<std::size_t>(index[k + 3]) * stride;
    const double s0 = sign[k], s1 = sign[k + 1], s2 = sign[k + 2], s3 = sign[k + 3];
#pragma omp simd
    for (std::size_t i = 0; i < size; ++i) out[i] += (s0 * r0[i] + s1 * r1[i]) + (s2 * r2[i] + s3 * r3[i]);
  }
  for (; k < count; ++k) {
    const double* r0 = rows + static_cast<std::size_t>(index[k]) * stride;
    const double s0 = sign[k];
#pragma omp simd
    for (std::size_t i = 0; i < size; ++i) out[i] += s0 * r0[i];
  }
}

}  // namespace

DescentPolish::DescentPolish(const Rbm& rbm)
    : n_(rbm.n_visible()),
      m_(rbm.n_hidden()),
      weights_(rbm.weights().begin(), rbm.weights().end()),
      weights_transposed_(weights_.size()),
      visible_bias_(rbm.visible_bias().begin(), rbm.visible_bias().end()),
      hidden_bias_(rbm.hidden_bias().begin(), rbm.hidden_bias().end()) {
  for (int i = 0; i < n_; ++i) {
    for (int j = 0; j < m_; ++j) {
      weights_transposed_[static_cast<std::size_t>(j) * n_ + i] = weights_[static_cast<std::size_t>(i) * m_ + j];
    }
  }
}

double DescentPolish::run(std::uint8_t* visible, std::uint8_t* hidden, Scratch& scratch) const {
  auto& field_h = scratch.field_hidden;  // b + W^T v, kept in step with v
  auto& field_v = scratch.field_visible;  // a + W h, kept in step with h
  field_h.assign(hidden_bias_.begin(), hidden_bias_.end());
  field_v.assign(visible_bias_.begin(), visible_bias_.end());
  // Lists are appended without branches (write, then advance by 0 or 1):
  // which units change is close to random after a short search.
  auto& index = scratch.index;
  auto& sign = scratch.sign;
  index.resize(static_cast<std::size_t>(std::max(n_, m_)));
  sign.resize(index.size());
  auto list_on = [&](const std::uint8_t* state, int units) {
    std::size_t count = 0;
    for (int k = 0; k < units; ++k) {
      index[count] = k;
      sign[count] = 1.0;
      count += state[k];
    }
    return count;
  };
  const std::size_t stride_h = static_cast<std::size_t>(m_), stride_v = static_cast<std::size_t>(n_);
  add_signed_rows(field_h, weights_.data(), stride_h, index, sign, list_on(visible, n_));
  // The first hidden update is settled before field_v is built, so that the
  // changes it makes cost nothing to patch.
  for (int j = 0; j < m_; ++j) {
    if (field_h[j] != 0.0) hidden[j] = field_h[j] > 0.0 ? 1 : 0;
  }
  add_signed_rows(field_v, weights_transposed_.data(), stride_v, index, sign, list_on(hidden, m_));
  // A unit changes only when its field strictly prefers the other value
  // (ties keep the current value), so every change lowers E and the loop
  // ends; the cap only guards against pathological rounding. Fields are
  // patched with the rows of the units that changed.
  for (int round = 0; round < 10000; ++round) {
    std::size_t count = 0;
    for (int j = 0; j < m_; ++j) {
      const std::uint8_t want = field_h[j] > 0.0 ? 1 : (field_h[j] < 0.0 ? 0 : hidden[j]);
      index[count] = j;
      sign[count] = want ? 1.0 : -1.0;
      count += want != hidden[j] ? 1 : 0;
      hidden[j] = want;
    }
    add_signed_rows(field_v, weights_transposed_.data(), stride_v, index, sign, count);
    if (count == 0 && round > 0) break;
    count = 0;
    for (int i = 0; i < n_; ++i) {
      const std::uint8_t want = field_v[i] > 0.0 ? 1 : (field_v[i] < 0.0 ? 0 : visible[i]);
      index[count] = i;
      sign[count] = want ? 1.0 : -1.0;
      count += want != visible[i] ? 1 : 0;
      visible[i] = want;
    }
    add_signed_rows(field_h, weights_.data(), stride_h, index, sign, count);
    if (count == 0) break;
  }
  // E = -a.v - h.(b + W^T v).
  double energy = 0.0;
  for (int i = 0; i < n_; ++i) energy -= visible[i] ? visible_bias_[i] : 0.0;
  for (int j = 0; j < m_; ++j) energy -= hidden[j] ? field_h[j] : 0.0;
  return energy;
}

}  // namespace detail

namespace {


}  // namespace

ModeResult find_mode(const Rbm& rbm, const ModeSearchConfig& config) {
  detail::check_mode_search_config(rbm.n_visible(), rbm.n_hidden(), config);
  // The local search is a few passes over W per start: it runs on the host
  // whatever the backend.
  if (config.solver == ModeSolver::local) return detail::mode_local_cpu(rbm, config);
  Backend backend = config.backend;
  if (backend == Backend::automatic) {
    // Called at every mode step of training: no notice here, the front ends
    // report the engine they chose.
    backend = detail::list_cuda_devices().empty() ? Backend::cpu : Backend::cuda;
  }
  if (backend == Backend::cuda) {
    MARBM_EXPECTS(config.polish == ModePolish::descent, UsageError,
                  "mode search: the collapsed polish runs on the CPU only (use the descent polish or --backend cpu)");
    ModeSearchConfig device_config = config;
    device_config.backend = Backend::cuda;
    return detail::find_mode_cuda(rbm, device_config);
  }
  switch (config.solver) {
    case ModeSolver::exhaustive: return mode_exhaustive(rbm, config.max_enumerated_units);
    case ModeSolver::sb: return detail::mode_sb_cpu(rbm, config);
    case ModeSolver::sa: return detail::mode_sa_cpu(rbm, config);
    case ModeSolver::local: break;  // handled above
  }
  throw UsageError("find_mode: unknown solver");
}

namespace detail {

void check_mode_search_config(int n_visible, int n_hidden, const ModeSearchConfig& config) {
  MARBM_EXPECTS(n_visible >= 1 && n_hidden >= 1, UsageError, "find_mode: the model is empty");
  MARBM_EXPECTS(config.replicas >= 0, UsageError,
                "mode search: replicas must be >= 0 (0: default), got " + std::to_string(config.replicas));
  MARBM_EXPECTS(config.steps >= 0, UsageError,
                "mode search: steps must be >= 0 (0: default), got " + std::to_string(config.steps));
  MARBM_EXPECTS(std::isfinite(config.time_step) && config.time_step >= 0.0, UsageError,
                "mode search: time step must be finite and >= 0 (0: default), got " + std::to_string(config.time_step));
  MARBM_EXPECTS(std::isfinite(config.beta_hot) && config.beta_hot >= 0.0, UsageError,
                "mode search: beta_hot must be finite and >= 0 (0: derived), got " + std::to_string(config.beta_hot));
  MARBM_EXPECTS(std::isfinite(config.beta_cold) && config.beta_cold >= 0.0, UsageError,
                "mode search: beta_cold must be finite and >= 0 (0: derived), got " + std::to_string(config.beta_cold));
  MARBM_EXPECTS(config.max_enumerated_units >= 1 && config.max_enumerated_units <= 62, UsageError,
                "mode search: max_enumerated_units must be in 1..62, got " +
                    std::to_string(config.max_enumerated_units));
  const bool warm_empty = config.warm_visible.empty() && config.warm_hidden.empty();
  const bool warm_sized = static_cast<int>(config.warm_visible.size()) == n_visible &&
                          static_cast<int>(config.warm_hidden.size()) == n_hidden;
  MARBM_EXPECTS(warm_empty || warm_sized, UsageError,
                "mode search: warm start has " + std::to_string(config.warm_visible.size()) + " visible and " +
                    std::to_string(config.warm_hidden.size()) + " hidden units, the model " +
                    std::to_string(n_visible) + " and " + std::to_string(n_hidden));
  auto binary = [](const std::vector<std::uint8_t>& state) {
    return std::all_of(state.begin(), state.end(), [](std::uint8_t u) { return u <= 1; });
  };
  MARBM_EXPECTS(binary(config.warm_visible) && binary(config.warm_hidden), UsageError,
                "mode search: warm start states must hold only 0 and 1");
  MARBM_EXPECTS(config.start_visible.size() % static_cast<std::size_t>(n_visible) == 0, UsageError,
                "mode search: start states hold " + std::to_string(config.start_visible.size()) +
                    " values, not a whole number of rows of " + std::to_string(n_visible));
  MARBM_EXPECTS(binary(config.start_visible), UsageError, "mode search: start states must hold only 0 and 1");
  MARBM_EXPECTS(config.keep_minima >= 0, UsageError,
                "mode search: keep_minima must be >= 0, got " + std::to_string(config.keep_minima));
}

}  // namespace detail

}  // namespace marbm
